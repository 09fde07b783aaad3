"""Shared fixtures: mark builders for unit tests, and the embedded broker for integration tests."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from devtools.registers import BAD_ROWS, mark, pupil_marks, write_crafted_csv

# One scoring thread, as in the worker: OpenMP spinning on a shared two-core machine makes
# thousands of small predict calls many times slower.
threadpool_limits(limits=1)

# Tests must not pick up a developer's .env or exported settings.
for _name in list(os.environ):
    if _name.startswith("RECONNECT_") or _name == "KAFKA_BOOTSTRAP_SERVERS":
        del os.environ[_name]

@pytest.fixture
def bad_rows() -> list[list[str]]:
    """Interchange rows every reader must reject, one reason each."""
    return [list(row) for row in BAD_ROWS]


@pytest.fixture
def crafted_csv(tmp_path):
    """Write the crafted cohort (two schools of pupils with known stories, duplicates and
    amendments) as an interchange CSV: crafted_csv(bad_rows_at=None | index, extra_rows=())."""

    def write(*, bad_rows_at: int | None = None, extra_rows=(), name: str = "marks.csv") -> Path:
        return write_crafted_csv(tmp_path / name, bad_rows_at=bad_rows_at, extra_rows=extra_rows)

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


@pytest.fixture(scope="session")
def make_event():
    """A real event, built by the same code the worker uses: make_event(i, kind=..., school=...)."""
    from models.explain import build_event
    from models.features import FEATURE_NAMES
    from schemas.events import InterventionKind, WindowSummary

    def build(i: int, *, kind: InterventionKind = InterventionKind.CONCERN, school: str = "SCHB"):
        stats = WindowSummary(
            latest_date=dt.date(2025, 10, 6) + dt.timedelta(days=i % 20), possible_10=10, attended_10=5 + i % 5,
            possible_20=20, attended_20=12, possible_40=40, attended_40=28, possible_ytd=60, attended_ytd=48,
            earlier_possible=20, earlier_attended=20, current_absence_run=2, longest_absence_run_40=4,
            absence_spells_40=3, unauthorised_40=4, health_40=2, late_20=1, late_previous_20=0,
            monday_friday_absences_40=5, am_possible_40=20, am_absences_40=7, pm_possible_40=20, pm_absences_40=5,
            sessions_since_full_week=14,
        )
        return build_event(kind=kind, tier=1 + i % 3, escalation=False, score=0.5 + (i % 40) / 100,
                           pupil_id=f"{school}-P{i:04d}", school_id=school, as_of=stats.latest_date, stats=stats,
                           contributions=[0.1 * ((j + i) % 4) for j in range(len(FEATURE_NAMES))],
                           model_version="test-model", rate_at_alert=0.6)

    return build


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


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


@pytest.fixture
def chromium(tmp_path):
    """Debian's Chromium, headless, through chromedriver (Selenium 4), with its own profile directory."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1600")
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.binary_location = str(CHROMIUM)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


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
