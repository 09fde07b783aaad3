"""`reconnect ingest`: publish an interchange CSV to the marks topic with kafka-python.

Each valid row goes out keyed by pupil; each invalid row goes to the dead-letter topic with
the raw row, its line number, the file's header and the reason. Nothing is dropped silently
and nothing stops the run mid-file: whatever a line holds, it is one row, published or
dead-lettered, and the counts reconcile (read = published + rejected + failed to send).

Exit status (`IngestExit`): 0 every row published; 3 some rows were rejected (dead-lettered;
every other row published); 4 the broker did not acknowledge some records (re-run the file:
marks are idempotent downstream); 1 the file is not an interchange CSV (nothing was read);
2 is click's own usage error (e.g. the file does not exist).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from kafka.errors import KafkaError, KafkaTimeoutError

from schemas.interchange import CsvRow, read_marks
from streams.clients import ProducerRole, kafka_producer
from streams.settings import Settings


class IngestExit(IntEnum):
    PUBLISHED = 0  # every row published
    FILE_REFUSED = 1  # not an interchange CSV (no usable header): nothing read or sent
    REJECTED = 3  # some rows dead-lettered with their reasons, every other row published
    SEND_FAILED = 4  # some records not acknowledged by the broker (wins over REJECTED)


@dataclass
class IngestReport:
    read: int = 0
    published: int = 0  # marks acknowledged by the broker
    rejected: int = 0  # rows dead-lettered, acknowledged by the broker
    failed: int = 0  # rows whose mark or dead letter the broker did not acknowledge
    reasons: dict[str, int] = field(default_factory=dict)
    send_error: str | None = None  # the first send failure, as an exception type and message

    def line(self) -> str:
        return f"read {self.read}, published {self.published}, rejected {self.rejected} (to dead-letter)" + (
            f", FAILED to send {self.failed}" if self.failed else "")

    @property
    def exit_code(self) -> IngestExit:
        if self.failed:
            return IngestExit.SEND_FAILED
        return IngestExit.REJECTED if self.rejected else IngestExit.PUBLISHED


class _Acknowledgements:
    """Counts what the broker acknowledged; kafka-python calls back from its I/O thread."""

    def __init__(self, report: IngestReport) -> None:
        self.report = report
        self.lock = threading.Lock()

    def published(self, _metadata) -> None:
        with self.lock:
            self.report.published += 1

    def rejected(self, reason: str):
        def done(_metadata) -> None:
            with self.lock:
                self.report.rejected += 1
                self.report.reasons[reason] = self.report.reasons.get(reason, 0) + 1
        return done

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            self.report.failed += 1
            self.report.send_error = self.report.send_error or f"{type(exc).__name__}: {exc}"


def ingest_file(path: Path, settings: Settings, *, producer=None, today: dt.date | None = None,
                now: dt.datetime | None = None) -> IngestReport:
    """Publish every row of `path`; never raises for a row. Raises InterchangeFormatError
    (before sending anything) for a file without a usable header."""
    report = IngestReport()
    acks = _Acknowledgements(report)
    rows = read_marks(path, limits=settings.mark_limits(), today=today, now=now)
    first = next(rows, None)  # the header is checked here, before a producer is made
    own_producer = producer is None
    broker_down: str | None = None
    if own_producer:
        try:
            producer = kafka_producer(settings, ProducerRole.BULK)
        except KafkaError as exc:
            broker_down = f"{type(exc).__name__}: {exc}"
    try:
        for row in _chain(first, rows):
            report.read += 1
            if broker_down is not None:
                acks.failed(RuntimeError(broker_down))
                continue
            try:
                _send(producer, settings, row, path, acks)
            except KafkaTimeoutError as exc:
                # Metadata did not come within max_block_ms: the broker is unreachable, and every
                # further send would block as long. Count the rest as failed without waiting.
                broker_down = f"{type(exc).__name__}: {exc}"
                acks.failed(exc)
            except KafkaError as exc:  # this record only (e.g. too large for the broker)
                acks.failed(exc)
        if producer is not None and broker_down is None:
            producer.flush()
    finally:
        if own_producer and producer is not None:
            producer.close()
    return report


def _chain(first: CsvRow | None, rest):
    if first is not None:
        yield first
        yield from rest


def _send(producer, settings: Settings, row: CsvRow, path: Path, acks: _Acknowledgements) -> None:
    if row.mark is not None:
        future = producer.send(settings.topic_marks, key=row.mark.pupil_id.encode(), value=row.mark.to_wire())
        future.add_callback(acks.published)
    else:
        assert row.rejection is not None
        record = row.dead_letter(stage="ingest", source_file=str(path))
        future = producer.send(settings.topic_dead_letter, key=str(row.line).encode(),
                               value=record.model_dump_json().encode())
        future.add_callback(acks.rejected(row.rejection.reason.value))
    future.add_errback(acks.failed)
