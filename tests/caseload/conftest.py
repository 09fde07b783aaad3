"""Fixtures of the caseload tests: databases (SQLite and a real PostgreSQL), events, marks, the app.

PostgreSQL is Debian's server started in a temporary directory for the test session (initdb
and pg_ctl, as the `postgres` user when the tests run as root). Tests that take `db` run on
SQLite and, marked slow, on PostgreSQL; each gets a fresh database migrated up from empty.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from caseload.db import make_engine, session_factory, upgrade
from caseload.settings import CaseloadSettings
from schemas.events import ACTION_TEXT, TIER_TEXT, InterventionEvent, InterventionKind, SupportAction, Tier
from schemas.marks import RegisterMark, parse_mark

TODAY = dt.date(2026, 12, 1)
NOW = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.timezone.utc)
PASSWORD = "a long enough test password"
SECRET = "s" * 48


# -- PostgreSQL, started by the tests ------------------------------------------------------------

def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


@dataclass
class PostgresServer:
    port: int
    bin_dir: Path

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(sql)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    from devtools.broker import free_port

    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    as_root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="caseload-pg-"))
    run_as: list[str] = []
    if as_root:  # initdb refuses to run as root: the server runs as the postgres user
        shutil.chown(base, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data, sockets, log = base / "data", base / "sockets", base / "server.log"
    subprocess.run([*run_as, "mkdir", "-p", str(sockets)], check=True)
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "--encoding=UTF8", "--no-sync"], check=True, capture_output=True)
    port = free_port()
    options = (f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off")
    subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60",
                    "start"], check=True, capture_output=True)
    try:
        yield PostgresServer(port, bin_dir)
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test."""
    name = f"caseload_{uuid.uuid4().hex[:12]}"
    postgres_server.admin(f"CREATE DATABASE {name}")
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- databases -----------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch):
    """Argon2 at its smallest cost in-process: the tests check behaviour, not the work factor (the
    subprocesses of the end-to-end test hash with the production parameters)."""
    from argon2 import PasswordHasher

    from caseload import auth

    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(auth, "_hasher", hasher)
    monkeypatch.setattr(auth, "_DUMMY_HASH", hasher.hash("dummy"))


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A SQLite file migrated up from empty once; tests get their own copy of it."""
    path = tmp_path_factory.mktemp("template") / "caseload.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def _sqlite_copy(template: Path, directory: Path) -> str:
    target = directory / "caseload.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def database_url(request, tmp_path) -> str:
    """An empty database: a SQLite file, or a new PostgreSQL database (slow: it starts a server)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'caseload.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def engine(request, tmp_path, migrated_sqlite):
    """An engine on a database at the latest migration: a copy of the migrated SQLite file, or a new
    PostgreSQL database migrated up from empty (slow: it starts a server)."""
    if request.param == "sqlite":
        engine = make_engine(_sqlite_copy(migrated_sqlite, tmp_path))
    else:
        engine = make_engine(request.getfixturevalue("postgres_url"))
        upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine):
    """A sessionmaker on a database migrated up from empty (SQLite, and PostgreSQL when not -m 'not slow')."""
    return session_factory(engine)


@pytest.fixture
def sqlite_db(tmp_path, migrated_sqlite):
    """SQLite only: for tests about the web layer rather than the store."""
    engine = make_engine(_sqlite_copy(migrated_sqlite, tmp_path))
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def settings(tmp_path) -> CaseloadSettings:
    return CaseloadSettings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'caseload.db'}",
                            session_secret=SECRET, cookie_secure=False, topic_marks="t.marks",
                            topic_interventions="t.interventions", topic_outcomes="t.outcomes")


class Clock:
    """A settable clock: the app and store take `now` from it."""

    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


# -- events and marks ------------------------------------------------------------------------------

def _window(day: dt.date, **counts) -> dict:
    base = {"latest_date": day.isoformat(), "possible_10": 10, "attended_10": 4, "possible_20": 20, "attended_20": 9,
            "possible_40": 40, "attended_40": 26, "possible_ytd": 90, "attended_ytd": 72, "earlier_possible": 50,
            "earlier_attended": 46, "current_absence_run": 3, "longest_absence_run_40": 4, "absence_spells_40": 4,
            "unauthorised_40": 9, "health_40": 2, "late_20": 1, "late_previous_20": 0, "monday_friday_absences_40": 5,
            "am_possible_40": 20, "am_absences_40": 7, "pm_possible_40": 20, "pm_absences_40": 7,
            "sessions_since_full_week": 14}
    base.update(counts)
    return base


@pytest.fixture
def make_event() -> Callable[..., InterventionEvent]:
    """An intervention event as the worker would publish it (deterministic id from its content)."""

    def build(pupil: str = "SCH1-P001", school: str = "SCH1", as_of: dt.date = dt.date(2026, 10, 29),
              kind: str = "concern", tier: int = 1, escalation: bool = False,
              reasons: list[tuple[str, str]] | None = None, **window) -> InterventionEvent:
        kind_enum = InterventionKind(kind)
        if reasons is None:
            reasons = ([("recovering", "Attended 19 of the last 20 sessions (95%), up from 45% when the concern was "
                                      "raised")] if kind_enum is InterventionKind.IMPROVING else
                       [("recent_drop", "Attended 9 of the last 20 sessions (45%), down from 92% earlier this year"),
                        ("consecutive_absence", "Has missed the last 3 sessions in a row")])
        actions = ([SupportAction.RECOGNISE_PROGRESS] if kind_enum is InterventionKind.IMPROVING else
                   [SupportAction.CHECK_IN_CONVERSATION, SupportAction.CALL_HOME_TO_LISTEN])
        return InterventionEvent.model_validate({
            "event_id": InterventionEvent.make_id(pupil, as_of, kind_enum, tier), "pupil_id": pupil,
            "school_id": school, "as_of": as_of.isoformat(), "kind": kind, "tier": tier,
            "tier_text": TIER_TEXT[Tier(tier)], "escalation": escalation, "risk_score": 0.4 + 0.1 * tier,
            "reasons": [{"code": code, "text": text, "weight": 0.5} for code, text in reasons],
            "suggested_actions": [a.value for a in actions],
            "suggested_actions_text": [ACTION_TEXT[a] for a in actions],
            "model_version": "test-model", "window": _window(as_of, **window),
        })

    return build


@pytest.fixture
def store_event(clock):
    """Apply one event to a database (committed); returns its result."""
    from caseload.store import apply_event

    def apply(database, event: InterventionEvent):
        with database.begin() as session:
            return apply_event(session, event, event.model_dump_json(), clock())

    return apply


@pytest.fixture
def make_mark() -> Callable[..., RegisterMark]:
    def build(pupil: str, day: dt.date, session: str, code: str, *, school: str = "SCH1",
              recorded: str | dt.datetime | None = None) -> RegisterMark:
        if recorded is None:
            recorded = f"{day.isoformat()}T{'09:00' if session == 'AM' else '13:30'}:00+00:00"
        if isinstance(recorded, dt.datetime):
            recorded = recorded.isoformat()
        return parse_mark({"school_id": school, "pupil_id": pupil, "date": day.isoformat(), "session": session,
                           "code": code, "recorded_at": recorded}, today=TODAY)

    return build


@pytest.fixture
def school_days() -> Callable[[dt.date, int], list[dt.date]]:
    def days(start: dt.date, count: int) -> list[dt.date]:
        out, day = [], start
        while len(out) < count:
            if day.weekday() < 5:
                out.append(day)
            day += dt.timedelta(days=1)
        return out

    return days


@pytest.fixture
def marks_for(make_mark, school_days):
    """Marks for consecutive school days from `start`, one (AM, PM) code pair a day."""

    def build(pupil: str, start: dt.date, pairs: list[tuple[str, str]], **kwargs) -> list[RegisterMark]:
        marks = []
        for day, (am, pm) in zip(school_days(start, len(pairs)), pairs):
            marks.append(make_mark(pupil, day, "AM", am, **kwargs))
            marks.append(make_mark(pupil, day, "PM", pm, **kwargs))
        return marks

    return build


# -- staff and the app ----------------------------------------------------------------------------

@pytest.fixture
def add_staff(clock):
    from caseload.auth import create_staff

    def add(database, username: str, schools: list[str], role: str = "head_of_year", password: str = PASSWORD):
        with database.begin() as session:
            return create_staff(session, username, password, role, schools, clock()).id

    return add


class RecordingSender:
    """Stands in for Kafka in web tests: keeps what would have been published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail = False

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        if self.fail:
            raise ConnectionError("broker unavailable")
        self.sent.append((topic, key, value))

    def close(self) -> None:
        pass


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def web(settings, sqlite_db, clock, sender):
    """The app on SQLite with a recording sender: (app, sessionmaker)."""
    from caseload.publisher import OutcomePublisher
    from caseload.web import create_app

    publisher = OutcomePublisher(settings, sqlite_db, sender=sender, clock=clock)
    return create_app(settings, sqlite_db, secret_key=SECRET, clock=clock, publisher=publisher), sqlite_db


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def browser_client(web):
    """A TestClient factory for the app (each its own cookie jar), and a sign-in helper on it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette would rather have httpx2; httpx is what is installed
        from starlette.testclient import TestClient

    app, _ = web

    class Client:
        def __init__(self) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.http = TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False)

        def csrf(self, path: str = "/signin") -> str:
            response = self.http.get(path, follow_redirects=True)
            match = CSRF.search(response.text)
            assert match, f"no CSRF token on {path}"
            return match.group(1)

        def sign_in(self, username: str, password: str = PASSWORD):
            return self.http.post("/signin", data={"csrf_token": self.csrf(), "username": username,
                                                   "password": password})

        def post_form(self, path: str, data: dict, page: str = "/"):
            return self.http.post(path, data={"csrf_token": self.csrf(page), **data})

    return Client


@pytest.fixture
def event_json():
    return lambda event: json.loads(event.model_dump_json())


# -- a real browser ---------------------------------------------------------------------------------

@pytest.fixture
def caseload_http():
    """An HTTP client signed in to a running caseload (for status codes a browser does not show)."""
    import httpx

    clients = []

    def sign_in(base_url: str, username: str, password: str) -> httpx.Client:
        client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
        clients.append(client)
        token = CSRF.search(client.get("/signin").text).group(1)
        response = client.post("/signin", data={"csrf_token": token, "username": username, "password": password})
        assert response.status_code == 303, response.text
        return client

    yield sign_in
    for client in clients:
        client.close()
