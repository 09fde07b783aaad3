"""The one pure feature function: per-pupil state in, attendance-behaviour features out.

Training, offline replay and the stream all call `summarise_batch` (or `features`, its
one-pupil form), so what was evaluated is what runs. Only attendance behaviour goes in;
demographics never do.

The stream summarises every mark that changes a pupil's record, so this is the hot path: each
mark's state is snapshotted (a copy of a few hundred bytes) and a whole micro-batch is
summarised with numpy at once.

Every count of `WindowSummary` is defined over the pupil's *possible* sessions in date order
(sessions that are not possible, such as a closure (#, Y1-Y7), neither break nor extend a run):

  possible_N / attended_N   the last N possible sessions (N = 10, 20, 40) and those attended
  possible_ytd / attended_ytd  this academic year (from 1 August), older sessions folded in
  earlier_possible / _attended  this year, before the last 20 possible sessions
  current_absence_run       absent possible sessions since the last attended one (within 40)
  current_run_explained / _health / _leave  of that run: illness, medical or holiday (I, M, G, H);
                            illness or medical (I, M); other authorised leave (C, C1, C2, E, J1, R, S, T)
  longest_absence_run_40, absence_spells_40   runs of absence within the last 40
  possible_since_block / attended_since_block  sessions after the longest run of the last 40
                            (the most recent of equally long ones); 0 without absence
  unauthorised_40, health_40, monday_friday_absences_40, am/pm_*_40   absences of each kind
  arranged_20 / arranged_40 sessions the school arranged (C2, E)
  health_absence_ytd        illness or medical absence this year, older sessions folded in
  late_20 / late_previous_20   late marks (L, U) in the last 20 and the 20 before
  sessions_since_full_week  possible sessions since ten attended in a row

A columnar implementation of the same counts must match `summarise_batch` exactly
(tests/test_features_oracle.py holds the slow, obvious definition of each).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.rates import PRIOR_RATE, PRIOR_WEIGHT, rate
from models.state import (
    ARRANGED,
    ATTENDED,
    HEALTH,
    HOLIDAY,
    LATE,
    LEAVE,
    POSSIBLE,
    UNAUTHORISED,
    PupilState,
)
from schemas.events import WindowSummary

RECENT_SHORT, RECENT, RECENT_LONG = 10, 20, 40
FULL_WEEK_SESSIONS = 10
SAME_WEEKDAY_SPELL_SESSIONS = 4  # a day or two off: longer spells are blocks, judged as blocks
MONDAY, FRIDAY = 0, 4
__all__ = ["rate", "PRIOR_RATE", "PRIOR_WEIGHT", "FEATURE_NAMES", "Snapshot", "WindowBatch", "snapshot",
           "summarise_batch", "summarise", "feature_matrix", "features_batch", "features"]


# One lookup per slot gives every property of its code as bits.
(POSSIBLE_BIT, ATTENDED_BIT, LATE_BIT, UNAUTHORISED_BIT, HEALTH_BIT, HOLIDAY_BIT, LEAVE_BIT,
 ARRANGED_BIT) = 1, 2, 4, 8, 16, 32, 64, 128
FLAGS = np.zeros(256, dtype=np.uint8)
for _bit, _table in ((POSSIBLE_BIT, POSSIBLE), (ATTENDED_BIT, ATTENDED), (LATE_BIT, LATE),
                     (UNAUTHORISED_BIT, UNAUTHORISED), (HEALTH_BIT, HEALTH), (HOLIDAY_BIT, HOLIDAY),
                     (LEAVE_BIT, LEAVE), (ARRANGED_BIT, ARRANGED)):
    FLAGS[: len(_table)] |= np.frombuffer(_table, dtype=np.uint8) * np.uint8(_bit)
FLAG_TABLE = FLAGS.tobytes()  # for bytes.translate: code index -> flag bits, in C


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the features need of a pupil's state, copied at one mark."""

    flags: bytes  # per slot, the FLAGS bits of its code
    origin: int
    year_slot: int  # first slot of the current academic year (0 when before the window)
    folded_possible: int
    folded_attended: int
    latest_ordinal: int
    folded_health: int = 0


def snapshot(state: PupilState) -> Snapshot:
    return Snapshot(state.codes.translate(FLAG_TABLE), state.origin, max((state.year_start_ordinal - state.origin) * 2, 0),
                    state.folded_possible, state.folded_attended, state.latest_ordinal, state.folded_health)


STAT_NAMES = tuple(name for name in WindowSummary.model_fields if name != "latest_date")


@dataclass(slots=True)
class WindowBatch:
    """WindowSummary for many snapshots at once: one int64 array per field."""

    latest_ordinal: np.ndarray
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.latest_ordinal)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def row(self, i: int) -> WindowSummary:
        return WindowSummary(latest_date=dt.date.fromordinal(int(self.latest_ordinal[i])),
                             **{name: int(column[i]) for name, column in self.columns.items()})


def _stack(snapshots: Sequence[Snapshot]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slot flags as one (B, slots) matrix, left-padded with empty days where windows differ."""
    width = max(len(s.flags) for s in snapshots)
    n = len(snapshots)
    origin, year_slot = np.array([(s.origin, s.year_slot) for s in snapshots], dtype=np.int64).reshape(n, 2).T.copy()
    if all(len(s.flags) == width for s in snapshots):
        return np.frombuffer(b"".join(s.flags for s in snapshots), dtype=np.uint8).reshape(n, width), origin, year_slot
    flags = np.zeros((n, width), dtype=np.uint8)
    for i, snap in enumerate(snapshots):
        pad = width - len(snap.flags)
        flags[i, pad:] = np.frombuffer(snap.flags, dtype=np.uint8)
        origin[i] -= pad // 2
        year_slot[i] += pad
    return flags, origin, year_slot


@dataclass(slots=True)
class Timelines:
    """The possible sessions of many timelines as one flat sequence (timeline after timeline, each
    in date order).

    A timeline is a row of slot flags, two slots a day (AM, PM) from the ordinal day `day0`; a
    window on it is a range of its slots. The stream's snapshots are one timeline each with one
    window; the columnar replay (models.columnar) has one timeline per pupil and a window per
    mark. Both are summarised by the same `summarise_windows`."""

    flags: np.ndarray  # uint8 (L,): FLAGS bits of each possible session
    where: np.ndarray  # int64 (L,): its position in the grid, row-major (timeline * width + slot)
    width: int  # slots per timeline (even: whole days)
    day0: np.ndarray  # int64 (G,): ordinal day of each timeline's slot 0

    def index(self, timeline: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Flat index of the first possible session at or after `slot` of `timeline` (vectorised)."""
        return np.searchsorted(self.where, np.asarray(timeline, np.int64) * self.width + slot)

    def monday_friday(self, positions: np.ndarray) -> np.ndarray:
        """Whether the sessions at these flat positions are on a Monday or a Friday."""
        row, slot = np.divmod(self.where[positions], self.width)
        weekday = (self.day0[row] + (slot >> 1) - 1) % 7  # ordinal day 1 was a Monday
        return (weekday == MONDAY) | (weekday == FRIDAY)


def timelines(grid: np.ndarray, day0: np.ndarray) -> Timelines:
    """Timelines from slot flags (G, S) whose slot 0 is the AM of ordinal day `day0` (G,)."""
    grid = np.ascontiguousarray(grid, dtype=np.uint8)
    where = np.flatnonzero(grid & POSSIBLE_BIT)  # row-major: timeline after timeline, slots in order
    return Timelines(flags=grid.ravel()[where], where=where, width=grid.shape[1],
                     day0=np.asarray(day0, dtype=np.int64))


def _prefix(values: np.ndarray) -> np.ndarray:
    """Sums before each position: out[i] = values[:i].sum() (uint64, with a leading 0; wraps, and
    the difference of two is exact for any range whose true sum fits)."""
    out = np.zeros(len(values) + 1, dtype=np.uint64)
    np.cumsum(values, out=out[1:])
    return out


# The kinds of absence counted below are absences by their codes (checked here, once): so they
# are counted over the (few) absent sessions rather than over every session.
for _bit in (HEALTH_BIT, UNAUTHORISED_BIT, HOLIDAY_BIT, LEAVE_BIT, ARRANGED_BIT):
    assert not np.any((FLAGS & _bit).astype(bool) & (FLAGS & ATTENDED_BIT).astype(bool)), "an attending code"

# Several counts share one prefix sum, each in a 16-bit field of a uint64 word: a window holds at
# most 2 x 366 sessions, so a field's sum over any window never reaches the next field.
_FIELD = 16
_MASK = np.uint64(0xFFFF)
_ALL_SESSIONS = ("absent", "late", "am")  # per possible session
_ABSENCES = ("health", "unauthorised", "arranged", "explained")  # per absence, then "leave", "monday_friday", "am"
_flag_values = np.arange(256, dtype=np.uint64)


def _bit(mask: np.ndarray) -> np.ndarray:
    return (mask != 0).astype(np.uint64)


# For each FLAGS value, its fields in the per-session word and the first per-absence word.
_SESSION_WORD = _bit(~_flag_values & ATTENDED_BIT) | (_bit(_flag_values & LATE_BIT) << np.uint64(_FIELD))
_ABSENCE_WORD = (_bit(_flag_values & HEALTH_BIT) | (_bit(_flag_values & UNAUTHORISED_BIT) << np.uint64(_FIELD))
                 | (_bit(_flag_values & ARRANGED_BIT) << np.uint64(2 * _FIELD))
                 | (_bit(_flag_values & (HEALTH_BIT | HOLIDAY_BIT)) << np.uint64(3 * _FIELD)))
_LEAVE_WORD = _bit(_flag_values & LEAVE_BIT)


def summarise_windows(sessions: Timelines, start: np.ndarray, end: np.ndarray, year_start: np.ndarray,
                      folded_possible: np.ndarray, folded_attended: np.ndarray, folded_health: np.ndarray,
                      latest_ordinal: np.ndarray) -> WindowBatch:
    """The counts every feature and explanation needs, for windows given as flat ranges
    [start, end) of possible sessions (`Timelines.index`), `year_start` the first possible
    session of the current academic year, plus what the state folded out of the window this year.

    A stream snapshot's timeline is its window, so its year starts inside it and what slid out
    comes in as `folded_*`. A whole-year timeline (models.columnar) may start the year before the
    window: the sessions in between are exactly what the state folded, counted here (and
    `folded_*` is then 0).

    Every count over a range of possible sessions ("the last 20", "this year in the window") is
    a difference of prefix sums: over all sessions for absences, lates and mornings, and over the
    absences alone for the kinds of absence. Runs of absence are read off the absences'
    positions, and the window's last 40 sessions as a dense (windows x 40) matrix, newest first."""
    a, b = np.asarray(start, np.int64), np.asarray(end, np.int64)
    y = np.minimum(np.asarray(year_start, np.int64), b)
    n_rows = len(a)
    flags = sessions.flags
    absent = (flags & ATTENDED_BIT) == 0  # every session here is possible
    am = (sessions.where & 1) == 0  # timelines are whole days, so even positions are mornings
    per_session = _prefix(_SESSION_WORD[flags] | (am.astype(np.uint64) << np.uint64(2 * _FIELD)))
    # The absences, in order: their positions and what kind each is.
    at = np.flatnonzero(absent)
    kind = flags[at]
    per_absence = _prefix(_ABSENCE_WORD[kind])
    per_absence_more = _prefix(_LEAVE_WORD[kind] | (sessions.monday_friday(at).astype(np.uint64) << np.uint64(_FIELD))
                               | (am[at].astype(np.uint64) << np.uint64(2 * _FIELD)))

    def field(prefix: np.ndarray, index: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return (((prefix[hi] - prefix[lo]) >> np.uint64(index * _FIELD)) & _MASK).astype(np.int64)

    def absences(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return field(per_session, 0, lo, hi)

    def attended(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return (hi - lo) - absences(lo, hi)

    # Absences before each position: where a range of sessions starts and ends among the absences.
    absent_total = np.zeros(len(flags) + 1, dtype=np.int32)
    np.cumsum(absent, out=absent_total[1:])

    def absences_of(name: str, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        if name in _ABSENCES:
            prefix, index = per_absence, _ABSENCES.index(name)
        else:
            prefix, index = per_absence_more, ("leave", "monday_friday", "am").index(name)
        return field(prefix, index, absent_total[lo], absent_total[hi])

    n = b - a
    possible_40 = np.minimum(n, RECENT_LONG)
    s10, s20, s40 = b - np.minimum(n, RECENT_SHORT), b - np.minimum(n, RECENT), b - possible_40
    y20 = np.maximum(s20, y)
    possible_ytd = np.asarray(folded_possible, np.int64) + (b - y)
    attended_ytd = np.asarray(folded_attended, np.int64) + attended(y, b)
    absences_40 = absences(s40, b)
    absent_am_40 = absences_of("am", s40, b)
    am_possible_40 = field(per_session, 2, s40, b)

    # Blocks of consecutive absences: where each absence's block starts, and the last position of
    # ten attended sessions in a row before each absence (-1: none).
    previous = np.concatenate(([-1], at[:-1]))
    block_start = np.where(at - previous == 1, -1, at)
    np.maximum.accumulate(block_start, out=block_start)
    gap_full_week = np.where(at - previous - 1 >= FULL_WEEK_SESSIONS, at - 1, -1)
    np.maximum.accumulate(gap_full_week, out=gap_full_week)
    last_absence = absent_total[b].astype(np.int64) - 1  # index into `at`; -1 when none
    has_absence = last_absence >= 0
    last_position = np.where(has_absence, at[np.maximum(last_absence, 0)] if len(at) else -1, -1)
    # The current run: the block of absences ending at the window's last session, within the last 40.
    in_run = has_absence & (last_position == b - 1)
    run_block = np.where(in_run, block_start[np.maximum(last_absence, 0)] if len(at) else 0, b)
    current_run = b - np.maximum(run_block, s40)
    run_start = b - current_run
    # The last full week: in the attended stretch after the last absence, or the latest earlier one.
    earlier_full_week = np.where(has_absence, gap_full_week[np.maximum(last_absence, 0)] if len(at) else -1, -1)
    last_end = np.where(b - 1 - last_position >= FULL_WEEK_SESSIONS, b - 1, earlier_full_week)
    since_full_week = np.where(last_end >= a + FULL_WEEK_SESSIONS - 1, b - 1 - last_end, n)

    # Runs and spells of absence: the last 40 possible sessions as a dense matrix, newest first.
    position = np.arange(RECENT_LONG, dtype=np.int8)
    recent = np.flatnonzero(absences_40)  # windows without absence in their last 40 have no runs
    dense_absent = np.zeros((len(recent), RECENT_LONG), dtype=bool)
    if len(recent):
        dense_absent = absent[np.maximum(b[recent, None] - 1 - position, 0)] & (position < possible_40[recent, None])
    spells = np.zeros(n_rows, dtype=np.int64)
    spells[recent] = dense_absent[:, 0] + (dense_absent[:, 1:] & ~dense_absent[:, :-1]).sum(axis=1)
    # Newest first: each run's length where it ends (its oldest session), the longest, and how many
    # possible sessions are newer than it (of equally long runs, the most recent).
    streak = _run_so_far(dense_absent)
    longest = np.zeros(n_rows, dtype=np.int64)
    longest[recent] = streak.max(axis=1, initial=0)
    newer_than_longest = np.zeros(n_rows, dtype=np.int64)
    newer_than_longest[recent] = np.argmax(streak == longest[recent, None], axis=1) - longest[recent] + 1
    possible_since_block = np.where(longest > 0, newer_than_longest, 0)
    same_weekday_days, same_weekday = np.zeros(n_rows, dtype=np.int64), np.zeros(n_rows, dtype=np.int64)
    if len(recent):
        same_weekday_days[recent], same_weekday[recent] = _same_weekday_days_off(
            sessions, b[recent], possible_40[recent], dense_absent, streak)

    columns = {
        "possible_10": b - s10, "attended_10": attended(s10, b),
        "possible_20": b - s20, "attended_20": attended(s20, b),
        "possible_40": possible_40, "attended_40": possible_40 - absences_40,
        "possible_ytd": possible_ytd, "attended_ytd": attended_ytd,
        "earlier_possible": possible_ytd - (b - y20),
        "earlier_attended": attended_ytd - attended(y20, b),
        "current_absence_run": current_run,
        "current_run_explained": absences_of("explained", run_start, b),
        "current_run_health": absences_of("health", run_start, b),
        "current_run_leave": absences_of("leave", run_start, b),
        "health_absence_ytd": np.asarray(folded_health, np.int64) + absences_of("health", y, b),
        "arranged_20": absences_of("arranged", s20, b), "arranged_40": absences_of("arranged", s40, b),
        "possible_since_block": possible_since_block,
        "attended_since_block": attended(b - possible_since_block, b),
        "longest_absence_run_40": longest, "absence_spells_40": spells,
        "unauthorised_40": absences_of("unauthorised", s40, b), "health_40": absences_of("health", s40, b),
        "late_20": field(per_session, 1, s20, b), "late_previous_20": field(per_session, 1, s40, s20),
        "monday_friday_absences_40": absences_of("monday_friday", s40, b),
        "am_possible_40": am_possible_40, "am_absences_40": absent_am_40,
        "pm_possible_40": possible_40 - am_possible_40, "pm_absences_40": absences_40 - absent_am_40,
        "sessions_since_full_week": since_full_week,
        "same_weekday_days_off_40": same_weekday_days, "same_weekday": same_weekday,
    }
    return WindowBatch(np.asarray(latest_ordinal, dtype=np.int64), {name: columns[name] for name in STAT_NAMES})


def _run_so_far(absent: np.ndarray) -> np.ndarray:
    """Per session of each row, the sessions of its run of absence from the run's first column up
    to it (0 where attended): newest first, the run counted from its newest session."""
    position = np.arange(absent.shape[1], dtype=np.int8)  # windows of 40: small enough
    reset = np.maximum.accumulate(np.where(absent, np.int8(-1), position), axis=1)
    return np.where(absent, position - reset, np.int8(0))


def _same_weekday_days_off(sessions: Timelines, end: np.ndarray, possible: np.ndarray, absent: np.ndarray,
                           newer_part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`same_weekday_days_off_40` and `same_weekday` of windows ending (exclusive) at flat positions
    `end`, whose last `possible` (at most 40) possible sessions are the columns of `absent`, newest
    first, with its `_run_so_far`: the days of a day or two off, each counted on the weekday it fell
    on (the newest day only once its afternoon is in). Worked over the absences alone, as a list."""
    n_rows, width = absent.shape
    most, weekday_of_most = np.zeros(n_rows, dtype=np.int64), np.zeros(n_rows, dtype=np.int64)
    cell = np.flatnonzero(absent)  # row by row, each row's absences newest first
    if not len(cell):
        return most, weekday_of_most
    # Each absence's whole run: the part counted from the run's newest session, read at its oldest
    # (the last of the run's neighbouring cells in the same row).
    oldest = np.r_[cell[1:] != cell[:-1] + 1, True] | (cell % width == width - 1)
    run_end = np.minimum.accumulate(np.where(oldest, np.arange(len(cell)), len(cell))[::-1])[::-1]
    cell = cell[newer_part.ravel()[cell[run_end]] <= SAME_WEEKDAY_SPELL_SESSIONS]
    row, column = np.divmod(cell, width)
    flat = end[row] - 1 - column
    cell, row, column, flat = (x[(sessions.flags[flat] & (LEAVE_BIT | ARRANGED_BIT)) == 0] for x in (cell, row, column, flat))
    # `cell` now lists the sessions off in a day or two. A day's other session, if in the window, is
    # the next cell newer (a morning's afternoon) or older (an afternoon's morning), one grid
    # position away (width is even: an odd position is an afternoon); if also off, it is the
    # neighbouring entry of the list.
    grid = sessions.where[flat]
    afternoon = (grid & 1) == 1
    step = np.where(afternoon, 1, -1)
    other = column + step
    other_in = ((other >= 0) & (other < possible[row])
                & (sessions.where[np.clip(flat - step, 0, len(sessions.where) - 1)] == grid - step))
    beside = np.clip(np.arange(len(cell)) + step, 0, len(cell) - 1)
    other_off = cell[beside] == cell + step
    # Counted once a day, at its morning (or its only session), and today only with its afternoon in.
    counted = (~other_in | other_off) & ~(afternoon & other_in) & ~((column == 0) & ~afternoon)
    timeline, slot = np.divmod(grid[counted], sessions.width)
    weekday = (sessions.day0[timeline] + (slot >> 1) - 1) % 7  # ordinal day 1 was a Monday
    per_weekday = np.bincount(row[counted] * 7 + weekday, minlength=n_rows * 7).reshape(n_rows, 7)
    most = per_weekday.max(axis=1)
    return most, np.where(most > 0, per_weekday.argmax(axis=1) + 1, 0)


def summarise_batch(snapshots: Sequence[Snapshot]) -> WindowBatch:
    """The counts every feature and explanation needs, for each snapshot (one timeline and one
    window each: the whole of the pupil's state window)."""
    flags, origin, year_slot = _stack(snapshots)
    n, width = flags.shape
    sessions = timelines(flags, origin)
    rows = np.arange(n, dtype=np.int64)
    bounds = np.searchsorted(sessions.where, np.concatenate((rows * width, [n * width])))
    numbers = np.array([(s.folded_possible, s.folded_attended, s.folded_health, s.latest_ordinal) for s in snapshots],
                       dtype=np.int64).reshape(n, 4)
    return summarise_windows(sessions, bounds[:-1], bounds[1:], sessions.index(rows, year_slot), *numbers.T)


def summarise(state: PupilState) -> WindowSummary:
    return summarise_batch([snapshot(state)]).row(0)


FEATURE_NAMES: tuple[str, ...] = (
    "rate_10", "rate_20", "rate_40", "rate_ytd", "baseline_rate", "drop_vs_baseline", "trend_20",
    "current_absence_run", "longest_absence_run_40", "absence_spells_40", "unauthorised_share_40",
    "health_share_40", "late_rate_20", "late_trend_20", "monday_friday_excess_40", "am_pm_asymmetry_40",
    "school_days_since_full_week", "evidence",
    # One block judged by what follows it (issue 13): attendance since the return from the window's
    # longest absence, the share of the window's absence inside that one block, how much of the
    # current absence has a known reason, and how much of the window the school arranged.
    "rate_since_block", "block_share_40", "current_run_known_share", "arranged_share_40",
)
# Monday and Friday are two of five weekdays: absences spread evenly put 40% on them.
EVEN_MONDAY_FRIDAY_SHARE = 0.4
EVIDENCE_SESSIONS = 100


def _share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    return np.divide(part, whole, out=np.zeros(len(part), dtype=np.float64), where=whole > 0)


def feature_matrix(batch: WindowBatch) -> np.ndarray:
    """The model's inputs, one row per snapshot, columns in FEATURE_NAMES order (float64)."""
    b = batch.columns
    rate_20 = rate(b["attended_20"], b["possible_20"])
    baseline = rate(b["earlier_attended"], b["earlier_possible"])
    older_possible = b["possible_40"] - b["possible_20"]
    older_20 = rate(b["attended_40"] - b["attended_20"], older_possible)
    absences = b["possible_40"] - b["attended_40"]
    late_rate = b["late_20"] / np.maximum(b["possible_20"], 1)
    X = np.column_stack([
        rate(b["attended_10"], b["possible_10"]),
        rate_20,
        rate(b["attended_40"], b["possible_40"]),
        rate(b["attended_ytd"], b["possible_ytd"]),
        baseline,
        baseline - rate_20,
        rate_20 - older_20,
        b["current_absence_run"],
        b["longest_absence_run_40"],
        b["absence_spells_40"],
        _share(b["unauthorised_40"], absences),
        _share(b["health_40"], absences),
        late_rate,
        late_rate - b["late_previous_20"] / np.maximum(older_possible, 1),
        np.where(absences > 0, _share(b["monday_friday_absences_40"], absences) - EVEN_MONDAY_FRIDAY_SHARE, 0.0),
        b["am_absences_40"] / np.maximum(b["am_possible_40"], 1) - b["pm_absences_40"] / np.maximum(b["pm_possible_40"], 1),
        b["sessions_since_full_week"] / 2,
        np.minimum(b["possible_ytd"], EVIDENCE_SESSIONS) / EVIDENCE_SESSIONS,
        rate(b["attended_since_block"], b["possible_since_block"]),
        _share(b["longest_absence_run_40"], absences),
        _share(b["current_run_explained"] + b["current_run_leave"], b["current_absence_run"]),
        _share(b["arranged_40"], b["possible_40"]),
    ]).astype(np.float64)
    return X


def features_batch(snapshots: Sequence[Snapshot]) -> tuple[WindowBatch, np.ndarray]:
    batch = summarise_batch(snapshots)
    return batch, feature_matrix(batch)


def features(state: PupilState) -> tuple[WindowSummary, tuple[float, ...]]:
    """One pupil's counts and feature row (the batch function on a batch of one)."""
    batch, X = features_batch([snapshot(state)])
    return batch.row(0), tuple(float(v) for v in X[0])
