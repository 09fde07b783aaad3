"""Live mode: publish simulated marks to Kafka in register order, for demos and benchmarks.

Days before the chosen range are still simulated (spell state carries from day to day, so a
range replays exactly the marks the CSV would hold) but not published.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel

from models.simulator.generate import Simulation, SimulationConfig

# Under a pace, a day's marks are sent in slices this large, sleeping between slices so the
# stream is smooth rather than one burst per day.
PACE_SLICE = 200


class Producer(Protocol):
    def send(self, topic: str, value: bytes, key: bytes) -> object: ...
    def flush(self, timeout: float | None = None) -> None: ...


class LiveCounts(BaseModel):
    topic: str
    days: int
    marks: int
    amendments: int
    first_date: dt.date | None
    last_date: dt.date | None
    elapsed_seconds: float

    @property
    def marks_per_second(self) -> float:
        return self.marks / self.elapsed_seconds if self.elapsed_seconds > 0 else float("nan")


def encode_mark(record: dict[str, object]) -> tuple[bytes, bytes]:
    """Kafka key and value for one mark: the pupil pseudonym, and compact JSON."""
    key = str(record["pupil_id"]).encode("utf-8")
    value = json.dumps(record, separators=(",", ":")).encode("utf-8")
    return key, value


def kafka_producer(bootstrap: list[str]) -> Producer:
    from kafka import KafkaProducer

    # linger batches a register's worth of marks per request; the API version is negotiated.
    return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1, batch_size=256 * 1024)


def publish_live(
    config: SimulationConfig,
    *,
    from_date: dt.date | None = None,
    to_date: dt.date | None = None,
    pace_seconds_per_day: float | None = None,
    topic: str,
    bootstrap: list[str] | None = None,
    producer: Producer | None = None,
    on_day: Callable[[dt.date, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    shift_weeks: int = 0,
) -> LiveCounts:
    """Publish the marks of school days in [from_date, to_date] (either bound optional), as
    fast as possible or spreading each day over `pace_seconds_per_day`. Flushes at the end.

    `shift_weeks` moves every published date and recording time by whole weeks (weekdays kept),
    so a demo can replay the simulated year as if it were this one; the bounds and `on_day` stay
    in simulated dates."""
    shift = dt.timedelta(weeks=shift_weeks)
    own_producer = producer is None
    if producer is None:
        if not bootstrap:
            raise ValueError("publish_live needs a producer or the bootstrap servers")
        producer = kafka_producer(bootstrap)

    simulation = Simulation(config)
    days = marks = amendments = 0
    first: dt.date | None = None
    last: dt.date | None = None
    started = time.perf_counter()
    try:
        for result in simulation.days():
            batch = result.batch
            if from_date is not None and batch.date < from_date:
                continue
            if to_date is not None and batch.date > to_date:
                break
            day_started = time.perf_counter()
            for sent, record in enumerate(batch.records(), start=1):
                key, value = encode_mark(shifted(record, shift) if shift else record)
                producer.send(topic, value=value, key=key)
                if pace_seconds_per_day and sent % PACE_SLICE == 0:
                    _keep_pace(day_started, sent / len(batch) * pace_seconds_per_day, sleep)
            if pace_seconds_per_day:
                _keep_pace(day_started, pace_seconds_per_day, sleep)
            days += 1
            marks += len(batch)
            amendments += int(batch.amendment.sum())
            first = first or batch.date
            last = batch.date
            if on_day is not None:
                on_day(batch.date, len(batch))
        producer.flush()
    finally:
        if own_producer:
            producer.close()  # type: ignore[attr-defined]
    return LiveCounts(
        topic=topic, days=days, marks=marks, amendments=amendments, first_date=first, last_date=last,
        elapsed_seconds=time.perf_counter() - started,
    )


def shifted(record: dict[str, object], shift: dt.timedelta) -> dict[str, object]:
    """A mark record moved by `shift`: its date and its recording time."""
    recorded = dt.datetime.fromisoformat(str(record["recorded_at"])) + shift
    return {**record, "date": (dt.date.fromisoformat(str(record["date"])) + shift).isoformat(),
            "recorded_at": recorded.isoformat()}


def _keep_pace(since: float, due_after: float, sleep: Callable[[float], None]) -> None:
    wait = since + due_after - time.perf_counter()
    if wait > 0:
        sleep(wait)
