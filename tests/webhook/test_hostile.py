"""Hostile input on the interventions topic: the embedded broker, a running bridge and the reference
receiver; valid events (health_needs included) interleaved with every named kind of poison and a
hypothesis-generated corpus. Every valid event is delivered once, every poison record is dead-lettered
with a reason, the bridge keeps running, and its metrics reconcile exactly: read = delivered + dead-lettered."""

from __future__ import annotations

import urllib.request

import pytest
from hypothesis import Phase, given, settings
from standardwebhooks.webhooks import Webhook

from devtools.broker import free_port
from devtools.harness import metric_sum, metric_values
from schemas.events import InterventionKind
from streams.webhook.bridge import RunOptions

CORPUS_SIZE = 60


@pytest.mark.broker
@pytest.mark.slow
def test_poison_is_dead_lettered_with_a_reason_and_every_valid_event_is_delivered_once(
        start_receiver, bridge_env, settings_for, publish, end_offsets, committed, dead_letters, bridge_thread,
        make_event, poison_catalogue, poison_strategy, secret, wait_until):
    corpus: list[tuple[bytes, set]] = []

    @settings(max_examples=CORPUS_SIZE, database=None, phases=[Phase.generate], deadline=None)
    @given(poison_strategy)
    def collect(example) -> None:  # hypothesis explores the strategy; the broker run sees the whole corpus
        corpus.append(example)

    collect()
    poison = [(value, {reason}) for _, value, reason in poison_catalogue] + corpus
    kinds = list(InterventionKind)
    valid = [make_event(i, kind=kinds[i % len(kinds)], school="SCHH") for i in range(len(poison) + 1)]
    messages, expected_reasons = [], {}
    for i, event in enumerate(valid):  # valid, poison, valid, poison, ..., valid
        messages.append((event.pupil_id.encode(), event.model_dump_json().encode()))
        if i < len(poison):
            value = poison[i][0]
            messages.append((None if i % 3 == 0 and value is not None else f"poison-{i}".encode(), value))
            expected_reasons[len(messages) - 1] = poison[i][1]

    receiver = start_receiver()
    metrics_port = free_port()
    settings_ = settings_for(bridge_env("wh-hostile", receiver, RECONNECT_BRIDGE_METRICS_PORT=str(metrics_port)))
    positions = publish(settings_.topic_interventions, messages)
    thread, stop, metrics, _ = bridge_thread(settings_, RunOptions(handle_signals=False))

    wait_until(lambda: metrics.totals()["read"] >= len(messages) and metrics.totals()["in_flight"] == 0
               and committed(settings_) == end_offsets(positions), timeout=120,
               what="the bridge to finish every record")
    assert thread.is_alive()  # it is still running, ready for more

    summary = receiver.summary()
    assert sorted(summary["event_ids"]) == sorted(e.event_id for e in valid)
    assert summary["duplicates"] == 0 and all(count == 1 for count in summary["attempts"].values())
    library = Webhook(secret.serialise())
    for event in valid:
        entry = receiver.stored[event.event_id]
        assert library.verify(entry.body, entry.signature_headers)["event_id"] == event.event_id

    letters = dead_letters(settings_, expected=len(poison))
    by_position = {(letter.partition, letter.offset): letter for letter in letters}
    assert len(by_position) == len(letters) == len(poison)  # one dead letter per poison record, none for valid ones
    for index, allowed in expected_reasons.items():
        letter = by_position[positions[index]]
        assert letter.reason in allowed and letter.detail, (index, letter.reason, allowed)
        assert letter.topic == settings_.topic_interventions and letter.attempts == 0

    totals = metrics.totals()
    assert totals["read"] == len(messages) == totals["delivered"] + totals["dead_lettered"]
    assert (totals["delivered"], totals["dead_lettered"], totals["returned"], totals["in_flight"]) == (
        len(valid), len(poison), 0, 0)
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        exposition = response.read().decode()
    scraped = metric_values(exposition)
    assert metric_sum(scraped, "reconnect_webhook_records_read_total") == (
        metric_sum(scraped, "reconnect_webhook_delivered_total")
        + metric_sum(scraped, "reconnect_webhook_dead_lettered_total")) == len(messages)
    assert "SCHH-P" not in exposition  # no pupil id in any metric
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
