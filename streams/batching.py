"""Micro-batches taken from a stream's queue in bulk, acknowledged only once handled.

This replaces Faust's `Stream.take_events` (faust-streaming 0.15.3, faust/streams.py) for the
worker's agents, with three changes:

* Bulk intake. Upstream delivers every message through the conductor (an Event per message,
  a flow-control wait and a producer-buffer wait), then iterates the stream once per message
  (an event-loop round trip, sensors and a buffering processor per message): most of the
  framework's cost per mark. Here the consumer's drain loop (streams.faust_tuning) puts each
  message of a topic read only by one of these streams straight onto the stream's queue, and
  the batch is taken off the queue in one go. Items put there the ordinary way (an Event, e.g.
  from an agent's `test_context()`) are taken the same way.
* Acknowledgement. Upstream acknowledges a batch's events in a `finally:` block, so when the code
  handling a batch raises or is cancelled (a worker stopping mid-batch) the offsets still move
  past every event of it, and its marks are neither applied nor dead-lettered. Here the messages
  are acknowledged after the consumer has finished with the batch and asks for the next one,
  never on an exception or a cancellation. An unacknowledged batch holds back the partition's
  commits, and the agent's supervisor (streams.agents) then stops the worker, so a restart reads
  the batch again (at-least-once; state updates are idempotent).
* Pipelining. While a batch is handled the drain loop keeps filling the queue, so fetching
  overlaps handling. A full queue stops the intake (back-pressure) until the batch in hand is
  done.

A message fetched before a rebalance (an older consumer generation), or while the flow is
suspended for one, is left out and not acknowledged: Faust reads it again from the committed
offset, as it does with the rest of a revoked partition's unacknowledged messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

import faust
from faust.types import EventT
from faust.types.tuples import ack_lock


class ReconnectStream(faust.Stream):
    async def take_batches(self, max_: int, within: float) -> AsyncGenerator[list[Any], None]:
        """Up to `max_` messages at a time: as many as are queued, waiting at most `within`
        seconds after the first for the batch to fill."""
        app = self.app
        queue = self.channel.queue
        bulk = getattr(app, "reconnect_bulk_channels", None)
        if bulk is not None:
            bulk.add(self.channel)  # from now on the drain loop queues this channel's messages directly
        try:
            while not self.should_stop:
                items = await self._take(queue, max_, within)
                if not items:
                    continue
                messages, events = self._current(items)
                if not messages:
                    continue
                yield messages
                # Resumed: the consumer handled the batch and asks for the next one. On an
                # exception or a cancellation we never get here: the batch stays unacknowledged.
                self._acknowledge(messages, events)
        finally:
            if bulk is not None:
                bulk.discard(self.channel)

    async def _take(self, queue: asyncio.Queue, max_: int, within: float) -> list[Any]:
        """What is queued, after waiting (at most a second, so a stop is noticed) for a first item
        and then at most `within` for the batch to fill."""
        items: list[Any] = []
        if queue.empty():
            try:
                items.append(await asyncio.wait_for(queue.get(), timeout=1.0))
            except asyncio.TimeoutError:
                return items
        deadline = time.monotonic() + within
        get = queue.get_nowait
        while True:
            while len(items) < max_ and not queue.empty():
                items.append(get())
            remaining = deadline - time.monotonic()
            if len(items) >= max_ or remaining <= 0 or self.should_stop:
                return items
            try:
                items.append(await asyncio.wait_for(queue.get(), timeout=remaining))
            except asyncio.TimeoutError:
                return items

    def _current(self, items: list[Any]) -> tuple[list[Any], list[EventT]]:
        """The messages of this consumer generation (and the events that carried some), each
        tracked as pending acknowledgement as the stream would track it."""
        app = self.app
        generation = app.consumer_generation_id
        active = app.flow_control.is_active()
        unacked = app.consumer._unacked_messages  # noqa: SLF001 - what Stream's iterator adds to, inlined
        messages: list[Any] = []
        events: list[EventT] = []
        for item in items:
            message = item.message if isinstance(item, EventT) else item
            if not active or message.generation_id != generation:
                continue
            if message is not item:
                events.append(item)
            if not message.tracked:
                message.tracked = True
                unacked.add(message)
            messages.append(message)
        return messages, events

    def _acknowledge(self, messages: list[Any], events: list[EventT]) -> None:
        consumer = self.app.consumer
        delivered = {id(event.message) for event in events}
        with ack_lock:  # reentrant: taken once for the batch rather than once a message
            for event in events:
                event.ack()  # the last reference acknowledges its message with the consumer
            for message in messages:
                if id(message) not in delivered:
                    consumer.ack(message)
