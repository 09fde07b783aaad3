"""Poison input for the hostile-input tests: every finding of issue 10 as a named record with the
reason it must be dead-lettered with, and hypothesis strategies for more of the same.

Two shapes, for the two ways marks arrive:

* messages for the marks topic (`PoisonMessage`: key and value bytes; value None is a tombstone);
* lines of an interchange CSV under `CSV_HEADER` (`PoisonRow`: one physical line, no ending).

Every expected reason holds under the default `MarkLimits` (64 KiB messages, JSON depth 8,
31 days ahead, 15 minutes of clock skew, recorded_at from 2000, pupil ids with a digit), for
marks checked on `today` (the real date unless given) at any time of that day. Each record
has exactly one thing wrong, so its reason is certain. `valid_mark_fields` draws marks that
must be accepted, to interleave with the poison.

Development only: hypothesis is a dev dependency, and nothing in production imports devtools.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from schemas.codes import CODES, REGISTER_NOT_TAKEN
from schemas.marks import CONTROL_CHARACTERS, MAX_NUMBER_CHARS, RejectReason

CSV_HEADER = b"school_id,pupil_id,date,session,code,recorded_at"
POISON_PUPIL = "SCH001-P00001"
POISON_SCHOOL = "SCH001"
# Codes a mark may carry: every code of the table (withdrawn ones are mapped), none that means
# "register not taken".
VALID_CODES = sorted(code for code in CODES if code not in REGISTER_NOT_TAKEN)
_CONTROL = [chr(c) for c in [*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F]]


@dataclass(frozen=True)
class PoisonMessage:
    name: str
    key: bytes | None
    value: bytes | None  # None: a tombstone
    reason: RejectReason
    finding: str  # what it does to a system without the bounds


@dataclass(frozen=True)
class PoisonRow:
    name: str
    line: bytes  # one physical line under CSV_HEADER, without its line ending
    reason: RejectReason
    finding: str


def _base_day(today: dt.date | None) -> dt.date:
    # Two days back: a recording late on that day at -12:00 is still in the past at any hour today.
    return (today or dt.date.today()) - dt.timedelta(days=2)


def mark_fields(today: dt.date | None = None, **changes: Any) -> dict[str, Any]:
    """The fields of a valid mark (for `today`), with `changes` applied."""
    day = _base_day(today)
    fields = {"school_id": POISON_SCHOOL, "pupil_id": POISON_PUPIL, "date": day.isoformat(), "session": "AM",
              "code": "/", "recorded_at": f"{day.isoformat()}T08:50:00+00:00"}
    fields.update(changes)
    return fields


def message(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode("utf-8", "surrogatepass")


def csv_line(fields: dict[str, Any]) -> bytes:
    """A CSV line in CSV_HEADER's column order. Values are written as they are (no quoting):
    poison rows are built byte by byte on purpose."""
    columns = CSV_HEADER.decode().split(",")
    return ",".join(str(fields[column]) for column in columns).encode("utf-8", "surrogatepass")


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def poison_messages(today: dt.date | None = None) -> list[PoisonMessage]:
    """Every kind of poison message seen in issue 10, and its neighbours, with its reason."""
    key = POISON_PUPIL.encode()
    day = _base_day(today)
    good = mark_fields(today)
    text = message(good).decode()
    R = RejectReason
    return [
        PoisonMessage("overflow_recorded_at", key, message({**good, "recorded_at": "9999-12-31T23:59:59-12:00"}),
                      R.FUTURE_RECORDED_AT, "OverflowError converting to UTC crashed the agent and lost its batch"),
        PoisonMessage("underflow_recorded_at", key, message({**good, "recorded_at": "0001-01-01T00:00:00+14:00"}),
                      R.IMPLAUSIBLE_RECORDED_AT, "OverflowError the other way"),
        PoisonMessage("far_future_recorded_at", key, message({**good, "recorded_at": "2099-09-01T08:50:00+00:00"}),
                      R.FUTURE_RECORDED_AT, "a 2099 recording wins over every later genuine correction"),
        PoisonMessage("recorded_at_before_floor", key, message({**good, "recorded_at": "1999-12-31T09:00:00+00:00"}),
                      R.IMPLAUSIBLE_RECORDED_AT, "a recording before any live register"),
        PoisonMessage("deep_array", key, _nested(5000).encode(), R.JSON_TOO_DEEP,
                      "RecursionError in the JSON parser crashed the agent"),
        PoisonMessage("deep_inside_mark", key, text.replace('"/"', _nested(3000, '"/"')).encode(), R.JSON_TOO_DEEP,
                      "RecursionError, inside an otherwise valid mark"),
        PoisonMessage("tombstone", key, None, R.EMPTY_PAYLOAD, "TypeError on a null value crashed the agent"),
        PoisonMessage("empty", key, b"", R.EMPTY_PAYLOAD, "zero bytes"),
        PoisonMessage("json_null", key, b"null", R.INVALID_JSON, "JSON, but not an object"),
        PoisonMessage("json_array", key, b"[1, 2]", R.INVALID_JSON, "JSON, but not an object"),
        PoisonMessage("json_string", key, b'"a mark"', R.INVALID_JSON, "JSON, but not an object"),
        PoisonMessage("truncated_json", key, text[: len(text) // 2].encode(), R.INVALID_JSON, "cut short"),
        PoisonMessage("huge_integer", key, text.replace("{", '{"schema_version": ' + "1" * 5000 + ", ", 1).encode(),
                      R.NUMBER_OUT_OF_RANGE, "Python's int parser raises ValueError past 4300 digits"),
        PoisonMessage("huge_float", key, text.replace("{", '{"schema_version": 1e999, ', 1).encode(),
                      R.NUMBER_OUT_OF_RANGE, "parses to infinity"),
        PoisonMessage("nan", key, text.replace("{", '{"schema_version": NaN, ', 1).encode(),
                      R.NUMBER_OUT_OF_RANGE, "not JSON, but Python's parser accepts it"),
        PoisonMessage("not_utf8", key, b"\x00\xff\xfe binary garbage \x81", R.INVALID_ENCODING, "not text"),
        PoisonMessage("name_like_pupil_id", key, message({**good, "pupil_id": "Jane-Smith"}), R.MALFORMED_ID,
                      "a name passed validation although the README says names are rejected"),
        PoisonMessage("control_character_in_id", key, message({**good, "pupil_id": POISON_PUPIL + "\x00"}),
                      R.MALFORMED_ID, "a NUL inside an id"),
        PoisonMessage("lone_surrogate_in_id", key, text.replace(POISON_PUPIL, "P1\\ud800").encode(),
                      R.MALFORMED_ID, "a string Python can decode but not encode back to UTF-8"),
        PoisonMessage("duplicate_key", key, text.replace("{", '{"pupil_id": "SCH001-P00002", ', 1).encode(),
                      R.DUPLICATE_KEY, "two parsers may read two different pupils from it"),
        PoisonMessage("too_large", key, b"{" + b" " * 70_000 + b"}", R.PAYLOAD_TOO_LARGE, "over 64 KiB"),
        PoisonMessage("unknown_code", key, message({**good, "code": "Q7"}), R.UNKNOWN_CODE, "not a DfE code"),
        PoisonMessage("register_not_taken", key, message({**good, "code": "-"}), R.REGISTER_NOT_TAKEN,
                      "not a mark"),
        PoisonMessage("future_date", key, message({**good, "date": "2099-09-01"}), R.FUTURE_DATE, "far ahead"),
        PoisonMessage("date_before_2000", key, message({**good, "date": "1999-09-01"}), R.IMPLAUSIBLE_DATE,
                      "before any live register"),
        PoisonMessage("schema_version_2", key, message({**good, "schema_version": 2}),
                      R.UNSUPPORTED_SCHEMA_VERSION, "a contract this worker does not read"),
        PoisonMessage("missing_session", key, message({k: v for k, v in good.items() if k != "session"}),
                      R.MISSING_FIELD, "a required field absent"),
        PoisonMessage("original_code_not_text", key, message({**good, "original_code": []}), R.INVALID_FIELD,
                      "an unhashable original_code raised TypeError"),
        PoisonMessage("weekday_not_a_date", key, message({**good, "date": day.strftime("%A")}),
                      R.INVALID_DATE, "not YYYY-MM-DD"),
    ]


def poison_rows(today: dt.date | None = None) -> list[PoisonRow]:
    """Every kind of poison CSV line seen in issue 10, and its neighbours, with its reason."""
    good = mark_fields(today)
    line = csv_line(good)
    R = RejectReason
    return [
        PoisonRow("not_utf8", line.replace(b",/,", b",/\xff,"), R.INVALID_ENCODING,
                  "a non-UTF-8 byte stopped `reconnect ingest` mid-file"),
        PoisonRow("nul_byte", line.replace(b"P00001", b"P\x0000001"), R.MALFORMED_ROW, "a NUL inside a row"),
        PoisonRow("field_over_csv_limit", csv_line({**good, "code": "x" * 131_073}), R.PAYLOAD_TOO_LARGE,
                  "a field longer than the csv module's limit stopped ingest mid-file"),
        PoisonRow("overflow_timestamp", csv_line({**good, "recorded_at": "9999-12-31T23:59:59-12:00"}),
                  R.FUTURE_RECORDED_AT, "an overflowing timestamp stopped ingest mid-file"),
        PoisonRow("far_future_recorded_at", csv_line({**good, "recorded_at": "2099-01-01T00:00:00Z"}),
                  R.FUTURE_RECORDED_AT, "a 2099 recording locks its session"),
        PoisonRow("too_few_fields", line.rsplit(b",", 1)[0], R.MALFORMED_ROW, "five fields under six columns"),
        PoisonRow("too_many_fields", line + b",extra", R.MALFORMED_ROW, "seven fields under six columns"),
        PoisonRow("stray_quote", line.replace(b",/,", b',"/,'), R.MALFORMED_ROW,
                  "an unterminated quote would swallow the rest of the file"),
        PoisonRow("text_after_quote", line.replace(b",/,", b',"/"x,'), R.MALFORMED_ROW, "text after a closing quote"),
        PoisonRow("bare_carriage_return", line.replace(b",AM,", b",AM\r,"), R.MALFORMED_ROW,
                  "a carriage return inside a row"),
        PoisonRow("byte_order_mark_in_id", ("\ufeff" + line.decode()).encode(), R.MALFORMED_ID,
                  "a second BOM glued to an id"),
        PoisonRow("name_like_pupil_id", csv_line({**good, "pupil_id": "Jane-Smith"}), R.MALFORMED_ID,
                  "a name passed validation"),
        PoisonRow("future_date", csv_line({**good, "date": "2099-09-01"}), R.FUTURE_DATE, "far ahead"),
        PoisonRow("impossible_date", csv_line({**good, "date": "2026-02-30"}), R.INVALID_DATE, "no such day"),
        PoisonRow("unknown_session", csv_line({**good, "session": "EV"}), R.UNKNOWN_SESSION, "not AM or PM"),
        PoisonRow("unknown_code", csv_line({**good, "code": "Q7"}), R.UNKNOWN_CODE, "not a DfE code"),
        PoisonRow("register_not_taken", csv_line({**good, "code": "-"}), R.REGISTER_NOT_TAKEN, "not a mark"),
        PoisonRow("empty_school_id", csv_line({**good, "school_id": ""}), R.EMPTY_ID, "no school"),
        PoisonRow("whitespace_only", b"   ", R.MALFORMED_ROW, "one field of blanks"),
    ]


# -- hypothesis strategies ------------------------------------------------------------------------

ids = st.from_regex(r"[A-Za-z0-9_-]{0,20}[0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)
school_ids = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)
name_like_ids = st.from_regex(r"[A-Za-z][A-Za-z_-]{0,40}", fullmatch=True)
offsets = st.integers(-12 * 60, 14 * 60).map(
    lambda minutes: "Z" if minutes == 0 else f"{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}")


def _stamp(moment: dt.datetime, offset: str) -> str:
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + offset


def valid_mark_fields(today: dt.date | None = None) -> st.SearchStrategy[dict[str, str]]:
    """Marks that must be accepted on `today` at any hour (dates up to two days back)."""
    last = _base_day(today)
    days = st.dates(last - dt.timedelta(days=300), last)
    return st.builds(
        lambda school, pupil, day, session, code, seconds, offset: {
            "school_id": school, "pupil_id": pupil, "date": day.isoformat(), "session": session, "code": code,
            "recorded_at": _stamp(dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=seconds), offset)},
        school_ids, ids, days, st.sampled_from(["AM", "PM"]), st.sampled_from(VALID_CODES),
        st.integers(0, 86_399), offsets)


def _future_stamps() -> st.SearchStrategy[str]:
    return st.builds(_stamp, st.datetimes(dt.datetime(2100, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59)), offsets)


def _ancient_stamps() -> st.SearchStrategy[str]:
    # Up to 1999-12-30: a later local time with a negative offset could be 2000 in UTC.
    return st.builds(_stamp, st.datetimes(dt.datetime(1, 1, 1), dt.datetime(1999, 12, 30)), offsets)


def _with_control(value: str, controls: list[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda at, char: value[:at] + char + value[at:], st.integers(0, len(value)),
                     st.sampled_from(controls))


def _field_poison(today: dt.date | None, *, csv: bool) -> st.SearchStrategy[tuple[dict[str, Any], RejectReason]]:
    """A valid mark with one field made hostile, and the reason it must get. For CSV rows no
    value holds a line feed (it would make two lines) or a comma."""
    R = RejectReason
    controls = [c for c in _CONTROL if c != "\n"] if csv else _CONTROL
    junk = st.text(alphabet=st.characters(exclude_characters="\n,"), max_size=8) if csv else st.text(max_size=8)
    return valid_mark_fields(today).flatmap(lambda fields: st.one_of(
        _future_stamps().map(lambda stamp: ({**fields, "recorded_at": stamp}, R.FUTURE_RECORDED_AT)),
        _ancient_stamps().map(lambda stamp: ({**fields, "recorded_at": stamp}, R.IMPLAUSIBLE_RECORDED_AT)),
        name_like_ids.map(lambda name: ({**fields, "pupil_id": name}, R.MALFORMED_ID)),
        _with_control(fields["pupil_id"], controls).map(lambda bad: ({**fields, "pupil_id": bad}, R.MALFORMED_ID)),
        junk.map(lambda text: ({**fields, "code": "\u2603" + text}, R.UNKNOWN_CODE)),
        st.dates(dt.date(2100, 1, 1), dt.date(9999, 12, 31)).map(
            lambda day: ({**fields, "date": day.isoformat()}, R.FUTURE_DATE)),
    ))


def _deep_json() -> st.SearchStrategy[str]:
    """Arrays, objects or both nested 9 to 5000 deep (the default limit is 8)."""
    def build(depth: int, kinds: list[str], inner: str) -> str:
        opened = "".join('{"a": ' if kinds[i % len(kinds)] == "{" else "[" for i in range(depth))
        closed = "".join("}" if kinds[i % len(kinds)] == "{" else "]" for i in reversed(range(depth)))
        return opened + inner + closed

    return st.builds(build, st.integers(9, 5000), st.lists(st.sampled_from(["[", "{"]), min_size=1, max_size=3),
                     st.sampled_from(["1", '"x"', "null", "[]"]))


def poison_message_cases(today: dt.date | None = None) -> st.SearchStrategy[PoisonMessage]:
    """Poison messages with the reason each must get: hostile fields, broken bytes, deep JSON,
    huge numbers, duplicate keys, tombstones; plus the named ones."""
    R = RejectReason
    key = POISON_PUPIL.encode()

    def case(name: str, reason: RejectReason):
        return lambda value: PoisonMessage(name, key, value if isinstance(value, bytes) else value.encode(),
                                           reason, "generated")

    marks = valid_mark_fields(today)
    not_utf8 = st.builds(lambda head, tail: head + b"\xff" + tail, st.binary(max_size=200), st.binary(max_size=200))
    deep_in_mark = st.builds(lambda fields, nested: message(fields).decode().replace(
        '"code"', '"extra": ' + nested + ', "code"', 1), marks, _deep_json())
    huge_int = st.builds(lambda fields, digits, sign: message(fields).decode().replace(
        "{", '{"schema_version": ' + sign + "1" * digits + ", ", 1),
        marks, st.integers(MAX_NUMBER_CHARS + 1, 6000), st.sampled_from(["", "-"]))
    huge_float = st.builds(lambda fields, exponent, sign: message(fields).decode().replace(
        "{", f'{{"extra": {sign}1e{exponent}, ', 1), marks, st.integers(309, 10**6), st.sampled_from(["", "-"]))
    non_finite = st.builds(lambda fields, constant: message(fields).decode().replace(
        "{", f'{{"extra": {constant}, ', 1), marks, st.sampled_from(["NaN", "Infinity", "-Infinity"]))
    duplicate = st.builds(lambda fields, name: message(fields).decode().replace(
        "{", "{" + json.dumps(name) + ': "again", ', 1), marks, st.sampled_from(sorted(mark_fields())))
    return st.one_of(
        st.sampled_from(poison_messages(today)),
        _field_poison(today, csv=False).map(lambda c: PoisonMessage("hostile_field", key, message(c[0]), c[1],
                                                                    "generated")),
        not_utf8.map(case("not_utf8", R.INVALID_ENCODING)),
        _deep_json().map(case("deep", R.JSON_TOO_DEEP)),
        deep_in_mark.map(case("deep_in_mark", R.JSON_TOO_DEEP)),
        huge_int.map(case("huge_int", R.NUMBER_OUT_OF_RANGE)),
        huge_float.map(case("huge_float", R.NUMBER_OUT_OF_RANGE)),
        non_finite.map(case("non_finite", R.NUMBER_OUT_OF_RANGE)),
        duplicate.map(case("duplicate_key", R.DUPLICATE_KEY)),
        st.sampled_from([None, b""]).map(lambda value: PoisonMessage("empty", key, value, R.EMPTY_PAYLOAD,
                                                                     "generated")),
    )


def _insert(line: bytes, at: int, extra: bytes) -> bytes:
    """`extra` inside `line`, never after its last byte (a trailing CR would read as a line ending)."""
    at %= max(len(line), 1)
    return line[:at] + extra + line[at:]


def poison_row_cases(today: dt.date | None = None) -> st.SearchStrategy[PoisonRow]:
    """Poison CSV lines (under CSV_HEADER) with the reason each must get; plus the named ones."""
    R = RejectReason
    marks = valid_mark_fields(today)
    not_utf8 = st.builds(lambda fields, at: _insert(csv_line(fields), at, b"\xff"), marks, st.integers(0, 500))
    control = st.builds(lambda fields, at, char: _insert(csv_line(fields), at, char.encode()), marks,
                        st.integers(0, 500), st.sampled_from([c for c in _CONTROL if c != "\n"]))
    wrong_width = st.builds(lambda fields, extra: (
        csv_line(fields) + b",x" * extra if extra > 0 else csv_line(fields).rsplit(b",", -extra)[0]),
        marks, st.sampled_from([-5, -3, -2, -1, 1, 2, 7]))
    too_long = st.builds(lambda fields, size: csv_line({**fields, "code": "x" * size}), marks,
                         st.integers(65_536, 140_000))

    def field_row(case: tuple[dict[str, Any], RejectReason]) -> PoisonRow:
        fields, reason = case
        line = csv_line(fields)
        if CONTROL_CHARACTERS.search(line.decode("utf-8", "surrogatepass")):
            reason = R.MALFORMED_ROW  # a control character spoils the row before any field is read
        return PoisonRow("hostile_field", line, reason, "generated")

    return st.one_of(
        st.sampled_from(poison_rows(today)),
        _field_poison(today, csv=True).map(field_row),
        not_utf8.map(lambda line: PoisonRow("not_utf8", line, R.INVALID_ENCODING, "generated")),
        control.map(lambda line: PoisonRow("control_character", line, R.MALFORMED_ROW, "generated")),
        wrong_width.map(lambda line: PoisonRow("wrong_width", line, R.MALFORMED_ROW, "generated")),
        too_long.map(lambda line: PoisonRow("too_long", line, R.PAYLOAD_TOO_LARGE, "generated")),
    )


def arbitrary_json() -> st.SearchStrategy[Any]:
    """Any JSON value: unicode, huge and non-finite numbers, deep nesting (no expected reason)."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10**80), 10**80),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                        st.sampled_from(["AM", "PM", "/", POISON_PUPIL, "2026-01-14", "9999-12-31T23:59:59-12:00"]))
    return st.recursive(scalars, lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=8)), max_leaves=40)


def arbitrary_mark_messages(today: dt.date | None = None) -> st.SearchStrategy[bytes | None]:
    """Anything that might arrive on the marks topic: bytes, JSON of any shape, marks with any
    field replaced by any JSON value, deep nesting, huge numbers, tombstones."""
    def dumped(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")

    return st.one_of(
        st.none(),
        st.binary(max_size=400),
        arbitrary_json().map(dumped),
        st.builds(lambda fields, name, value: dumped({**fields, name: value}), valid_mark_fields(today),
                  st.sampled_from([*sorted(mark_fields()), "schema_version", "original_code"]), arbitrary_json()),
        st.builds(lambda depth, inner: _nested(depth, inner).encode(), st.integers(0, 3000),
                  st.sampled_from(["1", "{}", '"x"', "1e999", "1" * 5000])),
    )
