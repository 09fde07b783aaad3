"""The backtest: what Reconnect would have said over a trust's own past year, before anything is
switched on. Pure: the CLI (`reconnect backtest`) reads the files, shows progress and renders
the report (reports.backtest).

A trust has no ground truth, only its registers. So:
  1. the real `DecisionEngine` replays the year's marks in file order (the same state, features,
     model and policy as the stream), and the final register is recorded beside it;
  2. every pupil-day with at least 20 possible sessions this year is labelled from what
     actually followed (models.labels: the project's one label definition), and runs of
     positive days become *dip episodes* (models.labels.label_episodes);
  3. the model's concerns and the two reactive rules (year to date < 90%, last four weeks
     < 90%; models.evaluation.baselines) are scored against those episodes with the same
     functions as evaluation (models.evaluation.scoring);
  4. beside them: how many school days earlier than the year-to-date rule the model raised
     each dip both caught, concerns per 100 pupils per week through the year, a table per
     school and, with a roster, the fairness audit (SEN, FSM: never a model input).
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import RiskModel
from models.engine import BatchResult, DecisionEngine
from models.evaluation.baselines import (
    BASELINE_MIN_POSSIBLE,
    BASELINES,
    baseline_alerts,
)
from models.evaluation.diagnostics import first_concern_behaviour
from models.evaluation.fairness import FairnessAudit, audit
from models.evaluation.run import MODEL, OFFLINE_LIMITS, event_counts
from models.evaluation.scoring import (
    SCHOOL_DAYS_PER_WEEK,
    DayIndex,
    concern_alerts,
    dip_window,
    first_in_window,
    score_alerts,
)
from models.evaluation.truth import Episode, Roster, Truth
from models.history import RegisterHistory, RegisterYear
from models.labels import LABEL_DIP, label_episodes, year_labels
from models.columnar import ColumnarSource, register_year
from models.replay import replay_columnar, replay_file
from models.state import PupilState
from schemas.marks import MarkLimits, RegisterMark

SYSTEMS = (MODEL, *BASELINES)
HEADLINE = ("recall", "recall_within_20", "median_lead_days", "alert_precision", "pupil_precision",
            "no_dip_flagged_share", "alerts_per_100_per_week")


class RecordingEngine:
    """The real DecisionEngine, with every applied mark also recorded in a RegisterHistory."""

    def __init__(self, engine: DecisionEngine, history: RegisterHistory) -> None:
        self.engine = engine
        self.history = history

    def process(self, marks: Sequence[RegisterMark], states: MutableMapping[str, PupilState]) -> BatchResult:
        result = self.engine.process(marks, states)
        rejected = {index for index, _ in result.rejected}
        for index, mark in enumerate(marks):
            if index not in rejected:
                self.history.record(mark)
        return result


@dataclass
class WeekRow:
    week: dt.date  # the Monday
    pupils: int  # pupils with a possible session that week
    alerts: dict[str, int]  # system -> alerts raised that week

    def per_100(self, system: str) -> float | None:
        return 100 * self.alerts.get(system, 0) / self.pupils if self.pupils else None


@dataclass
class BacktestReport:
    source: str
    marks_read: int
    marks_applied: int
    dead_lettered: int
    pupils: int
    schools: int
    school_days: int
    first_day: str | None
    last_day: str | None
    labelled_days: int  # pupil-days with a label
    positive_days: int
    episodes: int  # dip episodes read off the labels
    metrics: dict[str, dict[str, float | None]]  # system -> metric -> value
    lead_days: dict[str, list[int]]
    lead_over_ytd: list[int]  # per dip caught by both: school days the model's concern came first
    model_only: int  # dips the model caught that the year-to-date rule never did
    ytd_only: int
    weeks: list[WeekRow]
    by_school: list[dict[str, Any]]
    events: dict[str, int]
    fairness: FairnessAudit | None
    model: dict[str, Any]
    policy: dict[str, Any]
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def median_lead_over_ytd(self) -> float | None:
        return float(statistics.median(self.lead_over_ytd)) if self.lead_over_ytd else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fairness"] = None if self.fairness is None else self.fairness.to_dict()
        return out


def label_truth(register: RegisterYear, *, min_possible: int = BASELINE_MIN_POSSIBLE,
                roster: Roster | None = None) -> tuple[Truth, np.ndarray]:
    """Dip episodes read off the labels of every pupil-day with enough evidence, as a Truth (with
    the roster's groups, if any), and the label matrix (pupils x days, -1 where unknown)."""
    counts = register.day_end_counts
    pupil, day = np.nonzero(counts.possible_ytd >= min_possible)
    labels = np.full(counts.possible_ytd.shape, -1, dtype=np.int8)
    labels[pupil, day] = year_labels(register, pupil, day)
    dates = register.dates
    last = len(dates) - 1
    episodes: dict[str, list[Episode]] = defaultdict(list)
    positive_pupil, positive_day = np.nonzero(labels == 1)
    for p, first, final in label_episodes(positive_pupil, positive_day):
        episodes[register.pupils[p]].append(Episode(LABEL_DIP, dates[first], dates[min(final + 1, last)]))
    sen = roster.sen if roster else {}
    fsm = roster.fsm if roster else {}
    return Truth(dict(episodes), sen, fsm, list(register.pupils)), labels


def lead_over(model_alerts: dict[str, list[dt.date]], other_alerts: dict[str, list[dt.date]], truth: Truth,
              school_days: Sequence[dt.date]) -> tuple[list[int], int, int]:
    """For dips both caught: school days from the model's first concern in the dip window to the
    other rule's first firing in it (positive: the model was earlier); and the dips only the
    model, or only the other rule, caught."""
    index = DayIndex(school_days)
    leads, model_only, other_only = [], 0, 0
    for pupil, episodes in truth.episodes.items():
        mine = sorted(index(d) for d in model_alerts.get(pupil, ()))
        theirs = sorted(index(d) for d in other_alerts.get(pupil, ()))
        for episode in episodes:
            window = dip_window(episode, index)
            first_mine, first_theirs = first_in_window(mine, window), first_in_window(theirs, window)
            if first_mine is not None and first_theirs is not None:
                leads.append(first_theirs - first_mine)
            elif first_mine is not None:
                model_only += 1
            elif first_theirs is not None:
                other_only += 1
    return leads, model_only, other_only


def weekly(register: RegisterYear, systems: dict[str, dict[str, list[dt.date]]]) -> list[WeekRow]:
    """Concerns (and baseline firings) per school week, with the pupils on roll that week."""
    dates = register.dates
    monday = [d - dt.timedelta(days=d.weekday()) for d in dates]
    weeks = sorted(set(monday))
    week_of_day = np.searchsorted(np.array([w.toordinal() for w in weeks]), [m.toordinal() for m in monday])
    possible = register.flag("possible").any(axis=2)  # P x D
    on_roll = np.zeros((len(register.pupils), len(weeks)), dtype=bool)
    for w in range(len(weeks)):
        on_roll[:, w] = possible[:, week_of_day == w].any(axis=1)
    pupils_per_week = on_roll.sum(axis=0)
    counts: dict[str, Counter] = {}
    for name, alerts in systems.items():
        counts[name] = Counter(day - dt.timedelta(days=day.weekday()) for days in alerts.values() for day in days)
    return [WeekRow(week, int(pupils_per_week[w]), {name: counts[name].get(week, 0) for name in systems})
            for w, week in enumerate(weeks)]


def per_school(register: RegisterYear, truth: Truth, systems: dict[str, dict[str, list[dt.date]]]) -> list[dict[str, Any]]:
    dates = register.dates
    rows = []
    for school in sorted(set(register.schools.tolist())):
        pupils = [p for p, s in zip(register.pupils, register.schools.tolist()) if s == school]
        row: dict[str, Any] = {"school_id": school, "pupils": len(pupils)}
        for name, alerts in systems.items():
            m = score_alerts(alerts, truth, dates, pupils, dip_kinds=(LABEL_DIP,)).metrics()
            row["dips"] = m["dips"]
            for key in ("recall_within_20", "alert_precision", "alerts_per_100_per_week"):
                row[f"{name}:{key}"] = m[key]
        rows.append(row)
    return rows


def backtest(model: RiskModel, marks_csv: Path, *, roster_csv: Path | None = None, window_days: int = 126,
             limits: MarkLimits = OFFLINE_LIMITS, on_rows: Callable[[int], None] | None = None,
             read_columns: Callable[[Path], ColumnarSource] | None = None) -> BacktestReport:
    """Replay a past year through the real engine and judge it by what followed (module docstring).

    With `read_columns` (a columnar reader, streams.mark_columns) the year is replayed in columns
    (models.columnar: the engine's own rules, the same events and register, many times faster);
    without, mark by mark through the engine."""
    started = time.perf_counter()
    engine = DecisionEngine(model, window_days=window_days)
    if read_columns is not None:
        source = read_columns(Path(marks_csv))
        replay, events = replay_columnar(source, engine, keep_states=False)
        register = register_year(source.columns, replay.applied_rows)
        if on_rows is not None:
            on_rows(source.read)
    else:
        history = RegisterHistory()
        replay, events = replay_file(Path(marks_csv), RecordingEngine(engine, history), limits=limits,
                                     on_rows=on_rows)
        register = history.finish()
    replay_seconds = time.perf_counter() - started
    roster = Roster.load(roster_csv) if roster_csv is not None else None
    truth, labels = label_truth(register, roster=roster)
    dates = register.dates
    systems = {MODEL: concern_alerts(events), **{name: baseline_alerts(register, name) for name in BASELINES}}
    metrics, leads = {}, {}
    for name, alerts in systems.items():
        score = score_alerts(alerts, truth, dates, dip_kinds=(LABEL_DIP,))
        metrics[name] = score.metrics()
        leads[name] = score.lead_days
    lead_ytd, model_only, ytd_only = lead_over(systems[MODEL], systems[BASELINES[0]], truth, dates)
    fairness = None
    if roster is not None:
        fairness = audit(systems[MODEL], Truth(truth.episodes, truth.sen, truth.fsm,
                                               [p for p in roster.pupils if p in register.index]),
                         dates, register=register, dip_kinds=(LABEL_DIP,),
                         behaviour=first_concern_behaviour(events, engine.policy),
                         long_run_sessions=engine.policy.tier2_unexplained_run)
    return BacktestReport(
        source=str(marks_csv), marks_read=replay.read, marks_applied=replay.applied,
        dead_lettered=replay.dead_lettered, pupils=len(register.pupils), schools=len(set(register.schools.tolist())),
        school_days=len(dates), first_day=dates[0].isoformat() if dates else None,
        last_day=dates[-1].isoformat() if dates else None, labelled_days=int((labels >= 0).sum()),
        positive_days=int((labels == 1).sum()), episodes=sum(len(v) for v in truth.episodes.values()),
        metrics=metrics, lead_days=leads, lead_over_ytd=lead_ytd, model_only=model_only, ytd_only=ytd_only,
        weeks=weekly(register, systems), by_school=per_school(register, truth, systems), events=event_counts(events),
        fairness=fairness, model=model.describe(), policy=engine.policy.model_dump(),
        timing={"replay_seconds": round(replay_seconds, 2), "total_seconds": round(time.perf_counter() - started, 2),
                "marks_per_second": round(replay.read / max(time.perf_counter() - started, 1e-9))},
    )


__all__ = ["BacktestReport", "RecordingEngine", "WeekRow", "backtest", "label_truth", "lead_over", "weekly",
           "per_school", "SYSTEMS", "HEADLINE", "SCHOOL_DAYS_PER_WEEK"]
