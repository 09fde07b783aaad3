"""`reconnect bridge`: deliver intervention events to a pastoral system's webhook, reliably.

A kafka-python consumer in its own group (`<app_id>-webhook-bridge`) reads the interventions
topic and POSTs each event, in order per partition, to one webhook URL:

* Body: the record value exactly as published (the event's JSON), `Content-Type: application/json`.
* Idempotency: `Idempotency-Key` and `X-Reconnect-Event-Id` carry the event's `event_id`, which is
  deterministic (the same decision always has the same id). Delivery is at-least-once; the receiver
  de-duplicates by this key, which makes it exactly-once in effect.
* Signature (the scheme, precisely):
  `X-Reconnect-Timestamp: <T>`, T = Unix time in whole seconds when this attempt was signed, as
  ASCII decimal digits; `X-Reconnect-Signature: sha256=<hex>`, hex = lowercase hexadecimal
  HMAC-SHA256, keyed with the shared secret (its UTF-8 bytes), of the bytes `<T>` + `.` + body.
  A receiver recomputes it over the raw body before parsing it, compares in constant time, and
  rejects a T more than 300 s from its own clock, so a captured request cannot be replayed later.
  Every attempt is signed afresh. During a secret rotation a receiver accepts either secret.
  `verify_signature` below is the reference implementation.
* Retries: timeouts, connection errors, 5xx and 429 are retried with exponential backoff and full
  jitter (a random wait between 0 and min(cap, base * 2^(attempt-1))); on 429 and 503 a
  `Retry-After` (seconds or an HTTP-date) is honoured instead, up to a cap. Any other 4xx is final:
  the event is dead-lettered at once (retrying cannot help; a receiver must answer 2xx to a
  duplicate). 3xx is final too (redirects are not followed: fix the URL).
* Dead letters: after `max_attempts` attempts, or a final answer, the event goes to the webhook
  dead-letter topic (`WebhookDeadLetter`: the event as published, the reason, the last status, the
  attempts). A record that is not a valid intervention event is dead-lettered too; the bridge
  never crashes on data.
* Offsets: committed explicitly, one record at a time, only after the record was delivered (2xx)
  or its dead letter acknowledged by the broker. A crash or a stop mid-retry leaves the offset
  before the event, so it is delivered again after a restart (and de-duplicated by the receiver).
  While an event waits between attempts the bridge keeps polling with its partitions paused, so
  it stays in its group however long a receiver asks it to wait.
* Metrics: its own Prometheus registry, served at /metrics on `metrics_port`; no pupil id in any
  label.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import json
import logging
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.events import EVENT_SCHEMA_VERSION, InterventionEvent
from schemas.outcomes import WebhookDeadLetter, WebhookFailure
from streams.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_TOPIC_WEBHOOK_DEAD_LETTER = "reconnect.webhook-dead-letter.v1"
SIGNATURE_HEADER = "X-Reconnect-Signature"
TIMESTAMP_HEADER = "X-Reconnect-Timestamp"
EVENT_ID_HEADER = "X-Reconnect-Event-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ATTEMPT_HEADER = "X-Reconnect-Delivery-Attempt"
SIGNATURE_SCHEME = "sha256"
DEFAULT_TOLERANCE_S = 300
USER_AGENT = "reconnect-webhook-bridge/1"
MAX_RAW_KEPT = 64 * 1024
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


# --- The signature scheme ------------------------------------------------------------------------

def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`."""
    digest = hmac.new(_key(secret), str(int(timestamp)).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_SCHEME}={digest}"


def signed_headers(secret: str | bytes, body: bytes, event_id: str, attempt: int,
                   now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        IDEMPOTENCY_HEADER: event_id,
        EVENT_ID_HEADER: event_id,
        ATTEMPT_HEADER: str(attempt),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def verify_signature(secrets: Iterable[str | bytes], body: bytes, timestamp: str | None, signature_value: str | None,
                     *, tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> str | None:
    """None when the request is authentic and fresh; otherwise why not (for a 401 and a log line)."""
    if not timestamp or not signature_value:
        return "missing signature or timestamp header"
    if not timestamp.isdigit() or len(timestamp) > 12:
        return "malformed timestamp"
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance_s:
        return "timestamp outside the tolerance (stale or replayed request, or a clock far off)"
    offered = [part.strip() for part in signature_value.split(",") if part.strip()]
    for secret in secrets:
        expected = signature(secret, int(timestamp), body)
        if any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in offered):
            return None
    return "signature does not match"


# --- Retry policy --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 10  # HTTP attempts per event, the first included; then the event is dead-lettered
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    timeout_s: float = 10.0  # per HTTP attempt (connect, send, and each read)
    max_retry_after_s: float = 600.0  # a longer Retry-After is waited for this long

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.timeout_s <= 0:
            raise ValueError("backoffs must be >= 0 and the timeout > 0")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))] after failed attempt `attempt`."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2 ** min(max(attempt - 1, 0), 62)))
        return (rng or random).uniform(0, ceiling)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --- HTTP ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AttemptResult:
    status: int | None  # None: no response (timeout or connection error)
    error: str | None = None  # "timeout" | "connection_error"
    retry_after: float | None = None
    seconds: float = 0.0
    detail: str = ""

    @property
    def status_class(self) -> str:
        if self.status is None:
            return self.error or "connection_error"
        if self.status == 429:
            return "429"
        return f"{self.status // 100}xx"

    @property
    def verdict(self) -> str:
        """delivered | retry | rejected | redirected."""
        if self.status is None:
            return "retry"
        if 200 <= self.status < 300:
            return "delivered"
        if self.status == 429 or self.status >= 500:
            return "retry"
        if 300 <= self.status < 400:
            return "redirected"
        return "rejected"


class WebhookClient:
    """POSTs to one URL over a kept-alive connection (stdlib http.client, no new dependencies)."""

    IDLE_REUSE_S = 4.0  # a connection idle longer than this is replaced rather than risked

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL must be http(s)://host[:port]/path, not {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    @property
    def display_host(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None and time.monotonic() - self._last_used > self.IDLE_REUSE_S:
            self.close()
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout_s)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def post(self, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        started = time.monotonic()
        try:
            conn = self._connection()
            conn.request("POST", self.path, body=body, headers=dict(headers))
            response = conn.getresponse()
            text = response.read(4096)
            if not response.isclosed():
                response.read()  # drain so the connection can be reused
            status = response.status
            retry_after = parse_retry_after(response.getheader("Retry-After")) if status in (429, 503) else None
            if response.getheader("Connection", "").lower() == "close" or response.will_close:
                self.close()
            self._last_used = time.monotonic()
            return AttemptResult(status, None, retry_after, time.monotonic() - started,
                                 text[:200].decode("utf-8", "replace"))
        except (TimeoutError, socket.timeout) as exc:
            self.close()
            return AttemptResult(None, "timeout", None, time.monotonic() - started, f"timed out: {exc}")
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return AttemptResult(None, "connection_error", None, time.monotonic() - started,
                                 f"{type(exc).__name__}: {exc}")


# --- Metrics ------------------------------------------------------------------------------------

class BridgeMetrics:
    """The bridge's metrics on their own registry. Labels are bounded; none carries a pupil id."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.attempts = Counter("reconnect_webhook_attempts_total",
                                "HTTP delivery attempts, by outcome (delivered, retry, rejected, redirected) and "
                                "status class (2xx, 3xx, 4xx, 429, 5xx, timeout, connection_error).",
                                ["outcome", "status_class"], registry=r)
        self.delivered = Counter("reconnect_webhook_delivered_total",
                                 "Interventions the webhook accepted (2xx).", registry=r)
        self.failed_attempts = Counter("reconnect_webhook_failed_attempts_total",
                                       "HTTP attempts that did not deliver, by status class.", ["status_class"],
                                       registry=r)
        self.dead_lettered = Counter("reconnect_webhook_dead_lettered_total",
                                     "Interventions sent to the webhook dead-letter topic, by reason.", ["reason"],
                                     registry=r)
        self.delivery_seconds = Histogram("reconnect_webhook_delivery_seconds",
                                          "From the first attempt to the webhook accepting the event, "
                                          "retries included.",
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.request_seconds = Histogram("reconnect_webhook_request_seconds", "Duration of one HTTP attempt.",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.end_to_end_seconds = Histogram("reconnect_webhook_end_to_end_seconds",
                                            "From the event being appended to its topic to the webhook accepting it.",
                                            buckets=LATENCY_BUCKETS, registry=r)
        self.retry_wait_seconds = Counter("reconnect_webhook_retry_wait_seconds_total",
                                          "Time spent waiting between attempts (backoff and Retry-After).", registry=r)
        self.retrying = Gauge("reconnect_webhook_retrying", "1 while an event is waiting to be retried.", registry=r)
        self.committed_offset = Gauge("reconnect_webhook_committed_offset",
                                      "Next offset committed by the bridge, by partition.", ["partition"], registry=r)
        self.last_delivery = Gauge("reconnect_webhook_last_delivery_timestamp_seconds",
                                   "Unix time of the last successful delivery.", registry=r)
        for outcome, klass in (("delivered", "2xx"), ("retry", "5xx"), ("retry", "429"), ("retry", "timeout"),
                               ("retry", "connection_error"), ("rejected", "4xx")):
            self.attempts.labels(outcome=outcome, status_class=klass)
        for reason in WebhookFailure:
            self.dead_lettered.labels(reason=reason.value)

    def totals(self) -> dict[str, float]:
        """delivered / attempts / dead_lettered / failed_attempts, summed over labels (for reports and tests)."""
        def total(name: str) -> float:
            return sum(s.value for m in self.registry.collect() if m.name == name
                       for s in m.samples if s.name == name + "_total")
        return {"delivered": total("reconnect_webhook_delivered"), "attempts": total("reconnect_webhook_attempts"),
                "dead_lettered": total("reconnect_webhook_dead_lettered"),
                "failed_attempts": total("reconnect_webhook_failed_attempts")}


# --- The bridge ---------------------------------------------------------------------------------

@dataclass
class BridgeReport:
    delivered: int = 0
    dead_lettered: int = 0
    attempts: int = 0
    abandoned: int = 0  # in flight when stopped or rebalanced: not committed, will be redelivered
    commits: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    stopped_because: str = ""

    def line(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
        return (f"delivered {self.delivered}, dead-lettered {self.dead_lettered}"
                + (f" ({reasons})" if reasons else "")
                + f", attempts {self.attempts}, abandoned in flight {self.abandoned}; stopped: {self.stopped_because}")


class _Interrupted(Exception):
    """The wait between attempts was cut short by a stop or a rebalance."""


def _raw_text(data: bytes) -> tuple[str, str, bool]:
    kept = data[:MAX_RAW_KEPT]
    try:
        return kept.decode("utf-8"), "utf-8", len(data) > MAX_RAW_KEPT
    except UnicodeDecodeError:
        return base64.b64encode(kept).decode("ascii"), "base64", len(data) > MAX_RAW_KEPT


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class WebhookBridge:
    def __init__(self, settings: Settings, webhook_url: str, secret: str | bytes, *,
                 policy: RetryPolicy | None = None, group_id: str | None = None, topic: str | None = None,
                 dead_letter_topic: str = DEFAULT_TOPIC_WEBHOOK_DEAD_LETTER, metrics: BridgeMetrics | None = None,
                 stop_event: threading.Event | None = None, stop_when_idle_s: float | None = None,
                 max_run_s: float | None = None, start_from: str = "earliest", max_poll_records: int = 100,
                 rng: random.Random | None = None, consumer_options: Mapping[str, object] | None = None) -> None:
        if start_from not in ("earliest", "latest"):
            raise ValueError("start_from must be 'earliest' or 'latest'")
        self.settings = settings
        self.secret = _key(secret)
        self.policy = policy or RetryPolicy()
        self.client = WebhookClient(webhook_url, self.policy.timeout_s)
        self.group_id = group_id or f"{settings.app_id}-webhook-bridge"
        self.topic = topic or settings.topic_interventions
        self.dead_letter_topic = dead_letter_topic
        self.metrics = metrics or BridgeMetrics()
        self.stop_event = stop_event or threading.Event()
        self.stop_when_idle_s = stop_when_idle_s
        self.max_run_s = max_run_s
        self.start_from = start_from
        self.max_poll_records = max_poll_records
        self.rng = rng or random.Random()
        self.consumer_options = dict(consumer_options or {})
        self.report = BridgeReport()
        self._generation = 0
        self._rebalancing = False
        self._consumer = None
        self._producer = None

    # Kafka clients ---------------------------------------------------------------------------
    def _make_consumer(self):
        from kafka import KafkaConsumer

        options = dict(
            bootstrap_servers=self.settings.bootstrap_list, group_id=self.group_id,
            client_id=f"{self.settings.app_id}-webhook-bridge", enable_auto_commit=False,
            auto_offset_reset=self.start_from, max_poll_records=self.max_poll_records,
            session_timeout_ms=int(self.settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.heartbeat_interval_s * 1000),
            request_timeout_ms=max(30000, int(self.settings.session_timeout_s * 1000) + 5000),
        )
        options.update(self.consumer_options)
        return KafkaConsumer(**options)

    def _make_producer(self):
        from kafka import KafkaProducer

        return KafkaProducer(bootstrap_servers=self.settings.bootstrap_list, acks="all", retries=5, linger_ms=0,
                             client_id=f"{self.settings.app_id}-webhook-bridge-dlq",
                             max_block_ms=int(self.settings.broker_connect_retry_s * 1000))

    def _listener(self):
        from kafka import ConsumerRebalanceListener

        bridge = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                bridge._generation += 1
                bridge._rebalancing = True
                if revoked:
                    log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))

            def on_partitions_assigned(self, assigned):
                bridge._generation += 1
                bridge._rebalancing = False
                log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))

        return Listener()

    # Waiting without leaving the group -----------------------------------------------------------
    def _wait(self, seconds: float) -> None:
        """Wait between attempts, polling with every partition paused so the group membership stays
        alive. Raises _Interrupted on a stop or a rebalance."""
        consumer = self._consumer
        generation = self._generation
        deadline = time.monotonic() + seconds
        self.metrics.retrying.set(1)
        started = time.monotonic()
        try:
            while True:
                if self.stop_event.is_set():
                    raise _Interrupted("stop")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                slice_s = min(remaining, 0.25)
                assigned = consumer.assignment()
                if assigned:
                    consumer.pause(*assigned)
                before = time.monotonic()
                got = consumer.poll(timeout_ms=max(1, int(slice_s * 1000)), update_offsets=False)
                for tp, records in got.items():  # newly assigned partitions are not paused yet: give them back
                    if records:
                        consumer.seek(tp, records[0].offset)
                if self._generation != generation:
                    raise _Interrupted("rebalance")
                spent = time.monotonic() - before
                if spent < slice_s * 0.5:  # poll returned early: do not spin
                    self.stop_event.wait(min(slice_s - spent, max(0.0, deadline - time.monotonic())))
        finally:
            paused = consumer.paused()
            if paused:
                consumer.resume(*paused)
            self.metrics.retrying.set(0)
            self.metrics.retry_wait_seconds.inc(time.monotonic() - started)

    # One record ------------------------------------------------------------------------------
    def _dead_letter(self, record, reason: WebhookFailure, detail: str, *, event_id: str | None, attempts: int,
                     last: AttemptResult | None, first_attempt_at: dt.datetime | None) -> None:
        data = record.value or b""
        raw, encoding, truncated = _raw_text(data)
        letter = WebhookDeadLetter(
            reason=reason, detail=detail, event_id=event_id, attempts=attempts,
            last_status=last.status if last else None, last_error=last.error if last else None,
            webhook_host=self.client.display_host, raw=raw, raw_encoding=encoding, raw_bytes=len(data),
            raw_sha256=hashlib.sha256(data).hexdigest(), truncated=truncated, topic=record.topic,
            partition=record.partition, offset=record.offset, first_attempt_at=first_attempt_at,
            dead_lettered_at=_now(),
        )
        if self._producer is None:
            self._producer = self._make_producer()
        failures = 0
        while True:
            try:
                self._producer.send(self.dead_letter_topic, key=record.key,
                                    value=letter.model_dump_json().encode()).get(timeout=30)
                break
            except Exception as exc:  # the broker did not take it: never commit past it
                failures += 1
                log.error("dead letter for offset %s-%s not written (%s); retrying", record.partition,
                          record.offset, exc)
                self._wait(self.policy.backoff(min(failures, 8), self.rng) + 0.1)
        self.metrics.dead_lettered.labels(reason=reason.value).inc()
        self.report.dead_lettered += 1
        self.report.reasons[reason.value] = self.report.reasons.get(reason.value, 0) + 1
        log.warning("dead-lettered event %s (partition %s offset %s): %s: %s", event_id, record.partition,
                    record.offset, reason.value, detail)

    def _handle(self, record) -> None:
        """Deliver or dead-letter one record; raises _Interrupted if neither happened."""
        body = record.value
        try:
            if body is None:
                raise ValueError("the record has no value (a tombstone)")
            event = InterventionEvent.model_validate_json(body)
            if event.schema_version != EVENT_SCHEMA_VERSION:
                raise ValueError(f"schema_version {event.schema_version} is not {EVENT_SCHEMA_VERSION}")
        except ValueError as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            event_id = None
            try:
                event_id = str(json.loads(body).get("event_id")) if body else None
            except (ValueError, AttributeError):
                pass
            self._dead_letter(record, WebhookFailure.INVALID_EVENT, f"not an intervention event: {detail}",
                              event_id=event_id, attempts=0, last=None, first_attempt_at=None)
            return

        first_at, first_mono = _now(), time.monotonic()
        last: AttemptResult | None = None
        for attempt in range(1, self.policy.max_attempts + 1):
            if self.stop_event.is_set():
                raise _Interrupted("stop")
            last = self.client.post(body, signed_headers(self.secret, body, event.event_id, attempt))
            verdict = last.verdict
            self.report.attempts += 1
            self.metrics.attempts.labels(outcome=verdict, status_class=last.status_class).inc()
            self.metrics.request_seconds.observe(last.seconds)
            if verdict == "delivered":
                self.metrics.delivered.inc()
                self.metrics.delivery_seconds.observe(time.monotonic() - first_mono)
                if record.timestamp and record.timestamp > 0:
                    self.metrics.end_to_end_seconds.observe(max(0.0, time.time() - record.timestamp / 1000))
                self.metrics.last_delivery.set(time.time())
                self.report.delivered += 1
                return
            self.metrics.failed_attempts.labels(status_class=last.status_class).inc()
            what = f"HTTP {last.status}" if last.status is not None else last.error
            if verdict in ("rejected", "redirected"):
                reason = WebhookFailure.REJECTED if verdict == "rejected" else WebhookFailure.REDIRECTED
                self._dead_letter(record, reason, f"{what} on attempt {attempt}: {last.detail}".strip(),
                                  event_id=event.event_id, attempts=attempt, last=last, first_attempt_at=first_at)
                return
            if attempt == self.policy.max_attempts:
                break
            if last.retry_after is not None:
                wait = min(last.retry_after, self.policy.max_retry_after_s)
            else:
                wait = self.policy.backoff(attempt, self.rng)
            log.info("event %s attempt %d: %s; retrying in %.2fs", event.event_id, attempt, what, wait)
            self._wait(wait)
        assert last is not None
        what = f"HTTP {last.status}" if last.status is not None else last.error
        self._dead_letter(record, WebhookFailure.MAX_ATTEMPTS,
                          f"{self.policy.max_attempts} attempts failed; the last: {what} {last.detail}".strip(),
                          event_id=event.event_id, attempts=self.policy.max_attempts, last=last,
                          first_attempt_at=first_at)

    def _commit(self, record) -> None:
        from kafka import TopicPartition
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata

        tp = TopicPartition(record.topic, record.partition)
        failures = 0
        while True:
            try:
                self._consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
                self.metrics.committed_offset.labels(partition=str(record.partition)).set(record.offset + 1)
                self.report.commits += 1
                return
            except CommitFailedError as exc:  # the group rebalanced: someone else owns it now
                log.warning("commit of %s-%s failed (%s); it will be redelivered", record.partition, record.offset, exc)
                raise _Interrupted("rebalance") from None
            except KafkaError as exc:
                failures += 1
                if failures > 5:
                    raise _Interrupted(f"commit failed: {exc}") from None
                log.warning("commit of %s-%s failed (%s); retrying", record.partition, record.offset, exc)
                self._wait(0.2 * failures)

    # The loop --------------------------------------------------------------------------------
    def run(self) -> BridgeReport:
        self._consumer = self._make_consumer()
        self._consumer.subscribe([self.topic], listener=self._listener())
        started = time.monotonic()
        idle_since: float | None = None
        log.info("bridge: %s -> %s (group %s)", self.topic, self.client.display_host, self.group_id)
        try:
            while True:
                if self.stop_event.is_set():
                    self.report.stopped_because = self.report.stopped_because or "stop requested"
                    break
                if self.max_run_s is not None and time.monotonic() - started >= self.max_run_s:
                    self.report.stopped_because = f"ran {self.max_run_s:g}s"
                    break
                generation = self._generation
                batch = self._consumer.poll(timeout_ms=250)
                if not batch:
                    # Idle time counts only while partitions are assigned and the group is settled.
                    if not self._consumer.assignment() or self._rebalancing or self._generation != generation:
                        idle_since = None
                    elif idle_since is None:
                        idle_since = time.monotonic()
                    elif (self.stop_when_idle_s is not None
                          and time.monotonic() - idle_since >= self.stop_when_idle_s):
                        self.report.stopped_because = f"idle {self.stop_when_idle_s:g}s"
                        break
                    continue
                self._process(batch)
                idle_since = None
        finally:
            self.close()
        return self.report

    def _process(self, batch) -> None:
        generation = self._generation
        pending = {tp: list(records) for tp, records in batch.items()}
        try:
            for tp in sorted(pending, key=lambda t: t.partition):
                records = pending[tp]
                while records:
                    if self._generation != generation:
                        raise _Interrupted("rebalance")
                    record = records[0]
                    self._handle(record)
                    if self._generation != generation and tp not in self._consumer.assignment():
                        raise _Interrupted("rebalance")  # its new owner redelivers it; the receiver de-duplicates
                    self._commit(record)
                    records.pop(0)
        except _Interrupted as why:
            in_flight = sum(len(r) for r in pending.values())
            self.report.abandoned += min(in_flight, 1)
            log.info("batch interrupted (%s); %d records left uncommitted", why, in_flight)
            if str(why) == "stop":
                self.report.stopped_because = "stop requested (mid-delivery; the event stays uncommitted)"
                return
            assigned = self._consumer.assignment()
            for tp, records in pending.items():  # re-read what was not finished, from where it stopped
                if records and tp in assigned:
                    self._consumer.seek(tp, records[0].offset)

    def close(self) -> None:
        self.client.close()
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception as exc:  # closing must not mask the reason we stopped
                log.warning("consumer close: %s", exc)
            self._consumer = None
        if self._producer is not None:
            try:
                self._producer.close(timeout=10)
            except Exception as exc:
                log.warning("producer close: %s", exc)
            self._producer = None


def run_bridge(settings: Settings, webhook_url: str, secret: str | bytes, *,
               dead_letter_topic: str = DEFAULT_TOPIC_WEBHOOK_DEAD_LETTER,
               max_attempts: int = 10, backoff_base_s: float = 0.5, backoff_max_s: float = 60.0,
               timeout_s: float = 10.0, max_retry_after_s: float = 600.0,
               group_id: str | None = None, topic: str | None = None, metrics_port: int | None = None,
               metrics_host: str | None = None, metrics: BridgeMetrics | None = None,
               stop_event: threading.Event | None = None, stop_when_idle_s: float | None = None,
               max_run_s: float | None = None, start_from: str = "earliest",
               install_signal_handlers: bool = True, rng: random.Random | None = None,
               on_ready: Callable[[WebhookBridge], None] | None = None) -> BridgeReport:
    """Run the webhook bridge until SIGTERM/SIGINT, `stop_event`, `stop_when_idle_s` of quiet or `max_run_s`.

    Returns the delivery report; metrics stay readable on `metrics` (or the bridge's own registry).
    """
    policy = RetryPolicy(max_attempts=max_attempts, backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s,
                         timeout_s=timeout_s, max_retry_after_s=max_retry_after_s)
    stop_event = stop_event or threading.Event()
    bridge = WebhookBridge(settings, webhook_url, secret, policy=policy, group_id=group_id, topic=topic,
                           dead_letter_topic=dead_letter_topic, metrics=metrics, stop_event=stop_event,
                           stop_when_idle_s=stop_when_idle_s, max_run_s=max_run_s, start_from=start_from, rng=rng)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        metrics_host = metrics_host or settings.web_host
        start_http_server(metrics_port, addr=metrics_host, registry=bridge.metrics.registry)
        log.info("bridge metrics on http://%s:%d/metrics", metrics_host, metrics_port)
    previous = {}
    if install_signal_handlers and threading.current_thread() is threading.main_thread():
        def on_signal(signum, _frame):
            log.info("signal %s: finishing the current attempt, then stopping", signum)
            stop_event.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        if on_ready:
            on_ready(bridge)
        return bridge.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
