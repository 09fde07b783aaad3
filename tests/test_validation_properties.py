"""Property tests: validation only ever rejects with a reason, and the fast parser agrees with the model."""

from __future__ import annotations

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.codes import CODES
from schemas.marks import MarkRejected, RegisterMark, RejectReason, parse_mark, parse_mark_json, rejection_from

TODAY = dt.date(2026, 1, 15)
text = st.one_of(st.text(max_size=80), st.sampled_from(["SCH1", "P-1", "p_2", "", " ", "a" * 64, "a" * 65]))
value = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.booleans(), text,
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
marks = st.fixed_dictionaries(
    {},
    optional={
        "schema_version": st.one_of(st.just(1), st.just("1"), value),
        "school_id": st.one_of(st.just("SCH1"), value),
        "pupil_id": st.one_of(st.just("P-0001"), value),
        "date": st.one_of(st.dates(dt.date(1990, 1, 1), dt.date(2030, 1, 1)).map(dt.date.isoformat), value),
        "session": st.one_of(st.sampled_from(["AM", "PM", "am", " pm ", "EV"]), value),
        "code": st.one_of(st.sampled_from(sorted(CODES) + ["J", "-", "", "zz"]), value),
        "recorded_at": st.one_of(st.just("2026-01-14T09:00:00+00:00"), st.just("2026-01-14T09:00:00"), value),
    },
)


@settings(max_examples=400, deadline=None)
@given(marks)
def test_validation_never_raises_anything_but_a_rejection(data):
    try:
        mark = parse_mark(data, today=TODAY)
    except MarkRejected as rejection:
        assert isinstance(rejection.reason, RejectReason) and rejection.detail
        return
    assert isinstance(mark, RegisterMark)


@settings(max_examples=400, deadline=None)
@given(marks)
def test_fast_parser_and_pydantic_model_agree(data):
    try:
        fast = parse_mark(data, today=TODAY)
    except MarkRejected:
        fast = None
    try:
        slow = RegisterMark.model_validate(data, context={"today": TODAY, "max_future_days": 31})
    except ValidationError as error:
        slow = None
        assert isinstance(rejection_from(error), MarkRejected)
    assert (fast is None) == (slow is None)
    if fast is not None:
        assert fast.model_dump(exclude={"original_code"}) == slow.model_dump(exclude={"original_code"})
        assert fast.model_dump_json(exclude={"original_code"}) == slow.model_dump_json(exclude={"original_code"})
        assert fast.model_fields_set == set(RegisterMark.model_fields)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_mark_or_a_rejection(payload):
    try:
        parse_mark_json(payload, today=TODAY, max_bytes=256)
    except MarkRejected as rejection:
        assert isinstance(rejection.reason, RejectReason)


@settings(max_examples=200, deadline=None)
@given(marks)
def test_any_json_object_is_a_mark_or_a_rejection(data):
    try:
        payload = json.dumps(data).encode()
    except (ValueError, TypeError):
        return
    try:
        parse_mark_json(payload, today=TODAY)
    except MarkRejected as rejection:
        assert isinstance(rejection.reason, RejectReason)
