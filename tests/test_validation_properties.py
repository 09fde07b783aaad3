"""Property tests: validation only ever rejects with a reason, whatever arrives and whatever the
limits, and the fast parser agrees with the pydantic model (accept or reject, and on the reason)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from devtools.poison import (
    CSV_HEADER,
    arbitrary_json,
    arbitrary_mark_messages,
    poison_message_cases,
    poison_row_cases,
    valid_mark_fields,
)
from schemas.codes import CODES
from schemas.interchange import read_marks
from schemas.marks import (
    DEFAULT_PUPIL_ID_PATTERN,
    MarkLimits,
    MarkRejected,
    RegisterMark,
    RejectReason,
    parse_mark,
    parse_mark_json,
    rejection_from,
)

TODAY = dt.date(2026, 1, 15)
NOW = dt.datetime(2026, 1, 15, 10, 0, tzinfo=dt.timezone.utc)
text = st.one_of(st.text(max_size=80), st.sampled_from(["SCH1", "P-1", "p_2", "", " ", "a" * 64, "a" * 65, "Jane-Smith",
                                                        "P1\x00", "\tP1 "]))
# Past Python's 4300-digit limit: printing one raises ValueError, so no detail may try.
huge_integers = st.builds(lambda digits, sign: sign * 10**digits, st.integers(4301, 5000), st.sampled_from([1, -1]))
value = st.one_of(st.none(), st.integers(), huge_integers,
                  st.floats(allow_nan=True), st.booleans(), text, st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), arbitrary_json())
stamps = st.one_of(
    st.sampled_from(["2026-01-14T09:00:00+00:00", "2026-01-14T09:00:00", "9999-12-31T23:59:59-12:00",
                     "0001-01-01T00:00:00+14:00", "2099-01-01T00:00:00Z", "1999-12-31T23:59:59Z",
                     "2026-01-15T10:14:00Z", "2026-01-15T10:16:00Z"]),
    st.datetimes(dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30)).map(lambda moment: moment.isoformat() + "+05:00"),
)
marks = st.fixed_dictionaries(
    {},
    optional={
        "schema_version": st.one_of(st.just(1), st.just("1"), value),
        "school_id": st.one_of(st.just("SCH1"), value),
        "pupil_id": st.one_of(st.just("P-0001"), value),
        "date": st.one_of(st.dates(dt.date(1990, 1, 1), dt.date(2030, 1, 1)).map(dt.date.isoformat), value),
        "session": st.one_of(st.sampled_from(["AM", "PM", "am", " pm ", "EV"]), value),
        "code": st.one_of(st.sampled_from(sorted(CODES) + ["J", "-", "", "zz"]), value),
        "recorded_at": st.one_of(stamps, value),
        "original_code": st.one_of(st.none(), st.sampled_from(["H", "J", "Y", "Q"]), value),
    },
)
limits = st.builds(
    MarkLimits,
    max_future_days=st.one_of(st.none(), st.integers(0, 400)),
    max_message_bytes=st.one_of(st.none(), st.integers(256, 1 << 20)),
    max_json_depth=st.integers(2, 64),
    recorded_at_max_skew=st.timedeltas(dt.timedelta(0), dt.timedelta(days=2)),
    recorded_at_floor=st.dates(dt.date(1990, 1, 1), dt.date(2026, 1, 1)),
    pupil_id_pattern=st.sampled_from([DEFAULT_PUPIL_ID_PATTERN, r"[A-Za-z0-9_-]{1,64}", r"P-[0-9]{4}", r".*",
                                      r"(?i)sch1"]),
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(marks, limits)
def test_validation_never_raises_anything_but_a_rejection(data, bounds):
    try:
        mark = parse_mark(data, limits=bounds, today=TODAY, now=NOW)
    except MarkRejected as rejection:
        assert isinstance(rejection.reason, RejectReason) and rejection.detail
        return
    assert isinstance(mark, RegisterMark)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(marks, limits)
def test_fast_parser_and_pydantic_model_agree(data, bounds):
    try:
        fast = parse_mark(data, limits=bounds, today=TODAY, now=NOW)
    except MarkRejected as rejection:
        fast, fast_reason = None, rejection.reason
    try:
        slow = RegisterMark.model_validate(data, context={"today": TODAY, "now": NOW, "limits": bounds})
    except ValidationError as error:
        slow, slow_reason = None, rejection_from(error).reason
    assert (fast is None) == (slow is None)
    if fast is None:
        assert fast_reason is slow_reason
    else:
        assert fast.model_dump(exclude={"original_code"}) == slow.model_dump(exclude={"original_code"})
        assert fast.model_dump_json(exclude={"original_code"}) == slow.model_dump_json(exclude={"original_code"})
        assert fast.model_fields_set == set(RegisterMark.model_fields)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.binary(min_size=300, max_size=70_000)), limits)
def test_any_bytes_are_a_mark_or_a_rejection(payload, bounds):
    try:
        parse_mark_json(payload, limits=bounds, today=TODAY, now=NOW)
    except MarkRejected as rejection:
        assert isinstance(rejection.reason, RejectReason)


@settings(max_examples=300, deadline=None)
@given(arbitrary_mark_messages(TODAY), limits)
def test_any_message_of_any_json_shape_is_a_mark_or_a_rejection(payload, bounds):
    try:
        mark = parse_mark_json(payload, limits=bounds, today=TODAY, now=NOW)
    except MarkRejected as rejection:
        assert isinstance(rejection.reason, RejectReason) and rejection.detail
        return
    assert mark.to_wire()  # an accepted mark can always be written back


@settings(max_examples=200, deadline=None)
@given(marks)
def test_any_json_object_is_a_mark_or_a_rejection(data):
    try:
        payload = json.dumps(data).encode()
    except (ValueError, TypeError):
        return
    try:
        parse_mark_json(payload, today=TODAY, now=NOW)
    except MarkRejected as rejection:
        assert isinstance(rejection.reason, RejectReason)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(poison_message_cases(TODAY))
def test_generated_poison_messages_get_their_reason(poison):
    try:
        parse_mark_json(poison.value, today=TODAY, now=NOW)
    except MarkRejected as rejection:
        assert rejection.reason is poison.reason, (poison.name, rejection.detail)
    else:
        raise AssertionError(f"poison {poison.name} was accepted")


@settings(max_examples=200, deadline=None)
@given(valid_mark_fields(TODAY))
def test_generated_valid_marks_are_accepted_at_any_hour_of_the_day(fields):
    for hour in (0, 12, 23):
        now = dt.datetime.combine(TODAY, dt.time(hour, 59), tzinfo=dt.timezone.utc)
        mark = parse_mark_json(json.dumps(fields).encode(), today=TODAY, now=now)
        assert mark.pupil_id == fields["pupil_id"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.one_of(valid_mark_fields(TODAY).map(lambda fields: (fields, None)),
                          poison_row_cases(TODAY).map(lambda poison: (poison.line, poison.reason))), max_size=30),
       st.sampled_from([b"\n", b"\r\n"]), st.booleans())
@pytest.mark.slow
def test_any_csv_file_reads_one_row_per_line_with_its_line_number(tmp_path, rows, ending, final_ending):
    """Valid rows interleaved with poison of every kind: every line is one row, in order, with the
    right line number; each valid row is its mark; each poison row gets its reason; nothing raises."""
    from devtools.poison import csv_line

    lines = [csv_line(item) if reason is None else item for item, reason in rows]
    path = tmp_path / "marks.csv"
    path.write_bytes(CSV_HEADER + ending + ending.join(lines) + (ending if final_ending and lines else b""))
    read = list(read_marks(path, today=TODAY, now=NOW))
    expected = [(number, item, reason) for number, (item, reason) in enumerate(rows, start=2)
                if (csv_line(item) if reason is None else item) != b""]
    assert [row.line for row in read] == [number for number, _, _ in expected]
    for row, (_, item, reason) in zip(read, expected):
        if reason is None:
            assert row.rejection is None and row.mark is not None, row.rejection
            assert row.mark.pupil_id == item["pupil_id"] and row.mark.date.isoformat() == item["date"]
        else:
            assert row.mark is None and row.rejection.reason is reason, (item[:200], row.rejection)
            assert row.header == CSV_HEADER.decode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_any_bytes_after_a_header_are_rows_or_rejections_never_an_error(tmp_path, body):
    path = tmp_path / "any.csv"
    path.write_bytes(CSV_HEADER + b"\n" + body)
    rows = list(read_marks(path, today=TODAY, now=NOW))
    non_empty = [line for line in body.split(b"\n") if line not in (b"", b"\r")]
    assert len(rows) == len(non_empty)
    for row in rows:
        assert (row.mark is None) != (row.rejection is None)
        assert row.rejection is None or isinstance(row.rejection.reason, RejectReason)
