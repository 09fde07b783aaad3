"""Fixtures for the webhook side: real intervention events, secrets, reference receivers, isolated
topics on the embedded broker with bridge settings, and reading back what the broker holds."""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import strategies as st

from schemas.events import InterventionEvent, InterventionKind
from schemas.outcomes import WebhookDeadLetter, WebhookFailure
from streams.settings import Settings
from streams.webhook.receiver import FailureScript, ReceiverConfig, ReferenceReceiver
from streams.webhook.signing import WebhookSecret

# Fast retries for tests; the real defaults live in streams/settings.py.
FAST_RETRIES = {"RECONNECT_WEBHOOK_BACKOFF_BASE_S": "0.02", "RECONNECT_WEBHOOK_BACKOFF_MAX_S": "0.2"}


@pytest.fixture
def secret() -> WebhookSecret:
    return WebhookSecret.generate()


@pytest.fixture
def start_receiver(secret):
    """start_receiver(script=..., secrets=..., **config): a reference receiver on a free port, stopped after the test."""
    started: list[ReferenceReceiver] = []

    def start(script: FailureScript | None = None, *, secrets: list[WebhookSecret] | None = None, store_path=None,
              **config) -> ReferenceReceiver:
        receiver = ReferenceReceiver(secrets or [secret], config=ReceiverConfig(**{"port": 0, **config}),
                                     script=script, store_path=store_path).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def bridge_env(broker, secret):
    """bridge_env(tag, receiver, **extra): the environment of a bridge on its own topics (created), with
    fast retries, pointed at `receiver`. Settings for in-process bridges: settings_for(env)."""
    from devtools.harness import create_topics, isolated_env

    def make(tag: str, receiver: ReferenceReceiver, **extra: str) -> dict[str, str]:
        env = isolated_env(broker.bootstrap, tag, RECONNECT_BROKER_PROFILE="embedded",
                           RECONNECT_WEBHOOK_URL=receiver.url, RECONNECT_WEBHOOK_SECRET=secret.serialise(),
                           **{**FAST_RETRIES, **extra})
        create_topics(env)
        return env

    return make


@pytest.fixture
def settings_for():
    from devtools.harness import settings_for as build

    return build


@pytest.fixture
def publish(broker):
    """publish(topic, [(key, value), ...]) -> [(partition, offset), ...] in order, from the broker's acks."""
    from kafka import KafkaProducer

    def send(topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> list[tuple[int, int]]:
        producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], linger_ms=5, acks="all",
                                 max_request_size=8 * 1024 * 1024)
        try:
            futures = [producer.send(topic, key=key, value=value) for key, value in messages]
            producer.flush()
            return [(meta.partition, meta.offset) for meta in (future.get(timeout=30) for future in futures)]
        finally:
            producer.close()

    return send


@pytest.fixture
def end_offsets():
    def ends(positions: list[tuple[int, int]]) -> dict[int, int]:
        result: dict[int, int] = {}
        for partition, offset in positions:
            result[partition] = max(result.get(partition, 0), offset + 1)
        return result

    return ends


@pytest.fixture
def committed(broker):
    """committed(settings) -> {partition: next offset} committed by the bridge's group on the interventions topic."""
    from kafka import KafkaAdminClient

    from streams.webhook.bridge import group_id

    def read(settings: Settings) -> dict[int, int]:
        admin = KafkaAdminClient(bootstrap_servers=[broker.bootstrap])
        try:
            offsets = admin.list_group_offsets({group_id(settings): None}).get(group_id(settings), {})
        finally:
            admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items()
                if tp.topic == settings.topic_interventions and meta.offset >= 0}

    return read


@pytest.fixture
def dead_letters(broker):
    """dead_letters(settings, expected=None) -> the webhook dead letters on the settings' topic."""
    from devtools.harness import consume_all

    def read(settings: Settings, expected: int | None = None, idle_s: float = 1.0) -> list[WebhookDeadLetter]:
        records = consume_all(broker.bootstrap, settings.topic_webhook_dead_letter, expected=expected, idle_s=idle_s,
                              timeout=30)
        return [WebhookDeadLetter.model_validate_json(record.value) for record in records]

    return read


@pytest.fixture
def bridge_thread():
    """bridge_thread(settings, options) -> (thread, stop_event, metrics, reports): a bridge running in a thread,
    stopped and joined after the test."""
    from streams.webhook.bridge import run_bridge
    from streams.webhook.metrics import BridgeMetrics

    running: list[tuple[threading.Thread, threading.Event]] = []

    def start(settings: Settings, options, *, stop_event: threading.Event | None = None):
        stop = stop_event or threading.Event()
        metrics = BridgeMetrics()
        reports: list = []
        thread = threading.Thread(target=lambda: reports.append(run_bridge(settings, options, stop_event=stop,
                                                                           metrics=metrics)), daemon=True)
        thread.start()
        running.append((thread, stop))
        return thread, stop, metrics, reports

    yield start
    for thread, stop in running:
        stop.set()
    for thread, _ in running:
        thread.join(timeout=30)


def _event_document(make_event) -> dict:
    return json.loads(make_event(7, school="SCHP").model_dump_json())


def _dumps(document) -> bytes:
    return json.dumps(document).encode()


@pytest.fixture(scope="session")
def poison_catalogue(make_event) -> list[tuple[str, bytes | None, WebhookFailure]]:
    """Every kind of record the bridge cannot deliver, named, with the reason it must be dead-lettered for."""
    event = _event_document(make_event)
    body = _dumps(event)
    without = {k: v for k, v in event.items() if k != "reasons"}
    deep = b"[" * 5000 + b"]" * 5000
    return [
        ("tombstone", None, WebhookFailure.TOMBSTONE),
        ("not utf-8", b"\xff\xfe" + body, WebhookFailure.INVALID_ENCODING),
        ("latin-1 text", body.replace(b'"SCHP"', b'"SCH\xc9"'), WebhookFailure.INVALID_ENCODING),
        ("empty", b"", WebhookFailure.INVALID_JSON),
        ("not json", b"intervention for SCHP-P0007", WebhookFailure.INVALID_JSON),
        ("truncated", body[:-9], WebhookFailure.INVALID_JSON),
        ("deeply nested", deep, WebhookFailure.INVALID_JSON),
        ("deeply nested inside an event", body[:-1] + b', "extra": ' + deep + b"}", WebhookFailure.INVALID_JSON),
        ("huge number", b'{"event_id": 1' + b"0" * 5000 + b"}", WebhookFailure.INVALID_JSON),
        ("nan", body.replace(b'"risk_score": ', b'"risk_score": NaN, "x": '), WebhookFailure.INVALID_JSON),
        ("json array", b"[1, 2, 3]", WebhookFailure.INVALID_EVENT),
        ("json null", b"null", WebhookFailure.INVALID_EVENT),
        ("json string", b'"SCHP-P0007"', WebhookFailure.INVALID_EVENT),
        ("missing field", _dumps(without), WebhookFailure.INVALID_EVENT),
        ("unknown kind", _dumps({**event, "kind": "warning"}), WebhookFailure.INVALID_EVENT),
        ("enforcement action", _dumps({**event, "suggested_actions": ["issue_penalty_notice"]}),
         WebhookFailure.INVALID_EVENT),
        ("score out of range", _dumps({**event, "risk_score": 7.5}), WebhookFailure.INVALID_EVENT),
        ("id unfit for a webhook-id", _dumps({**event, "event_id": "a.b"}), WebhookFailure.INVALID_EVENT),
        ("a register mark", b'{"school_id": "SCHP", "pupil_id": "SCHP-P0007", "date": "2025-10-06", '
                            b'"session": "AM", "code": "N", "recorded_at": "2025-10-06T09:00:00Z"}',
         WebhookFailure.INVALID_EVENT),
        ("future major version", _dumps({**event, "schema_version": 2}), WebhookFailure.UNSUPPORTED_SCHEMA_VERSION),
        ("version as a boolean", _dumps({**event, "schema_version": True}), WebhookFailure.UNSUPPORTED_SCHEMA_VERSION),
    ]


@pytest.fixture(scope="session")
def poison_strategy(make_event):
    """A hypothesis strategy of (record value, reasons it may be dead-lettered for), never a deliverable event."""
    event = _event_document(make_event)
    known_kinds = {kind.value for kind in InterventionKind}
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=12,
    )
    invalid = {WebhookFailure.INVALID_EVENT}
    return st.one_of(
        st.binary(max_size=300).map(lambda b: (b"\xc3\x28" + b, {WebhookFailure.INVALID_ENCODING})),
        json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: (_dumps(v), invalid)),
        st.dictionaries(st.text(max_size=12), json_values, max_size=6).map(lambda v: (_dumps(v), invalid)),
        st.sampled_from(sorted(name for name, spec in InterventionEvent.model_fields.items() if spec.is_required())).map(
            lambda name: (_dumps({k: v for k, v in event.items() if k != name}), invalid)),
        st.integers().filter(lambda v: v != 1).map(
            lambda v: (_dumps({**event, "schema_version": v}), {WebhookFailure.UNSUPPORTED_SCHEMA_VERSION})),
        st.text(max_size=20).filter(lambda k: k not in known_kinds).map(
            lambda k: (_dumps({**event, "kind": k}), invalid)),
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not 0 <= x <= 1).map(
            lambda x: (_dumps({**event, "risk_score": x}), invalid)),
        st.integers(min_value=300, max_value=20000).map(
            lambda n: (b"{" + b'"a":[' * n + b"]" * n + b"}", {WebhookFailure.INVALID_JSON})),
        st.text(max_size=60).map(lambda t: (t.encode(), {WebhookFailure.INVALID_JSON, WebhookFailure.INVALID_EVENT})),
    )


@pytest.fixture
def raw_exchange():
    """raw_exchange(receiver, request_bytes, timeout=5) -> (status or None, response bytes): a request
    written byte for byte as given (no client library tidies it up)."""
    import socket

    def exchange(receiver: ReferenceReceiver, data: bytes, timeout: float = 5.0) -> tuple[int | None, bytes]:
        with socket.create_connection((receiver.host, receiver.port), timeout=timeout) as sock:
            sock.sendall(data)
            chunks = []
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                        break
            except TimeoutError:
                pass
        response = b"".join(chunks)
        status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None
        return status, response

    return exchange


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


@pytest.fixture
def post():
    """post(url, body, headers) -> (status, JSON answer, headers), with http.client."""
    import http.client
    from urllib.parse import urlsplit

    def send(url: str, body, headers: dict[str, str], **request) -> tuple[int, dict, dict[str, str]]:
        target = urlsplit(url)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        try:
            conn.request("POST", target.path, body=body, headers=headers, **request)
            response = conn.getresponse()
            raw = response.read()
            document = json.loads(raw) if raw.startswith(b"{") else {"text": raw.decode("utf-8", "replace")}
            return response.status, document, dict(response.getheaders())
        finally:
            conn.close()

    return send


@pytest.fixture
def make_record():
    """make_record(value, partition=0, offset=0, topic="t.interventions", key=b"k"): a consumed record, of
    kafka-python's own type."""
    from kafka.consumer.fetcher import ConsumerRecord

    def build(value: bytes | None, *, partition: int = 0, offset: int = 0, topic: str = "t.interventions",
              key: bytes | None = b"k") -> ConsumerRecord:
        return ConsumerRecord(topic=topic, partition=partition, leader_epoch=-1, offset=offset,
                              timestamp=int(time.time() * 1000), timestamp_type=0, key=key, value=value, headers=[],
                              checksum=None, serialized_key_size=len(key or b""),
                              serialized_value_size=len(value or b""), serialized_header_size=0)

    return build


@pytest.fixture
def fake_producer():
    """A stand-in for the dead-letter producer: keeps what it was sent; refuses the first `refuse` sends
    (the broker not taking them) and resolves every future on flush(), as kafka-python's does."""
    from kafka.errors import KafkaTimeoutError
    from kafka.future import Future

    class FakeProducer:
        def __init__(self) -> None:
            self.refuse = 0
            self.sent: list[tuple[str, bytes | None, bytes]] = []
            self.acknowledged: list[WebhookDeadLetter] = []
            self._open: list[tuple[Future, tuple]] = []

        def send(self, topic, key=None, value=None):
            future = Future()
            self.sent.append((topic, key, value))
            self._open.append((future, (topic, key, value)))
            return future

        def flush(self, timeout=None):
            for future, (_, _, value) in self._open:
                if self.refuse > 0:
                    self.refuse -= 1
                    future.failure(KafkaTimeoutError("not acknowledged"))
                else:
                    future.success(None)
                    self.acknowledged.append(WebhookDeadLetter.model_validate_json(value))
            self._open = []

    return FakeProducer()


@pytest.fixture
def make_sink(secret):
    """make_sink(receiver, producer, wait=None, max_attempts=3, timeout_s=2) -> (sink, metrics), no broker."""
    import random

    from streams.webhook.http import WebhookClient
    from streams.webhook.metrics import BridgeMetrics
    from streams.webhook.retry import RetryPolicy
    from streams.webhook.sink import DeadLetterWriter, WebhookSink

    def build(receiver: ReferenceReceiver, producer, *, wait=None, max_attempts: int = 3, timeout_s: float = 2.0):
        policy = RetryPolicy(max_attempts=max_attempts, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=timeout_s,
                             max_retry_after_s=5.0)
        rng = random.Random(7)
        waiter = wait or (lambda seconds: time.sleep(seconds))
        metrics = BridgeMetrics()
        writer = DeadLetterWriter(producer, "t.webhook-dead-letter", waiter, policy, rng)
        sink = WebhookSink(WebhookClient(receiver.url, timeout_s), [secret], policy, writer, metrics, waiter, rng)
        return sink, metrics

    return build
