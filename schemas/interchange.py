"""The interchange CSV: how a school's MIS register export reaches Reconnect.

Header: `school_id,pupil_id,date,session,code` and optionally `recorded_at` (extra columns
are ignored). Every row is validated with the same contract as the marks topic.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from schemas.marks import DEFAULT_MAX_FUTURE_DAYS, MarkLimits, MarkRejected, RegisterMark, RejectReason, parse_mark

REQUIRED_COLUMNS = ("school_id", "pupil_id", "date", "session", "code")
OPTIONAL_COLUMNS = ("recorded_at",)


class InterchangeFormatError(ValueError):
    """The file as a whole is not an interchange CSV (as opposed to one bad row)."""


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    raw: str  # the row as it was in the file, for the dead-letter topic
    mark: RegisterMark | None
    rejection: MarkRejected | None


def read_marks(path: Path, *, today: dt.date | None = None, max_future_days: int = DEFAULT_MAX_FUTURE_DAYS,
               recorded_at_default: dt.datetime | None = None, limits: MarkLimits | None = None) -> Iterator[CsvRow]:
    """Every data row of an interchange CSV, validated, in file order.

    Rows without `recorded_at` get `recorded_at_default` (the time of the import), so a file's
    own later rows still win over earlier ones for the same session.
    """
    fallback = (recorded_at_default or dt.datetime.now(dt.timezone.utc)).isoformat()
    with Path(path).open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = [column.strip().lower() for column in next(reader)]
        except StopIteration:
            raise InterchangeFormatError(f"{path} is empty; expected a header {','.join(REQUIRED_COLUMNS)}") from None
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:
            raise InterchangeFormatError(
                f"{path}: header lacks {', '.join(missing)}; expected {','.join(REQUIRED_COLUMNS)}[,recorded_at]"
            )
        width = len(header)
        has_recorded_at = "recorded_at" in header
        for fields in reader:
            line = reader.line_num
            raw = ",".join(fields)
            if not fields or fields == [""]:
                continue
            if len(fields) != width:
                yield CsvRow(line, raw, None, MarkRejected(
                    RejectReason.MALFORMED_ROW, f"row has {len(fields)} fields, the header has {width}"))
                continue
            row = dict(zip(header, fields))
            if not has_recorded_at or not row.get("recorded_at", "").strip():
                row["recorded_at"] = fallback
            try:
                yield CsvRow(line, raw, parse_mark(row, today=today, max_future_days=max_future_days, limits=limits), None)
            except MarkRejected as rejection:
                yield CsvRow(line, raw, None, rejection)
