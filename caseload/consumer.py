"""The caseload's Kafka consumer: intervention events become cases, register marks fill the grid.

One kafka-python consumer (its own group) reads both topics in a background thread. Each poll
is applied in one database transaction and its offsets are committed only after that
transaction commits, so a crash replays records rather than losing them, and replaying is
harmless: events are keyed by event id, and marks follow the latest-recording-wins rule.

A record it cannot read (not JSON, not the contract, an invalid mark) is counted and skipped
with a log line that names its topic, partition and offset, never its pupil. If the database
is unreachable the batch is retried from its first offset after a pause; if one record breaks
the batch for another reason, the batch is re-applied record by record and only that record
is skipped.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from caseload.settings import CaseloadSettings
from caseload.store import apply_event, apply_marks
from schemas.events import InterventionEvent
from schemas.marks import MarkLimits, MarkRejected, RegisterMark, parse_mark_json
from schemas.outcomes import ID_REGEX

log = logging.getLogger(__name__)
STORABLE_ID = re.compile(ID_REGEX)
RETRY_PAUSE_S = (1.0, 2.0, 5.0, 10.0, 30.0)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def consumer_options(settings: CaseloadSettings) -> dict[str, Any]:
    session_ms = int(settings.session_timeout_s * 1000)
    return {
        "bootstrap_servers": settings.bootstrap_list,
        "group_id": settings.consumer_group,
        "client_id": f"{settings.consumer_group}-consumer",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": int(settings.heartbeat_interval_s * 1000),
        "request_timeout_ms": max(30_000, session_ms + 5_000),
        "fetch_max_wait_ms": settings.consumer_fetch_max_wait_ms,
        "max_poll_records": settings.consumer_max_poll_records,
    }


class Unreadable(ValueError):
    """A record that is not a usable event or mark; `reason` is safe to log (no values in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_event(value: bytes | None) -> InterventionEvent:
    if not value:
        raise Unreadable("empty record")
    try:
        event = InterventionEvent.model_validate_json(value)
    except ValidationError as error:
        # Field locations and error types only: pydantic's message would quote the input.
        where = ", ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['type']}"
                          for e in error.errors(include_url=False)[:3])
        raise Unreadable(f"not an intervention event ({where})") from None
    if not (STORABLE_ID.fullmatch(event.pupil_id) and STORABLE_ID.fullmatch(event.school_id)
            and len(event.event_id) <= 64):
        raise Unreadable("an id is not a 1-64 character pseudonym")
    return event


def read_mark(value: bytes | None, limits: MarkLimits) -> RegisterMark:
    if not value:
        raise Unreadable("empty record")
    try:
        return parse_mark_json(value, limits=limits)
    except MarkRejected as rejection:
        raise Unreadable(f"not a usable mark ({rejection.reason.value})") from None


class RecordHandler:
    """Applies records of the two topics to the database; pure of Kafka, so tests drive it directly."""

    def __init__(self, settings: CaseloadSettings, sessions: sessionmaker[Session],
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.mark_limits = settings.mark_limits()
        self._lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def _apply(self, session: Session, records: Sequence[Any], counts: Counter[str]) -> None:
        now = self.clock()
        marks: list[RegisterMark] = []
        for record in records:
            try:
                if record.topic == self.settings.topic_interventions:
                    event = read_event(record.value)
                    counts[f"interventions_{apply_event(session, event, record.value.decode(), now).value}"] += 1
                elif record.topic == self.settings.topic_marks:
                    marks.append(read_mark(record.value, self.mark_limits))
                else:
                    raise Unreadable("record from a topic the caseload does not read")
            except Unreadable as problem:
                counts["unreadable"] += 1
                log.warning("Skipped a record at %s[%d]@%d: %s", record.topic, record.partition, record.offset,
                            problem.reason)
        for result, n in apply_marks(session, marks, now).items():
            counts[f"marks_{result}"] += n

    def handle(self, records: Sequence[Any]) -> Counter[str]:
        """Apply a batch in one transaction; on a non-connection failure, record by record.

        Raises sqlalchemy's OperationalError/InterfaceError when the database is unreachable:
        the caller re-reads the batch later.
        """
        counts: Counter[str] = Counter()
        try:
            with self.sessions.begin() as session:
                self._apply(session, records, counts)
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            log.exception("A batch of %d records failed; applying them one by one", len(records))
            counts = Counter()
            for record in records:
                single: Counter[str] = Counter()
                try:
                    with self.sessions.begin() as session:
                        self._apply(session, [record], single)
                except (OperationalError, InterfaceError):
                    raise
                except (DBAPIError, ValueError, KeyError, TypeError):
                    log.exception("Skipped a record at %s[%d]@%d that could not be stored", record.topic,
                                  record.partition, record.offset)
                    single = Counter({"failed": 1})
                counts.update(single)
        for key, n in counts.items():
            self.count(key, n)
        return counts


class CaseloadConsumer(threading.Thread):
    """The background thread: poll, apply in one transaction, then commit the offsets."""

    def __init__(self, settings: CaseloadSettings, handler: RecordHandler) -> None:
        super().__init__(name="caseload-consumer", daemon=True)
        self.settings = settings
        self.handler = handler
        self.stop_event = threading.Event()
        self.state = "connecting"
        self.batches = 0

    def stop(self, timeout: float = 15.0) -> None:
        self.stop_event.set()
        self.join(timeout)

    def _connect(self):
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        attempt = 0
        while not self.stop_event.is_set():
            try:
                consumer = KafkaConsumer(**consumer_options(self.settings))
                consumer.subscribe([self.settings.topic_interventions, self.settings.topic_marks])
                return consumer
            except KafkaError as error:
                self.state = "waiting for the broker"
                pause = RETRY_PAUSE_S[min(attempt, len(RETRY_PAUSE_S) - 1)]
                log.warning("Kafka not reachable (%s); retrying in %.0fs", type(error).__name__, pause)
                attempt += 1
                self.stop_event.wait(pause)
        return None

    def run(self) -> None:
        consumer = self._connect()
        if consumer is None:
            return
        self.state = "running"
        failures = 0
        try:
            while not self.stop_event.is_set():
                polled = consumer.poll(timeout_ms=500)
                records = [record for batch in polled.values() for record in batch]
                if not records:
                    continue
                try:
                    self.handler.handle(records)
                except (OperationalError, InterfaceError) as error:
                    pause = RETRY_PAUSE_S[min(failures, len(RETRY_PAUSE_S) - 1)]
                    failures += 1
                    self.state = "waiting for the database"
                    log.error("Database unavailable (%s); re-reading %d records in %.0fs", type(error).__name__,
                              len(records), pause)
                    for partition, batch in polled.items():
                        consumer.seek(partition, batch[0].offset)
                    self.stop_event.wait(pause)
                    continue
                failures = 0
                self.state = "running"
                self._commit(consumer)
                self.batches += 1
        except Exception:
            self.state = "failed"
            log.exception("The caseload consumer stopped")
            raise
        finally:
            try:
                consumer.close()
            except Exception:  # closing is best effort at shutdown
                log.debug("consumer close failed", exc_info=True)

    def _commit(self, consumer) -> None:
        from kafka.errors import CommitFailedError, KafkaError

        try:
            consumer.commit()
        except (CommitFailedError, KafkaError) as error:
            # A rebalance took the partitions: their new owner re-reads these records, which is harmless.
            log.warning("Offsets not committed (%s); the records will be read again", type(error).__name__)
