"""The web app in-process (Starlette TestClient on SQLite): sign-in, scope, CSRF, pages, forms."""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest
from starlette.routing import Route

from caseload.store import CaseStatus
from schemas.outcomes import OutcomeEvent

OTHER_SCHOOL_PASSWORD = "another long test password"


@pytest.fixture
def populated(web, make_event, store_event, marks_for, clock, add_staff):
    """Two schools, one case each, a head of year for each, and three weeks of marks for the SCH1 pupil."""
    from caseload.store import apply_marks

    _, db = web
    store_event(db, make_event(pupil="SCH1-P001", school="SCH1", tier=2, as_of=dt.date(2026, 9, 25)))
    store_event(db, make_event(pupil="SCH2-P009", school="SCH2", tier=3, as_of=dt.date(2026, 9, 20)))
    with db.begin() as session:
        apply_marks(session, marks_for("SCH1-P001", dt.date(2026, 9, 7), [("/", "\\")] * 10 + [("N", "N")] * 4
                                       + [("I", "I")]), clock())
    add_staff(db, "hoy.sch1", ["SCH1"])
    add_staff(db, "hoy.sch2", ["SCH2"], password=OTHER_SCHOOL_PASSWORD)
    return db


def _case_id(db, pupil: str) -> int:
    from sqlalchemy import select

    from caseload.tables import PupilCase

    with db() as session:
        return session.scalars(select(PupilCase.id).where(PupilCase.pupil_id == pupil)).one()


def test_nothing_but_health_and_sign_in_is_served_without_signing_in(web, browser_client, populated):
    app, _ = web
    client = browser_client()
    case_id = _case_id(populated, "SCH1-P001")
    for path in ("/", f"/cases/{case_id}", "/pupils/SCH1-P001", "/no-such-page", "/pupils/SCH1-P001?year=2026"):
        response = client.http.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/signin", path
        assert "SCH1-P001" not in response.text
    health = client.http.get("/healthz")
    assert health.status_code == 200 and health.json()["database"] == "ok"
    assert "SCH1" not in health.text
    # Posting anywhere needs a sign-in too (the CSRF check passes: the token is the session's own).
    token = client.csrf()
    for route in app.routes:
        if isinstance(route, Route) and "POST" in route.methods and route.path not in ("/signin",):
            path = route.path.replace("{case_id:int}", str(case_id))
            assert client.http.post(path, data={"csrf_token": token}).status_code == 401, path


def test_sign_in_sets_a_signed_http_only_lax_cookie_and_sign_out_ends_it(web, browser_client, populated):
    client = browser_client()
    response = client.sign_in("hoy.sch1")
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert client.http.get("/").status_code == 200
    stolen = dict(client.http.cookies)
    client.post_form("/signout", {})
    assert client.http.get("/").status_code == 303
    replay = browser_client()
    replay.http.cookies.update(stolen)  # the old cookie is signed and unexpired, but its sign-in has ended
    assert replay.http.get("/").status_code == 303


def test_disabling_an_account_ends_its_sign_in_at_once(web, browser_client, populated):
    from caseload.auth import disable_staff

    client = browser_client()
    client.sign_in("hoy.sch1")
    assert client.http.get("/").status_code == 200
    with populated.begin() as session:
        assert disable_staff(session, "HOY.sch1") and not disable_staff(session, "nobody")
    assert client.http.get("/").status_code == 303
    assert client.sign_in("hoy.sch1").status_code == 401


def test_cookie_is_secure_unless_turned_off(settings, sqlite_db, add_staff):
    import warnings

    from caseload.web import create_app

    add_staff(sqlite_db, "hoy", ["SCH1"])
    app = create_app(settings.model_copy(update={"cookie_secure": True}), sqlite_db, secret_key="k" * 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette would rather have httpx2; httpx is what is installed
        from starlette.testclient import TestClient

        client = TestClient(app, base_url="https://caseload.example")
    assert "secure" in client.get("/signin").headers["set-cookie"].lower()


def test_wrong_password_and_the_rate_limit(web, browser_client, populated):
    client = browser_client()
    wrong = client.sign_in("hoy.sch1", "not the password")
    assert wrong.status_code == 401 and "do not match" in wrong.text
    unknown = client.sign_in("nobody", "not the password")
    assert unknown.status_code == 401 and unknown.text.count("do not match") == 1
    for _ in range(4):
        client.sign_in("hoy.sch1", "still not it")
    held = client.sign_in("hoy.sch1")  # five failures for the account: even the right password waits
    assert held.status_code == 429 and "Too many failed sign-ins" in held.text


def test_every_post_needs_the_sessions_csrf_token_and_the_same_origin(web, browser_client, populated):
    app, _ = web
    client = browser_client()
    client.sign_in("hoy.sch1")
    case_id = _case_id(populated, "SCH1-P001")
    token = client.csrf("/")
    posts = [route.path.replace("{case_id:int}", str(case_id)) for route in app.routes
             if isinstance(route, Route) and "POST" in route.methods]
    assert set(posts) == {"/signin", "/signout", f"/cases/{case_id}/outcomes", f"/cases/{case_id}/assign"}
    form = {"action": "acknowledged", "role": "head_of_year", "outcome_id": "11111111-2222-4333-8444-555555555555",
            "assigned_role": "senco", "username": "hoy.sch1", "password": "a long enough test password"}
    for path in posts:
        assert client.http.post(path, data=form).status_code == 403, path  # no token
        assert client.http.post(path, data={**form, "csrf_token": "forged" * 8}).status_code == 403, path
        cross = client.http.post(path, data={**form, "csrf_token": token}, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403, path
        as_json = client.http.post(path, json={**form, "csrf_token": token})
        assert as_json.status_code == 415, path
    assert client.http.get("/").status_code == 200  # still signed in: nothing above went through
    from caseload.tables import CaseAction

    with populated() as session:
        assert session.query(CaseAction).count() == 0


def test_another_schools_case_and_pupil_answer_404_and_are_not_listed(web, browser_client, populated):
    client = browser_client()
    client.sign_in("hoy.sch2", OTHER_SCHOOL_PASSWORD)
    case_id = _case_id(populated, "SCH1-P001")
    assert client.http.get(f"/cases/{case_id}").status_code == 404
    assert client.http.get("/pupils/SCH1-P001").status_code == 404
    assert client.http.get("/pupils/SCH1-P001?year=2026").status_code == 404
    assert client.http.get(f"/cases/{case_id + 100}").status_code == 404  # the same answer as a missing case
    listing = client.http.get("/")
    assert "SCH2-P009" in listing.text and "SCH1-P001" not in listing.text
    assert client.http.get("/?school=SCH1").status_code == 400
    posted = client.post_form(f"/cases/{case_id}/outcomes", {
        "action": "closed", "role": "head_of_year", "outcome_id": "11111111-2222-4333-8444-555555555555"})
    assert posted.status_code == 404
    assert client.post_form(f"/cases/{case_id}/assign", {"assigned_role": "senco"}).status_code == 404


def test_pupil_page_shows_reasons_actions_grid_and_chart(web, browser_client, populated, make_event, tmp_path, clock):
    from caseload.names import import_names

    client = browser_client()
    client.sign_in("hoy.sch1")
    page = client.http.get("/pupils/SCH1-P001")
    assert page.status_code == 200
    html = page.text
    event = make_event(pupil="SCH1-P001", school="SCH1", tier=2, as_of=dt.date(2026, 9, 25))
    for reason in event.reasons:
        assert reason.text in html
    for text in event.suggested_actions_text:
        assert text in html
    cells = dict(((d, s), c) for d, s, c in re.findall(
        r'data-date="([\d-]+)" data-session="(AM|PM)" data-code="([^"]*)"', html))
    assert cells[("2026-09-07", "AM")] == "/" and cells[("2026-09-07", "PM")] == "\\"
    assert cells[("2026-09-21", "PM")] == "N" and cells[("2026-09-25", "AM")] == "I"
    assert 'data-series="rolling"' in html and 'data-series="target"' in html
    rows = re.findall(r'<tr data-date="([\d-]+)" data-rolling="([\d.]*)" data-ytd="([\d.]+)">', html)
    assert rows[-1] == ("2026-09-25", "0.5000", "0.6667")  # 10 of the last 20 possible; 20 of 30 this year
    assert "SCH1-P001" in html and "Ada" not in html
    names = tmp_path / "names.csv"
    names.write_text("pseudonym,name,year_group,tutor_group\nSCH1-P001,Ada Fictional,8,8R\n", encoding="utf-8")
    with populated.begin() as session:
        import_names(session, names, clock())
    html = client.http.get("/pupils/SCH1-P001").text
    assert "Ada Fictional" in html and "Year 8" in html and "8R" in html
    assert "Ada Fictional" in client.http.get("/").text


def test_recording_a_support_plan_publishes_an_outcome_and_moves_the_case(web, browser_client, populated, sender):
    client = browser_client()
    client.sign_in("hoy.sch1")
    case_id = _case_id(populated, "SCH1-P001")
    outcome_id = "0a0b0c0d-1111-4222-8333-444455556666"
    form = {"action": "support_plan_started", "role": "pastoral_lead", "outcome_id": outcome_id,
            "note": "plan agreed, review in 3 weeks"}
    response = client.post_form(f"/cases/{case_id}/outcomes", form, page="/pupils/SCH1-P001")
    assert response.status_code == 303 and response.headers["location"].endswith(f"#case-{case_id}")
    ((topic, key, value),) = sender.sent
    outcome = OutcomeEvent.model_validate_json(value)
    assert topic == "t.outcomes" and key == b"SCH1-P001"
    assert (outcome.outcome_id, outcome.action.value, outcome.recorded_by_role.value, outcome.note) == (
        outcome_id, "support_plan_started", "pastoral_lead", "plan agreed, review in 3 weeks")
    page = client.http.get("/pupils/SCH1-P001").text
    assert f'id="case-{case_id}-status">in support' in page and "a support plan was agreed and started" in page
    assert "plan agreed, review in 3 weeks" in page and "(hoy.sch1)" in page
    # The same form submitted again (a double click) is recorded and published once.
    again = client.post_form(f"/cases/{case_id}/outcomes", form, page="/pupils/SCH1-P001")
    assert again.status_code == 303 and len(sender.sent) == 1
    listing = client.http.get("/?status=in_support").text
    assert "SCH1-P001" in listing


def test_a_note_with_an_identifier_is_refused_with_the_reason(web, browser_client, populated, sender):
    client = browser_client()
    client.sign_in("hoy.sch1")
    case_id = _case_id(populated, "SCH1-P001")
    response = client.post_form(f"/cases/{case_id}/outcomes", {
        "action": "spoke_with_family", "role": "head_of_year", "outcome_id": "0a0b0c0d-1111-4222-8333-444455556667",
        "note": "called mum on 07700 900123"}, page="/pupils/SCH1-P001")
    assert response.status_code == 422 and "phone number" in response.text
    assert sender.sent == [] and CaseStatus.NEW.value in response.text


def test_outcome_waits_in_the_outbox_while_the_broker_is_down(web, browser_client, populated, sender):
    app, _ = web
    client = browser_client()
    client.sign_in("hoy.sch1")
    case_id = _case_id(populated, "SCH1-P001")
    sender.fail = True
    response = client.post_form(f"/cases/{case_id}/outcomes", {
        "action": "acknowledged", "role": "head_of_year", "outcome_id": "0a0b0c0d-1111-4222-8333-444455556668"},
        page="/pupils/SCH1-P001")
    assert response.status_code == 303
    page = client.http.get("/pupils/SCH1-P001").text
    assert "not yet sent to the stream worker" in page and "when the broker is back" in page
    sender.fail = False
    assert app.state.ctx.publisher.publish_pending() == 1
    assert len(sender.sent) == 1 and "not yet sent" not in client.http.get("/pupils/SCH1-P001").text


def test_assigning_a_case_to_a_role(web, browser_client, populated):
    client = browser_client()
    client.sign_in("hoy.sch1")
    case_id = _case_id(populated, "SCH1-P001")
    assert client.post_form(f"/cases/{case_id}/assign", {"assigned_role": "senco"}).status_code == 303
    listing = client.http.get("/").text
    row = re.search(rf'<tr class="case[^"]*" data-case-id="{case_id}".*?</tr>', listing, re.S).group(0)
    assert ">senco<" in row
    assert client.post_form(f"/cases/{case_id}/assign", {"assigned_role": "truancy_officer"}).status_code == 422


def test_caseload_pages_by_keyset_links(web, browser_client, populated, make_event, store_event, settings):
    app, db = web
    app.state.ctx.settings = settings.model_copy(update={"page_size": 5})
    for index in range(12):
        store_event(db, make_event(pupil=f"SCH1-P1{index:02d}", tier=1 + index % 3,
                                   as_of=dt.date(2026, 10, 1) + dt.timedelta(days=index)))
    client = browser_client()
    client.sign_in("hoy.sch1")
    seen, url = [], "/"
    while url:
        page = client.http.get(url).text
        assert "13 cases" in page
        seen += re.findall(r'data-pupil-id="([^"]+)"', page)
        match = re.search(r'href="([^"]+)" id="next-page"', page)
        url = match.group(1).replace("&amp;", "&") if match else None
    assert len(seen) == 13 == len(set(seen))
    tiers = [int(t) for t in re.findall(r'class="case tier-(\d)"', "".join(
        client.http.get(u).text for u in ["/"]))]
    assert tiers == sorted(tiers, reverse=True)
    assert client.http.get("/?after=not-a-cursor").status_code == 400


def test_security_headers_and_no_pupil_id_in_the_access_log(web, browser_client, populated, caplog):
    client = browser_client()
    client.sign_in("hoy.sch1")
    with caplog.at_level(logging.INFO, logger="caseload.access"):
        response = client.http.get("/pupils/SCH1-P001")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY" and response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text
    lines = [record.getMessage() for record in caplog.records if record.name == "caseload.access"]
    assert lines and all("SCH1-P001" not in line for line in lines)
    assert any("/pupils/{pupil_id:str}" in line for line in lines)
