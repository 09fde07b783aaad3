"""What the worker does with a micro-batch of records, independent of Faust.

`handle_marks(records, states, publisher, ...)` is the worker's whole logic for the marks topic,
and `handle_outcomes` for the outcomes topic; the Faust agents (streams.agents) only feed them
records and a publisher. Tests drive them in-process with a fake publisher and a dict store.

Nothing lost: every record ends in exactly one of applied, dead-lettered with a reason, or
re-keyed, and the returned report says which. Bad input is an ordinary rejection; an
unexpected exception while parsing or processing one record dead-letters that record as
`internal_error` (with the exception type, never the pupil's data in a log line) and the rest of
the batch goes on. Only a failure to deliver (the broker) escapes, so the batch is not
acknowledged and is read again.

Order of effects: dead letters, re-keyed marks and interventions are delivered first, then the
state that records them; the caller acknowledges the batch only after this returns, so no
offset is committed ahead of its effects. A crash in between replays the marks, which re-raise
the same decisions under the same event ids.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from models.engine import BatchResult, DecisionEngine
from schemas.deadletter import dead_letter
from schemas.events import InterventionEvent
from schemas.marks import MarkLimits, MarkRejected, RegisterMark, RejectReason, parse_mark_json
from schemas.outcomes import OutcomeAction, OutcomeEvent
from streams.states import BatchStates, ChangelogRecords

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """What the worker needs of one consumed message."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: float  # when the broker appended it (Unix seconds)

    @property
    def where(self) -> str:
        """Where the record is, for log lines (never its content)."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


class Publisher(Protocol):
    """Where the handlers' effects go. `send` queues a record and returns its delivery to await."""

    async def send(self, topic: str, key: bytes, value: bytes) -> Awaitable[Any]: ...

    async def write_state(self, records: ChangelogRecords) -> None: ...


@dataclass(frozen=True, slots=True)
class MarkTopics:
    marks: str
    interventions: str
    dead_letter: str


def internal_error(exc: BaseException, stage: str) -> MarkRejected:
    return MarkRejected(RejectReason.INTERNAL_ERROR, f"{type(exc).__name__} while {stage} this record")


@dataclass
class MarksReport:
    """What became of every record of one batch; consumed = applied + dead-lettered + re-keyed."""

    consumed: int = 0
    applied: Counter[str] = field(default_factory=Counter)  # by ApplyOutcome
    dead_lettered: Counter[str] = field(default_factory=Counter)  # by RejectReason
    rekeyed: int = 0
    events: list[tuple[InterventionEvent, Record]] = field(default_factory=list)
    applied_records: list[Record] = field(default_factory=list)
    scored: int = 0
    scoring_seconds: float = 0.0

    @property
    def reconciles(self) -> bool:
        return self.consumed == sum(self.applied.values()) + sum(self.dead_lettered.values()) + self.rekeyed


def parse_records(records: Sequence[Record], limits: MarkLimits, *, today: dt.date, now: dt.datetime):
    """Split records into valid (mark, record), rejected (rejection, record) and misrouted ones."""
    valid: list[tuple[RegisterMark, Record]] = []
    rejected: list[tuple[MarkRejected, Record]] = []
    misrouted: list[tuple[RegisterMark, Record]] = []
    for record in records:
        try:
            mark = parse_mark_json(record.value, limits=limits, today=today, now=now)
        except MarkRejected as rejection:
            rejected.append((rejection, record))
            continue
        except Exception as exc:  # noqa: BLE001 - a defect meeting odd input: this record alone
            log.error("Internal error parsing %s: %s", record.where, type(exc).__name__)
            rejected.append((internal_error(exc, "parsing"), record))
            continue
        if record.key != mark.pupil_id.encode():
            misrouted.append((mark, record))
        else:
            valid.append((mark, record))
    return valid, rejected, misrouted


def apply_marks(engine: DecisionEngine, valid: Sequence[tuple[RegisterMark, Record]],
                states: BatchStates) -> tuple[BatchResult, list[tuple[MarkRejected, Record]]]:
    """Run the engine on the batch; if it fails, mark by mark, so one bad mark stops nothing."""
    marks = [mark for mark, _ in valid]
    try:
        return engine.process(marks, states), []
    except Exception as exc:  # noqa: BLE001
        log.error("A batch of %d marks failed (%s); retrying mark by mark", len(marks), type(exc).__name__)
    states.discard()
    combined, failed = BatchResult(), []
    for index, (mark, record) in enumerate(valid):
        single = states.child()
        try:
            combined.merge(engine.process([mark], single), index)
        except Exception as exc:  # noqa: BLE001 - a defect, not bad input: keep the mark, keep going
            log.error("Internal error processing %s: %s", record.where, type(exc).__name__)
            failed.append((internal_error(exc, "processing"), record))
            continue
        states.absorb(single)
    return combined, failed


async def handle_marks(records: Sequence[Record], states: BatchStates, publisher: Publisher, *,
                       engine: DecisionEngine, topics: MarkTopics, limits: MarkLimits,
                       now: dt.datetime | None = None) -> MarksReport:
    """One micro-batch of the marks topic; returns once every effect is delivered."""
    now = now or dt.datetime.now(dt.timezone.utc)
    report = MarksReport(consumed=len(records))
    valid, rejected, misrouted = parse_records(records, limits, today=now.date(), now=now)
    deliveries: list[Awaitable[Any]] = []
    for mark, record in misrouted:
        # Keyed by something other than the pupil: re-key, so all of a pupil's marks share a partition.
        deliveries.append(await publisher.send(topics.marks, mark.pupil_id.encode(), record.value or b""))
        report.rekeyed += 1
    result = BatchResult()
    if valid:
        states.partition_of.update((mark.pupil_id, record.partition) for mark, record in valid)
        result, failed = apply_marks(engine, valid, states)
        rejected += failed
        rejected += [(rejection, valid[index][1]) for index, rejection in result.rejected]
    for rejection, record in rejected:
        deliveries.append(await _dead_letter(publisher, topics.dead_letter, rejection, record))
        report.dead_lettered[rejection.reason.value] += 1
    for event, index in zip(result.events, result.event_marks):
        deliveries.append(await publisher.send(topics.interventions, event.pupil_id.encode(),
                                               event.model_dump_json().encode()))
        report.events.append((event, valid[index][1]))
    if deliveries:
        await asyncio.gather(*deliveries)
    changelog = states.commit()
    if changelog:
        await publisher.write_state(changelog)
    report.applied.update({outcome.value: count for outcome, count in result.outcomes.items() if count})
    failed_records = {id(record) for _, record in rejected}
    report.applied_records = [record for _, record in valid if id(record) not in failed_records]
    report.scored, report.scoring_seconds = result.scored, result.scoring_seconds
    return report


async def _dead_letter(publisher: Publisher, topic: str, rejection: MarkRejected, record: Record) -> Awaitable[Any]:
    letter = dead_letter(rejection, record.value or b"", stage="worker", topic=record.topic,
                         partition=record.partition, offset=record.offset)
    return await publisher.send(topic, record.key or b"", letter.model_dump_json().encode())


# -- outcomes ------------------------------------------------------------------------------
PLAN_ACTIONS: dict[OutcomeAction, Callable[[Any], None]] = {
    OutcomeAction.SUPPORT_PLAN_STARTED: lambda policy: policy.start_plan(),
    OutcomeAction.SUPPORT_PLAN_CLOSED: lambda policy: policy.close_plan(),
    OutcomeAction.CLOSED: lambda policy: policy.close_plan(),
}


@dataclass
class OutcomesReport:
    results: Counter[tuple[str, str]] = field(default_factory=Counter)  # (action, result)


async def handle_outcomes(records: Sequence[Record], states: BatchStates, publisher: Publisher, *,
                          outcomes_topic: str, dead_letter_topic: str) -> OutcomesReport:
    """What pastoral staff did next: an open support plan holds back repeat alerts for the same
    pattern, and recovery still sends `improving`. Co-partitioned with the marks by pupil, so an
    outcome keyed by anything else is re-keyed rather than applied on the wrong partition."""
    report = OutcomesReport()
    deliveries: list[Awaitable[Any]] = []
    for record in records:
        try:
            outcome = OutcomeEvent.model_validate_json(record.value or b"")
        except ValidationError as error:
            rejection = MarkRejected(RejectReason.INVALID_FIELD,
                                     f"not an outcome event: {error.errors(include_url=False)[0]['msg']}")
        except Exception as exc:  # noqa: BLE001
            log.error("Internal error parsing outcome %s: %s", record.where, type(exc).__name__)
            rejection = internal_error(exc, "parsing")
        else:
            if record.key != outcome.pupil_id.encode():
                deliveries.append(await publisher.send(outcomes_topic, outcome.pupil_id.encode(), record.value or b""))
                report.results[(outcome.action.value, "rekeyed")] += 1
                continue
            states.partition_of[outcome.pupil_id] = record.partition
            report.results[(outcome.action.value, _apply_outcome(outcome, states))] += 1
            continue
        deliveries.append(await _dead_letter(publisher, dead_letter_topic, rejection, record))
        report.results[("invalid", "dead_lettered")] += 1
    if deliveries:
        await asyncio.gather(*deliveries)
    changelog = states.commit()
    if changelog:
        await publisher.write_state(changelog)
    return report


def _apply_outcome(outcome: OutcomeEvent, states: BatchStates) -> str:
    state = states.get(outcome.pupil_id)
    if state is None:
        return "unknown_pupil"
    change = PLAN_ACTIONS.get(outcome.action)
    if change is None:
        return "recorded"
    change(state.policy)
    states[outcome.pupil_id] = state
    return "applied"


