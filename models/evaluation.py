"""Honest evaluation: replay a held-out simulated cohort through the real DecisionEngine and
score its alerts against the simulator's ground truth, beside two reactive baseline rules.

What is scored is exactly what the stream runs: `models.replay.replay_file` drives the same
`DecisionEngine` (state, features, model, policy) over the cohort's marks CSV. A thin observer
around the engine snapshots every pupil at each day end (the one feature function again) for
the ranking metrics and the baselines; it only cuts micro-batches at day boundaries, which
does not change decisions (see tests/test_replay.py).

Definitions (school days are the cohort's register days; "week" = 5 school days):
  * alert           a raised concern: a `concern` event that is not an escalation.
  * flagged         a pupil with at least one alert.
  * dip window      [onset - EARLY_GRACE_DAYS, recovery + LATE_GRACE_DAYS] in school days
                    (to the end of the year if the pupil never recovers). An alert up to one
                    school week before onset counts as early-correct: the label looks 20 school
                    days ahead, but nothing in the marks announces a dip much earlier, so an
                    earlier alert is a coincidence, not a prediction. Ten days after recovery
                    still count: recent-attendance features lag the recovery.
  * detected        a dip with an alert in its window; lead time = school days from onset to
                    the first such alert (negative when early).
  * recall          detected dips / dips.  recall within 20 days: lead time <= 20.
  * alert precision alerts inside a dip window of that pupil / alerts.
  * pupil precision flagged pupils with at least one alert inside a dip window / flagged pupils.
  * false-alarm share  pupils whose only episodes are a one-week illness and/or a term-time
                    holiday, flagged at all during the year / such pupils.
  * alerts per 100 pupils per week: alerts * 100 / pupils / (school days / 5).
  * baselines       the first day-end at which a pupil, with at least 20 possible sessions this
                    year, is below 90% year to date (`ytd_below_90`) or over the last 40
                    possible sessions, about four school weeks (`last_4_weeks_below_90`). One
                    alert per pupil; scored with the same functions.
  * ROC-AUC, PR-AUC, Brier: day-end scores of the held-out cohort against the dip label
                    (models.labels), every school day, rows with a known label.
"""

from __future__ import annotations

import csv
import datetime as dt
import statistics
import time
from collections import defaultdict
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models.artifact import RiskModel
from models.dataset import DayEndRecorder, TrainingSet, split_by_day
from models.engine import BatchResult, DecisionEngine
from models.features import FEATURE_NAMES
from models.policy import PolicyConfig, PolicyState, decide, explained_runs
from models.replay import replay_file
from models.state import PupilState
from schemas.marks import RegisterMark

DIP_KINDS = ("avoidance", "family_crisis", "monday_friday", "young_carer", "long_illness")
LOOK_ALIKE_KINDS = ("one_week_illness", "term_time_holiday")
EARLY_GRACE_DAYS = 5
LATE_GRACE_DAYS = 10
WITHIN_DAYS = 20
SCHOOL_DAYS_PER_WEEK = 5
BASELINE_FLOOR = 0.90
BASELINE_MIN_POSSIBLE = 20

MODEL, YTD, LAST4 = "model", "ytd_below_90", "last_4_weeks_below_90"
LABELS = {MODEL: "Model (calibrated, policy)", YTD: "Baseline: year to date < 90%",
          LAST4: "Baseline: last 4 weeks < 90%"}

# metric key -> (title, comparison, target, format)
METRICS: dict[str, tuple[str, str, float | None, str]] = {
    "recall": ("Recall of dip pupils (any time in the dip)", ">=", None, "{:.3f}"),
    "recall_within_20": ("Recall within 20 school days of onset", ">=", 0.8, "{:.3f}"),
    "median_lead_days": ("Median school days, onset to first alert", "<=", 10, "{:.1f}"),
    "alert_precision": ("Alert precision (alerts inside a dip window)", ">=", 0.6, "{:.3f}"),
    "pupil_precision": ("Pupil precision (flagged pupils with a dip alert)", ">=", None, "{:.3f}"),
    "false_alarm_share": ("Share of one-week-illness / holiday-only pupils flagged", "<=", 0.10, "{:.3f}"),
    "low_steady_flagged_share": ("Share of low-but-steady pupils flagged", "<=", None, "{:.3f}"),
    "alerts_per_100_per_week": ("Alerts per 100 pupils per school week", "<=", 1.5, "{:.3f}"),
    "roc_auc": ("ROC-AUC (day-end rows vs label)", ">=", None, "{:.3f}"),
    "pr_auc": ("PR-AUC (day-end rows vs label)", ">=", None, "{:.3f}"),
    "brier": ("Brier score (day-end rows vs label)", "<=", None, "{:.4f}"),
}


# -- ground truth --------------------------------------------------------------------------
@dataclass(frozen=True)
class Episode:
    kind: str
    onset: dt.date
    recovery: dt.date | None


@dataclass
class Truth:
    episodes: dict[str, list[Episode]]  # pupil -> episodes
    sen: dict[str, str]  # pupil -> none / sen_support / ehcp
    fsm: dict[str, bool]
    pupils: list[str]  # every pupil of the roster

    @classmethod
    def load(cls, truth_csv: Path, roster_csv: Path) -> Truth:
        episodes: dict[str, list[Episode]] = defaultdict(list)
        with Path(truth_csv).open(newline="") as handle:
            for row in csv.DictReader(handle):
                episodes[row["pupil_id"]].append(Episode(
                    row["kind"], dt.date.fromisoformat(row["onset_date"]),
                    dt.date.fromisoformat(row["recovery_date"]) if row["recovery_date"] else None))
        sen, fsm, pupils = {}, {}, []
        with Path(roster_csv).open(newline="") as handle:
            for row in csv.DictReader(handle):
                pupils.append(row["pupil_id"])
                sen[row["pupil_id"]] = row["sen"]
                fsm[row["pupil_id"]] = row["fsm"] == "true"
        return cls(dict(episodes), sen, fsm, pupils)


# -- scoring alerts against truth -----------------------------------------------------------
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
    look_alike_pupils: int
    look_alike_flagged: int
    low_steady_pupils: int
    low_steady_flagged: int
    pupils: int
    school_days: int

    def metrics(self) -> dict[str, float | None]:
        def ratio(a: int, b: int) -> float | None:
            return a / b if b else None

        weeks = self.school_days / SCHOOL_DAYS_PER_WEEK
        return {
            "recall": ratio(self.detected, self.dips),
            "recall_within_20": ratio(self.detected_within_20, self.dips),
            "median_lead_days": float(statistics.median(self.lead_days)) if self.lead_days else None,
            "alert_precision": ratio(self.alerts_in_dip, self.alerts),
            "pupil_precision": ratio(self.flagged_with_dip_alert, self.flagged),
            "false_alarm_share": ratio(self.look_alike_flagged, self.look_alike_pupils),
            "low_steady_flagged_share": ratio(self.low_steady_flagged, self.low_steady_pupils),
            "alerts_per_100_per_week": 100 * self.alerts / self.pupils / weeks if self.pupils and weeks else None,
            "dips": self.dips, "alerts": self.alerts, "flagged": self.flagged, "pupils": self.pupils,
        }


def score_alerts(alerts: Mapping[str, Sequence[dt.date]], truth: Truth, school_days: Sequence[dt.date],
                 pupils: Sequence[str] | None = None, *, dip_kinds: Sequence[str] | None = None) -> AlertScore:
    """Score raised alerts (pupil -> alert dates) against ground truth, on these school days."""
    dip_kinds = tuple(DIP_KINDS if dip_kinds is None else dip_kinds)
    pupils = list(truth.pupils if pupils is None else pupils)
    index = {d: i for i, d in enumerate(school_days)}
    n_days = len(school_days)

    def day_index(day: dt.date) -> int:
        # A date that is not a school day maps to the next school day.
        if day in index:
            return index[day]
        return int(np.searchsorted(np.array([d.toordinal() for d in school_days]), day.toordinal()))

    dips = detected = within = alerts_total = alerts_in_dip = flagged = flagged_ok = 0
    look_alike = look_alike_flagged = steady = steady_flagged = 0
    leads: list[int] = []
    for pupil in pupils:
        episodes = truth.episodes.get(pupil, [])
        raised = sorted(day_index(d) for d in alerts.get(pupil, ()))
        windows = []
        for episode in episodes:
            if episode.kind not in dip_kinds:
                continue
            onset = day_index(episode.onset)
            end = n_days - 1 if episode.recovery is None else day_index(episode.recovery) + LATE_GRACE_DAYS
            windows.append((onset, onset - EARLY_GRACE_DAYS, end))
        for onset, start, end in windows:
            dips += 1
            inside = [a for a in raised if start <= a <= end]
            if inside:
                detected += 1
                lead = inside[0] - onset
                leads.append(lead)
                within += lead <= WITHIN_DAYS
        good = sum(any(start <= a <= end for _, start, end in windows) for a in raised)
        alerts_total += len(raised)
        alerts_in_dip += good
        if raised:
            flagged += 1
            flagged_ok += good > 0
        kinds = {e.kind for e in episodes}
        if kinds and kinds <= set(LOOK_ALIKE_KINDS):
            look_alike += 1
            look_alike_flagged += bool(raised)
        if kinds == {"low_steady"}:
            steady += 1
            steady_flagged += bool(raised)
    return AlertScore(dips, detected, within, leads, alerts_total, alerts_in_dip, flagged, flagged_ok,
                      look_alike, look_alike_flagged, steady, steady_flagged, len(pupils), n_days)


def baseline_alerts(rows: TrainingSet, which: str) -> dict[str, list[dt.date]]:
    """First day-end per pupil at which a reactive rule fires (see the module docstring)."""
    s = rows.stats
    if which == YTD:
        attended, possible = s["attended_ytd"], s["possible_ytd"]
    elif which == LAST4:
        attended, possible = s["attended_40"], s["possible_40"]
    else:
        raise ValueError(f"unknown baseline {which!r}")
    fires = (s["possible_ytd"] >= BASELINE_MIN_POSSIBLE) & (attended < BASELINE_FLOOR * possible)
    first: dict[str, int] = {}
    for pupil, day in zip(rows.pupil_id[fires], rows.day[fires]):
        if pupil not in first or day < first[pupil]:
            first[pupil] = int(day)
    return {p: [dt.date.fromordinal(d)] for p, d in first.items()}


def baseline_scores(rows: TrainingSet, which: str) -> np.ndarray:
    """The rule's underlying number as a score (1 - rate), for ROC-AUC and PR-AUC."""
    s = rows.stats
    if which == YTD:
        return 1 - s["attended_ytd"] / np.maximum(s["possible_ytd"], 1)
    return 1 - s["attended_40"] / np.maximum(s["possible_40"], 1)


def policy_alerts(scores: np.ndarray, rows: TrainingSet, config: PolicyConfig) -> dict[str, list[dt.date]]:
    """The real policy over day-end scores in date order (a fast stand-in for a full replay,
    used for choosing thresholds): pupil -> dates of raised concerns."""
    order = np.lexsort((rows.day, rows.pupil_id.astype(str)))
    s = rows.stats
    recent = s["attended_20"] / np.maximum(s["possible_20"], 1)
    short = s["attended_10"] / np.maximum(s["possible_10"], 1)
    illness = explained_runs(s["current_absence_run"], s["current_run_explained"])
    states: dict[str, PolicyState] = {}
    raised: dict[str, list[dt.date]] = defaultdict(list)
    for i in order:
        pupil = rows.pupil_id[i]
        state = states.get(pupil)
        if state is None:
            state = states[pupil] = PolicyState()
        decision = decide(state, config, float(scores[i]), day=int(rows.day[i]),
                          possible_sessions=int(s["possible_ytd"][i]), recent_rate=float(recent[i]),
                          short_rate=float(short[i]), explained_run=int(illness[i]))
        if decision is not None and decision.kind == "concern" and not decision.escalation:
            raised[pupil].append(dt.date.fromordinal(int(rows.day[i])))
    return dict(raised)


def alerts_per_100_per_week(alerts: Mapping[str, Sequence[dt.date]], pupils: int, school_days: int) -> float:
    total = sum(len(v) for v in alerts.values())
    return 100 * total / max(pupils, 1) / max(school_days / SCHOOL_DAYS_PER_WEEK, 1e-9)


# -- the replay --------------------------------------------------------------------------
class ObservedEngine:
    """The real DecisionEngine, with day-end snapshots taken between its micro-batches."""

    def __init__(self, engine: DecisionEngine, recorder: DayEndRecorder) -> None:
        self.engine = engine
        self.recorder = recorder
        self.states: MutableMapping[str, PupilState] | None = None

    def process(self, marks: Sequence[RegisterMark], states: MutableMapping[str, PupilState]):
        self.states = states
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


# -- the report --------------------------------------------------------------------------
@dataclass
class EvaluationReport:
    metrics: dict[str, dict[str, float | None]]  # MODEL / YTD / LAST4 -> metric -> value
    fairness: list[dict[str, Any]]
    fairness_gaps: dict[str, dict[str, float | None]]
    lead_days: dict[str, list[int]]
    calibration: dict[str, list[float]]
    cohort: dict[str, Any]
    model: dict[str, Any]
    timing: dict[str, float] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)

    def passes(self, key: str, system: str = MODEL) -> bool | None:
        _, op, target, _ = METRICS[key]
        value = self.metrics[system].get(key)
        if target is None or value is None:
            return None
        return value >= target if op == ">=" else value <= target

    def beats_baselines(self) -> bool:
        """Better than both baselines on recall within 20 days and on alert precision at once."""
        m = self.metrics
        return all((m[MODEL][k] or 0) > (m[b][k] or 0) for b in (YTD, LAST4)
                   for k in ("recall_within_20", "alert_precision"))

    def table_rows(self) -> list[list[str]]:
        rows = []
        for key, (title, op, target, fmt) in METRICS.items():
            cells = [title]
            for system in (MODEL, YTD, LAST4):
                value = self.metrics[system].get(key)
                cells.append("n/a" if value is None else fmt.format(value))
            cells.append("" if target is None else f"{op} {target:g}")
            verdict = self.passes(key)
            cells.append("" if verdict is None else ("pass" if verdict else "FAIL"))
            rows.append(cells)
        verdict = self.beats_baselines()
        rows.append(["Beats both baselines on recall within 20 days and alert precision", "", "", "", "both",
                     "pass" if verdict else "FAIL"])
        return rows

    HEADER = ["Metric", "Model", "YTD < 90%", "Last 4 weeks < 90%", "Target", "Model meets target"]

    def markdown_table(self) -> str:
        return _markdown(self.HEADER, self.table_rows())

    def fairness_markdown(self) -> str:
        header = ["Group", "Pupils", "Dip pupils", "Flagged share", "Alerts /100/wk", "Dip recall",
                  "Recall within 20 days", "Flagged share of pupils without a dip"]
        rows = [[f"{r['attribute']} = {r['group']}", str(r["pupils"]), str(r["dips"]), _fmt(r["flagged_share"]),
                 _fmt(r["alerts_per_100_per_week"]), _fmt(r["recall"]), _fmt(r["recall_within_20"]),
                 _fmt(r["flagged_share_without_dip"])] for r in self.fairness]
        return _markdown(header, rows)

    def table(self) -> str:
        """Plain-text rendering for the console."""
        return _plain(self.HEADER, self.table_rows())

    def fairness_table(self) -> str:
        header = ["Group", "Pupils", "Dips", "Flagged", "Alerts/100/wk", "Recall", "Recall<=20d", "Flagged w/o dip"]
        rows = [[f"{r['attribute']}={r['group']}", str(r["pupils"]), str(r["dips"]), _fmt(r["flagged_share"]),
                 _fmt(r["alerts_per_100_per_week"]), _fmt(r["recall"]), _fmt(r["recall_within_20"]),
                 _fmt(r["flagged_share_without_dip"])] for r in self.fairness]
        return _plain(header, rows)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _plain(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(out)


def fairness_audit(alerts: Mapping[str, Sequence[dt.date]], truth: Truth,
                   school_days: Sequence[dt.date]) -> tuple[list[dict[str, Any]], dict[str, dict[str, float | None]]]:
    """Alert rate and dip recall by SEN and by free-school-meal group; gaps are max - min."""
    groups: list[tuple[str, str, list[str]]] = []
    for level in ("none", "sen_support", "ehcp"):
        groups.append(("sen", level, [p for p in truth.pupils if truth.sen.get(p) == level]))
    for value in (False, True):
        groups.append(("fsm", str(value).lower(), [p for p in truth.pupils if truth.fsm.get(p) == value]))
    rows = []
    for attribute, group, pupils in groups:
        score = score_alerts(alerts, truth, school_days, pupils)
        m = score.metrics()
        no_dip = [p for p in pupils if not any(e.kind in DIP_KINDS for e in truth.episodes.get(p, []))]
        rows.append({
            "attribute": attribute, "group": group, "pupils": len(pupils), "dips": score.dips,
            "flagged_share": score.flagged / len(pupils) if pupils else None,
            "alerts_per_100_per_week": m["alerts_per_100_per_week"],
            "recall": m["recall"], "recall_within_20": m["recall_within_20"],
            "flagged_share_without_dip": (sum(bool(alerts.get(p)) for p in no_dip) / len(no_dip)) if no_dip else None,
        })
    gaps: dict[str, dict[str, float | None]] = {}
    for attribute in ("sen", "fsm"):
        mine = [r for r in rows if r["attribute"] == attribute]
        gaps[attribute] = {}
        for key in ("flagged_share", "alerts_per_100_per_week", "recall", "recall_within_20",
                    "flagged_share_without_dip"):
            values = [r[key] for r in mine if r[key] is not None]
            gaps[attribute][key] = (max(values) - min(values)) if len(values) > 1 else None
    return rows, gaps


def ranking_metrics(scores: np.ndarray, y: np.ndarray, *, probabilities: bool) -> dict[str, float | None]:
    known = y >= 0
    scores, y = scores[known], y[known]
    if len(np.unique(y)) < 2:
        return {"roc_auc": None, "pr_auc": None, "brier": None}
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "pr_auc": float(average_precision_score(y, scores)),
        "brier": float(brier_score_loss(y, scores)) if probabilities else None,
    }


def evaluate(model: RiskModel, marks_csv: Path, truth_csv: Path, roster_csv: Path, *, window_days: int = 126,
             policy: PolicyConfig | None = None, cohort: Mapping[str, Any] | None = None) -> EvaluationReport:
    """Replay the cohort through the real engine and score it (see the module docstring)."""
    started = time.perf_counter()
    truth = Truth.load(truth_csv, roster_csv)
    engine = DecisionEngine(model, window_days=window_days, policy=policy)
    recorder = DayEndRecorder(sample_every=1, min_possible=BASELINE_MIN_POSSIBLE)
    observed = ObservedEngine(engine, recorder)
    report, events = replay_file(Path(marks_csv), observed, max_future_days=100_000)
    replay_seconds = time.perf_counter() - started
    rows = recorder.finish(report.states, keep_unlabelled=True)
    school_days = rows.school_days

    alerts: dict[str, list[dt.date]] = defaultdict(list)
    escalations = improving = 0
    for event in events:
        if event.kind.value == "concern":
            if event.escalation:
                escalations += 1
            else:
                alerts[event.pupil_id].append(event.as_of)
        else:
            improving += 1
    systems = {MODEL: dict(alerts), YTD: baseline_alerts(rows, YTD), LAST4: baseline_alerts(rows, LAST4)}
    metrics: dict[str, dict[str, float | None]] = {}
    leads: dict[str, list[int]] = {}
    for name, system_alerts in systems.items():
        score = score_alerts(system_alerts, truth, school_days)
        metrics[name] = score.metrics()
        leads[name] = score.lead_days
    model_scores = model.score(rows.X)
    metrics[MODEL].update(ranking_metrics(model_scores, rows.y, probabilities=True))
    for name in (YTD, LAST4):
        metrics[name].update(ranking_metrics(baseline_scores(rows, name), rows.y, probabilities=False))
    metrics[MODEL]["escalations"] = escalations
    metrics[MODEL]["improving_events"] = improving
    known = rows.y >= 0
    prob_true, prob_pred = calibration_curve(rows.y[known], model_scores[known], n_bins=10, strategy="quantile")
    fairness, gaps = fairness_audit(systems[MODEL], truth, school_days)
    return EvaluationReport(
        metrics=metrics, fairness=fairness, fairness_gaps=gaps, lead_days=leads,
        calibration={"predicted": prob_pred.tolist(), "observed": prob_true.tolist()},
        cohort={**(cohort or {}), "pupils": len(truth.pupils), "school_days": len(school_days),
                "marks_read": report.read, "marks_applied": report.applied, "dead_lettered": report.dead_lettered,
                "labelled_rows": int(known.sum()), "positive_rows": int((rows.y == 1).sum()),
                "first_day": school_days[0].isoformat() if school_days else None,
                "last_day": school_days[-1].isoformat() if school_days else None},
        model=model.describe(),
        timing={"replay_seconds": round(replay_seconds, 1), "marks_per_second": round(report.read / max(replay_seconds, 1e-9)),
                "total_seconds": round(time.perf_counter() - started, 1)},
        policy=(policy or model.policy).model_dump(),
    )


__all__ = ["EvaluationReport", "Truth", "evaluate", "score_alerts", "baseline_alerts", "policy_alerts",
           "fairness_audit", "ObservedEngine", "FEATURE_NAMES"]
