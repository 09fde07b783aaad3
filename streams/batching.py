"""Micro-batches that are acknowledged only once they have been handled.

Faust's `Stream.take_events` (faust-streaming 0.15.3, faust/streams.py, `take_events`) acknowledges
a batch's events in a `finally:` block, so when the code handling a batch raises or is cancelled
(a worker stopping mid-batch) the offsets still move past every event of the batch, and the marks
in it are neither applied nor dead-lettered. `ReconnectStream.take_batches` is that method with
one change: the events are acknowledged after the consumer has finished with the batch and asked
for the next one, never on an exception or a cancellation. An unacknowledged batch holds back the
partition's commits, and the agent's supervisor (streams.agents) then stops the worker, so a
restart reads the batch again (at-least-once; state updates are idempotent).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import faust
from faust.types import EventT
from mode.utils.futures import notify


class ReconnectStream(faust.Stream):
    async def take_batches(self, max_: int, within: float) -> AsyncGenerator[Sequence[EventT], None]:
        """Up to `max_` events at a time, or what arrived within `within` seconds."""
        buffer: list[Any] = []
        events: list[EventT] = []
        buffer_full = asyncio.Event()
        buffer_consumed = asyncio.Event()
        buffer_consuming: asyncio.Future | None = None
        stream_enable_acks = self.enable_acks
        channel_it = self.channel.__aiter__()

        async def add_to_buffer(value: Any) -> Any:
            nonlocal buffer_consuming
            try:
                if buffer_consuming is not None:
                    try:
                        await buffer_consuming
                    finally:
                        buffer_consuming = None
                buffer.append(value)
                event = self.current_event
                if event is None:
                    raise RuntimeError("take_batches found no current event")
                events.append(event)
                if len(buffer) >= max_:
                    buffer_full.set()
                    buffer_consumed.clear()
                    await self.wait(buffer_consumed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.exception("Error adding to the batch buffer: %r", exc)
                await self.crash(exc)
            return value

        self.enable_acks = False  # acknowledged here, after the batch is handled
        self.add_processor(add_to_buffer)
        self._enable_passive(channel_it)
        try:
            while not self.should_stop:
                await self.wait_for_stopped(buffer_full, timeout=within)
                if not buffer:
                    continue
                buffer_consuming = self.loop.create_future()
                try:
                    yield list(events)
                    # Resumed: the consumer handled the batch and asks for the next one.
                    for event in events:
                        await self.ack(event)
                finally:
                    # On an exception or a cancellation the batch stays unacknowledged.
                    buffer.clear()
                    events.clear()
                    notify(buffer_consuming)
                    buffer_full.clear()
                    buffer_consumed.set()
        finally:
            self.enable_acks = stream_enable_acks
            self._processors.remove(add_to_buffer)
