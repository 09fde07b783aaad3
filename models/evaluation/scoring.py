"""Alerts scored against episodes: who was caught, how early, and who was alerted for nothing.

Definitions (school days are the cohort's register days; "week" = 5 school days):
  * alert           a raised concern: a `concern` event that is not an escalation.
  * flagged         a pupil with at least one alert.
  * dip window      [onset - EARLY_GRACE_DAYS, recovery + LATE_GRACE_DAYS] in school days
                    (to the end of the period if the pupil never recovers). An alert up to one
                    school week before onset counts as early-correct: the label looks 20 school
                    days ahead, but nothing in the marks announces a dip much earlier, so an
                    earlier alert is a coincidence, not a prediction. Ten days after recovery
                    still count: recent-attendance features lag the recovery.
  * detected        a dip with an alert in its window; lead time = school days from onset to
                    the first such alert (negative when early).
  * recall          detected dips / dips.  recall within 20 days: lead time <= 20.
  * alert precision alerts inside a dip window of that pupil / alerts.
  * pupil precision flagged pupils with at least one alert inside a dip window / flagged pupils.
  * one-off share   pupils whose only episodes are one-off blocks (an illness of one to three
                    weeks, a holiday, a bereavement), flagged at all / such pupils.
  * no-dip share    pupils with no dip episode at all, flagged at all / such pupils.
  * alerts per 100 pupils per week: alerts * 100 / pupils / (school days / 5).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.evaluation.truth import (
    DIP_KINDS,
    HEALTH_KINDS,
    ONE_OFF_KINDS,
    Episode,
    Truth,
)
from schemas.events import InterventionEvent, InterventionKind

EARLY_GRACE_DAYS = 5
LATE_GRACE_DAYS = 10
WITHIN_DAYS = 20
SCHOOL_DAYS_PER_WEEK = 5
NO_EPISODE = "no_episode"  # pupils with no truth row: the cohort's ordinary attendance


def concern_alerts(events: Sequence[InterventionEvent]) -> dict[str, list[dt.date]]:
    """pupil -> dates of raised concerns (escalations are not alerts)."""
    alerts: dict[str, list[dt.date]] = defaultdict(list)
    for event in events:
        if event.kind is InterventionKind.CONCERN and not event.escalation:
            alerts[event.pupil_id].append(event.as_of)
    return dict(alerts)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


@dataclass
class AlertScore:
    dips: int
    detected: int
    detected_within_20: int
    lead_days: list[int]  # per detected dip
    alerts: int
    alerts_in_dip: int
    flagged: int
    flagged_with_dip_alert: int
    one_off_pupils: int
    one_off_flagged: int
    no_dip_pupils: int
    no_dip_flagged: int
    low_steady_pupils: int
    low_steady_flagged: int
    health_pupils: int
    health_alerted_during: int  # long-illness pupils given a concern while ill
    pupils: int
    school_days: int
    flagged_pupils: set[str] = field(default_factory=set, repr=False)

    def metrics(self) -> dict[str, float | None]:
        weeks = self.school_days / SCHOOL_DAYS_PER_WEEK
        return {
            "recall": _ratio(self.detected, self.dips),
            "recall_within_20": _ratio(self.detected_within_20, self.dips),
            "median_lead_days": float(statistics.median(self.lead_days)) if self.lead_days else None,
            "alert_precision": _ratio(self.alerts_in_dip, self.alerts),
            "pupil_precision": _ratio(self.flagged_with_dip_alert, self.flagged),
            "one_off_flagged_share": _ratio(self.one_off_flagged, self.one_off_pupils),
            "no_dip_flagged_share": _ratio(self.no_dip_flagged, self.no_dip_pupils),
            "low_steady_flagged_share": _ratio(self.low_steady_flagged, self.low_steady_pupils),
            "long_illness_concern_share": _ratio(self.health_alerted_during, self.health_pupils),
            "alerts_per_100_per_week": 100 * self.alerts / self.pupils / weeks if self.pupils and weeks else None,
            "dips": self.dips, "alerts": self.alerts, "flagged": self.flagged, "pupils": self.pupils,
        }

    def shares(self) -> dict[str, tuple[int, int]]:
        """The part and the whole of each target share, for its interval (`targets.share_interval`)."""
        return {"recall_within_20": (self.detected_within_20, self.dips),
                "alert_precision": (self.alerts_in_dip, self.alerts),
                "one_off_flagged_share": (self.one_off_flagged, self.one_off_pupils),
                "no_dip_flagged_share": (self.no_dip_flagged, self.no_dip_pupils)}


class DayIndex:
    """School-day positions of dates; a date that is not a school day maps to the next one."""

    def __init__(self, school_days: Sequence[dt.date]) -> None:
        self.days = list(school_days)
        self._index = {d: i for i, d in enumerate(self.days)}
        self._ordinals = np.array([d.toordinal() for d in self.days], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.days)

    def __call__(self, day: dt.date) -> int:
        found = self._index.get(day)
        return found if found is not None else int(np.searchsorted(self._ordinals, day.toordinal()))


def dip_window(episode: Episode, day_index: DayIndex) -> tuple[int, int, int]:
    """(onset, first, last) school-day positions of a dip episode's window (module docstring)."""
    onset = day_index(episode.onset)
    last = len(day_index) - 1 if episode.recovery is None else day_index(episode.recovery) + LATE_GRACE_DAYS
    return onset, onset - EARLY_GRACE_DAYS, last


def first_in_window(raised: Sequence[int], window: tuple[int, int, int]) -> int | None:
    """The first of sorted alert positions inside the window, or None."""
    _, first, last = window
    return next((a for a in raised if first <= a <= last), None)


def score_alerts(alerts: Mapping[str, Sequence[dt.date]], truth: Truth, school_days: Sequence[dt.date],
                 pupils: Sequence[str] | None = None, *, dip_kinds: Sequence[str] | None = None) -> AlertScore:
    """Score raised alerts (pupil -> alert dates) against ground truth, on these school days."""
    dip_kinds = tuple(DIP_KINDS if dip_kinds is None else dip_kinds)
    pupils = list(truth.pupils if pupils is None else pupils)
    day_index = DayIndex(school_days)
    n_days = len(day_index)

    s = AlertScore(0, 0, 0, [], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, len(pupils), n_days)
    for pupil in pupils:
        episodes = truth.episodes.get(pupil, [])
        raised = sorted(day_index(d) for d in alerts.get(pupil, ()))
        windows = [dip_window(e, day_index) for e in episodes if e.kind in dip_kinds]
        for window in windows:
            s.dips += 1
            first = first_in_window(raised, window)
            if first is not None:
                s.detected += 1
                lead = first - window[0]
                s.lead_days.append(lead)
                s.detected_within_20 += lead <= WITHIN_DAYS
        good = sum(any(start <= a <= end for _, start, end in windows) for a in raised)
        s.alerts += len(raised)
        s.alerts_in_dip += good
        if raised:
            s.flagged += 1
            s.flagged_with_dip_alert += good > 0
            s.flagged_pupils.add(pupil)
        kinds = {e.kind for e in episodes}
        if kinds and kinds <= set(ONE_OFF_KINDS):
            s.one_off_pupils += 1
            s.one_off_flagged += bool(raised)
        if not kinds & set(dip_kinds):
            s.no_dip_pupils += 1
            s.no_dip_flagged += bool(raised)
        if kinds == {"low_steady"}:
            s.low_steady_pupils += 1
            s.low_steady_flagged += bool(raised)
        health = [(day_index(e.onset), n_days if e.recovery is None else day_index(e.recovery))
                  for e in episodes if e.kind in HEALTH_KINDS]
        if health:
            s.health_pupils += 1
            s.health_alerted_during += any(start <= a < end for start, end in health for a in raised)
    return s


def alerts_per_100_per_week(alerts: Mapping[str, Sequence[dt.date]], pupils: int, school_days: int) -> float:
    total = sum(len(v) for v in alerts.values())
    return 100 * total / max(pupils, 1) / max(school_days / SCHOOL_DAYS_PER_WEEK, 1e-9)


AFTER_BLOCK_DAYS = 20  # a concern this soon after a one-off block ends is about the block


def by_kind(alerts: Mapping[str, Sequence[dt.date]], truth: Truth,
            school_days: Sequence[dt.date]) -> dict[str, dict[str, float | int | None]]:
    """Per episode kind: pupils with it, the share flagged at all, for dip kinds the share caught
    within 20 school days, and for other kinds the share flagged during the episode or within 20
    school days after it (the rest were flagged for other absence in the year)."""
    kinds: dict[str, list[str]] = {NO_EPISODE: [p for p in truth.pupils if not truth.episodes.get(p)]}
    for pupil, episodes in truth.episodes.items():
        for episode in episodes:
            kinds.setdefault(episode.kind, []).append(pupil)
    day_index = DayIndex(school_days)
    out = {}
    for kind, pupils in sorted(kinds.items()):
        pupils = sorted(set(pupils))
        flagged = sum(bool(alerts.get(p)) for p in pupils)
        row: dict[str, float | int | None] = {"pupils": len(pupils), "flagged_share": _ratio(flagged, len(pupils))}
        if kind in DIP_KINDS:
            only = Truth({p: [e for e in truth.episodes[p] if e.kind == kind] for p in pupils},
                         truth.sen, truth.fsm, pupils)
            row["recall_within_20"] = score_alerts(alerts, only, school_days, pupils).metrics()["recall_within_20"]
        elif kind != NO_EPISODE:
            near = sum(any(_during_or_after(day_index(a), e, day_index) for a in alerts.get(p, ())
                           for e in truth.episodes[p] if e.kind == kind) for p in pupils)
            row["flagged_during_or_after_share"] = _ratio(near, len(pupils))
        out[kind] = row
    return out


def _during_or_after(alert: int, episode: Episode, day_index: DayIndex) -> bool:
    onset = day_index(episode.onset)
    end = len(day_index) if episode.recovery is None else day_index(episode.recovery)
    return onset <= alert <= end + AFTER_BLOCK_DAYS
