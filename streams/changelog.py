"""Writing the pupil-state changelog in batches, once per micro-batch.

Faust writes a table's changelog one record at a time through its producer buffer, which
costs more per mark than everything else the worker does. Here a micro-batch's state records
go out as one Kafka record batch per partition, and the agent awaits their acknowledgement
before its events are acknowledged, so an offset is never committed ahead of the state it
produced (at-least-once, as with Faust's own writes).

The last record of each partition goes in a batch of its own: some Kafka-compatible brokers
(tansu 0.6) report a topic's end offset as the last batch's first offset + 1, and a table
restore reads only up to that end. Ending every write with a one-record batch keeps that
end exact there, and costs nothing on Apache Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaProducer

from streams.clients import ProducerRole, aiokafka_producer
from streams.settings import Settings


class ChangelogWriter:
    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # Batches are built here, one per partition and micro-batch: nothing to linger for.
        self.producer = aiokafka_producer(self.settings, ProducerRole.RECORDS, linger_ms=0)
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def write(self, records: Mapping[int, Iterable[tuple[bytes, bytes]]]) -> int:
        """Send records per partition and wait until the broker has them all; returns the count."""
        if self.producer is None:
            await self.start()
        assert self.producer is not None
        pending: list[asyncio.Future] = []
        sent = 0
        for partition, items in records.items():
            items = list(items)
            if not items:
                continue
            for chunk in (items[:-1], items[-1:]):
                batch = self.producer.create_batch()
                for key, value in chunk:
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        pending.append(await self.producer.send_batch(batch, self.topic, partition=partition))
                        batch = self.producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None)
                if batch.record_count():
                    pending.append(await self.producer.send_batch(batch, self.topic, partition=partition))
                sent += len(chunk)
        if pending:
            await asyncio.gather(*pending)
        return sent
