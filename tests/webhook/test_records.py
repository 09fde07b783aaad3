"""Reading a record of the interventions topic: every kind of poison is refused with its own reason and
nothing else ever escapes, deep nesting included (it used to raise RecursionError in the error path)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import InterventionKind
from schemas.outcomes import WebhookFailure
from streams.webhook.records import UnreadableRecord, dead_letter, read_event


def test_a_valid_event_of_every_kind_is_read(make_event):
    for kind in InterventionKind:  # health_needs included: delivered like any other
        event = make_event(3, kind=kind)
        assert read_event(event.model_dump_json().encode()) == event


def test_every_named_poison_is_refused_with_its_reason_and_never_its_content(poison_catalogue):
    seen = set()
    for name, value, reason in poison_catalogue:
        with pytest.raises(UnreadableRecord) as refused:
            read_event(value)
        assert refused.value.reason is reason, name
        assert refused.value.detail and "SCHP-P0007" not in refused.value.detail, name
        seen.add(reason)
    assert seen == set(WebhookFailure) - {WebhookFailure.REJECTED, WebhookFailure.REDIRECTED,
                                          WebhookFailure.MAX_ATTEMPTS, WebhookFailure.INTERNAL_ERROR}


def test_the_event_id_names_the_dead_letter_when_it_is_readable(make_event):
    event = json.loads(make_event(5).model_dump_json())
    with pytest.raises(UnreadableRecord) as refused:
        read_event(json.dumps({**event, "schema_version": 2}).encode())
    assert refused.value.event_id == event["event_id"]
    with pytest.raises(UnreadableRecord) as refused:
        read_event(json.dumps({**event, "event_id": {"nested": 1}}).encode())
    assert refused.value.event_id is None


def test_a_dead_letter_keeps_the_raw_bytes_with_the_one_encoder(make_record):
    letter = dead_letter(make_record(b"\xff\xfe"), WebhookFailure.INVALID_ENCODING, "not UTF-8")
    assert (letter.raw_encoding, letter.raw, letter.raw_bytes, letter.truncated) == ("base64", "//4=", 2, False)
    huge = dead_letter(make_record(b"x" * 100_000), WebhookFailure.INVALID_JSON, "not JSON")
    assert huge.truncated and huge.raw_bytes == 100_000 and len(huge.raw) < 100_000
    tombstone = dead_letter(make_record(None, partition=2, offset=41), WebhookFailure.TOMBSTONE, "no value")
    assert (tombstone.raw, tombstone.raw_bytes, tombstone.partition, tombstone.offset) == ("", 0, 2, 41)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_poison_is_refused_for_an_allowed_reason(poison_strategy, data):
    value, reasons = data.draw(poison_strategy)
    with pytest.raises(UnreadableRecord) as refused:
        read_event(value)
    assert refused.value.reason in reasons


@settings(max_examples=200)
@given(value=st.binary(max_size=400))
def test_arbitrary_bytes_only_ever_raise_unreadable_record(value):
    with pytest.raises(UnreadableRecord):
        read_event(value)
