"""The caseload store on a database migrated up from empty: SQLite, and PostgreSQL (slow).

Cases from events (idempotent by event id, one per episode), registers from marks, what staff
record (status, outbox), the caseload page's filters and keyset pages, names, accounts.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from caseload import auth, store
from caseload.names import NamesFileError, import_names
from caseload.tables import CaseAction, CaseEvent, PupilCase, PupilName
from schemas.marks import Session
from schemas.outcomes import OutcomeAction, OutcomeEvent, StaffRole

OPEN = store.CaseFilters()


def _cases(db) -> list[PupilCase]:
    with db() as session:
        return list(session.scalars(select(PupilCase).order_by(PupilCase.id)))


def test_redelivered_event_never_makes_a_second_case(db, make_event, store_event):
    event = make_event()
    assert store_event(db, event) is store.EventResult.OPENED
    assert store_event(db, event) is store.EventResult.DUPLICATE
    assert store_event(db, event) is store.EventResult.DUPLICATE
    (case,) = _cases(db)
    with db() as session:
        assert session.scalar(select(func.count()).select_from(CaseEvent)) == 1
    assert (case.status, case.tier, case.kind, case.is_open) == ("new", 1, "concern", True)


def test_duplicate_within_one_batch_is_stored_once(db, make_event, clock):
    event = make_event()
    with db.begin() as session:
        results = [store.apply_event(session, event, event.model_dump_json(), clock()) for _ in range(3)]
    assert results == [store.EventResult.OPENED, store.EventResult.DUPLICATE, store.EventResult.DUPLICATE]
    assert len(_cases(db)) == 1


def test_a_new_concern_attaches_to_the_open_case_and_escalation_raises_its_tier(db, make_event, store_event):
    store_event(db, make_event(tier=1, as_of=dt.date(2026, 10, 1)))
    escalation = make_event(tier=3, escalation=True, as_of=dt.date(2026, 10, 9))
    assert store_event(db, escalation) is store.EventResult.ATTACHED
    (case,) = _cases(db)
    assert case.tier == 3 and case.escalated
    assert case.waiting_since == dt.date(2026, 10, 1)  # still waiting since the first alert
    assert case.last_event_on == dt.date(2026, 10, 9)


def test_improving_attaches_and_health_needs_is_its_own_case(db, make_event, store_event):
    store_event(db, make_event(tier=2, as_of=dt.date(2026, 10, 1)))
    store_event(db, make_event(kind="improving", tier=2, as_of=dt.date(2026, 11, 5)))
    store_event(db, make_event(kind="health_needs", tier=1, as_of=dt.date(2026, 11, 10)))
    attendance, health = _cases(db)
    assert (attendance.track, attendance.kind, attendance.tier) == ("attendance", "improving", 2)
    assert (health.track, health.kind, health.status) == ("health", "health_needs", "new")
    store_event(db, make_event(kind="health_needs", tier=2, as_of=dt.date(2026, 11, 20)))
    assert len(_cases(db)) == 2


def test_after_closing_a_concern_opens_a_new_case_and_improving_joins_the_closed_one(db, make_event, store_event,
                                                                                      clock):
    store_event(db, make_event(as_of=dt.date(2026, 9, 20)))
    with db.begin() as session:
        (case,) = session.scalars(select(PupilCase)).all()
        store.record_outcome(session, case, action=OutcomeAction.CLOSED, role=StaffRole.HEAD_OF_YEAR, note=None,
                             outcome_id="0f0e3f8a-0000-4000-8000-000000000001", staff_id=None, now=clock())
    store_event(db, make_event(kind="improving", as_of=dt.date(2026, 10, 2)))
    assert len(_cases(db)) == 1  # the good news joins the closed case's history
    store_event(db, make_event(as_of=dt.date(2026, 11, 2)))
    closed, reopened = _cases(db)
    assert (closed.status, closed.is_open, reopened.status, reopened.is_open) == ("closed", False, "new", True)


def test_marks_fill_the_year_with_the_latest_recording_winning(db, make_mark, clock):
    day = dt.date(2026, 9, 14)
    first = make_mark("P1", day, "AM", "N", recorded="2026-09-14T09:05:00+00:00")
    amended = make_mark("P1", day, "AM", "I", recorded="2026-09-14T12:00:00+00:00")
    pm = make_mark("P1", day, "PM", "\\")
    with db.begin() as session:
        counts = store.apply_marks(session, [amended, pm], clock())
    with db.begin() as session:
        counts += store.apply_marks(session, [first, pm], clock())  # the older recording, redelivered
    assert counts == {"new": 2, "superseded": 1, "duplicate": 1}
    with db() as session:
        record = store.pupil_years(session, "P1")[2026]
    assert record.code_at(day, Session.AM) == "I" and record.code_at(day, Session.PM) == "\\"


def test_marks_of_two_academic_years_are_kept_apart(db, make_mark, clock):
    july, september = dt.date(2026, 7, 17), dt.date(2026, 9, 7)
    with db.begin() as session:
        store.apply_marks(session, [make_mark("P1", july, "AM", "/"), make_mark("P1", september, "AM", "N")], clock())
    with db() as session:
        years = store.pupil_years(session, "P1")
    assert sorted(years) == [2025, 2026]
    assert years[2025].code_at(july, Session.AM) == "/" and years[2026].code_at(september, Session.AM) == "N"


def test_recording_an_outcome_moves_the_case_and_queues_the_event(db, make_event, store_event, clock):
    event = make_event(tier=2)
    store_event(db, event)
    outcome_id = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"
    with db.begin() as session:
        (case,) = session.scalars(select(PupilCase)).all()
        row = store.record_outcome(session, case, action=OutcomeAction.SUPPORT_PLAN_STARTED,
                                   role=StaffRole.PASTORAL_LEAD, note="plan agreed, review in 3 weeks",
                                   outcome_id=outcome_id, staff_id=None, now=clock())
        action_id = row.id
    (case,) = _cases(db)
    assert case.status == "in_support" and case.is_open
    with db() as session:
        queued = store.unpublished_outcomes(session)
    assert [row.id for row in queued] == [action_id]
    outcome = OutcomeEvent.model_validate_json(queued[0].outcome_payload)
    assert (outcome.outcome_id, outcome.pupil_id, outcome.school_id, outcome.action, outcome.recorded_by_role) == (
        outcome_id, "SCH1-P001", "SCH1", OutcomeAction.SUPPORT_PLAN_STARTED, StaffRole.PASTORAL_LEAD)
    assert outcome.intervention_event_id == event.event_id and outcome.note == "plan agreed, review in 3 weeks"
    with db.begin() as session:  # acknowledging a case already in support keeps it in support
        case = session.get(PupilCase, case.id)
        store.record_outcome(session, case, action=OutcomeAction.SPOKE_WITH_FAMILY, role=StaffRole.HEAD_OF_YEAR,
                             note=None, outcome_id="1b4e28ba-2fa1-4d2b-883f-0016d3cca428", staff_id=None, now=clock())
    assert _cases(db)[0].status == "in_support"


def test_the_same_form_twice_is_recorded_once_and_identifying_notes_are_refused(db, make_event, store_event, clock):
    store_event(db, make_event())
    outcome_id = "5a1c1d7e-0a2b-4c3d-8e9f-001122334455"
    with db.begin() as session:
        (case,) = session.scalars(select(PupilCase)).all()
        store.record_outcome(session, case, action=OutcomeAction.ACKNOWLEDGED, role=StaffRole.FORM_TUTOR, note=None,
                             outcome_id=outcome_id, staff_id=None, now=clock())
    with db() as session, pytest.raises(store.DuplicateSubmission):
        store.record_outcome(session, session.get(PupilCase, case.id), action=OutcomeAction.ACKNOWLEDGED,
                             role=StaffRole.FORM_TUTOR, note=None, outcome_id=outcome_id, staff_id=None, now=clock())
    with db() as session, pytest.raises(ValidationError, match="e-mail"):
        store.record_outcome(session, session.get(PupilCase, case.id), action=OutcomeAction.SPOKE_WITH_FAMILY,
                             role=StaffRole.FORM_TUTOR, note="rang mum, jane@example.org",
                             outcome_id="5a1c1d7e-0a2b-4c3d-8e9f-001122334456", staff_id=None, now=clock())
    with db() as session:
        assert session.scalar(select(func.count()).select_from(CaseAction)) == 1


def test_nothing_more_is_recorded_on_a_closed_case(db, make_event, store_event, clock):
    store_event(db, make_event())
    with db.begin() as session:
        (case,) = session.scalars(select(PupilCase)).all()
        store.record_outcome(session, case, action=OutcomeAction.CLOSED, role=StaffRole.FORM_TUTOR, note=None,
                             outcome_id="00000000-0000-4000-8000-00000000000a", staff_id=None, now=clock())
    with db() as session, pytest.raises(store.CaseClosedError):
        store.assign_case(session, session.get(PupilCase, case.id), assigned_role=StaffRole.SENCO,
                          role=StaffRole.FORM_TUTOR, staff_id=None, now=clock())


# -- the caseload page ----------------------------------------------------------------------------

@pytest.fixture
def seeded(db, make_event, store_event):
    """Eleven cases over two schools: tiers and waits chosen so the urgency order is known."""
    plan = [  # (pupil, school, tier, as_of)
        ("A-1", "SCH1", 1, dt.date(2026, 9, 20)), ("A-2", "SCH1", 3, dt.date(2026, 11, 2)),
        ("A-3", "SCH1", 2, dt.date(2026, 10, 1)), ("A-4", "SCH1", 3, dt.date(2026, 10, 15)),
        ("A-5", "SCH1", 1, dt.date(2026, 9, 10)), ("A-6", "SCH1", 2, dt.date(2026, 10, 1)),
        ("A-7", "SCH1", 2, dt.date(2026, 9, 30)), ("B-1", "SCH2", 3, dt.date(2026, 9, 1)),
        ("B-2", "SCH2", 1, dt.date(2026, 11, 20)), ("A-8", "SCH1", 1, dt.date(2026, 11, 25)),
        ("A-9", "SCH1", 2, dt.date(2026, 11, 1)),
    ]
    for pupil, school, tier, as_of in plan:
        store_event(db, make_event(pupil=pupil, school=school, tier=tier, as_of=as_of))
    return plan


def _all_pages(db, schools, filters, page_size):
    seen, cursor = [], None
    with db() as session:
        while True:
            page = store.caseload_page(session, schools, filters, cursor, page_size)
            seen.append([row.pupil_id for row in page.rows])
            if page.next_cursor is None:
                return seen, page.total
            cursor = store.Cursor.decode(page.next_cursor.encode())


def test_urgency_order_and_keyset_pages_cover_every_case_once(db, seeded):
    expected = sorted((row for row in seeded if row[1] == "SCH1"), key=lambda r: (-r[2], r[3], r[0]))
    pages, total = _all_pages(db, ["SCH1"], OPEN, page_size=3)
    assert [pupil for page in pages for pupil in page] == [row[0] for row in expected]
    assert [len(page) for page in pages] == [3, 3, 3]
    assert total == 9


def test_keyset_page_is_stable_while_cases_are_added(db, seeded, make_event, store_event):
    with db() as session:
        first = store.caseload_page(session, ["SCH1", "SCH2"], OPEN, None, 4)
    # A new, most urgent case arrives between page 1 and page 2: page 2 carries on where page 1 ended.
    store_event(db, make_event(pupil="A-NEW", tier=3, as_of=dt.date(2026, 8, 1)))
    with db() as session:
        second = store.caseload_page(session, ["SCH1", "SCH2"], OPEN, first.next_cursor, 4)
    shown = [row.pupil_id for row in first.rows + second.rows]
    assert "A-NEW" not in shown and len(set(shown)) == 8
    assert [r.tier for r in first.rows + second.rows] == sorted((r.tier for r in first.rows + second.rows),
                                                                 reverse=True)


def test_a_pupil_who_has_recovered_sorts_after_every_concern(db, make_event, store_event):
    store_event(db, make_event(pupil="R-1", tier=3, as_of=dt.date(2026, 9, 1)))
    store_event(db, make_event(pupil="R-2", tier=1, as_of=dt.date(2026, 11, 1)))
    store_event(db, make_event(pupil="R-1", kind="improving", tier=3, as_of=dt.date(2026, 10, 20)))
    with db() as session:
        rows = store.caseload_page(session, ["SCH1"], OPEN, None, 10).rows
    assert [(row.pupil_id, row.kind, row.tier) for row in rows] == [("R-2", "concern", 1), ("R-1", "improving", 3)]
    store_event(db, make_event(pupil="R-1", tier=2, as_of=dt.date(2026, 11, 20)))  # a new dip: urgent again
    with db() as session:
        rows = store.caseload_page(session, ["SCH1"], OPEN, None, 10).rows
    assert [row.pupil_id for row in rows] == ["R-1", "R-2"] and rows[0].tier == 3


def test_filters_and_scope(db, seeded, clock):
    with db() as session:
        def pupils(schools, **params):
            filters = store.CaseFilters.parse({k: str(v) for k, v in params.items()}, schools)
            return sorted(row.pupil_id for row in store.caseload_page(session, schools, filters, None, 50).rows)

        assert pupils(["SCH2"]) == ["B-1", "B-2"]  # only their schools
        assert pupils(["SCH1", "SCH2"], school="SCH2", tier=3) == ["B-1"]
        assert pupils(["SCH1"], tier=2) == ["A-3", "A-6", "A-7", "A-9"]
        assert pupils(["SCH1"], kind="health_needs") == []
        with pytest.raises(store.FilterError):
            store.CaseFilters.parse({"school": "SCH2"}, ["SCH1"])  # another school's filter is refused
        with pytest.raises(store.FilterError):
            store.CaseFilters.parse({"tier": "4"}, ["SCH1"])
        (case,) = session.scalars(select(PupilCase).where(PupilCase.pupil_id == "A-3")).all()
        store.record_outcome(session, case, action=OutcomeAction.ACKNOWLEDGED, role=StaffRole.FORM_TUTOR, note=None,
                             outcome_id="00000000-0000-4000-8000-0000000000a3", staff_id=None, now=clock())
        session.commit()
        assert pupils(["SCH1"], status="acknowledged") == ["A-3"]
        assert "A-3" not in pupils(["SCH1"], status="new")


def test_year_group_filter_from_the_names_file(db, seeded, tmp_path, clock):
    names = tmp_path / "names.csv"
    names.write_text("pseudonym,name,year_group,tutor_group\nA-1,Ada Testpupil,Y7,7R\nA-2,Ben Example,8,8K\n"
                     "A-3,Cy Sample,7,7R\n", encoding="utf-8")
    with db.begin() as session:
        assert import_names(session, names, clock()).imported == 3
    with db() as session:
        def pupils(year):
            filters = store.CaseFilters.parse({"year": year}, ["SCH1"])
            return sorted(row.pupil_id for row in store.caseload_page(session, ["SCH1"], filters, None, 50).rows)

        assert pupils("7") == ["A-1", "A-3"]
        assert pupils(store.UNKNOWN_YEAR) == ["A-4", "A-5", "A-6", "A-7", "A-8", "A-9"]
        page = store.caseload_page(session, ["SCH1"], OPEN, None, 50)
        assert page.year_groups == ["7", "8"]
        named = {row.pupil_id: (row.display_name, row.tutor_group) for row in page.rows}
        assert named["A-1"] == ("Ada Testpupil", "7R") and named["A-4"] == (None, None)


def test_headline_is_the_first_reason_of_the_latest_event(db, make_event, store_event):
    store_event(db, make_event(as_of=dt.date(2026, 10, 1), reasons=[("recent_drop", "older words")]))
    store_event(db, make_event(as_of=dt.date(2026, 10, 9), tier=2, reasons=[("consecutive_absence", "newer words")]))
    with db() as session:
        (row,) = store.caseload_page(session, ["SCH1"], OPEN, None, 10).rows
    assert row.headline == "newer words"


# -- names and accounts ---------------------------------------------------------------------------

def test_names_import_reports_bad_rows_by_line_without_their_content(db, tmp_path, clock):
    names = tmp_path / "names.csv"
    names.write_text("pseudonym,name,year_group,tutor_group\n"
                     "P-1,Dora Fictional,R,RB\n"
                     "Jane Smith,Jane Smith,7,7A\n"  # a name is not a pseudonym
                     "P-3,,7,7A\n"
                     "P-4,Eli Madeup,15,7A\n"
                     "P-1,Dora Renamed,1,1B\n", encoding="utf-8")
    with db.begin() as session:
        result = import_names(session, names, clock())
    assert result.imported == 1
    assert [line for line, _ in result.rejected] == [3, 4, 5]
    assert not any("Jane" in reason or "Eli" in reason for _, reason in result.rejected)
    with db() as session:
        entry = session.get(PupilName, "P-1")
    assert (entry.display_name, entry.year_group, entry.tutor_group) == ("Dora Renamed", "1", "1B")
    bad = tmp_path / "bad.csv"
    bad.write_text("upn,name\n", encoding="utf-8")
    with db() as session, pytest.raises(NamesFileError, match="header"):
        import_names(session, bad, clock())


LIMITS = auth.RateLimits(dt.timedelta(minutes=15), per_account=3, per_client=5)


def test_passwords_are_argon2_hashes_and_sign_in_checks_them(db, clock, add_staff):
    add_staff(db, "hoy.sch1", ["SCH1"])
    with db() as session:
        (stored,) = session.execute(select(auth.Staff.password_hash)).scalars().all()
    assert stored.startswith("$argon2id$") and "a long enough" not in stored
    with db.begin() as session:
        result, staff = auth.authenticate(session, "HOY.sch1", "a long enough test password", "10.0.0.1", LIMITS,
                                          clock())
        assert result is auth.SigninResult.OK and staff.username == "hoy.sch1"
        token = auth.start_session(session, staff, clock(), dt.timedelta(hours=8))
    with db.begin() as session:
        assert auth.session_staff(session, token, clock()).username == "hoy.sch1"
        assert auth.session_staff(session, token, clock() + dt.timedelta(hours=9)) is None  # expired
        auth.end_session(session, token)
    with db() as session:
        assert auth.session_staff(session, token, clock()) is None  # signed out


def test_sign_in_attempts_are_limited_per_account_and_per_client(db, clock, add_staff):
    add_staff(db, "hoy", ["SCH1"])

    def attempt(username, password, client):
        with db.begin() as session:
            return auth.authenticate(session, username, password, client, LIMITS, clock())[0]

    assert [attempt("hoy", "wrong", "10.0.0.1") for _ in range(3)] == [auth.SigninResult.WRONG] * 3
    # The account is held back even with the right password, from any client.
    assert attempt("hoy", "a long enough test password", "10.0.0.9") is auth.SigninResult.HELD_BACK
    # One client trying many accounts is held back too.
    assert [attempt(f"guess{i}", "x", "10.0.0.2") for i in range(5)] == [auth.SigninResult.WRONG] * 5
    assert attempt("someone-else", "x", "10.0.0.2") is auth.SigninResult.HELD_BACK
    clock.advance(minutes=16)  # the window passes
    assert attempt("hoy", "a long enough test password", "10.0.0.9") is auth.SigninResult.OK


def test_accounts_need_a_real_role_a_school_and_a_long_password(db, clock, add_staff):
    with pytest.raises(auth.AccountError, match="role"):
        add_staff(db, "x", ["SCH1"], role="truancy_officer")
    with pytest.raises(auth.AccountError, match="school"):
        add_staff(db, "x", [])
    with pytest.raises(auth.AccountError, match="12"):
        add_staff(db, "x", ["SCH1"], password="short")
    with pytest.raises(auth.AccountError, match="user name"):
        add_staff(db, "Jane Smith", ["SCH1"])
    add_staff(db, "x", ["SCH1"])
    with pytest.raises(auth.AccountError, match="exists"):
        add_staff(db, "X", ["SCH2"])


def test_outcome_payload_is_the_contract(db, make_event, store_event, clock):
    store_event(db, make_event())
    with db.begin() as session:
        (case,) = session.scalars(select(PupilCase)).all()
        row = store.record_outcome(session, case, action=OutcomeAction.ACKNOWLEDGED, role=StaffRole.FORM_TUTOR,
                                   note=None, outcome_id="6f3a2b1c-0000-4000-8000-00000000abcd", staff_id=None,
                                   now=clock())
    payload = json.loads(row.outcome_payload)
    assert payload == {"schema_version": 1, "outcome_id": "6f3a2b1c-0000-4000-8000-00000000abcd",
                       "pupil_id": "SCH1-P001", "school_id": "SCH1",
                       "intervention_event_id": make_event().event_id, "action": "acknowledged",
                       "recorded_at": "2026-12-01T09:30:00Z", "recorded_by_role": "form_tutor"}
