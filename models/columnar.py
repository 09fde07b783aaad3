"""Replay and backtest in columns: a year of marks as numpy arrays, the stream's own rules.

`replay_columns(engine, columns)` gives exactly what `DecisionEngine.process` gives when the same
valid marks are fed to it in file order, in any micro-batches: the same interventions in the
same order, the same marks refused as older than the state window, the same apply outcomes and
the same final pupil states (tests/test_columnar*.py hold it to that on generated and simulated
cohorts with duplicates, amendments, late corrections and out-of-order rows).

It shares the engine's definitions rather than restating them:
  * counts and features: `models.features.summarise_windows` and `feature_matrix`, the functions
    the stream calls, over one timeline per pupil with a window per mark;
  * policy: `policy_inputs`, `health_needs`, `can_raise` and `decide` themselves, called in mark
    order per pupil, on the rows where they can act (the engine's `health_candidates`, and
    `concern_candidates` narrowed by `concern_due` at the row's score, say which; skipped rows
    are the ones where those functions return None and change nothing);
  * scoring and events: the engine's `_score` (distinct rows once) and `_publish` (one
    attribution call, `build_event`, the support-plan rule);
  * which recording of a session wins: `schemas.recording.supersedes`, as one integer key
    (`recording_key`, checked against it).

What is computed in columns is the pupil state's bookkeeping: for a pupil whose sessions are
first recorded in date order (a register export's order, whatever amendments, duplicates and
late corrections follow), the state after each mark is the pupil's final register cut at the
latest session seen, with the window's later amendments undone for the marks before them, and
the sessions that slid out of the window this year counted from the same register. A pupil
whose sessions arrive out of date order (a register taken after a later one, leave entered
ahead of the days between) is replayed by the engine itself, mark by mark in file order
(`ColumnarReplay.engine_pupils` says how many).
"""

from __future__ import annotations

import datetime as dt
import gc
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from models.engine import (
    BatchResult,
    DecisionEngine,
    PolicyRows,
    _Decided,
    concern_candidates,
    concern_due,
    health_candidates,
)
from models.features import (
    FLAGS,
    STAT_NAMES,
    WindowBatch,
    feature_matrix,
    summarise_windows,
    timelines,
)
from models.history import RegisterYear
from models.policy import PolicyState, decide, health_needs, policy_inputs
from models.state import (
    ATTENDED,
    HEALTH,
    OVERFLOW,
    POSSIBLE,
    SECONDS_PER_DAY,
    ApplyOutcome,
    PupilState,
    cached_academic_year,
    cached_year_start,
    outside_window,
)
from schemas.codes import BY_INDEX, CODES
from schemas.events import InterventionEvent
from schemas.marks import MarkRejected, RegisterMark, RejectReason, Session
from schemas.recording import RECORDING_EPOCH, recording_stamp, supersedes

# A pupil's timeline is a grid row of two slots a day; a pupil spanning more days than this
# (a date typed years out) is left to the engine rather than widening every pupil's row.
MAX_SPAN_DAYS = 3 * 366
# Pupils are taken in chunks of about this many marks, to bound the arrays' memory. Smaller
# chunks reuse the memory the last one freed and stay in the cache: a year of 2,000 pupils
# (770,000 marks) in a fresh process took 3.3 s as one chunk and 2.6 s in chunks of 200,000
# (the same events, byte for byte); below about 100,000 the per-chunk work starts to cost more.
CHUNK_MARKS = 200_000
ENGINE_BATCH = 2000
_CODE_BITS = 8
_POSSIBLE = np.frombuffer(POSSIBLE, dtype=np.uint8)
_ATTENDED = np.frombuffer(ATTENDED, dtype=np.uint8)
_HEALTH = np.frombuffer(HEALTH, dtype=np.uint8)


def recording_key(stamp, code):
    """`(stamp, code)` as one integer with the order `schemas.recording.supersedes` gives them:
    supersedes(a, ca, b, cb) == (recording_key(a, ca) > recording_key(b, cb)) (tested)."""
    return (np.asarray(stamp, dtype=np.int64) << _CODE_BITS) | np.asarray(code, dtype=np.int64)


assert supersedes(2, 1, 1, 200) and recording_key(2, 1) > recording_key(1, 200)


@dataclass
class MarkColumns:
    """Valid marks in file order, one array per field (a columnar reader's output)."""

    pupil: np.ndarray  # int32: index into pupil_ids
    school: np.ndarray  # int32: index into school_ids
    ordinal: np.ndarray  # int64: the session's day
    pm: np.ndarray  # bool
    code: np.ndarray  # uint8: code index (schemas.codes)
    stamp: np.ndarray  # int64: recording stamp (schemas.recording)
    line: np.ndarray  # int64: line in the source file (0 when not from a file)
    pupil_ids: list[str]
    school_ids: list[str]

    def __len__(self) -> int:
        return len(self.pupil)

    @property
    def school_days(self) -> list[dt.date]:
        """The days the marks fall on, in date order."""
        return [dt.date.fromordinal(int(o)) for o in np.unique(self.ordinal)]

    def mark(self, row: int) -> RegisterMark:
        """The mark of a row, as the engine takes it (recorded_at to the whole second, which is
        all the state keeps)."""
        return RegisterMark.from_checked(
            schema_version=1, school_id=self.school_ids[self.school[row]], pupil_id=self.pupil_ids[self.pupil[row]],
            date=dt.date.fromordinal(int(self.ordinal[row])), session=Session.PM if self.pm[row] else Session.AM,
            code=BY_INDEX[self.code[row]].code,  # type: ignore[union-attr]
            recorded_at=RECORDING_EPOCH + dt.timedelta(seconds=int(self.stamp[row])), original_code=None)

    @classmethod
    def from_marks(cls, marks: Iterable[RegisterMark], lines: Sequence[int] | None = None) -> MarkColumns:
        """Columns of already-validated marks, held or streamed (tests, training's validation cohort)."""
        builder = MarkColumnsBuilder()
        for mark in marks:
            builder.add(mark)
        return builder.build(lines)


class MarkColumnsBuilder:
    """Columns of validated marks collected one at a time (a stream being read for another use)."""

    def __init__(self) -> None:
        self._pupils: dict[str, int] = {}
        self._schools: dict[str, int] = {}
        self._pupil, self._school = array("i"), array("i")
        self._ordinal, self._stamp = array("q"), array("q")
        self._pm, self._code = array("B"), array("B")

    def add(self, mark: RegisterMark) -> None:
        self._pupil.append(self._pupils.setdefault(mark.pupil_id, len(self._pupils)))
        self._school.append(self._schools.setdefault(mark.school_id, len(self._schools)))
        self._ordinal.append(mark.date.toordinal())
        self._pm.append(mark.session is Session.PM)
        self._code.append(CODES[mark.code].index)
        self._stamp.append(recording_stamp(mark.recorded_at))

    def build(self, lines: Sequence[int] | None = None) -> MarkColumns:
        def column(values: array, dtype: type) -> np.ndarray:
            return np.frombuffer(values, dtype=dtype).astype(dtype, copy=True)

        return MarkColumns(
            pupil=column(self._pupil, np.int32), school=column(self._school, np.int32),
            ordinal=column(self._ordinal, np.int64), pm=column(self._pm, np.uint8).astype(bool),
            code=column(self._code, np.uint8), stamp=column(self._stamp, np.int64),
            line=np.asarray(lines if lines is not None else np.zeros(len(self._pupil)), dtype=np.int64),
            pupil_ids=list(self._pupils), school_ids=list(self._schools))


class ColumnarSource(Protocol):
    """A marks file read into columns (streams.mark_columns.ColumnarFile): its valid marks, its
    rejected rows (schemas.interchange.CsvRow), how many data rows it had, and its lines back."""

    path: Any
    columns: MarkColumns
    rejected: list
    read: int

    def raw_lines(self, numbers: Sequence[int]) -> dict[int, bytes]: ...


@dataclass
class ColumnarReplay:
    events: list[InterventionEvent] = field(default_factory=list)
    event_rows: list[int] = field(default_factory=list)  # the row of each event's mark
    rejected: list[tuple[int, MarkRejected]] = field(default_factory=list)  # rows refused, in row order
    applied: np.ndarray | None = None  # bool per row: applied to its pupil's state
    outcomes: Counter[str] = field(default_factory=Counter)  # ApplyOutcome value -> marks
    states: dict[str, PupilState] | None = None
    windows: WindowBatch | None = None  # with keep_features: the counts of every mark that changed a record
    window_rows: np.ndarray | None = None  # ... and the row of each
    columnar_pupils: int = 0
    engine_pupils: int = 0  # replayed mark by mark by the engine (sessions out of date order, or too wide a span)
    scored: int = 0


# -- segmented scans ---------------------------------------------------------------------------
def _starts(groups: np.ndarray) -> np.ndarray:
    """True where a run of equal values begins."""
    start = np.ones(len(groups), dtype=bool)
    start[1:] = groups[1:] != groups[:-1]
    return start


def _running_max(values: np.ndarray, start: np.ndarray, inclusive: bool) -> np.ndarray:
    """Maximum of `values` so far within each run (runs begin where `start`); exclusive: of the
    values before (the run's first element gets -1). Values must be >= -1 and < 2**40."""
    run = np.cumsum(start) - 1
    shifted = values + (run << 40)
    scanned = np.maximum.accumulate(shifted) - (run << 40)
    if inclusive:
        return scanned
    previous = np.empty_like(scanned)
    previous[1:] = scanned[:-1]
    previous[start] = -1
    return previous


def replay_columns(engine: DecisionEngine, columns: MarkColumns, *, keep_states: bool = True,
                   keep_features: bool = False) -> ColumnarReplay:
    """The engine's replay of `columns` in file order (module docstring), in columns. With
    `keep_features`, the window counts of every mark replayed in columns are kept (for tests)."""
    n = len(columns)
    out = ColumnarReplay(applied=np.zeros(n, dtype=bool), states={} if keep_states else None)
    kept: list[tuple[np.ndarray, WindowBatch]] | None = [] if keep_features else None
    if not n:
        return out
    pupil = columns.pupil.astype(np.int64)
    session = columns.ordinal.astype(np.int64) * 2 + columns.pm
    by_pupil = np.argsort(pupil, kind="stable")  # each pupil's rows in file order
    engine_pupils = _out_of_order_pupils(pupil, session, columns.ordinal, by_pupil)
    on_engine = np.zeros(len(columns.pupil_ids), dtype=bool)
    on_engine[engine_pupils] = True
    events: list[tuple[int, int, InterventionEvent]] = []
    rows_of = np.split(by_pupil, np.flatnonzero(np.diff(pupil[by_pupil])) + 1)
    fast_chunk: list[np.ndarray] = []
    fast_rows = 0
    for rows in rows_of:
        if on_engine[pupil[rows[0]]]:
            continue
        fast_chunk.append(rows)
        fast_rows += len(rows)
        if fast_rows >= CHUNK_MARKS:
            _columnar_chunk(engine, columns, np.concatenate(fast_chunk), out, events, kept)
            fast_chunk, fast_rows = [], 0
    if fast_chunk:
        _columnar_chunk(engine, columns, np.concatenate(fast_chunk), out, events, kept)
    if kept is not None:
        out.window_rows = np.concatenate([rows for rows, _ in kept]) if kept else np.zeros(0, dtype=np.int64)
        out.windows = WindowBatch(
            np.concatenate([b.latest_ordinal for _, b in kept]) if kept else np.zeros(0, dtype=np.int64),
            {name: np.concatenate([b.columns[name] for _, b in kept]) if kept else np.zeros(0, dtype=np.int64)
             for name in STAT_NAMES})
    engine_rows = np.flatnonzero(on_engine[pupil])
    if len(engine_rows):
        _engine_rows(engine, columns, engine_rows, out, events)
    present = np.unique(pupil)
    out.engine_pupils = int(on_engine[present].sum())
    out.columnar_pupils = len(present) - out.engine_pupils
    events.sort(key=lambda item: (item[0], item[1]))
    out.events = [event for _, _, event in events]
    out.event_rows = [row for row, _, _ in events]
    out.rejected.sort(key=lambda item: item[0])
    return out


def _out_of_order_pupils(pupil: np.ndarray, session: np.ndarray, ordinal: np.ndarray,
                         by_pupil: np.ndarray) -> np.ndarray:
    """Pupils whose sessions are not first recorded in date order, or whose dates span too much."""
    by_session = np.lexsort((np.arange(len(pupil)), session, pupil))
    first = np.zeros(len(pupil), dtype=bool)
    first[by_session[_starts(pupil[by_session] * (1 << 22) + session[by_session])]] = True
    firsts = by_pupil[first[by_pupil]]  # each pupil's first recordings, in file order
    who, when = pupil[firsts], session[firsts]
    backwards = (who[1:] == who[:-1]) & (when[1:] <= when[:-1])
    grouped = pupil[by_pupil]
    begins = np.flatnonzero(_starts(grouped))
    days = ordinal[by_pupil]
    span = np.maximum.reduceat(days, begins) - np.minimum.reduceat(days, begins)
    wide = grouped[begins][span >= MAX_SPAN_DAYS]
    return np.union1d(np.unique(who[1:][backwards]), wide)


def _engine_rows(engine: DecisionEngine, columns: MarkColumns, rows: np.ndarray, out: ColumnarReplay,
                 events: list[tuple[int, int, InterventionEvent]]) -> None:
    """The engine itself over these rows, in file order and in micro-batches."""
    states: dict[str, PupilState] = {}
    for begin in range(0, len(rows), ENGINE_BATCH):
        batch = rows[begin:begin + ENGINE_BATCH]
        result = engine.process([columns.mark(int(row)) for row in batch], states)
        refused = {index for index, _ in result.rejected}
        out.rejected.extend((int(batch[index]), rejection) for index, rejection in result.rejected)
        out.applied[[row for index, row in enumerate(batch) if index not in refused]] = True
        out.outcomes.update({outcome.value: count for outcome, count in result.outcomes.items() if count})
        out.scored += result.scored
        for sequence, (event, index) in enumerate(zip(result.events, result.event_marks)):
            events.append((int(batch[index]), sequence, event))
    if out.states is not None:
        out.states.update(states)


@dataclass
class _Chunk:
    """The marks of some pupils (all of each pupil's marks), as the columnar steps see them."""

    rows: np.ndarray  # global row of each mark, grouped by pupil, file order within
    local: np.ndarray  # each mark's pupil as 0..P-1 within the chunk
    pupils: np.ndarray  # global pupil index of each local pupil
    session: np.ndarray
    ordinal: np.ndarray
    code: np.ndarray
    key: np.ndarray  # recording_key
    latest: np.ndarray  # the pupil's latest session (slot number) once this mark is applied
    day0: int  # ordinal of the grid's first day
    width: int  # slots per grid row


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a chunk is replayed. A chunk builds tens of thousands of
    small objects that form no cycles (policy rows, decisions, events), and each collection they
    trigger walks every object the process holds (the model, the caches) to free nothing: a
    tenth of a warm replay's time. Anything a chunk does leave in a cycle is collected once the
    collector is back on, which it is however the chunk ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@collector_paused()
def _columnar_chunk(engine: DecisionEngine, columns: MarkColumns, rows: np.ndarray, out: ColumnarReplay,
                    events: list[tuple[int, int, InterventionEvent]],
                    kept: list[tuple[np.ndarray, WindowBatch]] | None) -> None:
    window = engine.window_days
    pupil = columns.pupil[rows].astype(np.int64)
    starts = _starts(pupil)
    local = np.cumsum(starts) - 1
    session = columns.ordinal[rows].astype(np.int64) * 2 + columns.pm[rows]
    day0 = int(columns.ordinal[rows].min())
    chunk = _Chunk(rows=rows, local=local, pupils=pupil[starts], session=session,
                   ordinal=columns.ordinal[rows].astype(np.int64), code=columns.code[rows].astype(np.int64),
                   key=recording_key(columns.stamp[rows], columns.code[rows]),
                   latest=_running_max(session, starts, inclusive=True), day0=day0,
                   width=2 * (int(columns.ordinal[rows].max()) - day0 + 1))

    # 1. Each mark against its pupil's state: refused (older than the window), new, amended...
    latest_day = chunk.latest >> 1
    refused = chunk.ordinal < latest_day - window + 1  # only a re-recording can be: first ones set `latest`
    by_session = np.lexsort((np.arange(len(rows)), session, local))
    group_start = _starts(local[by_session] * (1 << 22) + session[by_session])
    keys = np.where(refused, -1, chunk.key)[by_session]
    held = np.empty(len(rows), dtype=np.int64)
    held[by_session] = _running_max(keys, group_start, inclusive=False)
    first = held < 0
    held_code = held & ((1 << _CODE_BITS) - 1)
    later = chunk.key > held
    same = chunk.code == held_code
    outcome = np.where(first, 0, np.where(same, 2, np.where(later, 1, 3)))  # NEW, AMENDED, DUPLICATE, SUPERSEDED
    outcome[refused] = -1
    for value, name in enumerate((ApplyOutcome.NEW, ApplyOutcome.AMENDED, ApplyOutcome.DUPLICATE,
                                  ApplyOutcome.SUPERSEDED)):
        count = int((outcome == value).sum())
        if count:
            out.outcomes[name.value] += count
    out.applied[rows[~refused]] = True
    for i in np.flatnonzero(refused):
        out.rejected.append((int(rows[i]), MarkRejected(RejectReason.OUTSIDE_STATE_WINDOW, str(
            outside_window(int(chunk.ordinal[i]), window, int(latest_day[i]))))))

    # 2. The final register: each session's winning recording among the applied marks.
    winner = np.full(len(rows), -1, dtype=np.int64)
    winner[by_session] = _running_max(keys, group_start, inclusive=True)
    last_of_group = np.flatnonzero(np.append(group_start[1:], True))
    final_rows = by_session[last_of_group]  # one row per (pupil, session): its group's last
    final_key = winner[final_rows]
    recorded = final_key >= 0
    final_rows, final_key = final_rows[recorded], final_key[recorded]
    n_pupils = len(chunk.pupils)
    codes = np.zeros((n_pupils, chunk.width), dtype=np.uint8)
    slot = session - 2 * day0
    codes[local[final_rows], slot[final_rows]] = final_key & ((1 << _CODE_BITS) - 1)
    grid = FLAGS[codes]

    # 3. The marks that change a record (new or amended) are decided on, each on the state after it:
    #    a window on the pupil's register, or, where a later amendment must be undone, a copy of
    #    the window as it stood (the year's earlier sessions then come in as the state's folded totals).
    pending = np.flatnonzero((outcome == 0) | (outcome == 1))
    latest = chunk.latest[pending]
    latest_ordinal = latest >> 1
    days, day_index = np.unique(latest_ordinal, return_inverse=True)
    year_start = np.array([cached_year_start(cached_academic_year(int(d))) for d in days], dtype=np.int64)[day_index]
    origin_day = latest_ordinal - window + 1
    private_of, patches = _later_amendments(chunk, outcome, by_session, group_start, window, pending)
    shared = private_of < 0
    columns_of: dict[str, np.ndarray] = {}
    for rows_here, batch_here in ((np.flatnonzero(shared), _on_register(chunk, grid, pending, shared, latest,
                                                                        year_start, origin_day)),
                                  (np.flatnonzero(~shared), _as_it_stood(chunk, codes, grid, pending, private_of,
                                                                         patches, latest, year_start, origin_day))):
        if batch_here is None:
            continue
        for name, column in batch_here.columns.items():
            columns_of.setdefault(name, np.zeros(len(pending), dtype=np.int64))[rows_here] = column
    batch = WindowBatch(latest_ordinal, {name: columns_of[name] for name in STAT_NAMES})
    if kept is not None:
        kept.append((rows[pending], batch))
    inputs = policy_inputs(batch.columns, batch.latest_ordinal, engine.policy, (latest & 1) == 1)  # latest slot a PM

    # 4. The policy, pupil by pupil in mark order, where it can act; scores where it needs them.
    policies = [PolicyState() for _ in range(n_pupils)]
    decided, scores, scored = _walk(engine, inputs, local[pending], policies, batch)
    out.scored += scored

    # 5. Events, as the engine publishes them.
    if decided:
        _publish(engine, chunk, columns, pending, batch, decided, scores, policies, events)
    if out.states is not None:
        _final_states(engine, chunk, columns, codes, final_rows, final_key, policies, out.states)


def _on_register(chunk: _Chunk, grid: np.ndarray, pending: np.ndarray, which: np.ndarray, latest: np.ndarray,
                 year_start: np.ndarray, origin_day: np.ndarray) -> WindowBatch | None:
    """Counts of the pending marks whose state is their pupil's final register up to their latest
    session: one timeline per pupil, a window per mark, the year's earlier sessions counted from
    the same timeline (what the state folded)."""
    if not which.any():
        return None
    day0 = chunk.day0
    timeline = chunk.local[pending[which]]
    sessions = timelines(grid, np.full(len(grid), day0, dtype=np.int64))
    end_slot = latest[which] - 2 * day0 + 1
    origin_slot = np.maximum(2 * (origin_day[which] - day0), 0)
    year_slot = np.clip(2 * (year_start[which] - day0), 0, end_slot)
    zeros = np.zeros(len(timeline), dtype=np.int64)
    return summarise_windows(sessions, sessions.index(timeline, origin_slot), sessions.index(timeline, end_slot),
                             sessions.index(timeline, year_slot), zeros, zeros, zeros, latest[which] >> 1)


def _as_it_stood(chunk: _Chunk, codes: np.ndarray, grid: np.ndarray, pending: np.ndarray, private_of: np.ndarray,
                 patches: tuple[np.ndarray, np.ndarray, np.ndarray], latest: np.ndarray, year_start: np.ndarray,
                 origin_day: np.ndarray) -> WindowBatch | None:
    """Counts of the pending marks that must not see a later amendment: each mark's window copied
    from the register with the amended sessions as they stood at that mark, and the year's
    sessions older than the window as the state folded them (the state's rule: possible sessions
    this year; they cannot change once out of the window, so the register has them right)."""
    which = np.flatnonzero(private_of >= 0)
    if not len(which):
        return None
    day0 = chunk.day0
    width = int(2 * ((latest[which] >> 1) - origin_day[which] + 1).max())  # the state window, 2 slots a day
    pupil = chunk.local[pending[which]]
    start = 2 * (origin_day[which] - day0)
    slots = start[:, None] + np.arange(width)[None, :]
    inside = (slots >= 0) & (slots < grid.shape[1])
    private = np.where(inside, grid[pupil[:, None], np.where(inside, slots, 0)], 0).astype(np.uint8)
    owner, session, code = patches
    private[owner, session - 2 * origin_day[which][owner]] = FLAGS[code]
    sessions = timelines(private, origin_day[which])
    rows = np.arange(len(which))
    end_slot = latest[which] - 2 * origin_day[which] + 1
    year_slot = np.clip(2 * (year_start[which] - origin_day[which]), 0, end_slot)
    # Folded: this year's possible sessions older than the window, from the register.
    lo = np.clip(2 * (year_start[which] - day0), 0, codes.shape[1])
    hi = np.clip(start, 0, codes.shape[1])
    lo = np.minimum(lo, hi)
    folded = []
    for table in (_POSSIBLE, _ATTENDED & _POSSIBLE, _HEALTH & _POSSIBLE):
        counted = np.zeros((len(codes), codes.shape[1] + 1), dtype=np.int32)
        np.cumsum(table[codes], axis=1, out=counted[:, 1:])
        folded.append((counted[pupil, hi] - counted[pupil, lo]).astype(np.int64))
    return summarise_windows(sessions, sessions.index(rows, np.zeros(len(rows), dtype=np.int64)),
                             sessions.index(rows, end_slot), sessions.index(rows, year_slot), *folded,
                             latest[which] >> 1)


def _later_amendments(chunk: _Chunk, outcome: np.ndarray, by_session: np.ndarray, group_start: np.ndarray,
                      window: int, pending: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The pending marks whose window holds a session amended later (so their state differs from the
    final register there): per pending mark its number among them (-1: none), and the patches
    (that number, the session, the code it had at that mark)."""
    private_of = np.full(len(pending), -1, dtype=np.int64)
    none = (np.zeros(0, dtype=np.int64),) * 3
    # Code changes, per session in mark order: its first recording and every amendment.
    changes = by_session[(outcome[by_session] == 0) | (outcome[by_session] == 1)]
    group = np.cumsum(group_start) - 1
    position = np.empty(len(by_session), dtype=np.int64)
    position[by_session] = np.arange(len(by_session))
    change_group = group[position[changes]]
    amended_group = np.zeros(group[-1] + 1 if len(group) else 0, dtype=bool)
    amended_group[change_group[outcome[changes] == 1]] = True
    changes = changes[amended_group[change_group]]
    if not len(changes):
        return private_of, none
    change_group = group[position[changes]]
    # Each change holds from its mark to the next change of the same session (exclusive); the last
    # is the final register. Marks are numbered within the chunk, which is in pupil-then-file order.
    last = np.append(change_group[1:] != change_group[:-1], True)
    until = np.append(changes[1:], 0)
    segments = np.flatnonzero(~last)
    final_code = chunk.code[changes[last]][np.cumsum(np.append(True, last[:-1])) - 1]
    seg_code = chunk.code[changes[segments]]
    differs = seg_code != final_code[segments]
    seg_from, seg_to = changes[segments][differs], until[segments][differs]
    seg_code = seg_code[differs]
    seg_session = chunk.session[changes[segments]][differs]
    if not len(seg_from):
        return private_of, none
    # The pending marks inside each segment whose window holds the session.
    is_pending = np.zeros(len(chunk.rows), dtype=bool)
    is_pending[pending] = True
    lengths = seg_to - seg_from
    owner = np.repeat(np.arange(len(seg_from)), lengths)
    mark = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + seg_from[owner]
    session = seg_session[owner]
    keep = is_pending[mark] & ((session >> 1) >= (chunk.latest[mark] >> 1) - window + 1)
    mark, owner, session = mark[keep], owner[keep], session[keep]
    if not len(mark):
        return private_of, none
    affected, private_index = np.unique(mark, return_inverse=True)
    private_of[np.searchsorted(pending, affected)] = np.arange(len(affected))
    return private_of, (private_index, session, seg_code[owner])


def _walk(engine: DecisionEngine, inputs, pupil_of_row: np.ndarray, policies: list[PolicyState],
          batch) -> tuple[list[_Decided], np.ndarray, int]:
    """`health_needs` and `decide` per pupil in mark order, on the rows where they can act: the
    engine's candidates where a concern is due at their score, and every row while the pupil is
    flagged. Scores are computed for the candidate rows, then, for pupils once flagged, for all
    their later rows."""
    config = engine.policy
    n = len(pupil_of_row)
    rows = PolicyRows(inputs)
    # Health needs: the first row of each pupil's year past the threshold (the replay starts from no
    # state, so it is raised there, and `health_needs` returns None on the year's later rows).
    health = np.zeros(n, dtype=bool)
    over = health_candidates(inputs, config)
    if len(over):
        year = inputs.columns["year"][over]
        order_over = np.lexsort((over, year, pupil_of_row[over]))
        key = pupil_of_row[over][order_over] * 10_000 + year[order_over]
        health[over[order_over][_starts(key)]] = True
    raisable = concern_candidates(inputs, config)
    scores = np.full(n, np.nan)
    scored = _score_rows(engine, batch, np.flatnonzero(raisable), scores)
    # Of those, the rows where an unflagged pupil's `decide` can raise at its score; elsewhere it
    # returns None and changes nothing, so a pupil not flagged stops only here.
    raisable &= concern_due(inputs, config, scores)
    visit = health | raisable
    rows.prefetch(np.flatnonzero(visit))
    order = np.argsort(pupil_of_row, kind="stable")
    owners = pupil_of_row[order]
    bounds = np.flatnonzero(np.append(True, owners[1:] != owners[:-1]))
    ends = np.append(bounds[1:], len(order))
    # Each pupil's stops (positions in their own rows), found for all pupils at once.
    visited_at = np.flatnonzero(visit[order])
    cuts = np.searchsorted(visited_at, ends).tolist()
    decided: list[tuple[int, int, object]] = []
    paused: list[tuple[int, np.ndarray, int, list[int]]] = []
    first = 0
    for begin, end, cut in zip(bounds.tolist(), ends.tolist(), cuts):
        stops = (visited_at[first:cut] - begin).tolist()
        first = cut
        if not stops:
            continue
        pupil_rows = order[begin:end]
        owner = int(owners[begin])
        resume = _walk_pupil(policies[owner], config, pupil_rows, 0, stops, health, raisable, scores, rows, decided)
        if resume is not None:
            paused.append((owner, pupil_rows, resume, stops))
    if paused:
        later = np.concatenate([pupil_rows[resume:] for _, pupil_rows, resume, _ in paused])
        scored += _score_rows(engine, batch, later[np.isnan(scores[later])], scores)
        rows.prefetch(later)  # a flagged pupil's every later row reaches `decide`
        for owner, pupil_rows, resume, stops in paused:
            _walk_pupil(policies[owner], config, pupil_rows, resume, stops, health, raisable, scores, rows, decided)
    decided.sort(key=lambda item: (item[0], item[1]))
    events = [_Decided(row, decision) for row, _, decision in decided]  # type: ignore[arg-type]
    missing = np.array(sorted({d.row for d in events if np.isnan(scores[d.row])}), dtype=np.int64)
    scored += _score_rows(engine, batch, missing, scores)  # health events carry a score too
    return events, scores, scored


def _walk_pupil(policy: PolicyState, config, pupil_rows: np.ndarray, start: int, stops: list[int],
                health: np.ndarray, raisable: np.ndarray, scores: np.ndarray, rows: PolicyRows,
                decided: list[tuple[int, int, object]]) -> int | None:
    """Walk one pupil's rows from `start` (every row while flagged, else the `stops`, the rows a
    rule can act on); the position to resume from once later rows are scored, if one is unscored."""
    position, count = start, len(pupil_rows)
    while position < count:
        if not policy.flagged:
            following = bisect_left(stops, position)
            if following == len(stops):
                return None
            position = stops[following]
        row = int(pupil_rows[position])
        if health[row]:  # (again on resuming: it is then None, the year's event having been decided)
            decision = health_needs(policy, config, rows[row])
            if decision is not None:
                decided.append((row, 0, decision))
        if policy.flagged or raisable[row]:
            score = scores[row]
            if score != score:  # NaN: not scored yet
                return position
            decision = decide(policy, config, float(score), rows[row])
            if decision is not None:
                decided.append((row, 1, decision))
        position += 1
    return None


def _score_rows(engine: DecisionEngine, batch, wanted: np.ndarray, scores: np.ndarray) -> int:
    """Scores of the wanted rows into `scores` (each distinct feature row once, as the engine does)."""
    if not len(wanted):
        return 0
    X = feature_matrix(_subset(batch, wanted))
    result = BatchResult()
    scores[wanted] = engine._score(X, [True] * len(wanted), result)  # noqa: SLF001 - the engine's own scoring
    return result.scored


def _subset(batch, rows: np.ndarray):
    return WindowBatch(batch.latest_ordinal[rows], {name: column[rows] for name, column in batch.columns.items()})


def _publish(engine: DecisionEngine, chunk: _Chunk, columns: MarkColumns, pending: np.ndarray, batch,
             decided: list[_Decided], scores: np.ndarray, policies: list[PolicyState],
             events: list[tuple[int, int, InterventionEvent]]) -> None:
    rows = np.array(sorted({d.row for d in decided}), dtype=np.int64)
    index = {int(row): i for i, row in enumerate(rows)}
    marks = pending[rows]
    school = _school_at(chunk, columns)[marks]
    who = [(columns.pupil_ids[int(chunk.pupils[chunk.local[m]])], columns.school_ids[int(s)],
            dt.date.fromordinal(int(chunk.ordinal[m])), policies[int(chunk.local[m])])
           for m, s in zip(marks, school)]
    subset = _subset(batch, rows)
    result = BatchResult()
    engine._publish([_Decided(index[d.row], d.decision) for d in decided], scores[rows].tolist(),  # noqa: SLF001
                    feature_matrix(subset), subset, who, chunk.rows[marks].tolist(), result)
    for sequence, (event, row) in enumerate(zip(result.events, result.event_marks)):
        events.append((int(row), sequence, event))


def _school_at(chunk: _Chunk, columns: MarkColumns) -> np.ndarray:
    """Per mark, the pupil's school as its state holds it: the school of the latest mark that
    moved the pupil to a later day (the first mark sets it)."""
    starts = _starts(chunk.local)
    before = _running_max(chunk.ordinal, starts, inclusive=False)
    advancing = starts | (chunk.ordinal > before)
    source = np.where(advancing, np.arange(len(chunk.rows)), -1)
    source = np.maximum.accumulate(source)  # within a pupil: its first mark always advances
    return columns.school[chunk.rows[source]]


def _final_states(engine: DecisionEngine, chunk: _Chunk, columns: MarkColumns, codes: np.ndarray,
                  final_rows: np.ndarray, final_key: np.ndarray, policies: list[PolicyState],
                  states: dict[str, PupilState]) -> None:
    """Each pupil's state after all its marks, built from the final register."""
    window = engine.window_days
    width = 2 * window
    n_pupils = len(chunk.pupils)
    stamps = np.zeros(codes.shape, dtype=np.int64)
    stamps[chunk.local[final_rows], chunk.session[final_rows] - 2 * chunk.day0] = final_key >> _CODE_BITS
    last = np.append(np.flatnonzero(np.diff(chunk.local)), len(chunk.local) - 1)
    latest_day = chunk.latest[last] >> 1
    origin = latest_day - window + 1
    slots = 2 * (origin - chunk.day0)[:, None] + np.arange(width)[None, :]
    inside = slots >= 0
    taken = np.where(inside, slots, 0)
    rows = np.arange(n_pupils)[:, None]
    window_codes = np.where(inside, codes[rows, taken], 0).astype(np.uint8)
    window_stamps = np.where(inside, stamps[rows, taken], 0)
    day = (origin[:, None] + (np.arange(width)[None, :] >> 1))
    offset = window_stamps - (day - (RECORDING_EPOCH.date().toordinal())) * SECONDS_PER_DAY
    fits = (offset >= 0) & (offset < OVERFLOW)
    times = np.where(window_codes == 0, 0, np.where(fits, offset, OVERFLOW)).astype(np.uint16)
    school = _school_at(chunk, columns)[last]
    # What slid out of the window this year (in the state's rule: possible sessions older than
    # the window, from the start of the academic year).
    before_origin = np.arange(codes.shape[1])[None, :] < 2 * (origin - chunk.day0)[:, None]
    year = np.array([cached_academic_year(int(d)) for d in latest_day], dtype=np.int64)
    year_start = np.array([cached_year_start(int(y)) for y in year], dtype=np.int64)
    in_year = np.arange(codes.shape[1])[None, :] >= 2 * (year_start - chunk.day0)[:, None]
    folded = before_origin & in_year
    possible = _POSSIBLE[codes].astype(bool) & folded
    folded_possible = possible.sum(axis=1)
    folded_attended = (_ATTENDED[codes].astype(bool) & possible).sum(axis=1)
    folded_health = (_HEALTH[codes].astype(bool) & possible).sum(axis=1)
    for i in range(n_pupils):
        state = PupilState.__new__(PupilState)
        state.school_id = columns.school_ids[int(school[i])]
        state.window_days = window
        state.origin = int(origin[i])
        state.year = int(year[i])
        state.folded_possible, state.folded_attended = int(folded_possible[i]), int(folded_attended[i])
        state.folded_health = int(folded_health[i])
        state.codes = bytearray(window_codes[i].tobytes())
        state.times = array("H", times[i].tobytes())
        spill = np.flatnonzero((times[i] == OVERFLOW) & (window_codes[i] != 0))
        state.overflow = {int(s): int(window_stamps[i, s]) for s in spill}
        state.policy = policies[i]
        states[columns.pupil_ids[int(chunk.pupils[i])]] = state


def register_year(columns: MarkColumns, applied: np.ndarray) -> RegisterYear:
    """The register as it finally stood, from the applied marks: what `RegisterHistory` records
    mark by mark and `finish()` returns (pupils in order of their first applied mark, each
    session's winning recording, each pupil's school that of their latest school day)."""
    rows = np.flatnonzero(applied)
    pupil = columns.pupil[rows].astype(np.int64)
    ordinal = columns.ordinal[rows].astype(np.int64)
    seen, first_row = np.unique(pupil, return_index=True)
    order = seen[np.argsort(first_row, kind="stable")]
    rank = np.empty(len(columns.pupil_ids), dtype=np.int64)
    rank[order] = np.arange(len(order))
    days = np.unique(ordinal)
    column = np.searchsorted(days, ordinal)
    key = recording_key(columns.stamp[rows], columns.code[rows])
    # Each session's winner: the greatest key (schemas.recording's order).
    cell = (rank[pupil] * len(days) + column) * 2 + columns.pm[rows]
    by_cell = np.lexsort((key, cell))
    last = np.append(cell[by_cell][1:] != cell[by_cell][:-1], True)
    codes = np.zeros(len(order) * len(days) * 2, dtype=np.uint8)
    codes[cell[by_cell][last]] = (key[by_cell][last] & ((1 << _CODE_BITS) - 1)).astype(np.uint8)
    # School: a pupil's first mark's, then that of any mark on or after their latest day so far.
    by_pupil = np.argsort(rank[pupil], kind="stable")
    grouped = rank[pupil][by_pupil]
    starts = _starts(grouped)
    so_far = _running_max(ordinal[by_pupil], starts, inclusive=False)
    takes = starts | (ordinal[by_pupil] >= so_far)
    source = np.maximum.accumulate(np.where(takes, np.arange(len(rows)), -1))
    ends = np.append(np.flatnonzero(starts)[1:] - 1, len(rows) - 1) if len(rows) else np.zeros(0, dtype=np.int64)
    school = columns.school[rows[by_pupil[source[ends]]]] if len(rows) else np.zeros(0, dtype=np.int64)
    return RegisterYear(pupils=[columns.pupil_ids[p] for p in order.tolist()],
                        schools=np.asarray([columns.school_ids[s] for s in school.tolist()], dtype=object),
                        days=days, codes=codes.reshape(len(order), len(days), 2))


__all__ = ["MarkColumns", "ColumnarReplay", "ColumnarSource", "replay_columns", "register_year", "recording_key"]
