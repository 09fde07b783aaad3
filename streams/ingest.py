"""`reconnect ingest`: publish an interchange CSV to the marks topic with kafka-python.

Each valid row goes out keyed by pupil; each invalid row goes to the dead-letter topic with
the raw row, its line number and the reason. Nothing is dropped silently.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaProducer

from schemas.deadletter import dead_letter
from schemas.interchange import read_marks
from streams.settings import Settings


@dataclass
class IngestReport:
    read: int = 0
    published: int = 0
    rejected: int = 0
    failed: int = 0  # accepted by us but not acknowledged by the broker
    reasons: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return f"read {self.read}, published {self.published}, rejected {self.rejected} (to dead-letter)" + (
            f", FAILED to send {self.failed}" if self.failed else "")


def make_producer(settings: Settings, **overrides) -> KafkaProducer:
    # api_version is left automatic: pinning it low makes sends fail silently on some brokers.
    options = dict(bootstrap_servers=settings.bootstrap_list, acks="all", linger_ms=20, retries=5,
                   batch_size=256 * 1024, client_id=f"{settings.app_id}-ingest",
                   max_block_ms=int(settings.broker_connect_retry_s * 1000))
    options.update(overrides)
    return KafkaProducer(**options)


def ingest_file(path: Path, settings: Settings, *, producer: KafkaProducer | None = None,
                today: dt.date | None = None) -> IngestReport:
    report = IngestReport()
    own_producer = producer is None
    producer = producer or make_producer(settings)
    failures: list[BaseException] = []

    def on_error(exc: BaseException) -> None:
        failures.append(exc)

    try:
        for row in read_marks(path, today=today, max_future_days=settings.max_future_days):
            report.read += 1
            if row.mark is not None:
                producer.send(settings.topic_marks, key=row.mark.pupil_id.encode(),
                              value=row.mark.to_wire()).add_errback(on_error)
                report.published += 1
            else:
                assert row.rejection is not None
                record = dead_letter(row.rejection, row.raw, stage="ingest", source_file=str(path), line=row.line)
                producer.send(settings.topic_dead_letter, key=str(row.line).encode(),
                              value=record.model_dump_json().encode()).add_errback(on_error)
                report.rejected += 1
                reason = row.rejection.reason.value
                report.reasons[reason] = report.reasons.get(reason, 0) + 1
        producer.flush()
    finally:
        if own_producer:
            producer.close()
    report.failed = len(failures)
    return report
