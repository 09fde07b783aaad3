"""The webhook as a sink, shaped like Quix Streams' `Sink` (`quixstreams/sinks/base/sink.py`).

`add(record)` buffers a consumed record by topic partition; `flush()` handles every buffered record
in order, partition by partition: it delivers the event (signed, retried per the `RetryPolicy`) or
writes a dead letter, then waits for the broker to acknowledge every dead letter it wrote. The
`FlushResult` says, per partition, how far the records are finished (delivered, or dead-lettered
and acknowledged) and where to read again; the consumer commits those offsets only after the
flush returns. A stop or a rebalance while waiting between attempts cuts the flush short: what
finished is committed, the rest is read again later (and a receiver de-duplicates by webhook-id).

A record that cannot be read, and any unexpected error while handling one, ends in a dead letter
with a reason: no record can stop the bridge or take another record with it.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.events import InterventionEvent
from schemas.outcomes import WebhookDeadLetter, WebhookFailure
from streams.webhook.http import AttemptResult, Verdict, WebhookClient
from streams.webhook.metrics import BridgeMetrics
from streams.webhook.records import Record, UnreadableRecord, dead_letter, read_event
from streams.webhook.retry import RetryPolicy
from streams.webhook.signing import WebhookSecret, signature_headers

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
DEAD_LETTER_FLUSH_TIMEOUT_S = 30.0


class Interrupted(Exception):
    """A wait between attempts was cut short: by a stop ("stop") or a rebalance ("rebalance")."""


# Waits this many seconds while keeping the consumer in its group; raises Interrupted. Called with
# 0 before every attempt, to notice a stop or a rebalance at once.
Waiter = Callable[[float], None]


@dataclass
class PendingLetter:
    record: Record
    letter: WebhookDeadLetter
    future: Any | None = None  # the producer's future; None when the send itself failed
    acknowledged: bool = False


class DeadLetterWriter:
    """Writes dead letters to their topic (keyed like the record) and confirms the broker has them."""

    def __init__(self, producer: Any, topic: str, wait: Waiter, policy: RetryPolicy, rng: random.Random) -> None:
        self.producer = producer
        self.topic = topic
        self.wait = wait
        self.policy = policy
        self.rng = rng

    def send(self, record: Record, letter: WebhookDeadLetter) -> PendingLetter:
        pending = PendingLetter(record, letter)
        self._send(pending)
        return pending

    def _send(self, pending: PendingLetter) -> None:
        try:
            pending.future = self.producer.send(self.topic, key=pending.record.key,
                                                value=pending.letter.model_dump_json().encode())
        except Exception as exc:  # buffer full, broker unreachable: retried by confirm()
            log.error("dead letter for partition %s offset %s not sent (%s)", pending.record.partition,
                      pending.record.offset, type(exc).__name__)
            pending.future = None

    def _collect(self, pending: Sequence[PendingLetter]) -> None:
        try:
            self.producer.flush(timeout=DEAD_LETTER_FLUSH_TIMEOUT_S)
        except Exception as exc:  # a flush that timed out: the futures say which ones made it
            log.error("dead-letter flush: %s", type(exc).__name__)
        for item in pending:
            if item.acknowledged or item.future is None or not item.future.is_done:
                continue
            item.acknowledged = item.future.succeeded()
            if not item.acknowledged:
                log.error("dead letter for partition %s offset %s refused by the broker (%s)",
                          item.record.partition, item.record.offset, type(item.future.exception).__name__)
                item.future = None

    def confirm(self, pending: Sequence[PendingLetter], *, retry: bool) -> None:
        """Wait for the broker to acknowledge each dead letter, re-sending those it did not take until it
        does (`retry`; raises Interrupted on a stop), or only note which it has (not `retry`)."""
        failures = 0
        while True:
            self._collect(pending)
            missing = [item for item in pending if not item.acknowledged]
            if not missing or not retry:
                return
            failures += 1
            self.wait(self.policy.backoff(min(failures, 8), self.rng) + 0.1)
            for item in missing:
                if item.future is None:
                    self._send(item)


@dataclass(frozen=True)
class FlushResult:
    committable: dict[TopicPartition, int] = field(default_factory=dict)  # next offset to commit
    resume: dict[TopicPartition, int] = field(default_factory=dict)  # first offset to read again
    interrupted: str | None = None


@dataclass
class _Outcome:
    record: Record
    letter: PendingLetter | None  # None: delivered


class WebhookSink:
    def __init__(self, client: WebhookClient, secrets: Sequence[WebhookSecret], policy: RetryPolicy,
                 dead_letters: DeadLetterWriter, metrics: BridgeMetrics, wait: Waiter, rng: random.Random) -> None:
        if not secrets:
            raise ValueError("the sink needs at least one signing secret")
        self.client = client
        self.secrets = tuple(secrets)
        self.policy = policy
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.wait = wait
        self.rng = rng
        self._batches: dict[TopicPartition, list[Record]] = {}

    def add(self, record: Record) -> None:
        self._batches.setdefault((record.topic, record.partition), []).append(record)
        self.metrics.read.inc()
        self.metrics.in_flight.inc()

    def flush(self) -> FlushResult:
        batches, self._batches = self._batches, {}
        outcomes: dict[TopicPartition, list[_Outcome]] = {tp: [] for tp in batches}
        letters: list[PendingLetter] = []
        interrupted: str | None = None
        try:
            for tp in sorted(batches):
                for record in batches[tp]:
                    letter = self._handle(record)
                    pending = self.dead_letters.send(record, letter) if letter is not None else None
                    if pending is not None:
                        letters.append(pending)
                    outcomes[tp].append(_Outcome(record, pending))
            self.dead_letters.confirm(letters, retry=True)
        except Interrupted as why:
            interrupted = str(why)
            self.dead_letters.confirm(letters, retry=False)
        return self._settle(batches, outcomes, interrupted)

    # One record ---------------------------------------------------------------------------------
    def _handle(self, record: Record) -> WebhookDeadLetter | None:
        """Deliver the record's event (None) or say why not (its dead letter). Raises only Interrupted."""
        host = self.client.display_host
        try:
            event = read_event(record.value)
            return self._deliver(record, event)
        except Interrupted:
            raise
        except UnreadableRecord as why:
            return dead_letter(record, why.reason, why.detail, event_id=why.event_id, webhook_host=host)
        except Exception as exc:  # a defect: keep the record, name the exception type only (no data)
            log.error("internal error on partition %s offset %s: %s", record.partition, record.offset,
                      type(exc).__name__)
            return dead_letter(record, WebhookFailure.INTERNAL_ERROR,
                               f"{type(exc).__name__} while handling the record", webhook_host=host)

    def _deliver(self, record: Record, event: InterventionEvent) -> WebhookDeadLetter | None:
        body = record.value
        assert body is not None  # read_event refused tombstones
        first_at, first_mono = dt.datetime.now(dt.timezone.utc), time.monotonic()
        last: AttemptResult | None = None
        for attempt in range(1, self.policy.max_attempts + 1):
            self.wait(0)
            last = self.client.post(body, signature_headers(self.secrets, event.event_id, body))
            self.metrics.attempts.labels(verdict=last.verdict.value, status_class=last.status_class).inc()
            self.metrics.request_seconds.observe(last.seconds)
            if last.verdict is Verdict.DELIVERED:
                self._observe_delivery(record, first_mono)
                return None
            if last.verdict in (Verdict.REJECTED, Verdict.REDIRECTED):
                reason = WebhookFailure.REJECTED if last.verdict is Verdict.REJECTED else WebhookFailure.REDIRECTED
                return self._letter(record, event, reason, f"{last.describe()} on attempt {attempt}: {last.detail}",
                                    attempt, last, first_at)
            if attempt < self.policy.max_attempts:
                wait = self.policy.wait_after(attempt, last.retry_after_s, self.rng)
                log.info("event %s attempt %d: %s; retrying in %.2fs", event.event_id, attempt, last.describe(), wait)
                self._wait_between_attempts(wait)
        assert last is not None
        return self._letter(record, event, WebhookFailure.MAX_ATTEMPTS,
                            f"{self.policy.max_attempts} attempts failed; the last: {last.describe()} {last.detail}",
                            self.policy.max_attempts, last, first_at)

    def _letter(self, record: Record, event: InterventionEvent, reason: WebhookFailure, detail: str, attempts: int,
                last: AttemptResult, first_at: dt.datetime) -> WebhookDeadLetter:
        return dead_letter(record, reason, detail.strip(), event_id=event.event_id, attempts=attempts, last=last,
                           webhook_host=self.client.display_host, first_attempt_at=first_at)

    def _wait_between_attempts(self, seconds: float) -> None:
        self.metrics.retrying.set(1)
        started = time.monotonic()
        try:
            self.wait(seconds)
        finally:
            self.metrics.retrying.set(0)
            self.metrics.retry_wait_seconds.inc(time.monotonic() - started)

    def _observe_delivery(self, record: Record, first_mono: float) -> None:
        self.metrics.delivery_seconds.observe(time.monotonic() - first_mono)
        if record.timestamp and record.timestamp > 0:
            self.metrics.end_to_end_seconds.observe(max(0.0, time.time() - record.timestamp / 1000))
        self.metrics.last_delivery.set(time.time())

    # Settling a flush -----------------------------------------------------------------------------
    def _settle(self, batches: dict[TopicPartition, list[Record]], outcomes: dict[TopicPartition, list[_Outcome]],
                interrupted: str | None) -> FlushResult:
        """Per partition, the finished prefix is committable; everything after it is read again."""
        committable: dict[TopicPartition, int] = {}
        resume: dict[TopicPartition, int] = {}
        for tp, records in batches.items():
            finished = 0
            for outcome in outcomes[tp]:
                if outcome.letter is not None and not outcome.letter.acknowledged:
                    break
                finished += 1
                if outcome.letter is None:
                    self.metrics.delivered.inc()
                else:
                    reason = outcome.letter.letter.reason
                    self.metrics.dead_lettered.labels(reason=reason.value).inc()
                    log.warning("dead-lettered partition %s offset %s: %s", outcome.record.partition,
                                outcome.record.offset, reason.value)
            if finished:
                committable[tp] = records[finished - 1].offset + 1
            if finished < len(records):
                resume[tp] = records[finished].offset
                self.metrics.returned.inc(len(records) - finished)
            self.metrics.in_flight.dec(len(records))
        return FlushResult(committable, resume, interrupted)
