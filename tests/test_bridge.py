"""The webhook bridge against the reference receiver, on the embedded broker: every intervention
delivered exactly once by idempotency key through refusals, timeouts and an outage; offsets
committed only after delivery or dead-lettering; signatures, 4xx, 429 and Retry-After."""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from urllib.parse import urlsplit

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from models.explain import build_event
from schemas.events import WindowSummary
from streams.topic_admin import TopicSpec, ensure_topics
from schemas.events import InterventionEvent, InterventionKind
from schemas.outcomes import WebhookDeadLetter
from streams.bridge import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BridgeMetrics,
    RetryPolicy,
    parse_retry_after,
    run_bridge,
    signature,
    signed_headers,
    verify_signature,
)
from streams.receiver import FailureScript, ReferenceReceiver
from tests.stack import REPO, consume_all, create_topics, isolated_env

SECRET = "test-secret-0123456789abcdef"


# --- helpers ------------------------------------------------------------------------------------

def sample_event(i: int, *, kind: InterventionKind = InterventionKind.CONCERN,
                 school: str = "SCHB") -> InterventionEvent:
    """A real event, built by the same code the worker uses."""
    from models.features import FEATURE_NAMES

    stats = WindowSummary(
        latest_date=dt.date(2025, 10, 6) + dt.timedelta(days=i % 20), possible_10=10, attended_10=5 + i % 5,
        possible_20=20, attended_20=12, possible_40=40, attended_40=28, possible_ytd=60, attended_ytd=48,
        earlier_possible=20, earlier_attended=20, current_absence_run=2, longest_absence_run_40=4,
        absence_spells_40=3, unauthorised_40=4, health_40=2, late_20=1, late_previous_20=0,
        monday_friday_absences_40=5, am_possible_40=20, am_absences_40=7, pm_possible_40=20, pm_absences_40=5,
        sessions_since_full_week=14,
    )
    return build_event(kind=kind, tier=1 + i % 3, escalation=False, score=0.5 + (i % 40) / 100,
                       pupil_id=f"{school}-P{i:04d}", school_id=school, as_of=stats.latest_date, stats=stats,
                       contributions=[0.1 * ((j + i) % 4) for j in range(len(FEATURE_NAMES))],
                       model_version="test-model", rate_at_alert=0.6)


def publish(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> dict[int, int]:
    """Send in order; returns partition -> end offset (last offset + 1), from the broker's acks."""
    producer = KafkaProducer(bootstrap_servers=[bootstrap], linger_ms=5, acks="all")
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in messages]
        producer.flush()
        ends: dict[int, int] = {}
        for future in futures:
            meta = future.get(timeout=30)
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        return ends
    finally:
        producer.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def topics_for(broker, tag: str, **extra: str):
    env = isolated_env(broker.bootstrap, tag, **extra)
    settings = create_topics(env)
    dead_letter_topic = f"{tag}.webhook-dead-letter"
    ensure_topics(settings, [TopicSpec(dead_letter_topic, settings.topic_partitions, 1, "webhook dead letters")])
    return env, settings, dead_letter_topic


def keyed(events: list[InterventionEvent]) -> list[tuple[bytes, bytes]]:
    return [(e.pupil_id.encode(), e.model_dump_json().encode()) for e in events]


FAST = dict(backoff_base_s=0.02, backoff_max_s=0.2, install_signal_handlers=False)


# --- the signature scheme and the receiver, without a broker ----------------------------------------

def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict, dict[str, str]]:
    target = urlsplit(url)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}"), dict(response.getheaders())
    finally:
        conn.close()


def test_signature_scheme_is_exactly_as_documented():
    body = b'{"event_id":"abc"}'
    expected = hmac.new(SECRET.encode(), b"1760000000." + body, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1760000000, body) == f"sha256={expected}"
    headers = signed_headers(SECRET, body, "abc", 3, now=1760000000.9)
    assert headers[TIMESTAMP_HEADER] == "1760000000" and headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert headers["Idempotency-Key"] == headers["X-Reconnect-Event-Id"] == "abc"
    assert headers["X-Reconnect-Delivery-Attempt"] == "3"
    assert verify_signature([SECRET], body, "1760000000", f"sha256={expected}", now=1760000100) is None
    assert verify_signature([SECRET], body + b" ", "1760000000", f"sha256={expected}", now=1760000100)
    assert verify_signature([SECRET], body, "1760000000", f"sha256={expected}", now=1760000000 + 301)  # stale
    assert verify_signature(["other", SECRET], body, "1760000000", f"sha256={expected}", now=1760000000) is None


def test_receiver_rejects_tampered_and_unsigned_and_deduplicates():
    event = sample_event(1)
    body = event.model_dump_json().encode()
    with ReferenceReceiver([SECRET, "next-secret-for-rotation"]) as receiver:
        good = signed_headers(SECRET, body, event.event_id, 1)
        tampered = body.replace(b'"tier":', b'"tier": ', 1)
        assert tampered != body
        assert post(receiver.url, tampered, good)[0] == 401  # body changed after signing
        unsigned = {k: v for k, v in good.items() if k not in (SIGNATURE_HEADER, TIMESTAMP_HEADER)}
        assert post(receiver.url, body, unsigned)[0] == 401
        assert post(receiver.url, body, signed_headers("wrong-secret", body, event.event_id, 1))[0] == 401
        stale = signed_headers(SECRET, body, event.event_id, 1, now=time.time() - 3600)
        assert post(receiver.url, body, stale)[0] == 401  # a replay of an old capture
        forged_time = {**good, TIMESTAMP_HEADER: str(int(good[TIMESTAMP_HEADER]) + 1)}
        assert post(receiver.url, body, forged_time)[0] == 401  # the timestamp is signed too
        assert receiver.summary()["count"] == 0 and receiver.summary()["unauthorised"] == 5

        status, answer, _ = post(receiver.url, body, good)
        assert (status, answer.get("stored")) == (200, True)
        status, answer, _ = post(receiver.url, body, signed_headers("next-secret-for-rotation", body,
                                                                     event.event_id, 2))
        assert (status, answer.get("duplicate")) == (200, True)
        mismatched = signed_headers(SECRET, body, "another-id", 1)
        assert post(receiver.url, body, mismatched)[0] == 400  # key must be the event's own id
        summary = receiver.summary()
        assert summary["count"] == 1 and summary["event_ids"] == [event.event_id] and summary["duplicates"] == 1
        with urllib.request.urlopen(receiver.base_url + "/received", timeout=5) as response:
            assert json.loads(response.read())["count"] == 1


def test_retry_policy_and_retry_after():
    policy = RetryPolicy(max_attempts=5, backoff_base_s=1.0, backoff_max_s=8.0)
    import random

    rng = random.Random(1)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0), (200, 8.0)):
        waits = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits) and max(waits) > ceiling * 0.8  # full jitter, capped
    assert parse_retry_after("7") == 7.0
    when = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(when) <= 31
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: retry now
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


# --- on the embedded broker ----------------------------------------------------------------------

@pytest.mark.broker
def test_every_event_delivered_exactly_once_through_refusals_timeouts_and_an_outage(broker, tmp_path):
    env, settings, dlq = topics_for(broker, "bridge-main")
    events = [sample_event(i) for i in range(60)]
    ends = publish(broker.bootstrap, settings.topic_interventions, keyed(events))
    ids = {e.event_id for e in events}
    assert len(ids) == 60
    # Every event: refused (503), then held past the client's timeout; then normal. Five events are
    # stored on the attempt that times out, so their next attempt is a duplicate. After 20 stored,
    # everything gets 500 for 2 s.
    slow = {e.event_id: (503, "slow_ok") for e in events[:5]}
    script = FailureScript(per_event=(503, "timeout"), per_event_for=slow, outage_s=2.0, outage_after_stored=20,
                           outage_status=500, hold_s=0.6)
    metrics = BridgeMetrics()
    store = tmp_path / "received.jsonl"
    with ReferenceReceiver(SECRET, script=script, store_path=store) as receiver:
        started = time.monotonic()
        report = run_bridge(settings, receiver.url, SECRET, dead_letter_topic=dlq, max_attempts=60, timeout_s=0.2,
                            stop_when_idle_s=2.0, max_run_s=80, metrics=metrics, **FAST)
        elapsed = time.monotonic() - started
        summary = receiver.summary()
        attempts = {event_id: receiver.attempts(event_id) for event_id in ids}
        bodies = {event_id: entry.body for event_id, entry in receiver.stored.items()}

    print(f"\nbridge: {report.line()} in {elapsed:.1f}s; receiver: {summary['count']} stored, "
          f"{summary['duplicates']} duplicates answered, {summary['requests']} requests; metrics {metrics.totals()}")
    assert summary["count"] == 60 and set(summary["event_ids"]) == ids  # none lost
    assert len(summary["event_ids"]) == len(set(summary["event_ids"]))  # each once by idempotency key
    lines = [json.loads(line) for line in store.read_text().splitlines()]
    assert sorted(line["event_id"] for line in lines) == sorted(ids)
    assert summary["duplicates"] >= 5 and summary["unauthorised"] == 0 and summary["outage_requests"] >= 2
    assert all(count >= 3 for count in attempts.values())
    published = {e.event_id: e.model_dump_json().encode() for e in events}
    assert bodies == published  # the body is the record value, byte for byte
    totals = metrics.totals()
    assert totals["delivered"] == 60 and totals["dead_lettered"] == 0
    assert totals["attempts"] == report.attempts == summary["requests"] and totals["attempts"] >= 3 * 60 > 60
    assert report.delivered == 60 and report.dead_lettered == 0
    assert committed(broker.bootstrap, f"{settings.app_id}-webhook-bridge", settings.topic_interventions) == ends
    assert consume_all(broker.bootstrap, dlq, idle_s=1.0, timeout=10) == []


@pytest.mark.broker
def test_4xx_dead_letters_at_once_429_waits_for_retry_after_and_bad_records_do_not_crash(broker):
    env, settings, dlq = topics_for(broker, "bridge-codes", RECONNECT_TOPIC_PARTITIONS="1")
    refused, limited, failing, fine = (sample_event(i, school="SCHC") for i in range(4))
    messages = keyed([refused, limited]) + [(b"junk", b"\xff not json"), (b"partial", b'{"event_id": "x1"}')]
    messages += keyed([failing, fine])
    ends = publish(broker.bootstrap, settings.topic_interventions, messages)
    script = FailureScript(status_for={refused.event_id: 400, failing.event_id: 500},
                           per_event_for={limited.event_id: (429,)}, retry_after="1")
    metrics = BridgeMetrics()
    with ReferenceReceiver(SECRET, script=script) as receiver:
        report = run_bridge(settings, receiver.url, SECRET, dead_letter_topic=dlq, max_attempts=3, timeout_s=2,
                            stop_when_idle_s=1.5, max_run_s=60, metrics=metrics, **FAST)
        stored = set(receiver.summary()["event_ids"])
        attempts = {e.event_id: receiver.attempts(e.event_id) for e in (refused, limited, failing, fine)}
        times = receiver.attempt_times[limited.event_id]

    assert stored == {limited.event_id, fine.event_id}
    assert attempts == {refused.event_id: 1, limited.event_id: 2, failing.event_id: 3, fine.event_id: 1}
    assert times[1] - times[0] >= 1.0  # Retry-After honoured (a lower bound only)
    letters = [WebhookDeadLetter.model_validate_json(r.value) for r in consume_all(broker.bootstrap, dlq, expected=4,
                                                                                  timeout=20)]
    by_reason = {}
    for letter in letters:
        by_reason.setdefault(letter.reason.value, []).append(letter)
    assert sorted(by_reason) == ["invalid_event", "max_attempts", "rejected"]
    (rejected,) = by_reason["rejected"]
    assert (rejected.event_id, rejected.attempts, rejected.last_status) == (refused.event_id, 1, 400)
    assert InterventionEvent.model_validate_json(rejected.raw) == refused  # the event itself, to re-send
    (exhausted,) = by_reason["max_attempts"]
    assert (exhausted.event_id, exhausted.attempts, exhausted.last_status) == (failing.event_id, 3, 500)
    invalid = sorted(by_reason["invalid_event"], key=lambda letter: letter.offset)
    assert [(x.attempts, x.raw_encoding, x.event_id) for x in invalid] == [(0, "base64", None), (0, "utf-8", "x1")]
    assert all(x.webhook_host and "/" not in x.webhook_host for x in letters)
    totals = metrics.totals()
    assert totals == {"delivered": 2, "attempts": 7, "dead_lettered": 4, "failed_attempts": 5}
    assert report.reasons == {"rejected": 1, "max_attempts": 1, "invalid_event": 2}
    text = __import__("prometheus_client").generate_latest(metrics.registry).decode()
    assert 'reconnect_webhook_attempts_total{outcome="rejected",status_class="4xx"} 1.0' in text
    assert 'reconnect_webhook_attempts_total{outcome="retry",status_class="429"} 1.0' in text
    assert "SCHC-P" not in text  # no pupil ids in metrics
    assert committed(broker.bootstrap, f"{settings.app_id}-webhook-bridge", settings.topic_interventions) == ends


BRIDGE_PROCESS = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from streams.bridge import run_bridge
from streams.settings import Settings
args = json.loads(sys.argv[1])
report = run_bridge(Settings(), args["url"], args["secret"], dead_letter_topic=args["dlq"], max_attempts=10000,
                    backoff_base_s=0.05, backoff_max_s=0.1, timeout_s=2, max_run_s=60)
print(json.dumps({"delivered": report.delivered, "abandoned": report.abandoned, "why": report.stopped_because}))
"""


@pytest.mark.broker
def test_offsets_stay_before_an_event_being_retried_across_a_stop_and_restart(broker):
    env, settings, dlq = topics_for(broker, "bridge-stop", RECONNECT_TOPIC_PARTITIONS="1")
    first, stuck, last = (sample_event(i, school="SCHD") for i in range(3))
    publish(broker.bootstrap, settings.topic_interventions, keyed([first, stuck, last]))
    group = f"{settings.app_id}-webhook-bridge"
    with ReferenceReceiver(SECRET, script=FailureScript(status_for={stuck.event_id: 503})) as receiver:
        args = json.dumps({"url": receiver.url, "secret": SECRET, "dlq": dlq})
        process = subprocess.Popen([sys.executable, "-c", BRIDGE_PROCESS, args], cwd=REPO,
                                   env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 40
            while receiver.attempts(stuck.event_id) < 5:
                assert process.poll() is None, process.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "the bridge never reached the stuck event"
                time.sleep(0.1)
            # Delivered: committed. Being retried: not committed, and nothing after it is sent.
            assert committed(broker.bootstrap, group, settings.topic_interventions) == {0: 1}
            assert set(receiver.summary()["event_ids"]) == {first.event_id}
            process.send_signal(signal.SIGTERM)  # a graceful stop, mid-retry
            out, err = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, err.decode()[-3000:]
        outcome = json.loads(out.decode().strip().splitlines()[-1])
        assert outcome["delivered"] == 1 and outcome["abandoned"] == 1 and "stop" in outcome["why"]
        assert committed(broker.bootstrap, group, settings.topic_interventions) == {0: 1}

        # The receiver recovers; a new bridge starts from the committed offset: the stuck event is
        # delivered once, the first is not sent again, nothing is lost.
        receiver.set_script(FailureScript())
        report = run_bridge(settings, receiver.url, SECRET, dead_letter_topic=dlq, timeout_s=2, stop_when_idle_s=1.5,
                            max_run_s=60, **FAST)
        assert report.delivered == 2
        assert receiver.summary()["event_ids"] == [first.event_id, stuck.event_id, last.event_id]
        assert receiver.attempts(first.event_id) == 1 and receiver.attempts(last.event_id) == 1
    assert committed(broker.bootstrap, group, settings.topic_interventions) == {0: 3}


@pytest.mark.broker
def test_a_second_bridge_joining_mid_stream_loses_nothing(broker):
    env, settings, dlq = topics_for(broker, "bridge-rebalance")
    events = [sample_event(i, school="SCHE") for i in range(40)]
    ends = publish(broker.bootstrap, settings.topic_interventions, keyed(events))
    ids = {e.event_id for e in events}
    # Every event is held past the client's timeout once, so delivery is slow enough to rebalance under.
    with ReferenceReceiver(SECRET, script=FailureScript(per_event=("timeout",), hold_s=0.5)) as receiver:
        stop = threading.Event()
        reports = {}

        def bridge(name: str) -> None:
            reports[name] = run_bridge(settings, receiver.url, SECRET, dead_letter_topic=dlq, timeout_s=0.2,
                                       stop_when_idle_s=2.5, max_run_s=60, stop_event=stop, **FAST)

        first = threading.Thread(target=bridge, args=("first",))
        first.start()
        deadline = time.monotonic() + 30
        while receiver.summary()["count"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        second = threading.Thread(target=bridge, args=("second",))
        second.start()
        first.join(70)
        second.join(70)
        stop.set()
        summary = receiver.summary()
    print({k: r.line() for k, r in reports.items()})
    assert set(summary["event_ids"]) == ids and summary["count"] == 40
    assert reports["first"].delivered > 0 and reports["second"].delivered > 0  # the group really split the work
    assert reports["first"].delivered + reports["second"].delivered >= 40  # redeliveries are allowed, losses not
    assert reports["first"].dead_lettered + reports["second"].dead_lettered == 0
    assert committed(broker.bootstrap, f"{settings.app_id}-webhook-bridge", settings.topic_interventions) == ends
