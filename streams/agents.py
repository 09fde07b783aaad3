"""The agents and timers: thin wiring between the topics and the handlers (streams.handler)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import faust
from mode import CrashingSupervisor

from streams.changelog import ChangelogWriter
from streams.handler import MarksReport, MarkTopics, Record, handle_marks, handle_outcomes
from streams.states import BatchStates, ChangelogRecords

if TYPE_CHECKING:
    from streams.app import WorkerParts

log = logging.getLogger(__name__)
MODEL_WAIT_S = 1.0


class FaustPublisher:
    """The handlers' effects through the app's producer (topics) and the batched changelog writer."""

    def __init__(self, parts: WorkerParts, changelog: ChangelogWriter) -> None:
        self.topics = {topic.get_topic_name(): topic
                       for topic in (parts.marks, parts.interventions, parts.dead_letter, parts.outcomes)}
        self.changelog = changelog

    async def send(self, topic: str, key: bytes, value: bytes) -> Awaitable[Any]:
        return await self.topics[topic].send(key=key, value=value)

    async def write_state(self, records: ChangelogRecords) -> None:
        await self.changelog.write(records)


def records_of(messages) -> list[Record]:
    """The consumed messages of a batch (streams.batching) as the handlers' records."""
    return [Record(message.key, message.value, message.topic, message.partition, message.offset, message.timestamp)
            for message in messages]


def table_states(table) -> BatchStates:
    dumps_key = table.app.serializers.dumps_key
    return BatchStates(table.data, key_bytes=lambda pupil: dumps_key(str, pupil, serializer=table.key_serializer))


def observe_marks(parts: WorkerParts, report: MarksReport, started: float) -> None:
    """Every counter of the batch at once, after its effects: the reconciliation
    consumed = applied + dead-lettered + re-keyed holds at every scrape."""
    metrics = parts.runtime.metrics
    now = time.time()
    metrics.marks_consumed.inc(report.consumed)
    for outcome, count in report.applied.items():
        metrics.marks_applied.labels(outcome=outcome).inc(count)
    for reason, count in report.dead_lettered.items():
        metrics.marks_dead_lettered.labels(reason=reason).inc(count)
    if report.rekeyed:
        metrics.marks_rekeyed.inc(report.rekeyed)
    for event, record in report.events:
        metrics.interventions.labels(kind=event.kind.value, tier=str(int(event.tier)), school_id=event.school_id).inc()
        metrics.end_to_end_latency.observe(max(now - record.timestamp, 0.0))
    for record in report.applied_records:
        metrics.processing_latency.observe(max(now - record.timestamp, 0.0))
    if report.scored:
        metrics.scoring_seconds_per_mark.observe(report.scoring_seconds / report.scored)
    metrics.batch_size.observe(report.consumed)
    metrics.batch_seconds.observe(time.perf_counter() - started)
    metrics.last_mark_processed.set(now)


def register(app: faust.App, parts: WorkerParts) -> dict[str, faust.types.AgentT]:
    """Add the agents and timers to the app; returns the agents by topic role (for tests)."""
    settings, runtime = parts.settings, parts.runtime
    changelog = ChangelogWriter(settings, parts.table.changelog_topic.get_topic_name())
    publisher = FaustPublisher(parts, changelog)
    mark_topics = MarkTopics(marks=settings.topic_marks, interventions=settings.topic_interventions,
                             dead_letter=settings.topic_dead_letter)
    limits = settings.mark_limits()

    @app.task
    async def load_model_at_start() -> None:
        runtime.load()
        runtime.settle_long_lived_objects()

    @app.timer(interval=settings.model_reload_interval_s)
    async def reload_model() -> None:
        if runtime.reload_if_changed():
            runtime.settle_long_lived_objects()

    # A batch that cannot be delivered is left unacknowledged (streams.batching); stopping the
    # worker, rather than restarting the agent past it, makes a restart read it again.
    @app.agent(parts.marks, supervisor_strategy=CrashingSupervisor)
    async def process_marks(stream) -> None:
        try:
            async for messages in stream.take_batches(settings.batch_max_marks, within=settings.batch_within_s):
                while runtime.engine is None:
                    # No model, no decisions: hold the batch (unacknowledged) until one loads.
                    await asyncio.sleep(MODEL_WAIT_S)
                started = time.perf_counter()
                report = await handle_marks(records_of(messages), table_states(parts.table), publisher,
                                            engine=runtime.engine, topics=mark_topics, limits=limits)
                observe_marks(parts, report, started)
        finally:
            await changelog.stop()

    @app.agent(parts.outcomes, supervisor_strategy=CrashingSupervisor)
    async def apply_outcomes(stream) -> None:
        async for messages in stream.take_batches(settings.batch_max_marks, within=settings.batch_within_s):
            report = await handle_outcomes(records_of(messages), table_states(parts.table), publisher,
                                           outcomes_topic=settings.topic_outcomes,
                                           dead_letter_topic=settings.topic_dead_letter)
            for (action, result), count in report.results.items():
                runtime.metrics.outcomes.labels(action=action, result=result).inc(count)

    @app.timer(interval=settings.metrics_interval_s)
    async def refresh_gauges() -> None:
        metrics = runtime.metrics
        metrics.pupils_tracked.set(len(parts.table.data))
        consumer = app.consumer
        metrics.consumer_lag.clear()  # partitions moved away in a rebalance must not linger
        owned = [tp for tp in consumer.assignment() if tp.topic == settings.topic_marks]
        metrics.partitions_assigned.set(len(owned))
        for tp in owned:
            # High watermark from fetch responses (right on Kafka and on the embedded broker,
            # whose ListOffsets end offset can be low) minus the offset this worker committed.
            highwater = consumer.highwater(tp)
            committed = consumer._committed_offset.get(tp)  # noqa: SLF001 - Faust keeps no public accessor
            if highwater is not None:
                metrics.consumer_lag.labels(partition=str(tp.partition)).set(max(highwater - (committed or 0), 0))

    @app.on_partitions_assigned.connect
    async def count_rebalance(sender, assigned, **kwargs) -> None:  # noqa: ARG001 - signal signature
        runtime.metrics.rebalances.inc()
        runtime.metrics.partitions_assigned.set(sum(tp.topic == settings.topic_marks for tp in assigned))

    return {"marks": process_marks, "outcomes": apply_outcomes}
