"""Offline replay: the stream's state, features, model and policy, in-process, over a CSV.

No broker. Marks are taken in file order, exactly as the worker would see them per pupil,
so replay raises the same interventions as the stream for the same input.

Two paths give the same report, events and dead letters: `replay_file` feeds the engine
micro-batches of marks read row by row; `replay_columnar` takes a file already read into columns
(streams.mark_columns) and replays it in columns (models.columnar), many times faster. Dead
letters of the columnar path are written in line order.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from models.columnar import ColumnarSource, replay_columns
from models.engine import BatchResult, DecisionEngine
from models.state import PupilState
from schemas.deadletter import DeadLetter, dead_letter
from schemas.events import InterventionEvent
from schemas.interchange import CsvRow, read_marks
from schemas.marks import DEFAULT_LIMITS, MarkLimits

BATCH = 1000


class MarkProcessor(Protocol):
    """What replay drives: the DecisionEngine, or something wrapping it (evaluation's observer)."""

    def process(self, marks: list, states: dict[str, PupilState]) -> BatchResult: ...


@dataclass
class ReplayReport:
    read: int = 0
    applied: int = 0
    dead_lettered: int = 0
    events: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    states: dict[str, PupilState] = field(default_factory=dict)
    applied_rows: Any = None  # columnar replay: bool per valid mark, applied (not older than the window)
    engine_pupils: int = 0  # columnar replay: pupils replayed mark by mark (sessions out of date order)


def _batches(rows: Iterator[CsvRow], size: int) -> Iterator[list[CsvRow]]:
    batch: list[CsvRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def replay_file(path: Path, engine: MarkProcessor, *, out: TextIO | None = None,
                dead_letters: TextIO | None = None, today: dt.date | None = None,
                limits: MarkLimits = DEFAULT_LIMITS, batch_size: int = BATCH,
                on_rows: Callable[[int], None] | None = None) -> tuple[ReplayReport, list[InterventionEvent]]:
    """Run `engine` over the CSV in file order, in batches; `on_rows(n)` is told after each batch
    how many rows it read (for a progress bar)."""
    report = ReplayReport()
    events: list[InterventionEvent] = []

    def reject(letter: DeadLetter) -> None:
        report.dead_lettered += 1
        if dead_letters is not None:
            dead_letters.write(letter.model_dump_json() + "\n")

    for batch in _batches(read_marks(path, today=today, limits=limits), batch_size):
        report.read += len(batch)
        valid = [row for row in batch if row.mark is not None]
        for row in batch:
            if row.rejection is not None:
                reject(dead_letter(row.rejection, row.raw, stage="replay", source_file=str(path), line=row.line))
        result = engine.process([row.mark for row in valid], report.states)
        for index, rejection in result.rejected:
            row = valid[index]
            reject(dead_letter(rejection, row.raw, stage="replay", source_file=str(path), line=row.line))
        report.applied += len(valid) - len(result.rejected)
        report.outcomes.update({outcome.value: count for outcome, count in result.outcomes.items() if count})
        for event in result.events:
            events.append(event)
            if out is not None:
                out.write(event.model_dump_json() + "\n")
        report.events += len(result.events)
        if on_rows is not None:
            on_rows(len(batch))
    return report, events


def replay_columnar(source: ColumnarSource, engine: DecisionEngine, *, out: TextIO | None = None,
                    dead_letters: TextIO | None = None, keep_states: bool = True,
                    ) -> tuple[ReplayReport, list[InterventionEvent]]:
    """`replay_file`'s report and events for a file read into columns (module docstring)."""
    result = replay_columns(engine, source.columns, keep_states=keep_states)
    report = ReplayReport(read=source.read, applied=len(source.columns) - len(result.rejected),
                          events=len(result.events), outcomes=Counter(result.outcomes),
                          states=result.states if result.states is not None else {}, applied_rows=result.applied,
                          engine_pupils=result.engine_pupils)
    lines = source.columns.line
    refused = {int(lines[row]): rejection for row, rejection in result.rejected}
    raw = source.raw_lines(sorted(refused)) if refused else {}
    letters = [(row.line, row.rejection, row.raw) for row in source.rejected]
    letters += [(line, rejection, raw.get(line, b"")) for line, rejection in refused.items()]
    letters.sort(key=lambda letter: letter[0])
    report.dead_lettered = len(letters)
    if dead_letters is not None:
        for line, rejection, content in letters:
            dead_letters.write(dead_letter(rejection, content, stage="replay", source_file=str(source.path),
                                           line=line).model_dump_json() + "\n")
    if out is not None:
        for event in result.events:
            out.write(event.model_dump_json() + "\n")
    return report, result.events
