"""Outcomes staff record go to the outcomes topic, from an outbox in the caseload database.

Recording an outcome writes it to the database first (with the case's new status, in one
transaction); it is then sent at once, and anything not yet acknowledged by the broker
(acks=all) is retried by a background thread. So a broker outage when staff press the button
delays an outcome but never loses it, and the outcome id (kept with it) lets the worker count
a resend once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from caseload.settings import CaseloadSettings
from caseload.store import unpublished_outcomes
from caseload.tables import CaseAction, PupilCase

log = logging.getLogger(__name__)
SEND_TIMEOUT_S = 10.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class KafkaSender:
    """Sends one record and waits for the broker's acknowledgement (acks=all)."""

    def __init__(self, settings: CaseloadSettings) -> None:
        self.settings = settings
        self._producer = None
        self._lock = threading.Lock()

    def _get(self):
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(
                bootstrap_servers=self.settings.bootstrap_list, client_id=f"{self.settings.consumer_group}-outcomes",
                acks="all", linger_ms=0, retries=5, request_timeout_ms=self.settings.producer_request_timeout_ms,
                max_block_ms=int(SEND_TIMEOUT_S * 1000),
            )
        return self._producer

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        with self._lock:
            self._get().send(topic, key=key, value=value).get(timeout=SEND_TIMEOUT_S)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None


class OutcomePublisher:
    """Publishes outcomes waiting in the outbox; safe to call from several threads."""

    def __init__(self, settings: CaseloadSettings, sessions: sessionmaker[Session], sender=None,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.settings = settings
        self.sessions = sessions
        self.sender = sender if sender is not None else KafkaSender(settings)
        self.clock = clock
        self._lock = threading.Lock()
        self.published = 0
        self.failures = 0

    def publish_pending(self, action_ids: Sequence[int] | None = None) -> int:
        """Send waiting outcomes (these, or all); returns how many the broker acknowledged."""
        with self._lock:
            with self.sessions() as session:
                if action_ids is None:
                    waiting = unpublished_outcomes(session)
                else:
                    waiting = list(session.scalars(select(CaseAction).where(
                        CaseAction.id.in_(list(action_ids)), CaseAction.published_at.is_(None))))
                pupils = {case.id: case.pupil_id for case in session.scalars(
                    select(PupilCase).where(PupilCase.id.in_({row.case_id for row in waiting})))}
                sent = 0
                for row in waiting:
                    try:
                        self.sender.send(self.settings.topic_outcomes, key=pupils[row.case_id].encode(),
                                         value=row.outcome_payload.encode())
                    except Exception as error:  # the broker is down or slow: the outbox keeps it
                        self.failures += 1
                        log.warning("An outcome could not be published yet (%s); it stays in the outbox",
                                    type(error).__name__)
                        break
                    row.published_at = self.clock()
                    session.commit()
                    sent += 1
                self.published += sent
                return sent

    def waiting(self) -> int:
        with self.sessions() as session:
            return len(unpublished_outcomes(session, limit=10_000))


class OutboxThread(threading.Thread):
    """Retries the outbox every `outbox_interval_s`."""

    def __init__(self, publisher: OutcomePublisher, interval_s: float) -> None:
        super().__init__(name="caseload-outbox", daemon=True)
        self.publisher = publisher
        self.interval_s = interval_s
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            try:
                self.publisher.publish_pending()
            except Exception:
                log.exception("Publishing the outbox failed; trying again in %.0fs", self.interval_s)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.join(timeout)
