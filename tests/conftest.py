"""Shared fixtures: mark builders for unit tests, and the embedded broker for integration tests."""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from schemas.marks import RegisterMark, parse_mark

# One scoring thread, as in the worker: OpenMP spinning on a shared two-core machine makes
# thousands of small predict calls many times slower.
threadpool_limits(limits=1)

# Tests must not pick up a developer's .env or exported settings.
for _name in list(os.environ):
    if _name.startswith("RECONNECT_") or _name == "KAFKA_BOOTSTRAP_SERVERS":
        del os.environ[_name]

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


@pytest.fixture
def bad_rows() -> list[list[str]]:
    """Interchange rows every reader must reject, one reason each."""
    return [list(row) for row in BAD_ROWS]


@pytest.fixture
def crafted_csv(tmp_path):
    """Write the crafted cohort (two schools of pupils with known stories, duplicates and
    amendments) as an interchange CSV: crafted_csv(bad_rows_at=None | index, extra_rows=())."""

    def write(*, bad_rows_at: int | None = None, extra_rows=(), name: str = "marks.csv") -> Path:
        rows = crafted_rows()
        if bad_rows_at is not None:
            rows = rows[:bad_rows_at] + BAD_ROWS[:3] + rows[bad_rows_at:] + BAD_ROWS[3:]
        path = tmp_path / name
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CRAFTED_HEADER)
            writer.writerows(rows + [list(row) for row in extra_rows])
        return path

    return write


@pytest.fixture(scope="session")
def make_mark():
    """Build one valid mark: make_mark(pupil, day, "AM", "/", school=..., recorded=...)."""
    return mark


@pytest.fixture(scope="session")
def make_pupil_marks():
    """Marks for consecutive school days: make_pupil_marks(pupil, start, [(am, pm), ...])."""
    return pupil_marks


@pytest.fixture(scope="session")
def engine(model_path):
    """The decision engine on the shipped model, as the worker builds it."""
    from models.artifact import load_model
    from models.engine import DecisionEngine

    return DecisionEngine(load_model(model_path), window_days=126)


@pytest.fixture
def present_days():
    def build(count: int) -> list[tuple[str, str]]:
        return [("/", "\\")] * count
    return build


@pytest.fixture(scope="session")
def wait_until():
    """Poll a predicate until it holds (devtools.harness.wait_until): the only way tests wait."""
    from devtools.harness import wait_until as poll

    return poll


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool's path; a test that needs it fails under CI (CI set) and is skipped elsewhere, so a CI
    machine without it can never pass silently."""
    from devtools.promtool import INSTALL_HINT, find_promtool

    path = find_promtool()
    if path is None:
        message = f"promtool not found: {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    from devtools.broker import EmbeddedBroker

    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as embedded:
        yield embedded


@pytest.fixture(scope="session")
def model_path():
    """The model shipped in the repository (the worker's default)."""
    from models.artifact import load_model
    from streams.settings import Settings

    path = Settings().model_path
    load_model(path)  # fails loudly if the shipped model no longer matches the code
    return path
