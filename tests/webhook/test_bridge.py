"""The webhook bridge against the reference receiver, on the embedded broker: every intervention
delivered exactly once by webhook-id through refusals, timeouts and an outage; offsets committed only
after a flush finished them; 4xx, 429 and Retry-After; a stop mid-retry; a second bridge joining.
Every delivery is checked with the `standardwebhooks` package from PyPI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import prometheus_client
import pytest
from standardwebhooks.webhooks import Webhook

from schemas.events import InterventionEvent, InterventionKind
from streams.webhook.bridge import RunOptions, run_bridge
from streams.webhook.metrics import BridgeMetrics
from streams.webhook.receiver import FailureScript

QUIET = RunOptions(stop_when_idle_s=2.0, max_run_s=90, serve_metrics=False, handle_signals=False)


def keyed(events: list[InterventionEvent]) -> list[tuple[bytes, bytes]]:
    return [(e.pupil_id.encode(), e.model_dump_json().encode()) for e in events]


def assert_every_delivery_verifies(receiver, secret) -> None:
    library = Webhook(secret.serialise())
    for event_id, entry in receiver.stored.items():
        assert library.verify(entry.body, entry.signature_headers)["event_id"] == event_id


@pytest.mark.broker
@pytest.mark.slow
def test_every_event_delivered_exactly_once_through_refusals_timeouts_and_an_outage(
        start_receiver, bridge_env, settings_for, publish, end_offsets, committed, dead_letters, make_event, secret,
        tmp_path):
    kinds = list(InterventionKind)
    events = [make_event(i, kind=kinds[i % len(kinds)]) for i in range(60)]  # health_needs among them
    ids = {e.event_id for e in events}
    assert len(ids) == 60
    # Every event: refused (503), then held past the client's timeout; then normal. Five events are
    # stored on the attempt that times out, so their next attempt is a duplicate. After 20 stored,
    # everything gets 500 for 2 s.
    slow = {e.event_id: (503, "slow_ok") for e in events[:5]}
    script = FailureScript(per_event=(503, "timeout"), per_event_for=slow, outage_s=2.0, outage_after_stored=20,
                           outage_status=500, hold_s=0.6)
    store = tmp_path / "received.jsonl"
    receiver = start_receiver(script, store_path=store)
    settings = settings_for(bridge_env("wh-main", receiver, RECONNECT_WEBHOOK_MAX_ATTEMPTS="60",
                                       RECONNECT_WEBHOOK_TIMEOUT_S="0.2"))
    ends = end_offsets(publish(settings.topic_interventions, keyed(events)))
    metrics = BridgeMetrics()
    report = run_bridge(settings, QUIET, metrics=metrics)
    summary = receiver.summary()

    print(f"\nbridge: {report.line()}; receiver: {summary['count']} stored, {summary['duplicates']} duplicates, "
          f"{summary['requests']} requests")
    assert summary["count"] == 60 and set(summary["event_ids"]) == ids  # none lost, each once by webhook-id
    assert sorted(json.loads(line)["event_id"] for line in store.read_text().splitlines()) == sorted(ids)
    assert summary["duplicates"] >= 5 and summary["unauthorised"] == 0 and summary["outage_requests"] >= 2
    assert all(receiver.attempts(event_id) >= 3 for event_id in ids)
    assert {k: v.body for k, v in receiver.stored.items()} == {e.event_id: e.model_dump_json().encode()
                                                               for e in events}  # the record value, byte for byte
    assert_every_delivery_verifies(receiver, secret)
    totals = metrics.totals()
    assert (totals["read"], totals["delivered"], totals["dead_lettered"], totals["in_flight"]) == (60, 60, 0, 0)
    assert totals["attempts"] == report.attempts == summary["requests"] >= 3 * 60
    assert committed(settings) == ends
    assert dead_letters(settings) == []


@pytest.mark.broker
@pytest.mark.slow
def test_4xx_dead_letters_at_once_429_waits_for_retry_after_and_bad_records_do_not_stop_it(
        start_receiver, bridge_env, settings_for, publish, end_offsets, committed, dead_letters, make_event):
    refused, limited, failing, fine = (make_event(i, school="SCHC") for i in range(4))
    script = FailureScript(status_for={refused.event_id: 400, failing.event_id: 500},
                           per_event_for={limited.event_id: (429,)}, retry_after="1")
    receiver = start_receiver(script)
    settings = settings_for(bridge_env("wh-codes", receiver, RECONNECT_TOPIC_PARTITIONS="1",
                                       RECONNECT_WEBHOOK_MAX_ATTEMPTS="3", RECONNECT_WEBHOOK_TIMEOUT_S="2"))
    messages = keyed([refused, limited]) + [(b"junk", b"\xff not json"), (b"partial", b'{"event_id": "x1"}')]
    ends = end_offsets(publish(settings.topic_interventions, messages + keyed([failing, fine])))
    metrics = BridgeMetrics()
    report = run_bridge(settings, QUIET, metrics=metrics)

    assert set(receiver.summary()["event_ids"]) == {limited.event_id, fine.event_id}
    assert {e.event_id: receiver.attempts(e.event_id) for e in (refused, limited, failing, fine)} == {
        refused.event_id: 1, limited.event_id: 2, failing.event_id: 3, fine.event_id: 1}
    times = receiver.attempt_times[limited.event_id]
    assert times[1] - times[0] >= 1.0  # Retry-After honoured (a lower bound only)
    by_reason: dict[str, list] = {}
    for letter in dead_letters(settings, expected=4):
        by_reason.setdefault(letter.reason.value, []).append(letter)
    assert sorted(by_reason) == ["invalid_encoding", "invalid_event", "max_attempts", "rejected"]
    (rejected,) = by_reason["rejected"]
    assert (rejected.event_id, rejected.attempts, rejected.last_status) == (refused.event_id, 1, 400)
    assert InterventionEvent.model_validate_json(rejected.raw) == refused  # the event itself, to re-send
    (exhausted,) = by_reason["max_attempts"]
    assert (exhausted.event_id, exhausted.attempts, exhausted.last_status) == (failing.event_id, 3, 500)
    assert [(x.attempts, x.raw_encoding) for x in by_reason["invalid_encoding"]] == [(0, "base64")]
    assert [(x.attempts, x.event_id) for x in by_reason["invalid_event"]] == [(0, "x1")]
    assert all(x.webhook_host == f"127.0.0.1:{receiver.port}" for x in by_reason["rejected"] + by_reason["max_attempts"])
    totals = metrics.totals()
    assert (totals["read"], totals["delivered"], totals["dead_lettered"], totals["attempts"]) == (6, 2, 4, 7)
    assert report.reasons == {"rejected": 1, "max_attempts": 1, "invalid_encoding": 1, "invalid_event": 1}
    text = prometheus_client.generate_latest(metrics.registry).decode()
    assert 'reconnect_webhook_attempts_total{status_class="4xx",verdict="rejected"} 1.0' in text
    assert 'reconnect_webhook_attempts_total{status_class="429",verdict="retry"} 1.0' in text
    assert "SCHC-P" not in text  # no pupil ids in metrics
    assert committed(settings) == ends


@pytest.mark.broker
@pytest.mark.slow
def test_offsets_stay_before_an_event_being_retried_across_a_stop_and_restart(
        start_receiver, bridge_env, settings_for, publish, committed, make_event, secret, wait_until, tmp_path):
    first, stuck, last = (make_event(i, school="SCHD") for i in range(3))
    receiver = start_receiver(FailureScript(status_for={stuck.event_id: 503}))
    env = bridge_env("wh-stop", receiver, RECONNECT_TOPIC_PARTITIONS="1", RECONNECT_WEBHOOK_MAX_ATTEMPTS="10000",
                     RECONNECT_WEBHOOK_BACKOFF_BASE_S="0.05", RECONNECT_WEBHOOK_BACKOFF_MAX_S="0.1",
                     RECONNECT_WEBHOOK_TIMEOUT_S="2")
    settings = settings_for(env)
    publish(settings.topic_interventions, keyed([first, stuck, last]))
    out, err = tmp_path / "bridge.out", tmp_path / "bridge.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "streams.cli", "bridge", "--no-metrics"],
                                   env={**os.environ, **env}, stdout=stdout, stderr=stderr)
    try:
        wait_until(lambda: receiver.attempts(stuck.event_id) >= 5 or process.poll() is not None, timeout=60,
                   what="the bridge to be retrying the stuck event")
        assert process.poll() is None, err.read_text()[-3000:]
        # Being retried: nothing at or after it is committed, and nothing after it is sent.
        assert committed(settings).get(0, 0) <= 1
        assert receiver.summary()["event_ids"] == [first.event_id] and receiver.attempts(last.event_id) == 0
        process.send_signal(signal.SIGTERM)  # a graceful stop, mid-retry
        assert process.wait(timeout=30) == 0, err.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    printed = out.read_text()
    assert "delivered 1," in printed and "returned unfinished 2" in printed and "stop requested" in printed
    assert secret.serialise() not in printed + err.read_text()  # the secret is never echoed
    assert committed(settings) == {0: 1}  # the finished record, and not one past it

    # The receiver recovers; a new bridge starts from the committed offset: the stuck event is
    # delivered once, the first is not sent again, nothing is lost.
    receiver.set_script(FailureScript())
    report = run_bridge(settings, QUIET)
    assert report.delivered == 2
    assert receiver.summary()["event_ids"] == [first.event_id, stuck.event_id, last.event_id]
    assert receiver.attempts(first.event_id) == 1 and receiver.attempts(last.event_id) == 1
    assert committed(settings) == {0: 3}
    assert_every_delivery_verifies(receiver, secret)


@pytest.mark.broker
@pytest.mark.slow
def test_a_second_bridge_joining_mid_stream_loses_nothing(
        start_receiver, bridge_env, settings_for, publish, end_offsets, committed, make_event, wait_until):
    events = [make_event(i, school="SCHE") for i in range(40)]
    ids = {e.event_id for e in events}
    # Every event is held past the client's timeout once, so delivery is slow enough to rebalance under.
    receiver = start_receiver(FailureScript(per_event=("timeout",), hold_s=0.5))
    settings = settings_for(bridge_env("wh-rebalance", receiver, RECONNECT_WEBHOOK_TIMEOUT_S="0.2"))
    ends = end_offsets(publish(settings.topic_interventions, keyed(events)))
    options = RunOptions(stop_when_idle_s=2.5, max_run_s=90, serve_metrics=False, handle_signals=False)
    stop = threading.Event()
    reports: dict[str, object] = {}
    metrics = {"first": BridgeMetrics(), "second": BridgeMetrics()}

    def bridge(name: str) -> None:
        reports[name] = run_bridge(settings, options, stop_event=stop, metrics=metrics[name])

    first = threading.Thread(target=bridge, args=("first",))
    first.start()
    wait_until(lambda: receiver.summary()["count"] >= 4, timeout=30, what="the first bridge to deliver a few")
    second = threading.Thread(target=bridge, args=("second",))
    second.start()
    first.join(120)
    second.join(120)
    stop.set()
    summary = receiver.summary()
    assert set(summary["event_ids"]) == ids and summary["count"] == 40
    assert reports["first"].delivered > 0 and reports["second"].delivered > 0  # the group really split the work
    assert reports["first"].delivered + reports["second"].delivered >= 40  # redeliveries are allowed, losses not
    assert reports["first"].dead_lettered + reports["second"].dead_lettered == 0
    for name in metrics:  # each bridge's own books balance, records handed back included
        totals = metrics[name].totals()
        assert totals["read"] == totals["delivered"] + totals["dead_lettered"] + totals["returned"], name
    assert committed(settings) == ends
