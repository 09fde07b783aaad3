"""Honest evaluation of one cohort: replay its marks through the real DecisionEngine and score the
concerns it raised against ground truth, beside the two reactive baselines.

What is scored is exactly what the stream runs: `models.replay.replay_file` drives the same
`DecisionEngine` (state, features, model, policy) over the cohort's marks CSV. A thin observer
around the engine snapshots every pupil at each day end (the one feature function again) for
the ranking metrics, and records the final register for labels and baselines; it only cuts
micro-batches at day boundaries, which does not change decisions (tests/test_replay.py).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve

from models.artifact import RiskModel
from models.dataset import DayEndRecorder, TrainingSet, split_by_day
from models.engine import BatchResult, DecisionEngine
from models.evaluation.baselines import (
    BASELINES,
    LAST4,
    YTD,
    baseline_alerts,
    baseline_scores,
)
from models.evaluation.diagnostics import (
    EarlyEvidence,
    LateDips,
    OutsideDipConcerns,
    early_evidence,
    first_concern_behaviour,
    late_dips,
    outside_dip_concerns,
    threshold_sweep,
)
from models.evaluation.fairness import FairnessAudit, attendance_by_pupil, audit
from models.evaluation.ranking import ranking_metrics
from models.evaluation.scoring import by_kind, concern_alerts, score_alerts
from models.evaluation.targets import BY_KEY, TARGETS, share_interval
from models.evaluation.truth import Truth
from models.policy import PolicyConfig
from models.replay import replay_file
from models.state import PupilState
from schemas.events import InterventionEvent
from schemas.marks import MarkLimits, RegisterMark

MODEL = "model"
SYSTEMS = (MODEL, YTD, LAST4)
LABELS = {MODEL: "Model (calibrated, policy)", YTD: "Baseline: year to date < 90%",
          LAST4: "Baseline: last 4 weeks < 90%"}
# Offline evaluation reads a past year: no bound on how far ahead of today a date may be.
OFFLINE_LIMITS = MarkLimits(max_future_days=None)


class ObservedEngine:
    """The real DecisionEngine, with day-end snapshots taken between its micro-batches."""

    def __init__(self, engine: DecisionEngine, recorder: DayEndRecorder) -> None:
        self.engine = engine
        self.recorder = recorder

    def process(self, marks: Sequence[RegisterMark], states: MutableMapping[str, PupilState]) -> BatchResult:
        merged = BatchResult()
        offset = 0
        for piece in split_by_day(marks):
            self.recorder.before(piece[0], states)
            result = self.engine.process(piece, states)
            rejected = {i for i, _ in result.rejected}
            for i, mark in enumerate(piece):
                if i not in rejected:
                    self.recorder.after(mark)
            merged.merge(result, offset)
            offset += len(piece)
        return merged


def event_counts(events: Sequence[InterventionEvent]) -> dict[str, int]:
    counts = Counter("escalation" if e.escalation else e.kind.value for e in events)
    return {kind: counts.get(kind, 0) for kind in ("concern", "escalation", "improving", "health_needs")}


@dataclass
class CohortEvaluation:
    name: str
    metrics: dict[str, dict[str, float | None]]  # system -> metric -> value
    lead_days: dict[str, list[int]]
    calibration: dict[str, list[float]]
    fairness: FairnessAudit
    by_kind: dict[str, dict[str, Any]]
    events: dict[str, int]
    cohort: dict[str, Any]
    timing: dict[str, float] = field(default_factory=dict)
    # Why targets are missed (models.evaluation.diagnostics): the policy at day ends over a range
    # of entry thresholds (diagnostic only, never used to choose one), and what the register
    # showed at the concerns raised outside every dip window.
    threshold_sweep: list[dict[str, Any]] = field(default_factory=list)
    outside_dip: OutsideDipConcerns = field(default_factory=OutsideDipConcerns)
    late_dips: LateDips = field(default_factory=LateDips)
    early: EarlyEvidence = field(default_factory=EarlyEvidence)
    # The model's target shares as (part, whole): how sure each figure is, for the card.
    shares: dict[str, tuple[int, int]] = field(default_factory=dict)

    def interval(self, key: str) -> tuple[float, float] | None:
        """95% interval of a target share of the model (None for other figures)."""
        return share_interval(*self.shares[key]) if key in self.shares else None

    def passes(self, key: str, system: str = MODEL) -> bool | None:
        return BY_KEY[key].passes(self.metrics[system].get(key))

    def missed(self) -> list[str]:
        return [t.key for t in TARGETS if self.passes(t.key) is False]

    def beats_baselines(self) -> bool:
        """Better than both baselines on recall within 20 days and on alert precision at once."""
        m = self.metrics
        return all((m[MODEL][k] or 0) > (m[b][k] or 0) for b in BASELINES for k in ("recall_within_20", "alert_precision"))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fairness"] = self.fairness.to_dict()
        out["outside_dip"] = self.outside_dip.to_dict()
        out["late_dips"] = self.late_dips.to_dict()
        out["early"] = self.early.to_dict()
        return out


@dataclass
class EvaluationReport:
    """Every cohort's evaluation of one model under one policy."""

    cohorts: list[CohortEvaluation]
    model: dict[str, Any]
    policy: dict[str, Any]
    timing: dict[str, float] = field(default_factory=dict)

    def missed(self) -> list[tuple[str, str]]:
        return [(c.name, key) for c in self.cohorts for key in c.missed()]

    def to_dict(self) -> dict[str, Any]:
        return {"cohorts": [c.to_dict() for c in self.cohorts], "policy": self.policy, "timing": self.timing}


def evaluate(model: RiskModel, marks_csv: Path, truth_csv: Path, roster_csv: Path, *, name: str = "held-out",
             window_days: int = 126, policy: PolicyConfig | None = None, cohort: Mapping[str, Any] | None = None,
             limits: MarkLimits = OFFLINE_LIMITS) -> CohortEvaluation:
    """Replay the cohort through the real engine and score it (see the module docstring)."""
    started = time.perf_counter()
    truth = Truth.load(truth_csv, roster_csv)
    engine = DecisionEngine(model, window_days=window_days, policy=policy)
    recorder = DayEndRecorder(sample_every=1, min_possible=20)
    report, events = replay_file(Path(marks_csv), ObservedEngine(engine, recorder), limits=limits)
    replay_seconds = time.perf_counter() - started
    rows = recorder.finish(report.states, keep_unlabelled=True)
    register = rows.register
    assert register is not None
    school_days = rows.school_days
    systems = {MODEL: concern_alerts(events), YTD: baseline_alerts(register, YTD),
               LAST4: baseline_alerts(register, LAST4)}
    metrics: dict[str, dict[str, float | None]] = {}
    leads: dict[str, list[int]] = {}
    shares: dict[str, tuple[int, int]] = {}
    for system, alerts in systems.items():
        score = score_alerts(alerts, truth, school_days)
        metrics[system] = score.metrics()
        leads[system] = score.lead_days
        if system == MODEL:
            shares = score.shares()
    model_scores = model.score(rows.X)
    metrics[MODEL].update(ranking_metrics(model_scores, rows.y))
    sweep = threshold_sweep(rows, model_scores, truth, engine.policy)
    outside = outside_dip_concerns(events, truth, school_days, engine.policy)
    late = late_dips(events, rows, model_scores, truth, engine.policy)
    pupil_index, day_index = _row_positions(rows)
    for system in BASELINES:
        metrics[system].update(ranking_metrics(baseline_scores(register, pupil_index, day_index, system), rows.y,
                                               probabilities=False))
    known = rows.y >= 0
    label_dipped = set(rows.pupil_id[rows.y == 1].tolist())
    no_dip = [p for p in truth.pupils if not truth.has_dip(p)]
    attendance = attendance_by_pupil(register)
    no_dip_seen = [p for p in no_dip if p in attendance]  # on the register (a roster may list more)
    prob_true, prob_pred = calibration_curve(rows.y[known], model_scores[known], n_bins=10, strategy="quantile")
    return CohortEvaluation(
        name=name, metrics=metrics, lead_days=leads,
        calibration={"predicted": prob_pred.tolist(), "observed": prob_true.tolist()},
        fairness=audit(systems[MODEL], truth, school_days, register=register,
                       behaviour=first_concern_behaviour(events, engine.policy),
                       long_run_sessions=engine.policy.tier2_unexplained_run),
        by_kind=by_kind(systems[MODEL], truth, school_days), events=event_counts(events),
        cohort={**(cohort or {}), "pupils": len(truth.pupils), "school_days": len(school_days),
                "marks_read": report.read, "marks_applied": report.applied, "dead_lettered": report.dead_lettered,
                "labelled_rows": int(known.sum()), "positive_rows": int((rows.y == 1).sum()),
                # Pupils with no dip episode whose register nevertheless met the dip label at some
                # point (mostly often-absent pupils): the label's view against the truth's.
                "no_dip_pupils": len(no_dip),
                "no_dip_pupils_with_label_dips": sum(p in label_dipped for p in no_dip),
                # ... and their attendance over the year (median), against the other pupils without a dip.
                "no_dip_label_dip_attendance": _median([attendance[p] for p in no_dip_seen if p in label_dipped]),
                "no_dip_other_attendance": _median([attendance[p] for p in no_dip_seen if p not in label_dipped]),
                "first_day": school_days[0].isoformat() if school_days else None,
                "last_day": school_days[-1].isoformat() if school_days else None},
        timing={"replay_seconds": round(replay_seconds, 1),
                "marks_per_second": round(report.read / max(replay_seconds, 1e-9)),
                "total_seconds": round(time.perf_counter() - started, 1)},
        threshold_sweep=sweep, outside_dip=outside, late_dips=late, early=early_evidence(register, truth),
        shares=shares,
    )


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if values else None


def _row_positions(rows: TrainingSet) -> tuple[np.ndarray, np.ndarray]:
    register = rows.register
    assert register is not None
    index = register.index
    pupil = np.fromiter((index[p] for p in rows.pupil_id), np.int64, len(rows))
    return pupil, np.searchsorted(register.days, rows.day)
