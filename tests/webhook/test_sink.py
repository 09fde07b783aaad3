"""The webhook sink without a broker: add() and flush() deliver or dead-letter every record in order, and a
flush reports as committable only what is finished (delivered, or dead-lettered and acknowledged)."""

from __future__ import annotations

from standardwebhooks.webhooks import Webhook

from schemas.events import InterventionKind
from schemas.outcomes import WebhookFailure
from streams.webhook.receiver import FailureScript
from streams.webhook.sink import Interrupted


def test_a_flush_delivers_or_dead_letters_everything_and_reports_each_partition_finished(
        start_receiver, make_sink, make_record, make_event, fake_producer, poison_catalogue, secret):
    receiver = start_receiver()
    sink, metrics = make_sink(receiver, fake_producer)
    events = [make_event(i, kind=kind) for i, kind in enumerate(InterventionKind)]
    records = []
    for i, event in enumerate(events):
        records.append(make_record(event.model_dump_json().encode(), partition=i % 2, offset=10 + i))
    for j, (_, value, _) in enumerate(poison_catalogue):
        records.append(make_record(value, partition=j % 2, offset=100 + j))
    for record in records:
        sink.add(record)
    result = sink.flush()

    assert result.interrupted is None and result.resume == {}
    assert result.committable == {("t.interventions", 0): max(r.offset for r in records if r.partition == 0) + 1,
                                  ("t.interventions", 1): max(r.offset for r in records if r.partition == 1) + 1}
    assert set(receiver.summary()["event_ids"]) == {e.event_id for e in events}  # health_needs too
    for event in events:  # each delivery as received verifies with a library we did not write
        stored = receiver.stored[event.event_id]
        assert Webhook(secret.serialise()).verify(stored.body, stored.signature_headers)["event_id"] == event.event_id
    reasons = sorted((letter.partition, letter.offset, letter.reason) for letter in fake_producer.acknowledged)
    assert reasons == sorted((j % 2, 100 + j, reason) for j, (_, _, reason) in enumerate(poison_catalogue))
    totals = metrics.totals()
    assert totals["read"] == len(records) == totals["delivered"] + totals["dead_lettered"]
    assert (totals["delivered"], totals["in_flight"], totals["returned"]) == (len(events), 0, 0)


def test_a_stop_while_an_event_is_retried_leaves_its_offset_and_everything_after_it_uncommitted(
        start_receiver, make_sink, make_record, make_event, fake_producer):
    first, stuck, after = (make_event(i, school="SCHS") for i in range(3))
    receiver = start_receiver(FailureScript(status_for={stuck.event_id: 503}))
    waits = []

    def wait(seconds: float) -> None:
        if seconds > 0:
            waits.append(seconds)
        if len(waits) >= 3:
            raise Interrupted("stop")

    sink, metrics = make_sink(receiver, fake_producer, wait=wait, max_attempts=100)
    for offset, event in enumerate((first, stuck, after)):
        sink.add(make_record(event.model_dump_json().encode(), offset=offset))
    result = sink.flush()
    assert result.interrupted == "stop"
    assert result.committable == {("t.interventions", 0): 1} and result.resume == {("t.interventions", 0): 1}
    assert receiver.summary()["event_ids"] == [first.event_id] and receiver.attempts(after.event_id) == 0
    assert receiver.attempts(stuck.event_id) == 3 and fake_producer.sent == []
    totals = metrics.totals()
    assert (totals["read"], totals["delivered"], totals["returned"], totals["in_flight"]) == (3, 1, 2, 0)


def test_dead_letters_the_broker_did_not_take_are_sent_again_before_anything_is_committed(
        start_receiver, make_sink, make_record, make_event, fake_producer):
    receiver = start_receiver()
    fake_producer.refuse = 2
    sink, metrics = make_sink(receiver, fake_producer)
    sink.add(make_record(b"\xff", offset=0))
    sink.add(make_record(make_event(1).model_dump_json().encode(), offset=1))
    result = sink.flush()
    assert result.committable == {("t.interventions", 0): 2}
    assert len(fake_producer.sent) == 3 and [x.reason for x in fake_producer.acknowledged] == [
        WebhookFailure.INVALID_ENCODING]
    assert metrics.totals()["dead_lettered"] == 1


def test_a_dead_letter_never_acknowledged_holds_the_offset_when_stopped(
        start_receiver, make_sink, make_record, make_event, fake_producer):
    receiver = start_receiver()
    fake_producer.refuse = 10**6

    def wait(seconds: float) -> None:
        if seconds > 0:
            raise Interrupted("stop")

    sink, metrics = make_sink(receiver, fake_producer, wait=wait)
    event = make_event(1)
    sink.add(make_record(event.model_dump_json().encode(), offset=0))
    sink.add(make_record(None, offset=1))
    sink.add(make_record(make_event(2).model_dump_json().encode(), offset=2))
    result = sink.flush()
    assert result.committable == {("t.interventions", 0): 1} and result.resume == {("t.interventions", 0): 1}
    totals = metrics.totals()
    assert (totals["delivered"], totals["dead_lettered"], totals["returned"]) == (1, 0, 2)


def test_4xx_is_final_at_once_and_exhausted_retries_are_dead_lettered_with_the_last_answer(
        start_receiver, make_sink, make_record, make_event, fake_producer):
    refused, failing, redirected = (make_event(i, school="SCHR") for i in range(3))
    receiver = start_receiver(FailureScript(status_for={refused.event_id: 422, failing.event_id: 500,
                                                        redirected.event_id: 308}))
    sink, _ = make_sink(receiver, fake_producer, max_attempts=3)
    for offset, event in enumerate((refused, failing, redirected)):
        sink.add(make_record(event.model_dump_json().encode(), offset=offset))
    sink.flush()
    letters = {letter.event_id: letter for letter in fake_producer.acknowledged}
    assert (letters[refused.event_id].reason, letters[refused.event_id].attempts) == (WebhookFailure.REJECTED, 1)
    assert (letters[failing.event_id].reason, letters[failing.event_id].attempts,
            letters[failing.event_id].last_status) == (WebhookFailure.MAX_ATTEMPTS, 3, 500)
    assert letters[redirected.event_id].reason is WebhookFailure.REDIRECTED
    assert {receiver.attempts(e.event_id) for e in (refused, redirected)} == {1}
    assert letters[refused.event_id].webhook_host == f"127.0.0.1:{receiver.port}"


def test_an_unexpected_error_dead_letters_that_record_only(start_receiver, make_sink, make_record, make_event,
                                                            fake_producer, caplog):
    receiver = start_receiver()
    sink, metrics = make_sink(receiver, fake_producer)
    broken, fine = make_event(1), make_event(2)
    post = sink.client.post

    def flaky_post(body, headers):
        if broken.event_id.encode() in body:
            raise RuntimeError(f"a defect that mentions {broken.pupil_id}")
        return post(body, headers)

    sink.client.post = flaky_post
    sink.add(make_record(broken.model_dump_json().encode(), offset=0))
    sink.add(make_record(fine.model_dump_json().encode(), offset=1))
    result = sink.flush()
    assert result.committable == {("t.interventions", 0): 2}
    (letter,) = fake_producer.acknowledged
    assert letter.reason is WebhookFailure.INTERNAL_ERROR and letter.detail == "RuntimeError while handling the record"
    assert receiver.summary()["event_ids"] == [fine.event_id]
    assert metrics.totals()["read"] == metrics.totals()["delivered"] + metrics.totals()["dead_lettered"] == 2
    assert "RuntimeError" in caplog.text and broken.pupil_id not in caplog.text  # no pupil id in a log line
