"""Why targets are missed: three diagnostics of one evaluation cohort, for the model card.

  threshold sweep   the real policy (models.evaluation.policy_sim) over the cohort's day-end
                    scores at several entry thresholds, each scored against ground truth. For
                    understanding only: nothing is chosen from it (the shipped threshold was
                    chosen on the training cohort), and it is the policy at day ends, whereas the
                    engine decides at every mark, so its figures differ slightly from a replay's.
  outside a dip     each raised concern outside every dip window of its pupil, with what the
                    register showed at that moment by the policy's own rules: whether the
                    register alone put it at tier 2 or more (`models.policy.register_tier`: a week
                    or more of unexplained absence in a row, or under half of the recent sessions
                    attended), and whether it was raised below the entry score (by the rules that
                    make a concern due whatever the score: for a pupil who usually attends, an
                    unexplained run longer than a school week, or days off on the same weekday,
                    counted apart; for any pupil, two unexplained weeks). Concerns the
                    register itself called for are counted as right in a second, diagnostic
                    precision; the target stays the one in `targets`.
  first concerns    what the register showed at each pupil's first concern (a week or more of
                    unexplained absence in a row; under half of the last 20 or 40 sessions; days
                    off on the same weekday; or the score, with nothing sustained on the register):
                    for the fairness audit, which behaviour lies behind a group's pupils flagged
                    without a dip.
  late dips         each dip with no concern in its first 20 school days, under what came closest
                    to one at the day ends of those days by the policy's own rules: already on the
                    list, due (the day-end view raised it, the engine did not), held back by the
                    register (which hold), too early in the year, or a score under the entry
                    threshold with no register rule; for the last, how often the label called those
                    day ends a dip (what the model was taught to score high).
  early evidence    what the final register shows in a dip's first school days: school days from
                    onset to the pupil's third day with an absence, against how many pupils without
                    a dip show three days off as close together at some point while attending 90% or
                    more so far: how little a register can say about a dip that early.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.dataset import TrainingSet
from models.evaluation.policy_sim import PolicySimulation
from models.evaluation.scoring import (
    NO_EPISODE,
    WITHIN_DAYS,
    DayIndex,
    concern_alerts,
    dip_window,
    first_in_window,
    score_alerts,
)
from models.evaluation.targets import BY_KEY
from models.evaluation.truth import DIP_KINDS, HEALTH_KINDS, ONE_OFF_KINDS, Truth
from models.history import RegisterYear
from models.policy import (
    POLICY_COUNTS,
    PolicyConfig,
    PolicyRow,
    concern_hold,
    concern_tier,
    policy_inputs,
    register_tier,
    thresholds,
)
from schemas.events import InterventionEvent, InterventionKind, WindowSummary

SWEEP_THRESHOLDS = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8)
SWEEP_METRICS = ("alert_precision", "recall_within_20", "median_lead_days", "one_off_flagged_share",
                 "no_dip_flagged_share", "alerts_per_100_per_week", "alerts")
BOTH = ("alert_precision", "recall_within_20")  # the two targets the sweep is about

# Pupil groups of concerns outside a dip window, in the order the card shows them.
ONE_OFF, HEALTH, OTHER, DIP_PUPIL = "one_off", "health", "other", "dip"  # NO_EPISODE: scoring's
GROUPS = (NO_EPISODE, ONE_OFF, HEALTH, OTHER, DIP_PUPIL)


# -- threshold sweep -------------------------------------------------------------------------
def threshold_sweep(rows: TrainingSet, scores: np.ndarray, truth: Truth, policy: PolicyConfig,
                    enter_scores: Iterable[float] = SWEEP_THRESHOLDS) -> list[dict[str, Any]]:
    """The policy at each entry threshold (and `policy`'s own) over these day-end rows and scores,
    scored against `truth` on the rows' school days: one row per threshold, lowest first."""
    simulation = PolicySimulation(rows, policy)
    shipped = policy.enter_score
    sweep = []
    for enter in sorted({float(t) for t in enter_scores} | {shipped}):
        alerts = simulation.alerts(scores, thresholds(policy, enter))
        metrics = score_alerts(alerts, truth, rows.school_days).metrics()
        sweep.append({"enter_score": enter, "shipped": enter == shipped, **{k: metrics[k] for k in SWEEP_METRICS}})
    return sweep


def meets(row: Mapping[str, Any], key: str) -> bool:
    return bool(BY_KEY[key].passes(row.get(key)))


def meets_both(row: Mapping[str, Any]) -> bool:
    """Alert precision and dips caught within 20 school days both at their targets."""
    return all(meets(row, key) for key in BOTH)


def thresholds_meeting_both(sweep: Sequence[Mapping[str, Any]]) -> list[float]:
    return [row["enter_score"] for row in sweep if meets_both(row)]


def best_where_met(sweep: Sequence[Mapping[str, Any]], met: str, best: str) -> Mapping[str, Any] | None:
    """Of the rows meeting the `met` target, the one with the highest `best` figure (None: none meets it)."""
    rows = [row for row in sweep if meets(row, met)]
    return max(rows, key=lambda row: row.get(best) or 0.0) if rows else None


# -- concerns outside a dip window ----------------------------------------------------------
def window_row(window: WindowSummary, config: PolicyConfig) -> PolicyRow:
    """The policy's inputs at the moment an event was raised, from the counts it carries."""
    counts = {name: np.array([getattr(window, name)], dtype=np.int64) for name in POLICY_COUNTS}
    return policy_inputs(counts, np.array([window.latest_date.toordinal()]), config).row(0)


def register_demanded(window: WindowSummary, config: PolicyConfig) -> bool:
    """The register alone, whatever the score, puts a concern here at tier 2 or more."""
    return register_tier(config, window_row(window, config)) >= 2


UNEXPLAINED_WEEK = "a week or more of unexplained absence in a row"
UNDER_HALF = "under half of the last two or four weeks attended"
SAME_WEEKDAY = "days off on the same weekday, week after week"
SCORE_ONLY = "nothing sustained (the score's call)"
BEHAVIOURS = (UNEXPLAINED_WEEK, UNDER_HALF, SAME_WEEKDAY, SCORE_ONLY)


def first_concern_behaviour(events: Iterable[InterventionEvent], config: PolicyConfig) -> dict[str, str]:
    """pupil -> what the register showed at their first concern (one of `BEHAVIOURS`): an
    unexplained run of a week or more; else any other reason `register_tier` puts it at tier 2 or
    more (under half of the last 20 or 40 sessions); else as many days off on one weekday as the
    policy's weekday rule asks; else nothing sustained."""
    shown: dict[str, str] = {}
    for event in sorted(events, key=lambda e: e.as_of):
        if event.kind is not InterventionKind.CONCERN or event.escalation or event.pupil_id in shown:
            continue
        row = window_row(event.window, config)
        shown[event.pupil_id] = (UNEXPLAINED_WEEK if row.unexplained_run >= config.tier2_unexplained_run
                                 else UNDER_HALF if register_tier(config, row) >= 2
                                 else SAME_WEEKDAY if row.same_weekday_days >= config.weekday_pattern_days
                                 else SCORE_ONLY)
    return shown


def pupil_group(kinds: set[str]) -> str:
    if not kinds:
        return NO_EPISODE
    if kinds & set(DIP_KINDS):
        return DIP_PUPIL
    if kinds & set(HEALTH_KINDS):
        return HEALTH
    return ONE_OFF if kinds <= set(ONE_OFF_KINDS) else OTHER


@dataclass
class OutsideCounts:
    concerns: int = 0
    register_tier_2: int = 0  # the register alone called for a concern at tier 2 or more
    unexplained_week: int = 0  # of those, a week or more of unexplained absence in a row
    below_entry: int = 0  # raised with the score below the entry threshold
    weekday_pattern: int = 0  # of those, with days off on the same weekday (the policy's weekday rule)
    pupils: int = 0

    def add(self, demanded: bool, week: bool, below: bool, weekday: bool) -> None:
        self.concerns += 1
        self.register_tier_2 += demanded
        self.unexplained_week += demanded and week
        self.below_entry += below
        self.weekday_pattern += below and weekday


@dataclass
class OutsideDipConcerns:
    """Raised concerns, and what the register showed at those outside every dip window of their pupil."""

    concerns: int = 0
    in_dip: int = 0
    outside: OutsideCounts = field(default_factory=OutsideCounts)
    by_group: dict[str, OutsideCounts] = field(default_factory=dict)

    @property
    def precision(self) -> float | None:
        return self.in_dip / self.concerns if self.concerns else None

    @property
    def precision_if_register_counted(self) -> float | None:
        """Diagnostic only: alert precision if the concerns the register called for counted as right."""
        return (self.in_dip + self.outside.register_tier_2) / self.concerns if self.concerns else None

    def to_dict(self) -> dict[str, Any]:
        return {"concerns": self.concerns, "in_dip": self.in_dip, "outside": vars(self.outside).copy(),
                "by_group": {g: vars(c).copy() for g, c in self.by_group.items()},
                "precision": self.precision, "precision_if_register_counted": self.precision_if_register_counted}


def outside_dip_concerns(events: Iterable[InterventionEvent], truth: Truth, school_days: Sequence[dt.date],
                         config: PolicyConfig) -> OutsideDipConcerns:
    """Classify every raised concern (escalations are not alerts) as `score_alerts` scores it."""
    day_index = DayIndex(school_days)
    windows: dict[str, list[tuple[int, int, int]]] = {}
    out = OutsideDipConcerns()
    pupils: dict[str, set[str]] = {}
    for event in events:
        if event.kind is not InterventionKind.CONCERN or event.escalation:
            continue
        pupil = event.pupil_id
        if pupil not in windows:
            windows[pupil] = [dip_window(e, day_index) for e in truth.episodes.get(pupil, ()) if e.kind in DIP_KINDS]
        out.concerns += 1
        at = day_index(event.as_of)
        if any(first <= at <= last for _, first, last in windows[pupil]):
            out.in_dip += 1
            continue
        row = window_row(event.window, config)
        demanded = register_tier(config, row) >= 2
        week = row.unexplained_run >= config.tier2_unexplained_run
        below = event.risk_score < config.enter_score
        weekday = row.same_weekday_days >= config.weekday_pattern_days
        group = pupil_group(truth.kinds(pupil))
        out.outside.add(demanded, week, below, weekday)
        out.by_group.setdefault(group, OutsideCounts()).add(demanded, week, below, weekday)
        pupils.setdefault(group, set()).add(pupil)
    for group, counts in out.by_group.items():
        counts.pupils = len(pupils[group])
    out.outside.pupils = sum(len(p) for p in pupils.values())
    out.by_group = {g: out.by_group[g] for g in GROUPS if g in out.by_group}
    return out


# -- dips not caught within 20 school days ----------------------------------------------------
# Why a dip had no concern in its first 20 school days, judged at the day ends of those days from
# the closest the policy came to raising one: the pupil was already on the list (flagged, or in the
# cool-down after an `improving`), the score reached the entry threshold but the register held the
# concern back (by which hold), the year had too few sessions yet, or the score stayed under the
# entry threshold and no register rule asked for a concern. DUE: at some day end the policy would
# have raised one, but the engine, deciding at every mark, did not (its view between marks differs).
ALREADY, DUE, HELD, TOO_EARLY, BELOW_ENTRY = "already_flagged", "due", "held", "too_early", "below_entry"
LATE_REASONS = (ALREADY, DUE, HELD, TOO_EARLY, BELOW_ENTRY)  # closest to a concern first


@dataclass
class LateDips:
    dips: int = 0
    caught: int = 0  # a concern within 20 school days of onset (or up to a week before it)
    reasons: dict[str, int] = field(default_factory=dict)  # reason -> dips not caught
    holds: dict[str, int] = field(default_factory=dict)  # for HELD: the hold on most of the days it held
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # dip kind -> reason -> dips
    highest_scores: list[float] = field(default_factory=list)  # for BELOW_ENTRY: each dip's highest score
    # For BELOW_ENTRY: their first 20 school days' day ends with a label, and of those the label calls
    # a dip (what the model learns to score high).
    labelled_days: int = 0
    label_dip_days: int = 0

    @property
    def label_dip_share(self) -> float | None:
        return self.label_dip_days / self.labelled_days if self.labelled_days else None

    @property
    def late(self) -> int:
        return self.dips - self.caught

    def to_dict(self) -> dict[str, Any]:
        return {"dips": self.dips, "caught": self.caught, "reasons": dict(self.reasons), "holds": dict(self.holds),
                "by_kind": {k: dict(v) for k, v in self.by_kind.items()},
                "highest_scores": list(self.highest_scores), "labelled_days": self.labelled_days,
                "label_dip_days": self.label_dip_days}


def _on_the_list(events: Iterable[InterventionEvent], cooldown_days: int) -> dict[str, list[tuple[int, int]]]:
    """pupil -> ordinal day spans (first, last) in which a new concern could not be raised: from a
    concern to the `improving` that closes it, and the cool-down after that."""
    spans: dict[str, list[tuple[int, int]]] = {}
    opened: dict[str, int] = {}
    for event in sorted(events, key=lambda e: (e.pupil_id, e.as_of)):
        day = event.as_of.toordinal()
        if event.kind is InterventionKind.CONCERN and not event.escalation:
            opened.setdefault(event.pupil_id, day)
        elif event.kind is InterventionKind.IMPROVING and event.pupil_id in opened:
            spans.setdefault(event.pupil_id, []).append((opened.pop(event.pupil_id), day + cooldown_days - 1))
    for pupil, day in opened.items():
        spans.setdefault(pupil, []).append((day, dt.date.max.toordinal()))
    return spans


def late_dips(events: Sequence[InterventionEvent], rows: TrainingSet, scores: np.ndarray, truth: Truth,
              config: PolicyConfig) -> LateDips:
    """Every dip episode: caught within 20 school days by the engine's concerns, or why not, from
    the policy's own rules at the day ends of the dip's first 20 school days (module comment)."""
    day_index = DayIndex(rows.school_days)
    alerts = {pupil: sorted(day_index(d) for d in days) for pupil, days in concern_alerts(events).items()}
    listed = _on_the_list(events, config.cooldown_days)
    ordinals = np.array([d.toordinal() for d in rows.school_days], dtype=np.int64)
    dip_pupils = [p for p in truth.pupils if truth.has_dip(p)]
    keep = np.isin(rows.pupil_id, dip_pupils)
    pupil_of, day_of, score_of = rows.pupil_id[keep], rows.day[keep].astype(np.int64), np.asarray(scores)[keep]
    label_of = rows.y[keep]
    inputs = policy_inputs({k: v[keep] for k, v in rows.stats.items()}, day_of, config)
    position = np.searchsorted(ordinals, day_of)
    rows_of: dict[str, np.ndarray] = {}
    for pupil in dip_pupils:
        rows_of[pupil] = np.flatnonzero(pupil_of == pupil)
    out = LateDips()
    for pupil in dip_pupils:
        for episode in truth.episodes.get(pupil, ()):
            if episode.kind not in DIP_KINDS:
                continue
            window = dip_window(episode, day_index)
            onset = window[0]
            out.dips += 1
            first = first_in_window(alerts.get(pupil, []), window)
            if first is not None and first - onset <= WITHIN_DAYS:
                out.caught += 1
                continue
            mine = rows_of[pupil]
            mine = mine[(position[mine] >= onset) & (position[mine] <= onset + WITHIN_DAYS)]
            found: set[str] = set()
            holds: dict[str, int] = {}
            for i in mine.tolist():
                row, score, day = inputs.row(i), float(score_of[i]), int(day_of[i])
                if any(start <= day <= end for start, end in listed.get(pupil, ())):
                    found.add(ALREADY)
                elif row.possible_ytd < config.min_possible_sessions:
                    found.add(TOO_EARLY)
                elif concern_tier(config, score, row) == 0:
                    found.add(BELOW_ENTRY)
                else:
                    hold = concern_hold(config, row)
                    if hold is None:
                        found.add(DUE)
                    else:
                        found.add(HELD)
                        holds[hold.value] = holds.get(hold.value, 0) + 1
            reason = next((r for r in LATE_REASONS if r in found), BELOW_ENTRY)
            out.reasons[reason] = out.reasons.get(reason, 0) + 1
            out.by_kind.setdefault(episode.kind, {}).setdefault(reason, 0)
            out.by_kind[episode.kind][reason] += 1
            if reason == HELD:
                main = max(sorted(holds), key=lambda h: holds[h])
                out.holds[main] = out.holds.get(main, 0) + 1
            if reason == BELOW_ENTRY:
                out.highest_scores.append(float(score_of[mine].max()) if len(mine) else float("nan"))
                out.labelled_days += int((label_of[mine] >= 0).sum())
                out.label_dip_days += int((label_of[mine] == 1).sum())
    out.reasons = {r: out.reasons[r] for r in LATE_REASONS if r in out.reasons}
    return out


# -- what the register shows early in a dip ------------------------------------------------------
EARLY_DAYS_OFF = 3  # days with an absence: a pattern a register could show
EARLY_WITHIN = 10  # school days after onset: the lead-time target
USUAL_LEVEL = 0.9  # attending at least this much so far: a pupil who usually attends
OWN_LEVEL_DAYS = 20  # school days before that level counts (the policy waits for 40 sessions)


@dataclass
class EarlyEvidence:
    dips: int = 0
    # Per dip with three days off after onset: school days from onset to the third.
    third_day_off: list[int] = field(default_factory=list)
    no_dip_pupils: int = 0
    # Pupils without a dip who at some point had three days off within 11 school days (a day and
    # the 10 before it), after 20 school days or more in which they had attended 90% or more.
    no_dip_with_three_close: int = 0

    @property
    def within(self) -> int:
        """Dips whose third day off came at most `EARLY_WITHIN` school days after onset."""
        return sum(days <= EARLY_WITHIN for days in self.third_day_off)

    @property
    def median_third_day_off(self) -> float | None:
        return float(np.median(self.third_day_off)) if self.third_day_off else None

    def to_dict(self) -> dict[str, Any]:
        return {"dips": self.dips, "third_day_off": list(self.third_day_off), "no_dip_pupils": self.no_dip_pupils,
                "no_dip_with_three_close": self.no_dip_with_three_close}


def early_evidence(register: RegisterYear, truth: Truth) -> EarlyEvidence:
    """`EarlyEvidence` of a cohort's final register (module docstring). A day off is a day with a
    possible session missed that the school did not arrange itself."""
    counted = register.flag("possible") & ~register.flag("arranged")
    day_off = (counted & ~register.flag("attended")).any(axis=2)
    day_counted = counted.any(axis=2)
    before_off = np.cumsum(day_off, axis=1) - day_off  # days off before each day, per pupil
    before_counted = np.cumsum(day_counted, axis=1) - day_counted
    span = EARLY_WITHIN + 1
    out = EarlyEvidence()
    for pupil in truth.pupils:
        i = register.index.get(pupil)
        if i is None:
            continue
        dips = [e for e in truth.episodes.get(pupil, ()) if e.kind in DIP_KINDS]
        if not dips:
            out.no_dip_pupils += 1
            off = before_off[i] + day_off[i]  # days off up to and including each day
            close = off[span - 1:] - np.concatenate(([0], off[:-span]))  # in the 11 days ending at each day
            start = np.arange(span - 1, len(off)) - (span - 1)
            usual = before_off[i][start] <= (1 - USUAL_LEVEL) * before_counted[i][start]
            known = before_counted[i][start] >= OWN_LEVEL_DAYS
            out.no_dip_with_three_close += bool(np.any((close >= EARLY_DAYS_OFF) & usual & known))
            continue
        for episode in dips:
            out.dips += 1
            onset = int(np.searchsorted(register.days, episode.onset.toordinal()))
            after = np.flatnonzero(day_off[i, onset:])
            if len(after) >= EARLY_DAYS_OFF:
                out.third_day_off.append(int(after[EARLY_DAYS_OFF - 1]))
    return out
