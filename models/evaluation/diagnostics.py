"""Why targets are missed: two diagnostics of one evaluation cohort, for the model card.

  threshold sweep   the real policy (models.evaluation.policy_sim) over the cohort's day-end
                    scores at several entry thresholds, each scored against ground truth. For
                    understanding only: nothing is chosen from it (the shipped threshold was
                    chosen on the training cohort), and it is the policy at day ends, whereas the
                    engine decides at every mark, so its figures differ slightly from a replay's.
  outside a dip     each raised concern outside every dip window of its pupil, with what the
                    register showed at that moment by the policy's own rules: whether the
                    register alone put it at tier 2 or more (`models.policy.register_tier`: a week
                    or more of unexplained absence in a row, or under half of the recent sessions
                    attended), and whether it was raised below the entry score (the rule that an
                    unexplained week from a pupil who usually attends is a concern whatever the
                    score). Concerns the register itself called for are counted as right in a
                    second, diagnostic precision; the target stays the one in `targets`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.dataset import TrainingSet
from models.evaluation.policy_sim import PolicySimulation
from models.evaluation.scoring import NO_EPISODE, DayIndex, dip_window, score_alerts
from models.evaluation.targets import BY_KEY
from models.evaluation.truth import DIP_KINDS, HEALTH_KINDS, ONE_OFF_KINDS, Truth
from models.policy import POLICY_COUNTS, PolicyConfig, PolicyRow, policy_inputs, register_tier, thresholds
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
    pupils: int = 0

    def add(self, demanded: bool, week: bool, below: bool) -> None:
        self.concerns += 1
        self.register_tier_2 += demanded
        self.unexplained_week += demanded and week
        self.below_entry += below


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
        group = pupil_group(truth.kinds(pupil))
        out.outside.add(demanded, week, below)
        out.by_group.setdefault(group, OutsideCounts()).add(demanded, week, below)
        pupils.setdefault(group, set()).add(pupil)
    for group, counts in out.by_group.items():
        counts.pupils = len(pupils[group])
    out.outside.pupils = sum(len(p) for p in pupils.values())
    out.by_group = {g: out.by_group[g] for g in GROUPS if g in out.by_group}
    return out
