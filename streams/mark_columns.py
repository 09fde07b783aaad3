"""An interchange CSV read into columns (models.columnar.MarkColumns), for `reconnect replay` and
`reconnect backtest`: the same rows, marks and rejections as `schemas.interchange.read_marks`,
at a few million rows a second.

Every line is classified from its bytes with numpy. A line of the plain shape (printable ASCII
without quotes, exactly the header's number of fields, within the row limit) is split by
pyarrow's CSV reader, which splits such a line exactly as the csv module does, and its fields
are checked once per distinct value by the contract's own check functions (schemas.marks:
pupil and school ids, dates, sessions, codes), and its recording time, when written in one of
the usual ISO 8601 forms, is converted in columns (with the contract's bounds: not before the
floor, not later than now plus the allowed skew). Every other line (a quote, a byte that is not
printable ASCII, a field too many, an unusual timestamp, a value any check refuses) is read by
`schemas.interchange.parse_row` exactly as `read_marks` reads it, so its mark or its rejection
with the reason and the same bytes is the same. tests/test_columnar_reader.py holds the two
readers equal on generated files, the hostile corpus among them.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from pydantic_core import PydanticCustomError

from models.columnar import MarkColumns
from schemas.codes import CODES
from schemas.interchange import (
    MAX_ROW_BYTES_CEILING,
    CsvRow,
    _physical_lines,  # noqa: PLC2701 - the one definition of a physical line
    header_columns,
    parse_row,
    read_marks,
)
from schemas.marks import (
    DEFAULT_LIMITS,
    MarkLimits,
    MarkRejected,
    RejectReason,
    Session,
    check_code,
    check_date,
    check_id,
    check_pupil_id,
    check_recorded_at,
    check_session,
)
from schemas.recording import MAX_STAMP, RECORDING_EPOCH

BLOCK_BYTES = 64 * 1024 * 1024
_EPOCH_ORDINAL = RECORDING_EPOCH.date().toordinal()
# Each byte's part in a line: 0 plain text, then a comma, a line feed, a carriage return (plain
# only just before the line feed), and what a plain line may not hold: controls (tab included:
# a check would strip it), DEL, quotes and everything past ASCII.
_TEXT, _COMMA, _LF, _CR, _NOT_PLAIN = range(5)
_BYTE_KIND = np.full(256, _TEXT, dtype=np.uint8)
_BYTE_KIND[:0x20] = _NOT_PLAIN
_BYTE_KIND[0x7F:] = _NOT_PLAIN
_BYTE_KIND[ord('"')] = _NOT_PLAIN
_BYTE_KIND[ord(",")] = _COMMA
_BYTE_KIND[ord("\n")] = _LF
_BYTE_KIND[ord("\r")] = _CR
# Columns parse_mark reads beyond the plain ones: a file with them is read row by row.
_ROW_BY_ROW_COLUMNS = {"schema_version", "original_code"}
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


@dataclass
class ColumnarFile:
    """A file's valid marks in columns, its rejected rows (as read_marks gives them), and how many
    data rows it had."""

    path: Path
    columns: MarkColumns
    rejected: list[CsvRow]
    read: int
    header: str

    def raw_lines(self, numbers: Sequence[int]) -> dict[int, bytes]:
        """The lines with these numbers as read_marks keeps them (without their line ending)."""
        wanted, found = set(numbers), {}
        if not wanted:
            return found
        with self.path.open("rb") as handle:
            for line in _physical_lines(handle, MAX_ROW_BYTES_CEILING):
                if line.number in wanted:
                    found[line.number] = line.content
                    if len(found) == len(wanted):
                        break
        return found


class _Interner:
    """Strings to small integers, in order of first sight."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, value: str) -> int:
        found = self.index.get(value)
        if found is None:
            found = self.index[value] = len(self.index)
        return found

    @property
    def values(self) -> list[str]:
        return list(self.index)


def read_mark_columns(path: Path, *, limits: MarkLimits = DEFAULT_LIMITS, today: dt.date | None = None,
                      now: dt.datetime | None = None, recorded_at_default: dt.datetime | None = None) -> ColumnarFile:
    """`read_marks(path, ...)` in columns (module docstring). Raises InterchangeFormatError, as
    read_marks does, for a file without a usable header."""
    path = Path(path)
    today = today or dt.date.today()
    clock = now or dt.datetime.now(dt.timezone.utc)
    fallback = (recorded_at_default or now or clock).isoformat()
    row_limit = limits.max_message_bytes or MAX_ROW_BYTES_CEILING
    rows = read_marks(path, limits=limits, today=today, now=now, recorded_at_default=recorded_at_default)
    first = next(rows, None)  # validates the header exactly as read_marks does
    rows.close()
    pupils, schools = _Interner(), _Interner()
    reader = _BlockReader(path, limits, today, now, clock, fallback, row_limit, pupils, schools)
    if first is not None:
        reader.read(first.header)
    return reader.finish()


class _BlockReader:
    def __init__(self, path: Path, limits: MarkLimits, today: dt.date, now: dt.datetime | None, clock: dt.datetime,
                 fallback: str, row_limit: int, pupils: _Interner, schools: _Interner) -> None:
        self.path, self.limits, self.today, self.now, self.clock = path, limits, today, now, clock
        self.fallback, self.row_limit, self.pupils, self.schools = fallback, row_limit, pupils, schools
        self.parts: list[dict[str, np.ndarray]] = []
        self.rejected: list[CsvRow] = []
        self.read_rows = 0
        self.header_text = ""
        self.checked: dict[str, dict[str, object]] = {name: {} for name in ("school_id", "pupil_id", "date", "session",
                                                                           "code")}

    # -- the file in blocks of whole lines ------------------------------------------------------
    def read(self, header_text: str) -> None:
        self.header_text = header_text
        self.header = header_columns(header_text)
        self.plain = not (_ROW_BY_ROW_COLUMNS & set(self.header))
        with self.path.open("rb") as handle:
            first = handle.readline(self.row_limit + 2)  # the header line (read_marks has checked it)
            if not first.endswith(b"\n"):  # a header without a line ending: no data rows
                return
            line_number, carry = 2, b""
            while True:
                block = handle.read(BLOCK_BYTES)
                data = carry + block
                if not data:
                    break
                if block:
                    cut = data.rfind(b"\n") + 1
                    if cut == 0:
                        carry = data
                        continue
                    data, carry = data[:cut], data[cut:]
                else:
                    carry = b""
                line_number = self._block(data, line_number, final=not block)
                if not block:
                    break

    def _block(self, data: bytes, line_number: int, *, final: bool) -> int:
        """Classify and read one block of whole lines (the final block may end without a line feed);
        returns the next line's number."""
        body = np.frombuffer(data, dtype=np.uint8)
        kind = _BYTE_KIND[body]
        special = np.flatnonzero(kind)
        special_kind = kind[special]
        ends = special[special_kind == _LF]
        if len(body) and (not len(ends) or ends[-1] != len(body) - 1):
            ends = np.append(ends, len(body))  # the last line, without a line feed
        starts = np.concatenate(([0], ends[:-1] + 1))
        numbers = line_number + np.arange(len(ends))
        stops = ends.copy()  # content end: without the line feed and one carriage return before it
        has_cr = (stops > starts) & (body[np.maximum(stops - 1, 0)] == ord("\r"))
        stops[has_cr] -= 1
        size = stops - starts
        # Not plain: a byte outside the plain set, or a carriage return anywhere but at the end.
        odd = special[special_kind == _NOT_PLAIN]
        cr = special[special_kind == _CR]
        line_of = np.searchsorted(ends, np.concatenate((odd, cr[~np.isin(cr, stops[has_cr])])))
        commas = np.diff(np.searchsorted(special[special_kind == _COMMA], np.append(starts, len(body) + 1)))
        plain = self.plain & (commas == len(self.header) - 1) & (size > 0) & (size <= self.row_limit)
        plain[line_of] = False
        # Lines that read as empty make no row; the rest are read in columns or row by row.
        empty = size == 0
        self.read_rows += int((~empty).sum())
        slow = np.flatnonzero(~plain & ~empty)
        for i in slow.tolist():
            ending = b"\n" if ends[i] < len(body) else b""
            self._row_by_row(int(numbers[i]), data[starts[i]:ends[i]] + ending)
        fast = np.flatnonzero(plain)
        if len(fast):
            # The plain lines one after another, each ending in a line feed: what pyarrow splits.
            if plain.all() and not has_cr.any() and ends[-1] < len(body):
                buffer = data
            else:
                keep = np.repeat(plain, np.diff(np.append(starts, len(body))))
                keep[stops[has_cr]] = False
                buffer = body[keep].tobytes()
                if plain[-1] and ends[-1] == len(body):
                    buffer += b"\n"
            self._columns(data, buffer, starts[fast], stops[fast], numbers[fast])
        return int(line_number + len(ends))

    # -- row by row: exactly read_marks ----------------------------------------------------------
    def _row_by_row(self, number: int, raw: bytes) -> None:
        for line in _physical_lines(io.BytesIO(raw), self.row_limit):
            if line.size == 0:
                continue
            if line.sha256 is not None:
                self.rejected.append(CsvRow(number, line.content, None, MarkRejected(
                    RejectReason.PAYLOAD_TOO_LARGE, f"line is {line.size} bytes; the limit is {self.row_limit}"),
                    self.header_text,
                    raw_size=line.size, raw_sha256=line.sha256))
                continue
            try:
                mark = parse_row(line.content, self.header, limits=self.limits, today=self.today, now=self.now,
                                 recorded_at_default=self.fallback, row_limit=self.row_limit)
            except MarkRejected as rejection:
                self.rejected.append(CsvRow(number, line.content, None, rejection, self.header_text))
            else:
                self.parts.append({
                    "pupil": np.array([self.pupils(mark.pupil_id)]), "school": np.array([self.schools(mark.school_id)]),
                    "ordinal": np.array([mark.date.toordinal()]), "pm": np.array([mark.session is Session.PM]),
                    "code": np.array([CODES[mark.code].index]),
                    "stamp": np.array([_stamp_of(mark.recorded_at)]), "line": np.array([number])})

    # -- in columns -------------------------------------------------------------------------------
    def _columns(self, data: bytes, buffer: bytes, starts: np.ndarray, stops: np.ndarray,
                 numbers: np.ndarray) -> None:
        names = [f"c{i}" for i in range(len(self.header))]
        table = pa_csv.read_csv(
            pa.py_buffer(buffer),
            read_options=pa_csv.ReadOptions(column_names=names, block_size=1 << 24),
            parse_options=pa_csv.ParseOptions(quote_char=False, escape_char=False, newlines_in_values=False,
                                               ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(column_types={name: pa.string() for name in names},
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False))
        if table.num_rows != len(starts):
            raise AssertionError("the CSV reader split plain lines differently")  # a defect, never input
        field = {column: table[f"c{self.header.index(column)}"] for column in
                 ("school_id", "pupil_id", "date", "session", "code")}
        values: dict[str, np.ndarray] = {}
        ok = np.ones(len(starts), dtype=bool)
        for column, check in (("school_id", self._school), ("pupil_id", self._pupil), ("date", self._date),
                              ("session", self._session), ("code", self._code)):
            encoded = pc.dictionary_encode(field[column]).combine_chunks()
            verdicts = [check(value) for value in encoded.dictionary.to_pylist()]
            accepted = np.array([verdict is not None for verdict in verdicts] + [False], dtype=bool)
            mapped = np.array([verdict if verdict is not None else -1 for verdict in verdicts] + [-1], dtype=np.int64)
            index = encoded.indices.to_numpy(zero_copy_only=False)
            ok &= accepted[index]
            values[column] = mapped[index]
        if "recorded_at" in self.header:
            stamp, stamp_ok = self._stamps(table[f"c{self.header.index('recorded_at')}"].combine_chunks())
        else:
            stamp, stamp_ok = self._stamps(None, count=len(starts))
        ok &= stamp_ok
        for i in np.flatnonzero(~ok).tolist():
            self._row_by_row(int(numbers[i]), data[starts[i]:stops[i]] + b"\n")
        keep = np.flatnonzero(ok)
        self.parts.append({"pupil": values["pupil_id"][keep], "school": values["school_id"][keep],
                           "ordinal": values["date"][keep], "pm": values["session"][keep].astype(bool),
                           "code": values["code"][keep], "stamp": stamp[keep], "line": numbers[keep]})

    def _verdict(self, column: str, value: str, check) -> object | None:
        cache = self.checked[column]
        if value not in cache:
            try:
                cache[value] = check(value)
            except (PydanticCustomError, MarkRejected):
                cache[value] = None
        return cache[value]

    def _school(self, value: str) -> int | None:
        school = self._verdict("school_id", value, lambda v: check_id(v, "school_id"))
        return None if school is None else self.schools(school)  # type: ignore[arg-type]

    def _pupil(self, value: str) -> int | None:
        pupil = self._verdict("pupil_id", value, lambda v: check_pupil_id(v, self.limits.pupil_id_pattern))
        return None if pupil is None else self.pupils(pupil)  # type: ignore[arg-type]

    def _date(self, value: str) -> int | None:
        day = self._verdict("date", value, lambda v: check_date(v, self.today, self.limits.max_future_days))
        return None if day is None else day.toordinal()  # type: ignore[union-attr]

    def _session(self, value: str) -> int | None:
        session = self._verdict("session", value, check_session)
        return None if session is None else int(session is Session.PM)

    def _code(self, value: str) -> int | None:
        code = self._verdict("code", value, check_code)
        return None if code is None else CODES[code].index  # type: ignore[index]

    def _stamps(self, texts: pa.Array | None, count: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Recording stamps of ISO 8601 times of the usual forms (YYYY-MM-DDTHH:MM:SS, optionally
        .fff or .ffffff, then nothing, Z or +HH:MM / -HH:MM), within the contract's bounds; other
        forms and values are left to the row-by-row reader (ok False). Empty: the import's time."""
        if texts is None:
            default = self._default_stamp()
            return np.full(count, default if default is not None else 0, dtype=np.int64), np.full(
                count, default is not None)
        offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[texts.offset:texts.offset + len(texts) + 1]
        raw = np.frombuffer(texts.buffers()[2], dtype=np.uint8) if texts.buffers()[2] is not None else np.zeros(
            0, np.uint8)
        length = np.diff(offsets)
        stamp = np.zeros(len(texts), dtype=np.int64)
        ok = np.zeros(len(texts), dtype=bool)
        empty = length == 0
        if empty.any():
            default = self._default_stamp()
            if default is not None:
                stamp[empty], ok[empty] = default, True
        for width, fraction, zone in _TIMESTAMP_FORMS:
            rows = np.flatnonzero(length == width)
            if not len(rows):
                continue
            first = offsets[rows[0]]
            if len(rows) == len(texts) and offsets[-1] - first == width * len(rows):
                chars = raw[first:first + width * len(rows)].reshape(len(rows), width)  # one form: no copy
            else:
                chars = raw[offsets[rows, None] + np.arange(width)[None, :]]
            good, seconds = _parse_times(chars, fraction, zone)
            floor = _seconds(self.limits.floor_instant)
            latest = _seconds(self.clock + self.limits.recorded_at_max_skew)
            good &= (seconds[0] >= floor) & ((seconds[0] < latest) | ((seconds[0] == latest) & (seconds[1] == 0)))
            chosen = rows[good]
            stamp[chosen] = np.clip(seconds[0][good], 1, MAX_STAMP)
            ok[chosen] = True
        return stamp, ok

    def _default_stamp(self) -> int | None:
        try:
            when = check_recorded_at(self.fallback, self.now, self.limits)
        except PydanticCustomError:
            return None
        return _stamp_of(when)

    def finish(self) -> ColumnarFile:
        if self.parts:
            merged = {name: np.concatenate([part[name] for part in self.parts]) for name in self.parts[0]}
        else:
            merged = {name: np.zeros(0, dtype=np.int64) for name in ("pupil", "school", "ordinal", "pm", "code",
                                                                     "stamp", "line")}
        order = np.argsort(merged["line"], kind="stable")
        columns = MarkColumns(
            pupil=merged["pupil"][order].astype(np.int32), school=merged["school"][order].astype(np.int32),
            ordinal=merged["ordinal"][order].astype(np.int64), pm=merged["pm"][order].astype(bool),
            code=merged["code"][order].astype(np.uint8), stamp=merged["stamp"][order].astype(np.int64),
            line=merged["line"][order].astype(np.int64), pupil_ids=self.pupils.values,
            school_ids=self.schools.values)
        self.rejected.sort(key=lambda row: row.line)
        return ColumnarFile(self.path, columns, self.rejected, self.read_rows, self.header_text)


def _stamp_of(recorded_at: dt.datetime) -> int:
    from schemas.recording import recording_stamp

    return recording_stamp(recorded_at)


def _seconds(moment: dt.datetime) -> int:
    """Whole seconds since the recording epoch, rounded down (for bounds)."""
    delta = moment - RECORDING_EPOCH
    return delta.days * 86_400 + delta.seconds


# (length, digits of fraction, zone: "" naive, "Z", or "+" for +HH:MM / -HH:MM)
_TIMESTAMP_FORMS = [(19 + (fraction and fraction + 1) + len(zone) + (5 if zone == "+" else 0), fraction, zone)
                    for fraction in (0, 3, 6) for zone in ("", "Z", "+")]


def _parse_times(chars: np.ndarray, fraction: int, zone: str) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Validity and (seconds since the epoch in UTC, microseconds) of fixed-width ISO 8601 times."""
    digit = chars - ord("0")
    is_digit = digit <= 9  # uint8: anything below '0' wraps above 9

    def number(first: int, width: int) -> np.ndarray:
        value = np.zeros(len(chars), dtype=np.int64)
        for i in range(first, first + width):
            value = value * 10 + digit[:, i]
        return value

    digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
    good = is_digit[:, digits].all(axis=1)
    for position, char in ((4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":")):
        good &= chars[:, position] == ord(char)
    at = 19
    micro = np.zeros(len(chars), dtype=np.int64)
    if fraction:
        good &= chars[:, at] == ord(".")
        good &= is_digit[:, at + 1:at + 1 + fraction].all(axis=1)
        micro = number(at + 1, fraction) * (10 ** (6 - fraction))
        at += 1 + fraction
    offset = np.zeros(len(chars), dtype=np.int64)
    if zone == "Z":
        good &= chars[:, at] == ord("Z")
    elif zone == "+":
        sign = chars[:, at]
        good &= (sign == ord("+")) | (sign == ord("-"))
        good &= is_digit[:, [at + 1, at + 2, at + 4, at + 5]].all(axis=1) & (chars[:, at + 3] == ord(":"))
        zone_hours, zone_minutes = number(at + 1, 2), number(at + 4, 2)
        good &= (zone_hours <= 23) & (zone_minutes <= 59)
        offset = np.where(sign == ord("-"), -1, 1) * (zone_hours * 3600 + zone_minutes * 60)
    year, month, day = number(0, 4), number(5, 2), number(8, 2)
    hour, minute, second = number(11, 2), number(14, 2), number(17, 2)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    days_in_month = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + (leap & (month == 2))
    good &= month_ok & (year >= 1) & (day >= 1) & (day <= days_in_month)
    good &= (hour <= 23) & (minute <= 59) & (second <= 59)
    ordinal = _ordinal(year, np.where(month_ok, month, 1), np.where(good, day, 1))
    seconds = (ordinal - _EPOCH_ORDINAL) * 86_400 + hour * 3600 + minute * 60 + second - offset
    return good, (seconds, micro)


_DAYS_BEFORE_MONTH = np.array([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], dtype=np.int64)


def _ordinal(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """datetime.date(year, month, day).toordinal(), in columns (proleptic Gregorian)."""
    before = year - 1
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    return (365 * before + before // 4 - before // 100 + before // 400 + _DAYS_BEFORE_MONTH[month]
            + (leap & (month > 2)) + day)
