"""Fairness audit by SEN status and free-school-meal eligibility (from the roster; never a model input).

Absence, and dips, are more common among SEN and FSM pupils, so more alerts in those groups
are expected. What must not differ is whether their dips are found (recall) and how often
pupils *without* a dip are flagged. The test (issue 13): for SEN support, EHC plan and FSM
pupils, the flagged share of pupils without a dip is within `MAX_RATIO` (1.5x) of the
comparison group (no SEN; not FSM), or the audit shows which behaviour drives the gap.

Which behaviour: pupils are put in bands of their own attendance over the period (what the
model does see) and the group's flagged-without-dip rate within each band is re-weighted to
the comparison group's mix of bands (direct standardisation). If the adjusted ratio is within
1.5x while the raw one is not, the gap comes from the group's attendance (more pupils in the
lower bands), not from group membership as such.

Which behaviour, beyond attendance: most concerns for pupils without a dip come during a run of
unexplained absence of a school week or more (the register's tier-2 line, `long_run_sessions`):
the register's rules raise one whatever the score after six days from a pupil who usually
attends, or ten from anyone, and the score answers such a run strongly too. So a group whose
pupils have more such runs gets more concerns at the same attendance. The flag rate is
standardised a second time, over bands of attendance crossed with whether the pupil had such a
run this year; if that ratio is within 1.5x while the attendance-adjusted one is not, the gap
comes from those runs, which are answered alike in every group. The share of each group's pupils
without a dip who had such a run is reported beside it, and the flagged counts are split by it:
of the pupils with a run, how many were flagged, and of those without one.

Which behaviour, at the concern: given what the register showed at each pupil's first concern
(`behaviour`, from models.evaluation.diagnostics.first_concern_behaviour), the flagged pupils
without a dip of each group are counted by it, so a gap can be read as, say, "most of them were
raised during a week or more of unexplained absence in a row".

How sure: groups are small (an EHC-plan group of a cohort has tens of pupils, and a handful of
them flagged), so every ratio comes with its counts and a 95% interval (the usual one for a
ratio of two proportions, on the log scale). Only when the whole interval lies above 1.5x does
the audit show a gap the data can tell apart from chance.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models.definitions import UNEXPLAINED_WEEK_SESSIONS
from models.evaluation.scoring import score_alerts
from models.evaluation.truth import DIP_KINDS, Truth
from models.history import RegisterYear

MAX_RATIO = 1.5
GROUPS = (("sen", "none"), ("sen", "sen_support"), ("sen", "ehcp"), ("fsm", "false"), ("fsm", "true"))
COMPARED = (("sen", "sen_support", "none"), ("sen", "ehcp", "none"), ("fsm", "true", "false"))
Z_95 = 1.959964  # the standard normal's 97.5th percentile: a two-sided 95% interval
# Attendance over the period, in bands (lower bound, label).
BANDS = ((0.95, ">= 95%"), (0.90, "90-95%"), (0.85, "85-90%"), (0.0, "< 85%"))


@dataclass
class Comparison:
    attribute: str
    group: str
    versus: str
    group_share: float | None  # flagged share of the group's pupils without a dip
    versus_share: float | None
    ratio: float | None
    adjusted_ratio: float | None  # re-weighted to the comparison group's attendance bands
    group_mean_attendance: float | None  # of the pupils without a dip
    versus_mean_attendance: float | None
    # Re-weighted to the comparison group's mix of attendance bands crossed with "had a long
    # unexplained run this year" (module docstring), and the share of pupils without a dip with one.
    run_adjusted_ratio: float | None = None
    long_run_sessions: int = UNEXPLAINED_WEEK_SESSIONS
    group_long_run_share: float | None = None
    versus_long_run_share: float | None = None
    group_flagged: int = 0  # pupils without a dip flagged, and pupils without a dip, in each group
    group_pupils: int = 0
    versus_flagged: int = 0
    versus_pupils: int = 0
    # The same counts for the pupils without a dip who had a long unexplained run this year; those
    # without one are the rest (group_flagged - group_run_flagged of group_pupils - group_run_pupils).
    group_run_flagged: int = 0
    group_run_pupils: int = 0
    versus_run_flagged: int = 0
    versus_run_pupils: int = 0
    # Of the flagged pupils without a dip: what the register showed at their first concern -> pupils.
    group_behaviour: dict[str, int] = field(default_factory=dict)
    versus_behaviour: dict[str, int] = field(default_factory=dict)

    @property
    def within(self) -> bool | None:
        return None if self.ratio is None else self.ratio <= MAX_RATIO

    @property
    def ratio_interval(self) -> tuple[float, float] | None:
        """95% interval of the ratio (log scale: the standard error of log(a/n / c/m) is
        sqrt(1/a - 1/n + 1/c - 1/m)); None when either group has no one flagged."""
        a, n, c, m = self.group_flagged, self.group_pupils, self.versus_flagged, self.versus_pupils
        if not (a and c and n and m):
            return None
        centre = math.log((a / n) / (c / m))
        spread = Z_95 * math.sqrt(1 / a - 1 / n + 1 / c - 1 / m)
        return math.exp(centre - spread), math.exp(centre + spread)

    @property
    def clearly_over(self) -> bool:
        """The whole 95% interval lies above MAX_RATIO: a gap the data tells apart from chance."""
        interval = self.ratio_interval
        return bool(interval is not None and interval[0] > MAX_RATIO)

    @property
    def explained_by_attendance(self) -> bool:
        return bool(self.ratio is not None and self.ratio > MAX_RATIO and self.adjusted_ratio is not None
                    and self.adjusted_ratio <= MAX_RATIO)

    @property
    def explained_by_long_runs(self) -> bool:
        """Over 1.5x at equal attendance, within it once long unexplained runs are equal too."""
        return bool(self.ratio is not None and self.ratio > MAX_RATIO and not self.explained_by_attendance
                    and self.run_adjusted_ratio is not None and self.run_adjusted_ratio <= MAX_RATIO)


@dataclass
class FairnessAudit:
    rows: list[dict[str, Any]]
    comparisons: list[Comparison] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "comparisons": [asdict(c) | {"within": c.within,
                                                                  "explained_by_attendance": c.explained_by_attendance,
                                                                  "explained_by_long_runs": c.explained_by_long_runs,
                                                                  "ratio_interval": c.ratio_interval,
                                                                  "clearly_over": c.clearly_over}
                                                   for c in self.comparisons]}


def _members(truth: Truth, attribute: str, group: str) -> list[str]:
    if attribute == "sen":
        return [p for p in truth.pupils if truth.sen.get(p) == group]
    return [p for p in truth.pupils if str(truth.fsm.get(p)).lower() == group]


def attendance_by_pupil(year: RegisterYear | None) -> dict[str, float]:
    """Each pupil's attendance over the whole register (possible sessions attended)."""
    if year is None:
        return {}
    possible, attended = year.slots
    totals = possible.sum(axis=1)
    rates = np.divide(attended.sum(axis=1), totals, out=np.ones(len(totals)), where=totals > 0)
    return dict(zip(year.pupils, rates.tolist()))


def longest_unexplained_run_by_pupil(year: RegisterYear | None) -> dict[str, int]:
    """Each pupil's longest run of unexplained absence over the register, in sessions; a session
    that is not possible (a closure, a weekend) neither breaks a run nor lengthens it."""
    if year is None:
        return {}
    possible = year.flag("possible").reshape(len(year.pupils), -1)
    unexplained = year.flag("unexplained").reshape(len(year.pupils), -1)
    # Each pupil's possible sessions first, in order (a stable sort), then the rest as attended.
    order = np.argsort(~possible, axis=1, kind="stable")
    runs = np.take_along_axis(unexplained, order, axis=1) & np.take_along_axis(possible, order, axis=1)
    counted = np.cumsum(runs, axis=1)
    at_last_break = np.maximum.accumulate(np.where(runs, 0, counted), axis=1)
    longest = (counted - at_last_break).max(axis=1, initial=0)
    return dict(zip(year.pupils, longest.tolist()))


def _band(rate: float) -> str:
    return next(label for floor, label in BANDS if rate >= floor)


def _standardised(mine: Sequence[str], theirs: Sequence[str], stratum: Mapping[str, str],
                  flagged_share) -> float:
    """The group's flag rate within each stratum, weighted by the comparison group's mix of strata
    (direct standardisation); a stratum the group has no pupil in takes the comparison's rate."""
    theirs_known = [p for p in theirs if p in stratum]
    mix = Counter(stratum[p] for p in theirs_known)
    total = 0.0
    for label, count in mix.items():
        in_mine = [p for p in mine if stratum.get(p) == label]
        in_theirs = [p for p in theirs_known if stratum[p] == label]
        total += count / len(theirs_known) * flagged_share(in_mine if in_mine else in_theirs)
    return total


def audit(alerts: Mapping[str, Sequence[dt.date]], truth: Truth, school_days: Sequence[dt.date], *,
          register: RegisterYear | None = None, dip_kinds: Sequence[str] = DIP_KINDS,
          behaviour: Mapping[str, str] | None = None,
          long_run_sessions: int = UNEXPLAINED_WEEK_SESSIONS) -> FairnessAudit:
    """The audit (module docstring); `behaviour`: pupil -> what the register showed at their first
    concern, to count the flagged pupils without a dip by; `long_run_sessions`: the unexplained run
    that the second standardisation asks about and splits the counts by (the policy's
    `tier2_unexplained_run`: a school week)."""
    dip_kinds = tuple(dip_kinds)
    attendance = attendance_by_pupil(register)
    long_run = {p: run >= long_run_sessions for p, run in longest_unexplained_run_by_pupil(register).items()}
    # The two standardisations' strata, per pupil, shared by every comparison.
    band = {p: _band(rate) for p, rate in attendance.items()}
    band_and_run = {p: f"{label}, {'a long run' if long_run.get(p) else 'no long run'}" for p, label in band.items()}
    rows = []
    for attribute, group in GROUPS:
        pupils = _members(truth, attribute, group)
        if not pupils:
            continue
        m = score_alerts(alerts, truth, school_days, pupils, dip_kinds=dip_kinds).metrics()
        no_dip = [p for p in pupils if not truth.has_dip(p, dip_kinds)]
        rows.append({
            "attribute": attribute, "group": group, "pupils": len(pupils), "dips": m["dips"],
            "flagged_share": sum(bool(alerts.get(p)) for p in pupils) / len(pupils),
            "alerts_per_100_per_week": m["alerts_per_100_per_week"],
            "recall": m["recall"], "recall_within_20": m["recall_within_20"],
            "flagged_share_without_dip": (sum(bool(alerts.get(p)) for p in no_dip) / len(no_dip)) if no_dip else None,
        })
    comparisons = [_compare(alerts, truth, attendance, long_run, (band, band_and_run), long_run_sessions, dip_kinds,
                            behaviour or {}, *spec) for spec in COMPARED]
    return FairnessAudit(rows, [c for c in comparisons if c is not None])


def _compare(alerts, truth: Truth, attendance: Mapping[str, float], long_run: Mapping[str, bool],
             strata: tuple[Mapping[str, str], Mapping[str, str]], long_run_sessions: int, dip_kinds: tuple[str, ...],
             behaviour: Mapping[str, str], attribute: str, group: str, versus: str) -> Comparison | None:
    def no_dip(value: str) -> list[str]:
        return [p for p in _members(truth, attribute, value) if not truth.has_dip(p, dip_kinds)]

    mine, theirs = no_dip(group), no_dip(versus)
    if not mine or not theirs:
        return None

    def flagged(pupils: list[str]) -> int:
        return sum(bool(alerts.get(p)) for p in pupils)

    def share(pupils: list[str]) -> float:
        return flagged(pupils) / len(pupils)

    def shown(pupils: list[str]) -> dict[str, int]:
        return dict(Counter(behaviour[p] for p in pupils if alerts.get(p) and p in behaviour))

    def mean_attendance(pupils: list[str]) -> float | None:
        known = [attendance[p] for p in pupils if p in attendance]
        return float(np.mean(known)) if known else None

    def long_run_share(pupils: list[str]) -> float | None:
        known = [long_run[p] for p in pupils if p in long_run]
        return sum(known) / len(known) if known else None

    mine_flagged, theirs_flagged = flagged(mine), flagged(theirs)
    mine_run, theirs_run = ([p for p in pupils if long_run.get(p)] for pupils in (mine, theirs))
    mine_share, theirs_share = mine_flagged / len(mine), theirs_flagged / len(theirs)
    ratio = mine_share / theirs_share if theirs_share else None
    adjusted = run_adjusted = None
    if attendance and theirs_share and any(p in attendance for p in theirs):
        band, band_and_run = strata
        adjusted = _standardised(mine, theirs, band, share) / theirs_share
        run_adjusted = _standardised(mine, theirs, band_and_run, share) / theirs_share
    return Comparison(attribute, group, versus, mine_share, theirs_share, ratio, adjusted,
                      mean_attendance(mine), mean_attendance(theirs),
                      run_adjusted_ratio=run_adjusted, long_run_sessions=long_run_sessions,
                      group_long_run_share=long_run_share(mine), versus_long_run_share=long_run_share(theirs),
                      group_flagged=mine_flagged, group_pupils=len(mine),
                      versus_flagged=theirs_flagged, versus_pupils=len(theirs),
                      group_run_flagged=flagged(mine_run), group_run_pupils=len(mine_run),
                      versus_run_flagged=flagged(theirs_run), versus_run_pupils=len(theirs_run),
                      group_behaviour=shown(mine), versus_behaviour=shown(theirs))
