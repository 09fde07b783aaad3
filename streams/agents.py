"""The agents: thin wiring between the topics and the pure decision engine."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable

from faust.types import EventT
from pydantic import ValidationError

from models.engine import BatchResult
from schemas.deadletter import dead_letter
from schemas.marks import MarkRejected, RegisterMark, RejectReason, parse_mark_json
from schemas.outcomes import OutcomeAction, OutcomeEvent
from streams.app import app, settings
from streams.changelog import ChangelogWriter
from streams.runtime import Runtime
from streams.tables import BatchStates, pupil_state
from streams.topics import dead_letter_topic, interventions_topic, marks_topic, outcomes_topic

log = logging.getLogger(__name__)
runtime = Runtime(settings)
changelog = ChangelogWriter(settings, pupil_state.changelog_topic.get_topic_name())
MODEL_WAIT_S = 1.0


@app.task
async def load_model_at_start() -> None:
    runtime.load()


@app.timer(interval=settings.model_reload_interval_s)
async def reload_model() -> None:
    runtime.reload_if_changed()


async def _dead_letter(rejection: MarkRejected, event: EventT) -> Awaitable:
    """Queue a dead letter; returns the delivery future to await."""
    message = event.message
    record = dead_letter(rejection, message.value if isinstance(message.value, bytes) else b"", stage="worker",
                         topic=message.topic, partition=message.partition, offset=message.offset)
    runtime.metrics.marks_dead_lettered.labels(reason=rejection.reason.value).inc()
    return await dead_letter_topic.send(key=message.key or b"", value=record.model_dump_json().encode())


def _validate(events: list[EventT], today: dt.date) -> tuple[list[tuple[RegisterMark, EventT]], list, list]:
    valid, rejected, misrouted = [], [], []
    for event in events:
        try:
            mark = parse_mark_json(event.value, today=today, max_future_days=settings.max_future_days,
                                   max_bytes=settings.max_message_bytes)
        except MarkRejected as rejection:
            rejected.append((rejection, event))
            continue
        if event.message.key != mark.pupil_id.encode():
            misrouted.append((mark, event))
        else:
            valid.append((mark, event))
    return valid, rejected, misrouted


def _process(valid: list[tuple[RegisterMark, EventT]],
             writer: BatchStates) -> tuple[BatchResult, list[tuple[MarkRejected, EventT]]]:
    """Run the engine on the batch; if it fails, mark by mark so one bad mark cannot stop the stream."""
    engine = runtime.engine
    assert engine is not None
    marks = [mark for mark, _ in valid]
    try:
        return engine.process(marks, writer), []
    except Exception:
        log.exception("Batch of %d marks failed; retrying mark by mark", len(marks))
    combined, failed = BatchResult(), []
    for index, (mark, event) in enumerate(valid):
        try:
            single = engine.process([mark], writer)
        except Exception as exc:  # a defect, not bad input: keep the mark and the stream going
            log.exception("Mark at %s[%d]@%d could not be processed", event.message.topic,
                          event.message.partition, event.message.offset)
            failed.append((MarkRejected(RejectReason.INVALID_FIELD, f"processing error: {exc!r}"), event))
            continue
        combined.events.extend(single.events)
        combined.event_marks.extend(index for _ in single.events)
        combined.rejected.extend((index, rejection) for _, rejection in single.rejected)
        for outcome, count in single.outcomes.items():
            combined.outcomes[outcome] += count
        combined.scored += single.scored
        combined.scoring_seconds += single.scoring_seconds
    return combined, failed


async def handle_batch(events: list[EventT]) -> None:
    """One micro-batch. Everything it publishes is delivered before it returns, and it returns
    before its events are acknowledged, so no offset is committed ahead of its effects:
    dead letters and interventions first, then the state that records them. A crash in
    between replays the marks, which re-raise the same decisions under the same event ids."""
    started = time.perf_counter()
    metrics = runtime.metrics
    metrics.marks_consumed.inc(len(events))
    valid, rejected, misrouted = _validate(events, dt.date.today())
    deliveries = [await _dead_letter(rejection, event) for rejection, event in rejected]
    for mark, event in misrouted:
        # Keyed by something other than the pupil: re-key so all of a pupil's marks share a partition.
        deliveries.append(await marks_topic.send(key=mark.pupil_id.encode(), value=event.value))
        metrics.marks_rekeyed.inc()
    writer = None
    if valid:
        writer = BatchStates(pupil_state, {mark.pupil_id: event.message.partition for mark, event in valid})
        result, failed = _process(valid, writer)
        deliveries += [await _dead_letter(rejection, event) for rejection, event in failed]
        deliveries += [await _dead_letter(rejection, valid[index][1]) for index, rejection in result.rejected]
        for event in result.events:
            deliveries.append(await interventions_topic.send(key=event.pupil_id.encode(),
                                                             value=event.model_dump_json().encode()))
    if deliveries:
        await asyncio.gather(*deliveries)
    if writer is not None:
        await changelog.write(writer.changelog_records())
        now = time.time()
        for outcome, count in result.outcomes.items():
            if count:
                metrics.marks_applied.labels(outcome=outcome.value).inc(count)
        for event, index in zip(result.events, result.event_marks):
            metrics.interventions.labels(kind=event.kind.value, tier=str(int(event.tier)), school_id=event.school_id).inc()
            metrics.end_to_end_latency.observe(max(now - valid[index][1].message.timestamp, 0.0))
        for _, event in valid:
            metrics.processing_latency.observe(max(now - event.message.timestamp, 0.0))
        if result.scored:
            metrics.scoring_seconds_per_mark.observe(result.scoring_seconds / result.scored)
    metrics.batch_size.observe(len(events))
    metrics.batch_seconds.observe(time.perf_counter() - started)
    metrics.last_mark_processed.set(time.time())


@app.agent(marks_topic)
async def process_marks(stream) -> None:
    await changelog.start()
    try:
        async for events in stream.take_events(settings.batch_max_marks, within=settings.batch_within_s):
            while runtime.engine is None:
                # No model, no decisions: hold the batch (uncommitted) until one loads.
                await asyncio.sleep(MODEL_WAIT_S)
            await handle_batch(list(events))
    finally:
        await changelog.stop()


PLAN_ACTIONS = {
    OutcomeAction.SUPPORT_PLAN_STARTED: "start_plan",
    OutcomeAction.SUPPORT_PLAN_CLOSED: "close_plan",
    OutcomeAction.CLOSED: "close_plan",
}


@app.agent(outcomes_topic)
async def apply_outcomes(stream) -> None:
    """What pastoral staff did next: an open support plan holds back repeat alerts for the same
    pattern, and recovery still sends `improving`. Co-partitioned with the marks by pupil."""
    async for event in stream.events():
        metrics = runtime.metrics
        try:
            outcome = OutcomeEvent.model_validate_json(event.value)
        except ValidationError as error:
            metrics.outcomes.labels(action="invalid", result="dead_lettered").inc()
            rejection = MarkRejected(RejectReason.INVALID_FIELD, f"not an outcome event: {error.errors()[0]['msg']}")
            await (await _dead_letter(rejection, event))
            continue
        states = BatchStates(pupil_state, {outcome.pupil_id: event.message.partition})
        state = states.get(outcome.pupil_id)
        method = PLAN_ACTIONS.get(outcome.action)
        if state is None or method is None:
            result = "unknown_pupil" if state is None else "recorded"
        else:
            getattr(state.policy, method)()
            states[outcome.pupil_id] = state
            await changelog.write(states.changelog_records())
            result = "applied"
        metrics.outcomes.labels(action=outcome.action.value, result=result).inc()


@app.timer(interval=settings.metrics_interval_s)
async def refresh_gauges() -> None:
    metrics = runtime.metrics
    metrics.pupils_tracked.set(len(pupil_state.data))
    consumer = app.consumer
    metrics.consumer_lag.clear()  # partitions moved away in a rebalance must not linger
    for tp in consumer.assignment():
        if tp.topic != settings.topic_marks:
            continue
        # High watermark from fetch responses (right on Kafka and on the embedded broker,
        # whose ListOffsets end offset can be low) minus the offset this worker committed.
        highwater = consumer.highwater(tp)
        committed = consumer._committed_offset.get(tp)  # noqa: SLF001 - Faust keeps no public accessor
        if highwater is not None:
            metrics.consumer_lag.labels(partition=str(tp.partition)).set(max(highwater - (committed or 0), 0))


@app.on_partitions_assigned.connect
async def count_rebalance(sender, assigned, **kwargs) -> None:  # noqa: ARG001 - signal signature
    runtime.metrics.rebalances.inc()
