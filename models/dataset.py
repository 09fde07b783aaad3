"""Training rows: the same state and features the stream keeps, snapshotted at day ends,
labelled with what the pupil's attendance did next (see models.labels)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from models.features import FEATURE_NAMES, features, rate
from models.labels import HORIZON_DAYS, dip_label
from models.state import ATTENDED, POSSIBLE, OutsideWindowError, PupilState
from schemas.codes import CODES
from schemas.marks import RegisterMark, Session


@dataclass
class TrainingSet:
    X: np.ndarray  # (n, len(FEATURE_NAMES)) float64
    y: np.ndarray  # (n,) int8: 1 dip ahead, 0 not
    pupil_id: np.ndarray  # (n,) str
    school_id: np.ndarray  # (n,) str
    day: np.ndarray  # (n,) int32 ordinal of the school day the row describes
    school_days: list[dt.date]

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> TrainingSet:
        return TrainingSet(self.X[mask], self.y[mask], self.pupil_id[mask], self.school_id[mask], self.day[mask],
                           self.school_days)


def build_training_set(marks: Iterable[RegisterMark], *, window_days: int, sample_every: int = 3,
                       min_possible: int = 20, horizon_days: int = HORIZON_DAYS) -> TrainingSet:
    """Replay marks in file order; at the end of every `sample_every`-th school day snapshot each
    pupil's features; then label each snapshot from the following `horizon_days` school days."""
    states: dict[str, PupilState] = {}
    # The latest code of every (pupil, school day, session), for the labels' look-ahead.
    sessions: dict[str, dict[int, int]] = {}
    school_days: list[int] = []
    rows: list[tuple[float, ...]] = []
    row_pupil: list[str] = []
    row_school: list[str] = []
    row_day: list[int] = []
    row_baseline: list[float] = []

    def snapshot(day: int) -> None:
        if (len(school_days) - 1) % sample_every:
            return
        for pupil_id, state in states.items():
            if state.latest_ordinal != day:
                continue
            stats, row = features(state)
            if stats.possible_ytd < min_possible:
                continue
            rows.append(row)
            row_pupil.append(pupil_id)
            row_school.append(state.school_id)
            row_day.append(day)
            row_baseline.append(rate(stats.earlier_attended, stats.earlier_possible))

    current = None
    for mark in marks:
        day = mark.date.toordinal()
        if current is None or day > current:
            if current is not None:
                snapshot(current)
            current = day
            school_days.append(day)
        state = states.get(mark.pupil_id)
        if state is None:
            state = states[mark.pupil_id] = PupilState(mark.school_id, window_days, mark.date)
        try:
            state.apply(mark)
        except OutsideWindowError:
            continue
        slot = (day << 1) | (mark.session is Session.PM)
        sessions.setdefault(mark.pupil_id, {})[slot] = CODES[mark.code].index
    if current is not None:
        snapshot(current)

    day_index = {day: i for i, day in enumerate(school_days)}
    n_days = len(school_days)
    future_attended = np.zeros(len(rows), dtype=np.int32)
    future_possible = np.zeros(len(rows), dtype=np.int32)
    cumulative: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, (pupil_id, day) in enumerate(zip(row_pupil, row_day)):
        if pupil_id not in cumulative:
            possible = np.zeros(n_days + 1, dtype=np.int32)
            attended = np.zeros(n_days + 1, dtype=np.int32)
            for slot, code in sessions[pupil_id].items():
                index = day_index.get(slot >> 1)
                if index is not None:
                    possible[index + 1] += POSSIBLE[code]
                    attended[index + 1] += ATTENDED[code]
            cumulative[pupil_id] = (np.cumsum(possible), np.cumsum(attended))
        possible_cum, attended_cum = cumulative[pupil_id]
        start = day_index[day] + 1
        end = min(start + horizon_days, n_days)
        future_possible[i] = possible_cum[end] - possible_cum[start]
        future_attended[i] = attended_cum[end] - attended_cum[start]
    labels = dip_label(np.asarray(row_baseline), future_attended, future_possible)
    known = labels >= 0
    X = np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURE_NAMES))
    return TrainingSet(
        X=X[known], y=labels[known], pupil_id=np.asarray(row_pupil, dtype=object)[known],
        school_id=np.asarray(row_school, dtype=object)[known], day=np.asarray(row_day, dtype=np.int32)[known],
        school_days=[dt.date.fromordinal(d) for d in school_days],
    )
