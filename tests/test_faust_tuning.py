"""The overrides of faust-streaming (streams.faust_tuning, streams.batching): still copies of the
upstream code they change, and doing what they say: marks queued in bulk by the drain loop,
taken as one batch, acknowledged only once handled, left out when fetched before a rebalance,
read again (never skipped) when a seek overlaps them."""

from __future__ import annotations

import asyncio
import hashlib
import inspect

import faust
import pytest
from faust.transport.conductor import ConductorCompiler
from faust.transport.consumer import Consumer
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.faust_tuning import UPSTREAM_VERSION
from streams.launch import use_event_loop
from streams.settings import Settings

# What each override copies or stands in for, as upstream wrote it in the pinned version: a
# change upstream makes this test fail, so the override is looked at again.
UPSTREAM = {
    Consumer._drain_messages: "44a2500309e83c63",  # copied with the delivery step changed (faust_tuning 2, 3)
    AIOKafkaConsumerThread._create_worker_consumer: "c2701bfc3e6f6cad",  # extended (faust_tuning 1)
    faust.Stream.take_events: "607d48aead118ba8",  # replaced by ReconnectStream.take_batches
    ConductorCompiler.build: "837cf521368c1ee4",  # the per-message delivery the bulk path skips
    Consumer.track_message: "217d7f1399a4cd8e",  # what take_batches inlines when it tracks a message
    Consumer.ack: "5fcf41cf45153475",  # what take_batches calls to acknowledge
    Consumer.perform_seek: "0e8c130ff4b0afd8",  # counted around (faust_tuning 4)
    AIOKafkaConsumerThread.seek_to_committed: "775ab0adc4b052ab",  # replaced: uncommitted to the beginning (4)
    Recovery._resume_streams: "d986a6710c1aca98",  # resumes the streams before seeking them: why 4 exists
    Consumer._add_gap: "4df2573ded7c1c2c",  # counted: the offsets it passes over (streams.metrics offsets_skipped)
}


def test_the_pinned_upstream_is_the_one_the_overrides_copy():
    assert faust.__version__ == UPSTREAM_VERSION
    changed = [f.__qualname__ for f, digest in UPSTREAM.items()
               if hashlib.sha256(inspect.getsource(f).encode()).hexdigest()[:16] != digest]
    assert not changed, f"upstream changed; review the overrides: {changed}"


@pytest.mark.parametrize("kind, expected", [("uvloop", "uvloop.Loop"), ("asyncio", "asyncio.unix_events._UnixSelectorEventLoop")])
def test_the_event_loop_is_the_one_asked_for(kind, expected):
    policy = asyncio.get_event_loop_policy()
    try:
        use_event_loop(kind)
        loop = asyncio.get_event_loop()
        assert f"{type(loop).__module__}.{type(loop).__qualname__}" == expected
        loop.close()
    finally:
        asyncio.set_event_loop_policy(policy)
        asyncio.set_event_loop(asyncio.new_event_loop())


def _app(tmp_path, model_path):
    from prometheus_client import CollectorRegistry

    from streams.app import create_app
    from streams.metrics import WorkerMetrics
    from streams.runtime import Runtime

    settings = Settings(model_path=model_path, data_dir=tmp_path, app_id="tuning", topic_marks="tuning.marks",
                        batch_within_s=0.01)
    app = create_app(settings, runtime=Runtime(settings, metrics=WorkerMetrics(CollectorRegistry())))
    app.loop = asyncio.get_running_loop()
    app.finalize()
    app.flow_control.resume()
    return app


def _message(app, topic: str, offset: int, generation: int | None = None) -> ConsumerMessage:
    tp = TP(topic, 0)
    return ConsumerMessage(topic, 0, offset, 0.0, 0, [], b"P1", b"{}", None, 2, 2, tp,
                           generation_id=app.consumer_generation_id if generation is None else generation)


def test_a_batch_is_taken_in_bulk_and_acknowledged_only_once_handled(tmp_path, model_path):
    async def scenario() -> None:
        app = _app(tmp_path, model_path)
        stream = app.channel().stream()
        channel = stream.channel  # the channel the stream reads: what the conductor indexes
        messages = [_message(app, "tuning.marks", offset) for offset in range(5)]
        stale = _message(app, "tuning.marks", 5, generation=app.consumer_generation_id - 1)
        for message in [*messages, stale]:
            channel.queue.put_nowait(message)  # as the drain loop queues a bulk channel's messages
        batches = stream.take_batches(100, within=0.01)
        batch = await batches.__anext__()
        assert batch == messages  # one batch, in order; the one fetched before a rebalance left out
        assert all(m.tracked and not m.acked for m in batch) and not stale.tracked
        assert channel in app.reconnect_bulk_channels
        channel.queue.put_nowait(_message(app, "tuning.marks", 6))
        await batches.__anext__()  # asking for the next batch: the first one was handled
        assert all(m.acked for m in messages) and not stale.acked
        await batches.aclose()
        assert channel not in app.reconnect_bulk_channels

    asyncio.run(scenario())


def test_a_batch_whose_handling_fails_is_not_acknowledged(tmp_path, model_path):
    async def scenario() -> None:
        app = _app(tmp_path, model_path)
        stream = app.channel().stream()
        channel = stream.channel
        messages = [_message(app, "tuning.marks", offset) for offset in range(3)]
        for message in messages:
            channel.queue.put_nowait(message)
        with pytest.raises(ZeroDivisionError):
            async for batch in stream.take_batches(100, within=0.01):
                assert batch == messages
                raise ZeroDivisionError("the handler failed")
        assert not any(m.acked for m in messages)

    asyncio.run(scenario())


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


def test_the_drain_loop_queues_bulk_channels_and_delivers_the_rest(tmp_path, model_path):
    async def scenario() -> tuple[list, list, list]:
        app = _app(tmp_path, model_path)
        consumer = app.consumer
        bulk, other = app.channel(), app.channel()
        app.reconnect_bulk_channels.add(bulk)
        app.topics._tp_index.clear()
        app.topics._tp_index[TP("bulk", 0)] = {bulk}
        app.topics._tp_index[TP("other", 0)] = {other}
        fetcher = _Fetcher()
        delivered = []
        messages = [_message(app, "bulk", 0), _message(app, "other", 0), _message(app, "bulk", 1)]

        async def getmany(timeout: float):
            for message in messages:
                yield message.tp, message
            fetcher._stopped.set()

        async def callback(message) -> None:
            delivered.append(message)

        consumer.getmany = getmany
        consumer.callback = callback
        await consumer._drain_messages(fetcher)
        queued = []
        while not bulk.queue.empty():
            queued.append(bulk.queue.get_nowait())
        # Suspended for a rebalance: a bulk message is not queued (it is read again later).
        consumer.suspend_flow.set()
        fetcher._stopped.clear()
        messages[:] = [_message(app, "bulk", 2)]
        await consumer._drain_messages(fetcher)
        return queued, delivered, [bulk.queue.qsize()]

    queued, delivered, left = asyncio.run(scenario())
    assert [m.offset for m in queued] == [0, 1] and [m.topic for m in delivered] == ["other"] and left == [0]


def _one_acknowledged_bulk_partition(tmp_path, model_path):
    """An app whose one partition, of an acknowledged topic (where a jump in offsets is taken for a
    gap in the log), is read by one bulk channel: (app, the partition, the channel)."""
    app = _app(tmp_path, model_path)
    tp = TP("bulk", 0)
    bulk = app.channel()
    app.reconnect_bulk_channels.add(bulk)
    app.topics._tp_index.clear()
    app.topics._tp_index[tp] = {bulk}
    app.topics._acking_topics.add("bulk")
    return app, tp, bulk


def test_records_fetched_before_a_seek_are_read_again_never_skipped(tmp_path, model_path):
    """The scale-out flake: recovery seeks the stream partitions back to their committed offset
    while the drain loop is half-way through records fetched from further on. Those records must
    not be delivered after the seek (upstream took the jump for a gap in the log, counted it as
    acknowledged and committed past marks nobody handled): the batch is left, the loop seeks
    again, and the records come again from the committed offset."""
    async def scenario() -> tuple[list[int], dict, int, float]:
        app, tp, bulk = _one_acknowledged_bulk_partition(tmp_path, model_path)
        consumer = app.consumer
        seeks = []

        async def seek_to_committed():
            seeks.append(670)
            return {tp: 670}

        consumer.seek_to_committed = seek_to_committed
        consumer.assignment = lambda: {tp}
        fetcher = _Fetcher()
        fetches = []

        async def getmany(timeout: float):
            fetches.append(timeout)
            if len(fetches) == 1:  # fetched from the old position; recovery seeks half-way through
                for offset in (670, 671):
                    yield tp, _message(app, "bulk", offset)
                await consumer.perform_seek()
                for offset in (672, 673):
                    yield tp, _message(app, "bulk", offset)
            else:  # after the seek: from the committed offset on
                for offset in range(670, 676):
                    yield tp, _message(app, "bulk", offset)
                fetcher._stopped.set()

        consumer.getmany = getmany
        consumer.callback = None
        await consumer._drain_messages(fetcher)
        queued = []
        while not bulk.queue.empty():
            queued.append(bulk.queue.get_nowait().offset)
        skipped = app.reconnect_parts.runtime.metrics.registry.get_sample_value(
            "reconnect_consumer_offsets_skipped_total", {"topic": "bulk"}) or 0
        return queued, dict(consumer._gap), len(seeks), skipped

    queued, gaps, seeks, skipped = asyncio.run(scenario())
    assert queued == [670, 671, 670, 671, 672, 673, 674, 675]  # 670 and 671 twice: read again, never skipped
    assert not any(gaps.values())  # no offset counted as done without being handled
    assert seeks == 2  # recovery's seek, then the loop's own after leaving the batch
    assert skipped == 0  # and the metric that would show a skip agrees


def test_offsets_passed_over_as_a_gap_are_counted_for_the_alert(tmp_path, model_path):
    """A jump in a partition's offsets is taken for a gap in the log (compaction, transaction
    markers) and counted as handled. The marks topic has neither, so every offset passed over
    is counted, for ReconnectConsumerOffsetsSkipped (ops/prometheus/rules.yml)."""
    async def scenario() -> tuple[float, float, list[int]]:
        app, tp, bulk = _one_acknowledged_bulk_partition(tmp_path, model_path)
        consumer = app.consumer
        fetcher = _Fetcher()

        async def getmany(timeout: float):
            for offset in (5, 6, 10, 11, 20):  # 7-9 and 12-19 are not there
                yield tp, _message(app, "bulk", offset)
            fetcher._stopped.set()

        consumer.getmany = getmany
        consumer.callback = None
        await consumer._drain_messages(fetcher)
        metrics = app.reconnect_parts.runtime.metrics
        queued = []
        while not bulk.queue.empty():
            queued.append(bulk.queue.get_nowait().offset)
        counted = metrics.registry.get_sample_value("reconnect_consumer_offsets_skipped_total", {"topic": "bulk"})
        # After a commit at 12, a jump from 11 to 20 passes over 13-19 only.
        consumer._committed_offset[tp] = 12
        await consumer._add_gap(tp, 12, 20)
        after_commit = metrics.registry.get_sample_value("reconnect_consumer_offsets_skipped_total", {"topic": "bulk"})
        return counted, after_commit - counted, queued

    counted, after_commit, queued = asyncio.run(scenario())
    assert queued == [5, 6, 10, 11, 20]
    assert counted == 3 + 8
    assert after_commit == 7


def test_seeking_to_committed_puts_partitions_without_a_commit_at_their_beginning():
    from aiokafka import TopicPartition

    from streams.faust_tuning import seek_every_partition_to_committed

    committed_one, never, at_zero = (TopicPartition("marks", p) for p in range(3))

    class Consumer:
        def __init__(self) -> None:
            self.to_beginning = []

        async def seek_to_committed(self):
            return {committed_one: 41, never: None, at_zero: 0}

        async def seek_to_beginning(self, *partitions):
            self.to_beginning.extend(partitions)

    consumer = Consumer()
    committed = asyncio.run(seek_every_partition_to_committed(consumer))
    assert committed == {committed_one: 41, never: None, at_zero: 0}
    assert consumer.to_beginning == [never, at_zero]
