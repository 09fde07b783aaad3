"""The outcome contract and the `reconnect outcomes` before/after report, on a hand-made CSV with
answers worked out by hand."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re

import pytest
from pydantic import ValidationError

from devtools.registers import school_days
from models.outcomes import (
    action_date,
    format_report,
    load_outcomes,
    outcomes_report,
    report_from_files,
)
from schemas.interchange import read_marks
from schemas.outcomes import OutcomeAction, OutcomeEvent, StaffRole

START = dt.date(2025, 9, 8)  # a Monday
DAYS = list(school_days(START, 45))
ENFORCEMENT = re.compile(r"fine|penalt|prosecut|enforce|court|sanction|legal", re.IGNORECASE)


def outcome(pupil: str, action: str, day: dt.date, *, hour: str = "10:00", **extra) -> OutcomeEvent:
    return OutcomeEvent.from_request({"pupil_id": pupil, "school_id": "SCH1", "action": action,
                                      "recorded_at": f"{day.isoformat()}T{hour}:00+00:00",
                                      "recorded_by_role": "head_of_year", **extra})


def write_marks(path, rows) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["school_id", "pupil_id", "date", "session", "code", "recorded_at"])
        writer.writerows(rows)


def day_rows(pupil: str, codes: dict[int, tuple[str, str]]) -> list[list[str]]:
    """Present every day unless `codes` says otherwise for a day index."""
    rows = []
    for i, day in enumerate(DAYS):
        am, pm = codes.get(i, ("/", "\\"))
        rows.append(["SCH1", pupil, day.isoformat(), "AM", am, f"{day}T09:00:00+00:00"])
        rows.append(["SCH1", pupil, day.isoformat(), "PM", pm, f"{day}T13:30:00+00:00"])
    return rows


@pytest.fixture
def files(tmp_path):
    rows = []
    # P1: spoke_with_family on day 22. Before = days 2..21: 2..11 present, 12..21 absent -> 20/40.
    #     After = days 23..42: only day 23 AM absent -> 39/40.
    rows += day_rows("P1", {**{i: ("N", "N") for i in range(12, 22)}, 23: ("N", "\\")})
    # P2: support_plan_started on day 22. Before: 4 days ill (I) among days 2..21 -> 32/40.
    #     Day 25 is a planned closure (#, not possible): it is not a school day, so the after-window
    #     is days 23..43 without 25 (day 44, absent, is outside): one absent AM on day 30 -> 39/40.
    #     Day 24 AM was recorded N then amended to present later: the amendment wins.
    p2 = day_rows("P2", {3: ("I", "I"), 5: ("I", "I"), 7: ("I", "I"), 9: ("I", "I"), 25: ("#", "#"),
                         30: ("N", "\\"), 24: ("N", "\\"), 44: ("N", "N")})
    p2.append(["SCH1", "P2", DAYS[24].isoformat(), "AM", "/", f"{DAYS[24]}T11:00:00+00:00"])
    rows += p2
    # P3: acknowledged on day 40: only 4 school days after -> pending.
    rows += day_rows("P3", {})
    # P4: closed on day 5: 5 school days before -> short history.
    rows += day_rows("P4", {})
    # P5: spoke_with_family on day 21. Before = days 1..20: all present -> 40/40.
    #     After = days 22..41: 10 whole days absent -> 20/40 (a worsening).
    rows += day_rows("P5", {i: ("N", "N") for i in range(30, 40)})
    marks = tmp_path / "marks.csv"
    write_marks(marks, rows)
    events = [
        outcome("P1", "spoke_with_family", DAYS[22]),
        outcome("P1", "spoke_with_family", DAYS[22]),  # re-sent: same derived id, counted once
        outcome("P2", "support_plan_started", DAYS[22], intervention_event_id="4d9b5c1e-2f7a-5c83-9e61-0b2d4f6a8c10"),
        outcome("P3", "acknowledged", DAYS[40]),
        outcome("P4", "closed", DAYS[5]),
        outcome("P5", "spoke_with_family", DAYS[21]),
        outcome("NOMARKS", "acknowledged", DAYS[10]),
    ]
    outcomes_path = tmp_path / "outcomes.jsonl"
    outcomes_path.write_text("".join(e.to_wire().decode() + "\n" for e in events))
    return marks, outcomes_path, events


def test_before_after_report_has_the_hand_worked_answers(files):
    marks, outcomes_path, events = files
    report = report_from_files(outcomes_path, marks)
    by = report.by_action()
    assert report.days == 20 and report.duplicates == 1 and report.no_marks == 1

    spoke = by[OutcomeAction.SPOKE_WITH_FAMILY]
    assert (spoke.outcomes, spoke.included, spoke.pupils) == (2, 2, 2)
    assert (spoke.attended_before, spoke.possible_before) == (20 + 40, 80)
    assert (spoke.attended_after, spoke.possible_after) == (39 + 20, 80)
    assert (spoke.improved, spoke.worsened, spoke.unchanged) == (1, 1, 0)
    assert spoke.rate_before == pytest.approx(60 / 80) and spoke.rate_after == pytest.approx(59 / 80)
    assert spoke.change_points == pytest.approx(100 * (59 - 60) / 80)

    plan = by[OutcomeAction.SUPPORT_PLAN_STARTED]
    assert (plan.included, plan.attended_before, plan.possible_before) == (1, 32, 40)
    assert (plan.attended_after, plan.possible_after) == (39, 40)
    assert plan.change_points == pytest.approx(100 * (39 - 32) / 40)

    ack = by[OutcomeAction.ACKNOWLEDGED]
    assert (ack.outcomes, ack.included, ack.pending, ack.possible_before) == (2, 0, 2, 0)  # P3 recent, NOMARKS
    closed = by[OutcomeAction.CLOSED]
    assert (closed.outcomes, closed.included, closed.short_history, closed.rate_before) == (1, 0, 1, None)
    assert by[OutcomeAction.SUPPORT_PLAN_CLOSED].outcomes == 0

    windows = {w.pupil_id: w for w in report.windows}
    assert windows["P2"].after.school_days == 20 and windows["P2"].before.school_days == 20
    assert windows["P3"].after.school_days == 4 and windows["P3"].status == "pending"

    text = format_report(report)
    assert "spoke_with_family" in text and "not causal" in text
    document = report.as_dict()
    assert json.loads(json.dumps(document))["actions"][0]["action"] == "acknowledged"


def test_window_length_is_a_parameter(files):
    marks, outcomes_path, _ = files
    outcomes = load_outcomes(outcomes_path)
    parsed = [row.mark for row in read_marks(marks) if row.mark is not None]
    report = outcomes_report(outcomes, parsed, days=5)
    plan = report.by_action()[OutcomeAction.SUPPORT_PLAN_STARTED]
    # Before = days 17..21, all present: 10/10. After = days 23, 24 (amended to present), 26, 27, 28: 10/10.
    assert (plan.attended_before, plan.possible_before, plan.attended_after, plan.possible_after) == (10, 10, 10, 10)
    ack = report.by_action()[OutcomeAction.ACKNOWLEDGED]
    assert (ack.included, ack.pending) == (0, 2)  # P3 on day 40 has 4 school days after it: still pending
    closed = report.by_action()[OutcomeAction.CLOSED]
    assert (closed.included, closed.attended_before, closed.possible_before) == (1, 10, 10)  # day 5 has 5 before


def test_action_date_is_the_school_local_date():
    # 23:30 UTC on a September day is 00:30 the next day in London (BST).
    late = outcome("P1", "closed", dt.date(2025, 9, 8), hour="23:30")
    assert action_date(late) == dt.date(2025, 9, 9)
    winter = outcome("P1", "closed", dt.date(2025, 12, 8), hour="23:30")
    assert action_date(winter) == dt.date(2025, 12, 8)


def test_outcome_contract_is_supportive_and_never_identifying():
    assert {a.value for a in OutcomeAction} == {"acknowledged", "spoke_with_family", "support_plan_started",
                                                "support_plan_closed", "closed"}
    for value in [a.value for a in OutcomeAction] + [r.value for r in StaffRole]:
        assert not ENFORCEMENT.search(value)
    base = {"pupil_id": "P1", "school_id": "SCH1", "recorded_at": "2025-10-01T10:00:00Z",
            "recorded_by_role": "pastoral_lead"}
    for bad in ({"action": "fine_issued"}, {"action": "closed", "recorded_by_role": "Mrs Jones"},
                {"action": "closed", "pupil_id": "Jane Smith"}, {"action": "closed", "note": "x" * 281},
                {"action": "closed", "note": "ring mum on 07700 900123"},
                {"action": "closed", "note": "emailed jo@example.org"},
                {"action": "closed", "schema_version": 2}):
        with pytest.raises(ValidationError):
            OutcomeEvent.from_request({**base, **bad})
    # Idempotency: the derived id depends on content only; a client-supplied id is kept.
    one = OutcomeEvent.from_request({**base, "action": "acknowledged"})
    two = OutcomeEvent.from_request({**base, "action": "acknowledged", "recorded_at": "2025-10-01T11:00:00+01:00"})
    assert one.outcome_id == two.outcome_id  # the same instant
    assert OutcomeEvent.from_request({**base, "action": "acknowledged", "outcome_id": "client-key-1"}).outcome_id \
        == "client-key-1"
    # Unknown extra fields are dropped, never carried onward (e.g. a name someone added).
    extra = OutcomeEvent.from_request({**base, "action": "closed", "pupil_name": "Jane"})
    assert "pupil_name" not in extra.to_wire().decode()
    assert OutcomeEvent.model_validate_json(extra.to_wire()) == extra
