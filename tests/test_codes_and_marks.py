"""The DfE code table and the register-mark contract."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest

from schemas.codes import CODES, Category, RegisterNotTakenError, UnknownCodeError, resolve
from schemas.marks import MarkRejected, RejectReason, parse_mark, parse_mark_json

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
        parse_mark_json(payload, today=TODAY, max_bytes=65_536)
    assert caught.value.reason is reason
