"""Shared fixtures: mark builders for unit tests, and the embedded broker for integration tests."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

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
