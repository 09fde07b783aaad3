"""The register as it finally stood: every pupil's code for every session of the period read.

Evaluation, training labels and the backtest judge each day by what *followed* it, so they need
the whole year, not the stream's rolling window. `RegisterHistory` records marks as they go by
(of all recordings of one session the latest wins, by the one rule in `schemas.recording`), and
`finish()` turns them into a `RegisterYear`: a pupils x school days x 2 matrix of code indices,
with the day-end counts the labels and the reactive baselines are defined on.

Counting follows the feature code's definitions (models.features): sessions are counted over
the pupil's *possible* sessions in date order, year to date from 1 August.

Memory: one byte of code and four of recording time per pupil-session while recording (about
2 KB per pupil for a school year), one byte per pupil-session once finished.
"""

from __future__ import annotations

import datetime as dt
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from models.school_year import academic_year
from models.state import ARRANGED, ATTENDED, HEALTH, HOLIDAY, LEAVE, POSSIBLE
from schemas.codes import CODES
from schemas.marks import RegisterMark, Session
from schemas.recording import recording_stamp, supersedes

_TABLES = {name: np.frombuffer(table, dtype=np.uint8).astype(bool)
           for name, table in (("possible", POSSIBLE), ("attended", ATTENDED), ("health", HEALTH),
                               ("arranged", ARRANGED), ("holiday", HOLIDAY), ("leave", LEAVE))}
# An absence with no reason agreed with school, as the policy counts a run's unexplained sessions:
# neither illness nor a holiday (explained) nor leave (models.policy.unexplained_sessions).
_TABLES["unexplained"] = (_TABLES["possible"] & ~_TABLES["attended"] & ~_TABLES["health"] & ~_TABLES["holiday"]
                          & ~_TABLES["leave"])


class RegisterHistory:
    """Records marks (in any order) and keeps, per pupil and session, the winning recording."""

    def __init__(self) -> None:
        self._pupil: dict[str, int] = {}
        self.pupils: list[str] = []
        self.schools: list[str] = []  # per pupil: the school of their latest school day
        self._latest: list[int] = []  # per pupil: ordinal of that day
        self._column: dict[int, int] = {}  # day ordinal -> column, in order of first sight
        self.days: list[int] = []
        self._codes: list[bytearray] = []
        self._stamps: list[array] = []

    def __len__(self) -> int:
        return len(self.pupils)

    def record(self, mark: RegisterMark) -> None:
        ordinal = mark.date.toordinal()
        column = self._column.get(ordinal)
        if column is None:
            column = self._column[ordinal] = len(self.days)
            self.days.append(ordinal)
        pupil = self._pupil.get(mark.pupil_id)
        if pupil is None:
            pupil = self._pupil[mark.pupil_id] = len(self.pupils)
            self.pupils.append(mark.pupil_id)
            self.schools.append(mark.school_id)
            self._latest.append(ordinal)
            self._codes.append(bytearray())
            self._stamps.append(array("I"))
        elif ordinal >= self._latest[pupil]:
            self.schools[pupil], self._latest[pupil] = mark.school_id, ordinal
        codes, stamps = self._codes[pupil], self._stamps[pupil]
        slot = 2 * column + (mark.session is Session.PM)
        if slot >= len(codes):
            grow = 2 * len(self.days) - len(codes)
            codes.extend(bytes(grow))
            stamps.extend(array("I", bytes(4 * grow)))
        code, stamp = CODES[mark.code].index, recording_stamp(mark.recorded_at)
        if codes[slot] == 0 or supersedes(stamp, code, stamps[slot], codes[slot]):
            codes[slot], stamps[slot] = code, stamp

    def record_many(self, marks: Iterable[RegisterMark]) -> None:
        for mark in marks:
            self.record(mark)

    def finish(self) -> RegisterYear:
        """The matrix, days in date order (a register day is a date with at least one mark)."""
        order = np.argsort(np.asarray(self.days, dtype=np.int64), kind="stable")
        n_days = len(self.days)
        codes = np.zeros((len(self.pupils), n_days, 2), dtype=np.uint8)
        for pupil, held in enumerate(self._codes):
            flat = np.frombuffer(bytes(held), dtype=np.uint8)
            codes[pupil].reshape(-1)[: len(flat)] = flat
        return RegisterYear(pupils=list(self.pupils), schools=np.asarray(self.schools, dtype=object),
                            days=np.asarray(self.days, dtype=np.int64)[order], codes=codes[:, order, :])


@dataclass
class RegisterYear:
    """Final codes, pupils x register days x (AM, PM), days in date order; 0 where no mark."""

    pupils: list[str]
    schools: np.ndarray  # object, per pupil
    days: np.ndarray  # int64 ordinals, ascending
    codes: np.ndarray  # uint8 (P, D, 2)

    @property
    def dates(self) -> list[dt.date]:
        return [dt.date.fromordinal(int(d)) for d in self.days]

    @cached_property
    def index(self) -> dict[str, int]:
        return {pupil: i for i, pupil in enumerate(self.pupils)}

    def flag(self, name: str) -> np.ndarray:
        """Per session, whether its code is possible / attended / health / arranged / holiday / leave /
        unexplained (bool, P x D x 2)."""
        return _TABLES[name][self.codes]

    @cached_property
    def slots(self) -> tuple[np.ndarray, np.ndarray]:
        """Possible and attended per session, flattened to (P, 2D) in date order (bool)."""
        possible = self.flag("possible").reshape(len(self.pupils), -1)
        attended = self.flag("attended").reshape(len(self.pupils), -1) & possible
        return possible, attended

    @cached_property
    def day_end_counts(self) -> DayEndCounts:
        """Year-to-date and recent counts at the end of every register day, for every pupil."""
        return DayEndCounts.of(self)


@dataclass
class DayEndCounts:
    """Counts at each day end (P x D, int32), over possible sessions as the features count them."""

    possible_ytd: np.ndarray
    attended_ytd: np.ndarray
    possible_40: np.ndarray  # the last 40 possible sessions (fewer early on)
    attended_40: np.ndarray
    earlier_possible: np.ndarray  # this year before the last 20 possible sessions
    earlier_attended: np.ndarray

    @classmethod
    def of(cls, year: RegisterYear) -> DayEndCounts:
        possible, attended = year.slots
        n_pupils, n_slots = possible.shape
        # Attended count among a pupil's first k possible sessions: a cumulative sum over the
        # possible sessions gathered to the front (stable, so in date order).
        order = np.argsort(~possible, axis=1, kind="stable")
        by_possible = np.take_along_axis(attended, order, axis=1)
        attended_first = np.zeros((n_pupils, n_slots + 1), dtype=np.int32)
        np.cumsum(by_possible, axis=1, dtype=np.int32, out=attended_first[:, 1:])
        # Possible / attended sessions up to each day end (all years), then year to date.
        cum_possible = np.cumsum(possible, axis=1, dtype=np.int32)[:, 1::2]
        cum_attended = np.cumsum(attended, axis=1, dtype=np.int32)[:, 1::2]
        years = np.array([academic_year(int(d)) for d in year.days], dtype=np.int64)
        year_start = np.searchsorted(years, years, side="left")  # first day of each day's year
        before = np.concatenate([np.zeros((n_pupils, 1), np.int32), cum_possible], axis=1)[:, year_start]
        before_att = np.concatenate([np.zeros((n_pupils, 1), np.int32), cum_attended], axis=1)[:, year_start]
        possible_ytd = cum_possible - before
        attended_ytd = cum_attended - before_att

        def attended_last(k: np.ndarray) -> np.ndarray:
            """Attended among the last k possible sessions up to each day end."""
            upto = np.take_along_axis(attended_first, cum_possible, axis=1)
            start = np.take_along_axis(attended_first, cum_possible - k, axis=1)
            return upto - start

        possible_40 = np.minimum(cum_possible, 40)
        recent_in_year = np.minimum(possible_ytd, 20)
        return cls(possible_ytd=possible_ytd, attended_ytd=attended_ytd, possible_40=possible_40,
                   attended_40=attended_last(possible_40),
                   earlier_possible=possible_ytd - recent_in_year,
                   earlier_attended=attended_ytd - attended_last(recent_in_year))
