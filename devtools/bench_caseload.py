"""How long the caseload page takes to render on the server with a large caseload.

Seeds a fresh database with `n_open_cases` open cases (two schools, all tiers and kinds, a
display name for half the pupils) and one staff account, then times whole requests through the
ASGI app in-process (routing, sign-in lookup, queries, template): the first page, a page deep
in the keyset (page 100 of 200 at the defaults), and a filtered page. Median and p95 in ms.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from sqlalchemy import insert

from caseload.auth import create_staff
from caseload.db import make_engine, session_factory, upgrade
from caseload.settings import CaseloadSettings
from caseload.store import urgency_key
from caseload.tables import CaseEvent, PupilCase, PupilName
from caseload.web import create_app

SCHOOLS = ("SCH001", "SCH002")
PASSWORD = "benchmark password, not a secret"
KINDS = ("concern", "concern", "concern", "health_needs", "improving")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NEXT = re.compile(r'href="/\?([^"]*after=\d+[^"]*)" id="next-page"')


def _event_payload(pupil: str, school: str, as_of: dt.date, kind: str, tier: int) -> str:
    reasons = [{"code": "recent_drop", "weight": 0.8,
                "text": "Attended 11 of the last 20 sessions (55%), down from 94% earlier this year"}]
    return json.dumps({"event_id": f"bench-{pupil}", "pupil_id": pupil, "school_id": school,
                       "as_of": as_of.isoformat(), "kind": kind, "tier": tier, "reasons": reasons})


def seed(sessions, n_open_cases: int, now: dt.datetime) -> None:
    """Cases, their opening events and names, inserted in bulk (the shape apply_event leaves)."""
    first_day = dt.date(2026, 9, 7)
    cases, events, names = [], [], []
    for index in range(n_open_cases):
        case_id = index + 1
        school = SCHOOLS[index % len(SCHOOLS)]
        pupil = f"{school}-P{index:05d}"
        tier = 1 + (index * 7) % 3
        kind = KINDS[index % len(KINDS)]
        since = first_day + dt.timedelta(days=(index * 13) % 80)
        cases.append({"id": case_id, "pupil_id": pupil, "school_id": school,
                      "track": "health" if kind == "health_needs" else "attendance", "kind": kind,
                      "status": ("new", "acknowledged", "in_support")[index % 3], "is_open": True, "tier": tier,
                      "escalated": index % 11 == 0, "waiting_since": since,
                      "urgency_key": urgency_key(tier, since, case_id, improving=kind == "improving"),
                      "last_event_on": since,
                      "assigned_role": None, "created_at": now, "updated_at": now, "closed_at": None})
        events.append({"event_id": f"bench-{pupil}", "case_id": case_id, "pupil_id": pupil, "school_id": school,
                       "as_of": since, "kind": kind, "tier": tier, "escalation": False, "risk_score": 0.6,
                       "payload": _event_payload(pupil, school, since, kind, tier), "received_at": now})
        if index % 2 == 0:
            names.append({"pupil_id": pupil, "display_name": f"Pupil {index:05d}", "year_group": str(7 + index % 5),
                          "tutor_group": f"{7 + index % 5}{'ABC'[index % 3]}", "imported_at": now})
    with sessions.begin() as session:
        for table, rows in ((PupilCase, cases), (CaseEvent, events), (PupilName, names)):
            for start in range(0, len(rows), 2000):
                session.execute(insert(table), rows[start:start + 2000])
        create_staff(session, "bench.hoy", PASSWORD, "head_of_year", SCHOOLS, now)


def _timed(client, path: str, repeats: int) -> dict[str, float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}")
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 2),
            "p95_ms": round(samples[min(len(samples) - 1, int(0.95 * len(samples)))], 2)}


def caseload_page_timing(n_open_cases: int = 10_000, repeats: int = 30, page_size: int = 50,
                         database_url: str | None = None, deep_page: int = 100) -> dict[str, object]:
    """Seed a database and time the caseload page's server-side render; returns the figures."""
    with tempfile.TemporaryDirectory(prefix="bench-caseload-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'caseload.db'}"
        engine = make_engine(url)
        upgrade(engine)
        sessions = session_factory(engine)
        now = dt.datetime(2026, 12, 1, 9, tzinfo=dt.timezone.utc)
        started = time.perf_counter()
        seed(sessions, n_open_cases, now)
        seed_seconds = time.perf_counter() - started
        settings = CaseloadSettings(_env_file=None, database_url=url, cookie_secure=False, page_size=page_size,
                                    session_secret="b" * 48, consume=False)
        app = create_app(settings, sessions, secret_key="b" * 48, clock=lambda: now)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # starlette's TestClient would rather have httpx2
            from starlette.testclient import TestClient

            client = TestClient(app, base_url="http://127.0.0.1:8080")
        with client:
            token = CSRF.search(client.get("/signin").text).group(1)
            client.post("/signin", data={"csrf_token": token, "username": "bench.hoy", "password": PASSWORD})
            first = client.get("/").text
            if f"{n_open_cases} cases" not in first:
                raise RuntimeError("the seeded cases are not all on the caseload")
            deep_path, page = "/", 1
            while page < deep_page:  # follow the keyset links to a page deep in the caseload
                link = NEXT.search(client.get(deep_path).text)
                if link is None:
                    break
                deep_path, page = "/?" + link.group(1).replace("&amp;", "&"), page + 1
            result = {
                "open_cases": n_open_cases, "page_size": page_size, "database": engine.dialect.name,
                "seed_seconds": round(seed_seconds, 2),
                "first_page": _timed(client, "/", repeats),
                f"page_{page}": _timed(client, deep_path, repeats),
                "filtered_year_9_tier_3": _timed(client, "/?year=9&tier=3", repeats),
                "one_school_health_needs": _timed(client, "/?school=SCH002&kind=health_needs", repeats),
            }
        engine.dispose()
        return result


if __name__ == "__main__":
    print(json.dumps(caseload_page_timing(), indent=2))
