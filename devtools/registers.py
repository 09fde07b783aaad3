"""Registers to test and try things with: mark builders and a crafted cohort with known stories.

Used by the tests (through tests/conftest.py's fixtures, or imported directly as a library) and by
anyone checking a worker by hand; development only.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from models.features import snapshot, summarise_batch
from models.policy import PolicyConfig, PolicyRow, policy_inputs
from models.state import PupilState
from schemas.marks import RegisterMark, parse_mark

MONDAY = dt.date(2025, 9, 8)
CRAFTED_HEADER = ["school_id", "pupil_id", "date", "session", "code", "recorded_at"]
CRAFTED_START = MONDAY


def mark(pupil: str, day: dt.date, session: str, code: str, *, school: str = "SCH1",
         recorded: str | None = None) -> RegisterMark:
    recorded = recorded or f"{day.isoformat()}T{'09:00' if session == 'AM' else '13:30'}:00+00:00"
    return parse_mark({"school_id": school, "pupil_id": pupil, "date": day.isoformat(), "session": session,
                       "code": code, "recorded_at": recorded}, today=dt.date(2026, 8, 1))


def school_days(start: dt.date, count: int) -> Iterator[dt.date]:
    day = start
    produced = 0
    while produced < count:
        if day.weekday() < 5:
            yield day
            produced += 1
        day += dt.timedelta(days=1)


def pupil_marks(pupil: str, start: dt.date, codes_by_day: list[tuple[str, str]], **kwargs) -> list[RegisterMark]:
    """Marks for consecutive school days from `start`, one (AM, PM) code pair a day."""
    marks = []
    for day, (am, pm) in zip(school_days(start, len(codes_by_day)), codes_by_day):
        marks.append(mark(pupil, day, "AM", am, **kwargs))
        marks.append(mark(pupil, day, "PM", pm, **kwargs))
    return marks


def pupil_state(codes_by_day: list[tuple[str, str]], start: dt.date = MONDAY) -> PupilState:
    """One pupil's state (an 18-week window) after these school days, from `start`."""
    marks = pupil_marks("P1", start, codes_by_day)
    state = PupilState("SCH1", 126, marks[0].date)
    for m in marks:
        state.apply(m)
    return state


def policy_row(codes_by_day: list[tuple[str, str]], config: PolicyConfig) -> PolicyRow:
    """The policy's inputs for one pupil at the end of these school days (from MONDAY)."""
    batch = summarise_batch([snapshot(pupil_state(codes_by_day))])
    return policy_inputs(batch.columns, batch.latest_ordinal, config).rows()[0]


def crafted_rows() -> list[list[str]]:
    """Two schools of pupils with known stories, including duplicates and amendments."""
    rows = []
    days = list(school_days(CRAFTED_START, 45))
    for school in ("SCHA", "SCHB"):
        for n in range(30):
            pupil = f"{school}-P{n:03d}"
            for i, day in enumerate(days):
                for session, present in (("AM", "/"), ("PM", "\\")):
                    code = present
                    if n < 4 and i >= 25:  # a sudden, sustained drop
                        code = "N"
                    elif n == 4 and i >= 25 and day.weekday() in (0, 4):  # an emerging Monday/Friday pattern
                        code = "N"
                    elif n == 5 and 20 <= i < 25:  # one week of illness, then back
                        code = "I"
                    elif (n * 7 + i) % 23 == 0:  # ordinary odd absence
                        code = "I"
                    stamp = f"{day}T{'08:50' if session == 'AM' else '13:20'}:00+00:00"
                    rows.append([school, pupil, day.isoformat(), session, code, stamp])
                    if code == "N" and n == 1:  # school re-codes some N to I at noon
                        rows.append([school, pupil, day.isoformat(), session, "I", f"{day}T12:00:00+00:00"])
    rows += [list(row) for row in rows[:300]]  # a re-export: exact duplicates
    return rows


BAD_ROWS = [
    ["SCHA", "Jane Smith", "2025-09-08", "AM", "/", ""],
    ["SCHA", "SCHA-P001", "2025-09-31", "AM", "/", ""],
    ["SCHA", "SCHA-P001", "2025-09-08", "EV", "/", ""],
    ["SCHA", "SCHA-P001", "2025-09-08", "AM", "ZZ", ""],
    ["", "SCHA-P001", "2025-09-08", "AM", "/", ""],
    ["SCHA", "SCHA-P001", "2031-09-08", "AM", "/", ""],
]


def write_crafted_csv(path: Path, *, bad_rows_at: int | None = None, extra_rows=()) -> Path:
    """The crafted cohort as an interchange CSV, the bad rows split around `bad_rows_at` if given."""
    rows = crafted_rows()
    if bad_rows_at is not None:
        rows = rows[:bad_rows_at] + BAD_ROWS[:3] + rows[bad_rows_at:] + BAD_ROWS[3:]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CRAFTED_HEADER)
        writer.writerows(rows + [list(row) for row in extra_rows])
    return path
