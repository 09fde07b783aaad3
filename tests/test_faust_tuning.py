"""The overrides of faust-streaming (streams.faust_tuning, streams.batching): still copies of the
upstream code they change, and doing what they say: marks queued in bulk by the drain loop,
taken as one batch, acknowledged only once handled, left out when fetched before a rebalance."""

from __future__ import annotations

import asyncio
import hashlib
import inspect

import faust
import pytest
from faust.transport.conductor import ConductorCompiler
from faust.transport.consumer import Consumer
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
