"""Training and evaluation rows: the same state and features the stream keeps, snapshotted at
day ends, labelled with what the pupil's attendance did next (see models.labels).

`DayEndRecorder` watches marks go by (applied to states by whoever owns them: the training
loop below, or the real DecisionEngine during evaluation) and, at the end of each school day,
snapshots every pupil marked that day with the one feature function (`features_batch`). It
also records the register as it finally stands (`models.history.RegisterHistory`), from which
every row is labelled once the year is over.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.features import FEATURE_NAMES, features_batch, snapshot
from models.history import RegisterHistory, RegisterYear
from models.labels import HORIZON_DAYS, year_labels
from models.policy import POLICY_COUNTS
from models.state import OutsideWindowError, PupilState
from schemas.marks import RegisterMark

# Window counts kept beside the features: what the policy reads (models.policy.POLICY_COUNTS).
KEPT_STATS = POLICY_COUNTS


@dataclass
class TrainingSet:
    X: np.ndarray  # (n, len(FEATURE_NAMES)) float64
    y: np.ndarray  # (n,) int8: 1 dip ahead, 0 not (-1 unknown, only with keep_unlabelled)
    pupil_id: np.ndarray  # (n,) str
    school_id: np.ndarray  # (n,) str
    day: np.ndarray  # (n,) int32 ordinal of the school day the row describes
    school_days: list[dt.date]
    stats: dict[str, np.ndarray] = field(default_factory=dict)  # KEPT_STATS columns, int64
    register: RegisterYear | None = None  # the final register the rows were labelled from

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> TrainingSet:
        return TrainingSet(self.X[mask], self.y[mask], self.pupil_id[mask], self.school_id[mask], self.day[mask],
                           self.school_days, {k: v[mask] for k, v in self.stats.items()}, self.register)


class DayEndRecorder:
    """Day-end snapshots of every pupil marked that day, plus the register as it finally stands."""

    def __init__(self, *, sample_every: int = 1, min_possible: int = 20) -> None:
        self.sample_every = sample_every
        self.min_possible = min_possible
        self.current: int | None = None
        self.school_days: list[int] = []
        self.history = RegisterHistory()
        self._X: list[np.ndarray] = []
        self._stats: list[dict[str, np.ndarray]] = []
        self._pupil: list[str] = []
        self._school: list[str] = []
        self._day: list[np.ndarray] = []

    def before(self, mark: RegisterMark, states: Mapping[str, PupilState]) -> None:
        """Call before a mark is applied: closes the previous day when a new one starts."""
        day = mark.date.toordinal()
        if self.current is None or day > self.current:
            if self.current is not None:
                self.end_of_day(states)
            self.current = day
            self.school_days.append(day)

    def after(self, mark: RegisterMark) -> None:
        """Call after a mark was applied (not for a mark the state rejected)."""
        self.history.record(mark)

    def end_of_day(self, states: Mapping[str, PupilState]) -> None:
        day = self.current
        if day is None or (len(self.school_days) - 1) % self.sample_every:
            return
        pupils = [(pid, s) for pid, s in states.items() if s.latest_ordinal == day]
        if not pupils:
            return
        batch, X = features_batch([snapshot(s) for _, s in pupils])
        keep = batch["possible_ytd"] >= self.min_possible
        if not keep.any():
            return
        self._X.append(X[keep])
        self._stats.append({name: batch[name][keep] for name in KEPT_STATS})
        self._pupil.extend(pid for (pid, _), k in zip(pupils, keep) if k)
        self._school.extend(s.school_id for (_, s), k in zip(pupils, keep) if k)
        self._day.append(np.full(int(keep.sum()), day, dtype=np.int32))

    def finish(self, states: Mapping[str, PupilState], *, horizon_days: int = HORIZON_DAYS,
               keep_unlabelled: bool = False) -> TrainingSet:
        self.end_of_day(states)
        self.current = None
        register = self.history.finish()
        n_features = len(FEATURE_NAMES)
        if not self._X:
            empty = np.zeros(0)
            return TrainingSet(np.zeros((0, n_features)), np.zeros(0, np.int8), empty.astype(object),
                               empty.astype(object), np.zeros(0, np.int32), register.dates,
                               {k: np.zeros(0, np.int64) for k in KEPT_STATS}, register)
        X = np.vstack(self._X)
        stats = {k: np.concatenate([s[k] for s in self._stats]) for k in self._stats[0]}
        pupil = np.asarray(self._pupil, dtype=object)
        school = np.asarray(self._school, dtype=object)
        day = np.concatenate(self._day)
        index = register.index
        pupil_index = np.fromiter((index[p] for p in pupil), np.int64, len(pupil))
        labels = year_labels(register, pupil_index, np.searchsorted(register.days, day), horizon_days=horizon_days)
        keep = np.ones(len(labels), dtype=bool) if keep_unlabelled else labels >= 0
        return TrainingSet(X=X[keep], y=labels[keep], pupil_id=pupil[keep], school_id=school[keep], day=day[keep],
                           school_days=register.dates, stats={k: v[keep] for k, v in stats.items()},
                           register=register)


def build_training_set(marks: Iterable[RegisterMark], *, window_days: int, sample_every: int = 3,
                       min_possible: int = 20, horizon_days: int = HORIZON_DAYS,
                       keep_unlabelled: bool = False) -> TrainingSet:
    """Replay marks in file order; at the end of every `sample_every`-th school day snapshot each
    pupil's features; then label each snapshot from the following `horizon_days` school days."""
    states: dict[str, PupilState] = {}
    recorder = DayEndRecorder(sample_every=sample_every, min_possible=min_possible)
    for mark in marks:
        recorder.before(mark, states)
        state = states.get(mark.pupil_id)
        if state is None:
            state = states[mark.pupil_id] = PupilState(mark.school_id, window_days, mark.date)
        try:
            state.apply(mark)
        except OutsideWindowError:
            continue
        recorder.after(mark)
    return recorder.finish(states, horizon_days=horizon_days, keep_unlabelled=keep_unlabelled)


def split_by_day(marks: Sequence[RegisterMark]) -> list[Sequence[RegisterMark]]:
    """Cut a batch where a later school day starts, so day ends can be observed between pieces."""
    pieces, start, current = [], 0, None
    for i, mark in enumerate(marks):
        day = mark.date.toordinal()
        if current is not None and day > current and i > start:
            pieces.append(marks[start:i])
            start = i
        current = day if current is None else max(current, day)
    if start < len(marks):
        pieces.append(marks[start:])
    return pieces
