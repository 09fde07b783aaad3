"""Micro-batches that are acknowledged only once handled, filled while the last one is handled.

This is Faust's `Stream.take_events` (faust-streaming 0.15.3, faust/streams.py) with two changes:

* Acknowledgement. Upstream acknowledges a batch's events in a `finally:` block, so when the code
  handling a batch raises or is cancelled (a worker stopping mid-batch) the offsets still move
  past every event of it, and its marks are neither applied nor dead-lettered. Here the events
  are acknowledged after the consumer has finished with the batch and asks for the next one,
  never on an exception or a cancellation. An unacknowledged batch holds back the partition's
  commits, and the agent's supervisor (streams.agents) then stops the worker, so a restart reads
  the batch again (at-least-once; state updates are idempotent).
* Pipelining. Upstream stops taking events while a batch is handled (the buffer it yields is
  cleared afterwards); here the batch is handed over and a fresh buffer fills meanwhile, so
  Faust's per-message delivery overlaps the handling of the previous batch. A full buffer still
  stops the intake (back-pressure) until the batch in hand is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import faust
from faust.types import EventT


class ReconnectStream(faust.Stream):
    async def take_batches(self, max_: int, within: float) -> AsyncGenerator[Sequence[EventT], None]:
        """Up to `max_` events at a time, or what arrived within `within` seconds."""
        pending: list[EventT] = []
        buffer_full = asyncio.Event()
        room = asyncio.Event()
        room.set()
        stream_enable_acks = self.enable_acks

        async def add_to_buffer(value: Any) -> Any:
            try:
                while not room.is_set():
                    await self.wait(room)
                event = self.current_event
                if event is None:
                    raise RuntimeError("take_batches found no current event")
                pending.append(event)
                if len(pending) >= max_:
                    buffer_full.set()
                    room.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.exception("Error adding to the batch buffer: %r", exc)
                await self.crash(exc)
            return value

        self.enable_acks = False  # acknowledged here, after the batch is handled
        self.add_processor(add_to_buffer)
        self._enable_passive(self.channel.__aiter__())
        try:
            while not self.should_stop:
                await self.wait_for_stopped(buffer_full, timeout=within)
                if not pending:
                    continue
                batch = pending[:]
                pending.clear()
                buffer_full.clear()
                room.set()
                yield batch
                # Resumed: the consumer handled the batch and asks for the next one. On an
                # exception or a cancellation we never get here: the batch stays unacknowledged.
                for event in batch:
                    await self.ack(event)
        finally:
            self.enable_acks = stream_enable_acks
            self._processors.remove(add_to_buffer)
