"""The DfE code table and the register-mark contract."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from devtools.poison import POISON_PUPIL, mark_fields, poison_messages
from schemas.codes import (
    CODES,
    Category,
    RegisterNotTakenError,
    UnknownCodeError,
    resolve,
)
from schemas.marks import (
    DEFAULT_PUPIL_ID_PATTERN,
    MarkLimits,
    MarkRejected,
    RegisterMark,
    RejectReason,
    compiled_pattern,
    json_depth,
    parse_mark,
    parse_mark_json,
    rejection_from,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "attendance-codes.csv"
TODAY = dt.date(2026, 1, 15)
GOOD = {"school_id": "SCH-1", "pupil_id": "p_0001", "date": "2026-01-14", "session": "AM", "code": "/",
        "recorded_at": "2026-01-14T08:55:00+00:00"}


def test_table_matches_the_2024_reference_codes():
    shipped = Path(__file__).resolve().parents[1] / "schemas" / "attendance_codes.csv"
    source = REFERENCE if REFERENCE.exists() else shipped
    with source.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 34
    for row in rows:
        code = CODES[row["code"]]
        assert code.category == Category(row["category"])
        assert code.possible_session == (row["possible_session"] == "true")
        assert code.attending == (row["attending"] == "true")
        assert code.absence == (row["absence"] == "true")


@pytest.mark.parametrize("code, category, possible, attending", [
    ("/", Category.PRESENT, True, True),
    ("L", Category.PRESENT, True, True),
    ("B", Category.APPROVED_ACTIVITY, True, True),
    ("I", Category.AUTHORISED_ABSENCE, True, False),
    ("N", Category.UNAUTHORISED_ABSENCE, True, False),
    ("U", Category.UNAUTHORISED_ABSENCE, True, False),
    ("Y1", Category.NOT_POSSIBLE, False, False),
    ("#", Category.ADMINISTRATIVE, False, False),
])
def test_classification(code, category, possible, attending):
    entry = CODES[code]
    assert (entry.category, entry.possible_session, entry.attending) == (category, possible, attending)


def test_unauthorised_and_authorised_are_exclusive():
    for entry in CODES.values():
        if entry.absence:
            assert entry.authorised in (True, False)
            assert entry.unauthorised == (not entry.authorised)
        else:
            assert not entry.unauthorised


def test_indexes_are_unique_and_stable():
    indexes = [entry.index for entry in CODES.values()]
    assert sorted(indexes) == list(range(1, len(CODES) + 1))
    assert CODES["/"].index == 1 and CODES["H"].index == 35 and CODES["Y"].index == 36


@pytest.mark.parametrize("raw, code, note_word", [("H", "H", "holiday"), ("J", "J1", "J1"), ("Y", "Y", "not possible")])
def test_withdrawn_codes_are_mapped_and_said(raw, code, note_word):
    entry, note = resolve(raw)
    assert entry.code == code
    assert note and note_word in note


def test_withdrawn_h_counts_as_authorised_absence_and_y_as_not_possible():
    assert CODES["H"].category is Category.AUTHORISED_ABSENCE and CODES["H"].possible_session
    assert CODES["Y"].category is Category.NOT_POSSIBLE and not CODES["Y"].possible_session


def test_register_not_taken_and_unknown_are_errors():
    with pytest.raises(RegisterNotTakenError):
        resolve("-")
    with pytest.raises(RegisterNotTakenError):
        resolve("  ")
    with pytest.raises(UnknownCodeError):
        resolve("Q9")


def test_valid_mark_round_trips_through_the_wire():
    mark = parse_mark(GOOD, today=TODAY)
    again = parse_mark_json(mark.to_wire(), today=TODAY)
    assert again == mark
    assert mark.recorded_at.tzinfo is not None


def test_withdrawn_code_keeps_the_exported_code():
    mark = parse_mark({**GOOD, "code": "j"}, today=TODAY)
    assert mark.code == "J1" and mark.original_code == "J"


@pytest.mark.parametrize("change, reason", [
    ({"code": "ZZ"}, RejectReason.UNKNOWN_CODE),
    ({"code": "-"}, RejectReason.REGISTER_NOT_TAKEN),
    ({"pupil_id": ""}, RejectReason.EMPTY_ID),
    ({"school_id": "   "}, RejectReason.EMPTY_ID),
    ({"pupil_id": "Jane Smith"}, RejectReason.MALFORMED_ID),
    ({"pupil_id": "x" * 65}, RejectReason.MALFORMED_ID),
    ({"pupil_id": "p/1"}, RejectReason.MALFORMED_ID),
    ({"pupil_id": 12345}, RejectReason.MALFORMED_ID),
    ({"date": "2026-02-30"}, RejectReason.INVALID_DATE),
    ({"date": "14/01/2026"}, RejectReason.INVALID_DATE),
    ({"date": "1999-12-31"}, RejectReason.IMPLAUSIBLE_DATE),
    ({"date": "2027-01-14"}, RejectReason.FUTURE_DATE),
    ({"session": "EV"}, RejectReason.UNKNOWN_SESSION),
    ({"session": ""}, RejectReason.UNKNOWN_SESSION),
    ({"recorded_at": "yesterday"}, RejectReason.INVALID_RECORDED_AT),
    ({"schema_version": 2}, RejectReason.UNSUPPORTED_SCHEMA_VERSION),
])
def test_rejections_are_precise(change, reason):
    with pytest.raises(MarkRejected) as caught:
        parse_mark({**GOOD, **change}, today=TODAY)
    assert caught.value.reason is reason
    assert caught.value.detail


def test_missing_field_is_named():
    row = dict(GOOD)
    del row["session"]
    with pytest.raises(MarkRejected) as caught:
        parse_mark(row, today=TODAY)
    assert caught.value.reason is RejectReason.MISSING_FIELD and "session" in caught.value.detail


def test_a_month_ahead_is_allowed_for_planned_leave():
    assert parse_mark({**GOOD, "date": "2026-02-10", "code": "C"}, today=TODAY).code == "C"


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe\x00garbage", RejectReason.INVALID_ENCODING),
    (b"{not json", RejectReason.INVALID_JSON),
    (b"[1, 2]", RejectReason.INVALID_JSON),
    (b"null", RejectReason.INVALID_JSON),
    (json.dumps({**GOOD, "code": "??"}).encode(), RejectReason.UNKNOWN_CODE),
    (b"x" * 70_000, RejectReason.PAYLOAD_TOO_LARGE),
])
def test_bad_messages_are_rejected_not_raised(payload, reason):
    with pytest.raises(MarkRejected) as caught:
        parse_mark_json(payload, today=TODAY, limits=MarkLimits(max_message_bytes=65_536))
    assert caught.value.reason is reason


# -- hostile input: every finding of issue 10 is an ordinary rejection with a precise reason ----------

NOW = dt.datetime(2026, 1, 15, 10, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("poison", poison_messages(TODAY), ids=lambda poison: poison.name)
def test_every_named_poison_message_gets_its_reason(poison):
    with pytest.raises(MarkRejected) as caught:
        parse_mark_json(poison.value, today=TODAY, now=NOW)
    assert caught.value.reason is poison.reason, caught.value.detail
    assert caught.value.detail


def test_the_poison_base_mark_is_valid_so_each_poison_has_exactly_one_fault():
    mark = parse_mark(mark_fields(TODAY), today=TODAY, now=NOW)
    assert mark.pupil_id == POISON_PUPIL


def test_overflowing_recorded_at_is_rejected_not_an_overflow_error():
    for stamp in ("9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59.999999-23:59"):
        with pytest.raises(MarkRejected) as caught:
            parse_mark({**GOOD, "recorded_at": stamp}, today=TODAY, now=NOW)
        assert caught.value.reason is RejectReason.FUTURE_RECORDED_AT
    with pytest.raises(MarkRejected) as caught:
        parse_mark({**GOOD, "recorded_at": "0001-01-01T00:00:00+14:00"}, today=TODAY, now=NOW)
    assert caught.value.reason is RejectReason.IMPLAUSIBLE_RECORDED_AT
    # The same through the pydantic model, as a datetime object.
    aware = dt.datetime.fromisoformat("9999-12-31T23:59:59-12:00")
    with pytest.raises(ValidationError) as error:
        RegisterMark.model_validate({**GOOD, "recorded_at": aware}, context={"today": TODAY, "now": NOW})
    assert rejection_from(error.value).reason is RejectReason.FUTURE_RECORDED_AT


@pytest.mark.parametrize("skew_minutes, accepted", [(0, True), (14, True), (15, True), (16, False), (60 * 24, False)])
def test_recorded_at_may_be_ahead_of_now_only_by_the_allowed_skew(skew_minutes, accepted):
    stamp = (NOW + dt.timedelta(minutes=skew_minutes)).isoformat()
    limits = MarkLimits(recorded_at_max_skew=dt.timedelta(minutes=15))
    if accepted:
        assert parse_mark({**GOOD, "recorded_at": stamp}, limits=limits, today=TODAY, now=NOW).recorded_at
    else:
        with pytest.raises(MarkRejected) as caught:
            parse_mark({**GOOD, "recorded_at": stamp}, limits=limits, today=TODAY, now=NOW)
        assert caught.value.reason is RejectReason.FUTURE_RECORDED_AT


def test_an_offset_is_taken_into_account_when_bounding_recorded_at():
    # 10:10 at +01:00 is 09:10 UTC: before now. 11:00 at -01:00 is 12:00 UTC: two hours ahead.
    assert parse_mark({**GOOD, "recorded_at": "2026-01-15T10:10:00+01:00"}, today=TODAY, now=NOW)
    with pytest.raises(MarkRejected) as caught:
        parse_mark({**GOOD, "recorded_at": "2026-01-15T11:00:00-01:00"}, today=TODAY, now=NOW)
    assert caught.value.reason is RejectReason.FUTURE_RECORDED_AT


def test_the_recorded_at_floor_is_configurable():
    limits = MarkLimits(recorded_at_floor=dt.date(2025, 9, 1))
    with pytest.raises(MarkRejected) as caught:
        parse_mark({**GOOD, "recorded_at": "2025-08-31T23:59:59+00:00"}, limits=limits, today=TODAY, now=NOW)
    assert caught.value.reason is RejectReason.IMPLAUSIBLE_RECORDED_AT
    assert parse_mark({**GOOD, "recorded_at": "2025-09-01T00:00:00+00:00"}, limits=limits, today=TODAY, now=NOW)


def test_recorded_at_defaults_to_the_real_clock():
    ahead = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    with pytest.raises(MarkRejected) as caught:
        parse_mark({**GOOD, "recorded_at": ahead.isoformat()}, today=TODAY)
    assert caught.value.reason is RejectReason.FUTURE_RECORDED_AT
    just_now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    assert parse_mark({**GOOD, "recorded_at": just_now.isoformat()}, today=TODAY).recorded_at == just_now


def test_no_future_day_limit_when_max_future_days_is_none():
    far = {**GOOD, "date": "2099-01-14"}
    with pytest.raises(MarkRejected):
        parse_mark(far, today=TODAY, now=NOW)
    assert parse_mark(far, limits=MarkLimits(max_future_days=None), today=TODAY, now=NOW).date == dt.date(2099, 1, 14)


@pytest.mark.parametrize("pupil_id, accepted", [
    ("SCH001-P00042", True), ("p_0001", True), ("7", True),
    ("Jane-Smith", False), ("JaneSmith", False), ("jane_smith", False), ("X", False),
])
def test_the_default_pupil_id_pattern_refuses_ids_without_a_digit(pupil_id, accepted):
    row = {**GOOD, "pupil_id": pupil_id}
    if accepted:
        assert parse_mark(row, today=TODAY, now=NOW).pupil_id == pupil_id
    else:
        with pytest.raises(MarkRejected) as caught:
            parse_mark(row, today=TODAY, now=NOW)
        assert caught.value.reason is RejectReason.MALFORMED_ID
        assert pupil_id not in caught.value.detail, "a rejected id may be a name: never quoted"


def test_a_configured_pupil_id_pattern_narrows_but_never_widens_the_id_shape():
    trust = MarkLimits(pupil_id_pattern=r"T[0-9]{6}")
    assert parse_mark({**GOOD, "pupil_id": "T123456"}, limits=trust, today=TODAY, now=NOW).pupil_id == "T123456"
    with pytest.raises(MarkRejected):
        parse_mark(GOOD, limits=trust, today=TODAY, now=NOW)  # p_0001 is not the trust's shape
    anything = MarkLimits(pupil_id_pattern=r".+")
    with pytest.raises(MarkRejected) as caught:
        parse_mark({**GOOD, "pupil_id": "Jane Smith 1"}, limits=anything, today=TODAY, now=NOW)
    assert caught.value.reason is RejectReason.MALFORMED_ID
    # School ids keep the generic shape (no digit needed) whatever the pupil pattern says.
    assert parse_mark({**GOOD, "school_id": "ABC", "pupil_id": "T000001"}, limits=trust, today=TODAY, now=NOW)
    assert parse_mark({**GOOD, "school_id": "ABC"}, today=TODAY, now=NOW).school_id == "ABC"


def test_patterns_are_compiled_once():
    assert compiled_pattern(DEFAULT_PUPIL_ID_PATTERN) is compiled_pattern(DEFAULT_PUPIL_ID_PATTERN)
    assert compiled_pattern(r"T[0-9]{6}") is compiled_pattern("T[0-9]{6}")


@pytest.mark.parametrize("school_id", ["SCH\x001", "SCH1\x1f", "\x0bSCH1", "SCH1\n", "SCH\x7f1"])
def test_control_characters_in_ids_are_refused_not_trimmed(school_id):
    with pytest.raises(MarkRejected) as caught:
        parse_mark({**GOOD, "school_id": school_id}, today=TODAY, now=NOW)
    assert caught.value.reason is RejectReason.MALFORMED_ID
    assert "control character" in caught.value.detail


def test_blanks_around_ids_are_trimmed():
    mark = parse_mark({**GOOD, "school_id": " SCH-1\t", "pupil_id": "  p_0001 "}, today=TODAY, now=NOW)
    assert (mark.school_id, mark.pupil_id) == ("SCH-1", "p_0001")


@pytest.mark.parametrize("value", [10**5000, -(10**5000), [[[[[[[[]]]]]]]], {"a": {"b": []}}, b"bytes", 1e308 * 10],
                         ids=["huge-int", "huge-negative-int", "nested-list", "nested-dict", "bytes", "infinity"])
def test_any_python_value_in_any_field_is_a_rejection(value):
    for name in ("schema_version", "school_id", "pupil_id", "date", "session", "code", "recorded_at",
                 "original_code"):
        with pytest.raises(MarkRejected) as caught:
            parse_mark({**GOOD, name: value}, today=TODAY, now=NOW)
        assert caught.value.detail and len(caught.value.detail) < 400


def test_a_deeply_nested_python_value_is_described_not_printed():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(MarkRejected) as caught:
        parse_mark({**GOOD, "code": deep}, today=TODAY, now=NOW)
    assert caught.value.reason is RejectReason.UNKNOWN_CODE and "list" in caught.value.detail


def test_json_depth_is_measured_without_recursion_and_ignores_brackets_in_strings():
    assert json_depth('{"a": [1, {"b": []}]}') == 4
    assert json_depth('{"code": "[[[[[[[[[[[[[[[["}') == 1
    assert json_depth('{"code": "\\"[[[[[[[[[[[[["}') == 1
    assert json_depth("[" * 200_000) == 200_000
    assert parse_mark_json(json.dumps({**GOOD, "code": "/", "note": "[[[[[[[[[[[["}).encode(), today=TODAY, now=NOW)


def test_json_nested_exactly_to_the_limit_is_parsed_and_one_more_is_not():
    limits = MarkLimits(max_json_depth=4)
    at_limit = json.dumps({**GOOD, "extra": [[[1]]]}).encode()  # object + 3 arrays = 4
    assert parse_mark_json(at_limit, limits=limits, today=TODAY, now=NOW)
    with pytest.raises(MarkRejected) as caught:
        parse_mark_json(json.dumps({**GOOD, "extra": [[[[1]]]]}).encode(), limits=limits, today=TODAY, now=NOW)
    assert caught.value.reason is RejectReason.JSON_TOO_DEEP


@pytest.mark.parametrize("literal", ["1" * 33, "-" + "9" * 40, "1e309", "-1e309", "1" * 4301, "NaN", "Infinity",
                                     "-Infinity", "1." + "0" * 40])
def test_numbers_out_of_range_are_rejected_before_conversion(literal):
    payload = b'{"schema_version": ' + literal.encode() + b', "school_id": "S1"}'
    with pytest.raises(MarkRejected) as caught:
        parse_mark_json(payload, today=TODAY, now=NOW)
    assert caught.value.reason is RejectReason.NUMBER_OUT_OF_RANGE


def test_a_duplicated_key_is_refused_whichever_copy_is_valid():
    text = json.dumps(GOOD)
    for key in GOOD:
        payload = text.replace("{", "{" + json.dumps(key) + ": " + json.dumps(GOOD[key]) + ", ", 1).encode()
        with pytest.raises(MarkRejected) as caught:
            parse_mark_json(payload, today=TODAY, now=NOW)
        assert caught.value.reason is RejectReason.DUPLICATE_KEY and key in caught.value.detail


@pytest.mark.parametrize("payload", [None, b"", bytearray(b""), memoryview(b"")])
def test_tombstones_and_empty_messages_are_rejected_not_type_errors(payload):
    with pytest.raises(MarkRejected) as caught:
        parse_mark_json(payload, today=TODAY, now=NOW)
    assert caught.value.reason is RejectReason.EMPTY_PAYLOAD


def test_a_bytearray_or_memoryview_message_is_read_like_bytes():
    wire = json.dumps(GOOD).encode()
    expected = parse_mark_json(wire, today=TODAY, now=NOW)
    assert parse_mark_json(bytearray(wire), today=TODAY, now=NOW) == expected
    assert parse_mark_json(memoryview(wire), today=TODAY, now=NOW) == expected


def test_the_size_limit_can_be_off():
    padded = json.dumps({**GOOD, "note": "x" * 100_000}).encode()
    with pytest.raises(MarkRejected):
        parse_mark_json(padded, today=TODAY, now=NOW)
    assert parse_mark_json(padded, limits=MarkLimits(max_message_bytes=None), today=TODAY, now=NOW)


def test_a_withdrawn_code_round_trips_with_its_original_code_on_the_wire():
    mark = parse_mark({**GOOD, "code": "j"}, today=TODAY, now=NOW)
    again = parse_mark_json(mark.to_wire(), today=TODAY, now=NOW)
    assert (again.code, again.original_code) == ("J1", "J")
    assert again == mark
