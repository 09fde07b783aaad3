"""Display names a trust may import so staff know who a pseudonym is. They stay in this database.

The file is UTF-8 CSV with the header `pseudonym,name,year_group,tutor_group`. A row that
cannot be used is reported by line number and reason, never by its content (it holds a name).
Importing again replaces a pupil's entry; nothing here is ever published, logged or counted
in a metric beyond totals.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from caseload.tables import PupilName
from schemas.outcomes import ID_REGEX

HEADER = ("pseudonym", "name", "year_group", "tutor_group")
PSEUDONYM = re.compile(ID_REGEX)
YEAR_GROUP = re.compile(r"R|N|[1-9]|1[0-4]")  # nursery, reception, years 1-14
TUTOR_GROUP = re.compile(r"[A-Za-z0-9 ./_-]{1,32}")
MAX_NAME_CHARS = 200
MAX_FILE_BYTES = 50 * 1024 * 1024


class NamesFileError(ValueError):
    """The file as a whole cannot be read (wrong header, not UTF-8, too large)."""


@dataclass
class NamesImport:
    imported: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), never the content


@dataclass(frozen=True)
class NameRow:
    pupil_id: str
    display_name: str
    year_group: str | None
    tutor_group: str | None


def _clean_year(value: str) -> str | None:
    value = value.strip().upper()
    if value.startswith("Y") and value[1:].isdigit():
        value = value[1:]  # "Y7" and "7" are the same year group
    return value.lstrip("0") or value if value else None


def parse_row(row: dict[str, str]) -> NameRow:
    """One row, checked; raises ValueError with a reason that quotes nothing from the row."""
    pupil_id = (row.get("pseudonym") or "").strip()
    if not PSEUDONYM.fullmatch(pupil_id):
        raise ValueError("pseudonym is not 1 to 64 letters, digits, '-' or '_'")
    name = " ".join((row.get("name") or "").split())
    if not name:
        raise ValueError("name is empty")
    if len(name) > MAX_NAME_CHARS or any(ord(ch) < 32 for ch in name):
        raise ValueError(f"name is longer than {MAX_NAME_CHARS} characters or has control characters")
    year = _clean_year(row.get("year_group") or "")
    if year is not None and not YEAR_GROUP.fullmatch(year):
        raise ValueError("year_group is not R, N or 1 to 14")
    tutor = (row.get("tutor_group") or "").strip() or None
    if tutor is not None and not TUTOR_GROUP.fullmatch(tutor):
        raise ValueError("tutor_group is not 1 to 32 letters, digits, spaces or . / _ -")
    return NameRow(pupil_id, name, year, tutor)


def read_names(path: Path) -> tuple[list[NameRow], list[tuple[int, str]]]:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise NamesFileError(f"{path.name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise NamesFileError(f"{path.name} is not UTF-8 (byte {error.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = tuple((name or "").strip() for name in (reader.fieldnames or ()))
    if header != HEADER:
        raise NamesFileError(f"{path.name} must start with the header {','.join(HEADER)}")
    rows, rejected = [], []
    for line, row in enumerate(reader, start=2):
        if None in row or any(value is None for value in row.values()):
            rejected.append((line, "wrong number of columns"))
            continue
        try:
            rows.append(parse_row(row))
        except ValueError as error:
            rejected.append((line, str(error)))
    return rows, rejected


def import_names(session: Session, path: Path, now: dt.datetime) -> NamesImport:
    """Read the file and upsert every usable row (the caller commits)."""
    rows, rejected = read_names(path)
    result = NamesImport(rejected=rejected)
    latest = {row.pupil_id: row for row in rows}  # a pseudonym listed twice: the later row wins
    for row in latest.values():
        entry = session.get(PupilName, row.pupil_id)
        if entry is None:
            entry = PupilName(pupil_id=row.pupil_id)
            session.add(entry)
        entry.display_name, entry.year_group, entry.tutor_group = row.display_name, row.year_group, row.tutor_group
        entry.imported_at = now
        result.imported += 1
    return result
