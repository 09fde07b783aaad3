"""Small overrides of faust-streaming 0.15.3 (pinned in requirements.lock), each a copy of one
upstream method with a marked change; tests/test_faust_tuning.py checks the upstream source is
still the one copied, so an upgrade makes us look again. (streams.batching holds the third, the
stream side of the bulk intake described in 3.)

1. `AIOKafkaConsumerThread._create_worker_consumer` (faust/transport/drivers/aiokafka.py) builds
   the aiokafka consumer with `fetch_max_wait_ms=1500` hard-coded. Apache Kafka answers a fetch
   as soon as data is there, but the embedded broker holds every fetch for the full wait, so one
   mark could sit 1.5 s before the worker saw it. The settings decide it instead.

2. `Consumer._drain_messages` (faust/transport/consumer.py) hands every fetched message to the
   streams with `await self.wait_first(callback(message), self.suspend_flow.wait())`: four
   tasks and an `asyncio.wait` per message, a quarter of the framework's per-message cost. The
   wait exists so that a delivery blocked on a full stream buffer, on flow control or on a full
   producer buffer can be abandoned when a rebalance suspends the flow. When none of those can
   block (the common case) the delivery completes without suspending, so it is awaited directly;
   otherwise the upstream path is taken unchanged.

3. In the same loop, a message whose partition is read by exactly one channel, and that channel
   is taken in bulk by a `ReconnectStream` (streams.batching, registered in the app's
   `reconnect_bulk_channels`), is put straight onto that channel's queue. It skips the
   conductor's per-message work (`Conductor._compile_message_handler.on_message`,
   faust/transport/conductor.py: a flow-control wait, a producer-buffer wait, an Event) and the
   stream's per-message iteration; the batch is taken off the queue at once. While the flow is
   suspended for a rebalance the message is not queued (Faust reads it again from the committed
   offset); a full queue is waited on as upstream waits on a full stream buffer.

4. A seek never lets records fetched before it be delivered after it. After a rebalance, Faust's
   recovery resumes the stream partitions and then seeks them to their committed offsets
   (`Recovery._resume_streams`, faust/tables/recovery.py) while the flow is already running, so
   the drain loop can be half-way through records fetched from the old position when the seek
   resets the read offsets. Upstream then delivers the rest of those records: the jump from the
   committed offset is taken for a gap in the log (as left by compaction or transaction
   markers), the gap counts as acknowledged, and the commit moves past records nobody handled.
   Seen in the scale-out test: the survivor of a killed worker lost marks, one in about twenty
   runs. Here every seek is counted before it starts and after it ends; a batch of records that
   a seek overlapped is abandoned at its next record, and the drain loop seeks again, so every
   abandoned record is read again. For that, `seek_to_committed` puts every partition with no
   committed offset back at its beginning (the consumer's `earliest` reset) instead of leaving
   it where the abandoned records left it. At worst some records are read twice; handling a
   mark twice changes nothing (state is keyed by date and session).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast
from collections.abc import AsyncIterator

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service

UPSTREAM_VERSION = "0.15.3"


async def seek_every_partition_to_committed(consumer: Any) -> dict:
    """aiokafka's `seek_to_committed`, which moves only partitions with a committed offset above
    0, followed by a seek to the beginning for the others, so that after it every assigned
    partition is at a position no later than any record not yet handled (override 4)."""
    committed = await consumer.seek_to_committed()
    uncommitted = [tp for tp, offset in committed.items() if not offset or offset <= 0]
    if uncommitted:
        await consumer.seek_to_beginning(*uncommitted)
    return committed


class TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        settings = self.app.reconnect_settings
        consumer._fetch_max_wait_ms = settings.consumer_fetch_max_wait_ms  # noqa: SLF001 - read at start()
        consumer._fetch_max_bytes = settings.consumer_fetch_max_bytes  # noqa: SLF001
        return consumer

    async def seek_to_committed(self):
        consumer = self._ensure_consumer()
        return await self.call_thread(seek_every_partition_to_committed, consumer)


class TunedConsumer(faust_aiokafka.Consumer):
    # Counts the starts and ends of seeks: a batch of records fetched while it was another value
    # may come from before a seek, and is abandoned (override 4).
    seeks: int = 0

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        self.seeks += 1
        try:
            await super().perform_seek()
        finally:
            self.seeks += 1

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        """Upstream's, counting the offsets it passes over (`offset_to` is the record delivered),
        so a skip that override 4 did not foresee shows as a metric and an alert, not as lag 0."""
        committed = self._committed_offset[tp]
        first = offset_from if committed is None else max(offset_from, committed + 1)  # upstream's clamp
        if first < offset_to:
            self.log.warning("Offsets %d-%d of %s partition %d passed over as a gap in the log",
                             first, offset_to - 1, tp.topic, tp.partition)
            parts = getattr(self.app, "reconnect_parts", None)
            if parts is not None:
                parts.runtime.metrics.offsets_skipped.labels(topic=tp.topic).inc(offset_to - first)
        await super()._add_gap(tp, offset_from, offset_to)

    async def seek_again(self) -> None:
        """After abandoning records: every assigned partition back to its committed offset (or its
        beginning), so each abandoned record is read again. A failure propagates and stops the
        worker, whose restart reads from the committed offsets: nothing is skipped either way."""
        if self.assignment():  # with nothing assigned, the next assignment seeks anew
            await self.perform_seek()

    def delivery_cannot_block(self, message: Any) -> bool:
        """True when handing `message` to its streams completes without waiting: flow control is
        on, the producer buffer is below its limit and no subscribed stream buffer is full."""
        app = self.app
        if self.suspend_flow.is_set() or not app.flow_control.is_active():
            return False
        buffer = app.producer.buffer
        if buffer.size > buffer.max_messages:
            return False
        channels = app.topics._tp_index.get(message.tp, ())  # noqa: SLF001 - Faust keeps no public accessor
        return all(not channel.queue.full() for channel in channels)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by the worker tests
        # Upstream body, faust-streaming 0.15.3, with the delivery step changed (marked below).
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        cannot_block = self.delivery_cannot_block
        tp_index = self.app.topics._tp_index  # noqa: SLF001 - the conductor's partition -> channels map
        bulk_channels = getattr(self.app, "reconnect_bulk_channels", set())
        flow_active = self.app.flow_control.is_active
        suspended = self.suspend_flow.is_set
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                seeks_before_fetch = self.seeks  # -- added (override 4) --
                ait = cast(AsyncIterator, getmany(timeout=1.0))
                await self.sleep(0)
                if not self.should_stop:
                    abandoned = False  # -- added (override 4) --
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        # -- added (override 4): a seek overlapped this batch, whose records may
                        # come from the position before it: read them again from the committed
                        # offset. Checked after the last await before the read offset is used.
                        if self.seeks != seeks_before_fetch:
                            abandoned = True
                            break
                        # -- end of addition --
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            # -- changed: bulk channels get the message itself; otherwise await the
                            # delivery directly when it cannot block --
                            channels = tp_index.get(tp)
                            bulk = None
                            if channels is not None and len(channels) == 1:
                                (only,) = channels
                                if only in bulk_channels:
                                    bulk = only.queue
                            if bulk is not None:
                                if suspended() or not flow_active():
                                    pass  # a rebalance is under way: read again from the committed offset
                                elif not bulk.full():
                                    bulk.put_nowait(message)
                                else:
                                    await self.wait_first(bulk.put(message), self.suspend_flow.wait())
                            elif cannot_block(message):
                                await callback(message)
                            else:
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            # -- end of change --
                            set_read_offset(tp, offset)
                    # -- added (override 4) --
                    if abandoned:
                        await ait.aclose()
                        self.log.info("Records fetched before a seek were left; reading from the committed offsets")
                        await self.seek_again()
                    # -- end of addition --
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class TunedTransport(faust_aiokafka.Transport):
    Consumer = TunedConsumer
