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
    origin = np.fromiter((s.origin for s in snapshots), np.int64, n)
    year_slot = np.fromiter((s.year_slot for s in snapshots), np.int64, n)
    if all(len(s.flags) == width for s in snapshots):
        return np.frombuffer(b"".join(s.flags for s in snapshots), dtype=np.uint8).reshape(n, width), origin, year_slot
    flags = np.zeros((n, width), dtype=np.uint8)
    for i, snap in enumerate(snapshots):
        pad = width - len(snap.flags)
        flags[i, pad:] = np.frombuffer(snap.flags, dtype=np.uint8)
        origin[i] -= pad // 2
        year_slot[i] += pad
    return flags, origin, year_slot


def summarise_batch(snapshots: Sequence[Snapshot]) -> WindowBatch:
    """The counts every feature and explanation needs, for each snapshot."""
    flags, origin, year_slot = _stack(snapshots)
    n, width = flags.shape
    possible = (flags & POSSIBLE_BIT).astype(bool)
    attended = (flags & ATTENDED_BIT).astype(bool)
    absent = possible & ~attended
    # Position of each possible session counted from the newest (1 = most recent).
    possible_so_far = np.cumsum(possible, axis=1, dtype=np.int16)
    total_possible = possible_so_far[:, -1:]
    from_end = total_possible - possible_so_far + possible
    total_possible = total_possible[:, 0]

    in_year = np.arange(width)[None, :] >= year_slot[:, None]
    health_all = (flags & HEALTH_BIT).astype(bool)
    year_counts = np.stack([possible & in_year, attended & in_year, absent & health_all & in_year]).sum(
        axis=2, dtype=np.int64)
    possible_ytd = np.fromiter((s.folded_possible for s in snapshots), np.int64, n) + year_counts[0]
    attended_ytd = np.fromiter((s.folded_attended for s in snapshots), np.int64, n) + year_counts[1]
    health_ytd = np.fromiter((s.folded_health for s in snapshots), np.int64, n) + year_counts[2]

    # Consecutive attended possible sessions, in date order; the last slot where ten are reached.
    attended_so_far = np.cumsum(attended, axis=1, dtype=np.int16)
    reset = np.maximum.accumulate(np.where(absent, attended_so_far, 0), axis=1)
    full_week_end = attended & (attended_so_far - reset >= FULL_WEEK_SESSIONS)
    has_full_week = full_week_end.any(axis=1)
    last_end = width - 1 - np.argmax(full_week_end[:, ::-1], axis=1)
    since_full_week = np.where(has_full_week, from_end[np.arange(n), last_end] - 1, total_possible)

    # Everything else looks at the last 40 possible sessions only: work on the slots they span.
    in_recent = possible & (from_end <= RECENT_LONG)
    first = int(np.argmax(in_recent.any(axis=0))) if in_recent.any() else width
    tail = slice(first, width)
    flags, possible, attended, absent, from_end = (a[:, tail] for a in (flags, possible, attended, absent, from_end))
    slot = np.arange(first, width)
    recent_10 = possible & (from_end <= RECENT_SHORT)
    recent_20 = possible & (from_end <= RECENT)
    recent_40 = in_recent[:, tail]
    older_20 = recent_40 & ~recent_20
    recent_20_in_year = recent_20 & in_year[:, tail]
    absent_40 = absent & recent_40
    is_pm = (slot & 1).astype(bool)[None, :]
    weekday = (origin[:, None] + (slot[None, :] >> 1) - 1) % 7
    late = (flags & LATE_BIT).astype(bool)
    possible_40 = recent_40.sum(axis=1, dtype=np.int64)

    # Recent possible sessions as a dense (B, 40) matrix, newest first, for runs and spells.
    rows, cols = np.nonzero(recent_40)
    dense_absent = np.zeros((n, RECENT_LONG), dtype=bool)
    dense_absent[rows, from_end[rows, cols] - 1] = absent[rows, cols]
    newest_attended = np.where(attended & recent_40, from_end, RECENT_LONG + 1).min(axis=1, initial=RECENT_LONG + 1)
    current_run = np.minimum(newest_attended - 1, possible_40)
    in_current_run = recent_40 & (from_end <= current_run[:, None])
    spell_start = dense_absent.copy()
    spell_start[:, 1:] &= ~dense_absent[:, :-1]
    # Newest first: the longest run, and how many possible sessions are newer than it (a strict
    # ">" keeps the most recent of equally long runs).
    longest = np.zeros(n, dtype=np.int64)
    newer_than_longest = np.zeros(n, dtype=np.int64)
    streak = np.zeros(n, dtype=np.int64)
    for position, column in enumerate(dense_absent.T):
        streak = (streak + 1) * column
        longer = streak > longest
        longest = np.where(longer, streak, longest)
        newer_than_longest = np.where(longer, position - streak + 1, newer_than_longest)
    absent_newer = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(dense_absent, axis=1, dtype=np.int64)], axis=1)
    possible_since_block = np.where(longest > 0, newer_than_longest, 0)
    attended_since_block = possible_since_block - absent_newer[np.arange(n), possible_since_block]

    # All the tail counts in one reduction: fewer numpy calls matter more than array size here.
    monday_friday = (weekday == MONDAY) | (weekday == FRIDAY)
    unauthorised = (flags & UNAUTHORISED_BIT).astype(bool)
    health = (flags & HEALTH_BIT).astype(bool)
    arranged = (flags & ARRANGED_BIT).astype(bool)
    masks = {
        "possible_10": recent_10, "attended_10": attended & recent_10,
        "possible_20": recent_20, "attended_20": attended & recent_20,
        "attended_40": attended & recent_40,
        "recent_20_in_year": recent_20_in_year, "attended_20_in_year": attended & recent_20_in_year,
        "unauthorised_40": absent_40 & unauthorised, "health_40": absent_40 & health,
        "current_run_explained": in_current_run & (health | (flags & HOLIDAY_BIT).astype(bool)),
        "current_run_health": in_current_run & health,
        "current_run_leave": in_current_run & (flags & LEAVE_BIT).astype(bool),
        "arranged_20": recent_20 & arranged, "arranged_40": recent_40 & arranged,
        "late_20": late & recent_20, "late_previous_20": late & older_20,
        "monday_friday_absences_40": absent_40 & monday_friday,
        "am_possible_40": recent_40 & ~is_pm, "am_absences_40": absent_40 & ~is_pm,
        "pm_possible_40": recent_40 & is_pm, "pm_absences_40": absent_40 & is_pm,
    }
    counts = dict(zip(masks, np.stack(list(masks.values())).sum(axis=2, dtype=np.int64)))
    columns = {
        "possible_10": counts["possible_10"], "attended_10": counts["attended_10"],
        "possible_20": counts["possible_20"], "attended_20": counts["attended_20"],
        "possible_40": possible_40, "attended_40": counts["attended_40"],
        "possible_ytd": possible_ytd, "attended_ytd": attended_ytd,
        "earlier_possible": possible_ytd - counts["recent_20_in_year"],
        "earlier_attended": attended_ytd - counts["attended_20_in_year"],
        "current_absence_run": current_run.astype(np.int64),
        "current_run_explained": counts["current_run_explained"],
        "current_run_health": counts["current_run_health"],
        "current_run_leave": counts["current_run_leave"],
        "health_absence_ytd": health_ytd,
        "arranged_20": counts["arranged_20"], "arranged_40": counts["arranged_40"],
        "possible_since_block": possible_since_block, "attended_since_block": attended_since_block,
        "longest_absence_run_40": longest,
        "absence_spells_40": spell_start.sum(axis=1, dtype=np.int64),
        **{name: counts[name] for name in (
            "unauthorised_40", "health_40", "late_20", "late_previous_20", "monday_friday_absences_40",
            "am_possible_40", "am_absences_40", "pm_possible_40", "pm_absences_40")},
        "sessions_since_full_week": since_full_week.astype(np.int64),
    }
    return WindowBatch(np.fromiter((s.latest_ordinal for s in snapshots), np.int64, n), columns)


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
