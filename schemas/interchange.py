"""The interchange CSV: how a school's MIS register export reaches Reconnect.

Header: `school_id,pupil_id,date,session,code` and optionally `recorded_at` (extra columns
are ignored). Every row is validated with the same contract as the marks topic.

The file is read as bytes, one physical line at a time, so whatever a line holds (a byte that
is not UTF-8, a NUL, a stray quote, a field longer than the csv module allows, a line of
gigabytes) spoils only that line: it becomes a rejected row with its line number, its raw
bytes and a reason, and the rows after it are read as usual. A row is one line: quoted fields
may not span lines (no register export needs them, and allowing them lets one stray quote
swallow the rest of the file).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from schemas.deadletter import MAX_RAW_KEPT, DeadLetter, dead_letter
from schemas.marks import (
    CONTROL_CHARACTERS, DEFAULT_LIMITS, MarkLimits, MarkRejected, RegisterMark, RejectReason, parse_mark,
)

REQUIRED_COLUMNS = ("school_id", "pupil_id", "date", "session", "code")
OPTIONAL_COLUMNS = ("recorded_at",)
# The longest row read when marks have no size limit (MarkLimits.max_message_bytes None).
MAX_ROW_BYTES_CEILING = 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class InterchangeFormatError(ValueError):
    """The file as a whole is not an interchange CSV (as opposed to one bad row)."""


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    raw: bytes  # the line as it was in the file, without its line ending (the beginning, if over-long)
    mark: RegisterMark | None
    rejection: MarkRejected | None
    header: str = ""  # the file's header line: what a dead-lettered row needs to be rebuilt and replayed
    raw_size: int | None = None  # the whole line's size and hash when `raw` is only its beginning
    raw_sha256: str | None = None

    def dead_letter(self, *, stage: str, source_file: str) -> DeadLetter:
        """This rejected row as a dead letter: raw bytes (base64 when not text), line, header, reason."""
        assert self.rejection is not None, "only a rejected row is dead-lettered"
        return dead_letter(self.rejection, self.raw, stage=stage, raw_size=self.raw_size, raw_sha256=self.raw_sha256,
                           source_file=source_file, line=self.line, header=self.header)


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    content: bytes  # without the line ending; only the beginning when `size` says it was longer
    size: int
    sha256: str | None = None  # set for an over-long line, hashed as it streamed past


def _without_ending(chunk: bytes) -> bytes:
    if chunk.endswith(b"\n"):
        chunk = chunk[:-1]
    return chunk[:-1] if chunk.endswith(b"\r") else chunk


def _physical_lines(handle: BinaryIO, limit: int) -> Iterator[_Line]:
    """Every line, never holding more than `limit` (+2) bytes of one: a longer line is streamed
    past, hashed, and reported with its size and first bytes."""
    number = 0
    while chunk := handle.readline(limit + 2):
        number += 1
        if chunk.endswith(b"\n") or len(chunk) < limit + 2:
            content = _without_ending(chunk)
            yield _Line(number, content, len(content))
            continue
        digest, size, head = hashlib.sha256(), 0, chunk[:MAX_RAW_KEPT]
        while chunk:
            ended = chunk.endswith(b"\n")
            part = _without_ending(chunk) if ended else chunk
            digest.update(part)
            size += len(part)
            if ended:
                break
            chunk = handle.readline(1 << 16)
        yield _Line(number, head, size, digest.hexdigest())


def header_columns(text: str) -> list[str]:
    """The column names of a header line (lower-case, trimmed); raises InterchangeFormatError."""
    try:
        columns = [column.strip().lower() for column in next(csv.reader((text,), strict=True), [])]
    except csv.Error as exc:
        raise InterchangeFormatError(f"the header is not a CSV line ({exc})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise InterchangeFormatError(
            f"header lacks {', '.join(missing)}; expected {','.join(REQUIRED_COLUMNS)}[,recorded_at]")
    repeated = sorted({column for column in columns if column and columns.count(column) > 1})
    if repeated:
        raise InterchangeFormatError(f"header names {', '.join(repeated)} more than once")
    return columns


def _header(path: Path, first: _Line | None, limit: int) -> tuple[str, list[str]]:
    if first is None or not first.content.removeprefix(_BOM).strip():
        raise InterchangeFormatError(f"{path} is empty; expected a header {','.join(REQUIRED_COLUMNS)}")
    if first.size > limit:
        raise InterchangeFormatError(f"{path}: the first line is {first.size} bytes, not a header")
    try:
        text = first.content.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InterchangeFormatError(f"{path}: the header is not UTF-8 ({exc})") from None
    try:
        return text, header_columns(text)
    except InterchangeFormatError as exc:
        raise InterchangeFormatError(f"{path}: {exc}") from None


def parse_row(content: bytes, header: list[str], *, limits: MarkLimits, today: dt.date,
              now: dt.datetime | None, recorded_at_default: str, row_limit: int | None = None) -> RegisterMark:
    """One line of an interchange CSV (without its line ending) as a mark; raises MarkRejected,
    only. Used for every row of a file and again when a dead-lettered row is replayed."""
    row_limit = row_limit or limits.max_message_bytes or MAX_ROW_BYTES_CEILING
    if len(content) > row_limit:
        raise MarkRejected(RejectReason.PAYLOAD_TOO_LARGE, f"line is {len(content)} bytes; the limit is {row_limit}")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MarkRejected(RejectReason.INVALID_ENCODING,
                           f"line is not UTF-8 ({exc.reason} at byte {exc.start + 1} of {len(content)})") from None
    if control := CONTROL_CHARACTERS.search(text):
        raise MarkRejected(RejectReason.MALFORMED_ROW, f"row has a control character U+{ord(control.group()):04X} "
                           f"at character {control.start() + 1}")
    try:
        fields = next(csv.reader((text,), strict=True))
    except csv.Error as exc:
        raise MarkRejected(RejectReason.MALFORMED_ROW, f"row is not a CSV line: {exc}") from None
    if len(fields) != len(header):
        raise MarkRejected(RejectReason.MALFORMED_ROW, f"row has {len(fields)} fields, the header has {len(header)}")
    row = dict(zip(header, fields))
    if not row.get("recorded_at", "").strip():
        row["recorded_at"] = recorded_at_default
    return parse_mark(row, limits=limits, today=today, now=now)


def read_marks(path: Path, *, limits: MarkLimits = DEFAULT_LIMITS, today: dt.date | None = None,
               now: dt.datetime | None = None, recorded_at_default: dt.datetime | None = None) -> Iterator[CsvRow]:
    """Every data row of an interchange CSV, validated, in file order: one CsvRow per non-empty
    line after the header, whatever its bytes. Raises InterchangeFormatError only for a file
    without a usable header (before any row is read).

    Rows without `recorded_at` get `recorded_at_default` (the time of the import), so a file's
    own later rows still win over earlier ones for the same session. A row is at most
    `limits.max_message_bytes` bytes (a mark message's limit; 1 MiB when that is off).
    """
    today = today or dt.date.today()
    fallback = (recorded_at_default or now or dt.datetime.now(dt.timezone.utc)).isoformat()
    row_limit = limits.max_message_bytes or MAX_ROW_BYTES_CEILING
    with Path(path).open("rb") as handle:
        lines = _physical_lines(handle, row_limit)
        header_text, header = _header(Path(path), next(lines, None), row_limit)
        for line in lines:
            if line.size == 0:
                continue
            if line.sha256 is not None:  # over-long: only its beginning was kept
                yield CsvRow(line.number, line.content, None, MarkRejected(
                    RejectReason.PAYLOAD_TOO_LARGE, f"line is {line.size} bytes; the limit is {row_limit}"),
                    header_text, raw_size=line.size, raw_sha256=line.sha256)
                continue
            try:
                mark = parse_row(line.content, header, limits=limits, today=today, now=now,
                                 recorded_at_default=fallback, row_limit=row_limit)
            except MarkRejected as rejection:
                yield CsvRow(line.number, line.content, None, rejection, header_text)
            else:
                yield CsvRow(line.number, line.content, mark, None, header_text)
