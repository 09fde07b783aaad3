"""Training and evaluation rows: the same state and features the stream keeps, snapshotted at
day ends, labelled with what the pupil's attendance did next (see models.labels).

`DayEndRecorder` watches marks go by (applied to states by whoever owns them: the training
loop below, or the real DecisionEngine during evaluation) and, at the end of each school day,
snapshots every pupil marked that day with the one feature function (`features_batch`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.features import FEATURE_NAMES, features_batch, rate, snapshot
from models.labels import HORIZON_DAYS, pupil_labels
from models.state import ATTENDED, POSSIBLE, OutsideWindowError, PupilState
from schemas.codes import CODES
from schemas.marks import RegisterMark, Session

# Raw counts kept beside the features (for the reactive baselines and the policy).
KEPT_STATS = ("possible_ytd", "attended_ytd", "possible_10", "attended_10", "possible_20", "attended_20",
              "possible_40", "attended_40", "current_absence_run", "current_run_explained")


@dataclass
class TrainingSet:
    X: np.ndarray  # (n, len(FEATURE_NAMES)) float64
    y: np.ndarray  # (n,) int8: 1 dip ahead, 0 not (-1 unknown, only with keep_unlabelled)
    pupil_id: np.ndarray  # (n,) str
    school_id: np.ndarray  # (n,) str
    day: np.ndarray  # (n,) int32 ordinal of the school day the row describes
    school_days: list[dt.date]
    stats: dict[str, np.ndarray] = field(default_factory=dict)  # KEPT_STATS columns, int64

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> TrainingSet:
        return TrainingSet(self.X[mask], self.y[mask], self.pupil_id[mask], self.school_id[mask], self.day[mask],
                           self.school_days, {k: v[mask] for k, v in self.stats.items()})


class DayEndRecorder:
    """Day-end snapshots of every pupil marked that day, plus each session's final code."""

    def __init__(self, *, sample_every: int = 1, min_possible: int = 20) -> None:
        self.sample_every = sample_every
        self.min_possible = min_possible
        self.current: int | None = None
        self.school_days: list[int] = []
        self.sessions: dict[str, dict[int, int]] = {}  # pupil -> slot -> latest code index
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
        slot = (mark.date.toordinal() << 1) | (mark.session is Session.PM)
        self.sessions.setdefault(mark.pupil_id, {})[slot] = CODES[mark.code].index

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
        self._stats.append({name: batch[name][keep] for name in KEPT_STATS + ("earlier_possible", "earlier_attended")})
        self._pupil.extend(pid for (pid, _), k in zip(pupils, keep) if k)
        self._school.extend(s.school_id for (_, s), k in zip(pupils, keep) if k)
        self._day.append(np.full(int(keep.sum()), day, dtype=np.int32))

    def finish(self, states: Mapping[str, PupilState], *, horizon_days: int = HORIZON_DAYS,
               keep_unlabelled: bool = False) -> TrainingSet:
        self.end_of_day(states)
        self.current = None
        n_features = len(FEATURE_NAMES)
        if not self._X:
            empty = np.zeros(0)
            return TrainingSet(np.zeros((0, n_features)), np.zeros(0, np.int8), empty.astype(object),
                               empty.astype(object), np.zeros(0, np.int32), [], {k: np.zeros(0, np.int64) for k in KEPT_STATS})
        X = np.vstack(self._X)
        stats = {k: np.concatenate([s[k] for s in self._stats]) for k in self._stats[0]}
        pupil = np.asarray(self._pupil, dtype=object)
        school = np.asarray(self._school, dtype=object)
        day = np.concatenate(self._day)
        baseline = rate(stats.pop("earlier_attended"), stats.pop("earlier_possible"))
        labels = self._labels(pupil, day, baseline, horizon_days)
        keep = np.ones(len(labels), dtype=bool) if keep_unlabelled else labels >= 0
        return TrainingSet(X=X[keep], y=labels[keep], pupil_id=pupil[keep], school_id=school[keep], day=day[keep],
                           school_days=[dt.date.fromordinal(d) for d in self.school_days],
                           stats={k: v[keep] for k, v in stats.items()})

    def _labels(self, pupil: np.ndarray, day: np.ndarray, baseline: np.ndarray, horizon_days: int) -> np.ndarray:
        day_index = {d: i for i, d in enumerate(self.school_days)}
        n_days = len(self.school_days)
        labels = np.full(len(pupil), -1, dtype=np.int8)
        order = np.argsort(pupil, kind="stable")
        sorted_pupils = pupil[order]
        bounds = np.flatnonzero(np.r_[True, sorted_pupils[1:] != sorted_pupils[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:]):
            rows = order[a:b]
            slots = sorted(self.sessions.get(sorted_pupils[a], {}).items())
            day_possible = np.zeros(n_days, dtype=np.int64)
            day_attended = np.zeros(n_days, dtype=np.int64)
            absent: list[bool] = []
            for slot, code in slots:
                index = day_index.get(slot >> 1)
                if index is None or not POSSIBLE[code]:
                    continue
                day_possible[index] += 1
                day_attended[index] += ATTENDED[code]
                absent.append(not ATTENDED[code])
            row_index = np.fromiter((day_index[int(d)] for d in day[rows]), np.int64, len(rows))
            labels[rows] = pupil_labels(day_possible, day_attended, np.asarray(absent, dtype=bool), row_index,
                                        baseline[rows], horizon_days=horizon_days)
        return labels


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
