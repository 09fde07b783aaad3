"""The pupil's year: the grid and chart agree with the worker's state and with the known marks.

The agreement test applies the same marks (duplicates, amendments, any order) to the worker's
`models.state.PupilState` and to the caseload's store (through the database) and requires the
same code for every session in the worker's window.
"""

from __future__ import annotations

import datetime as dt
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caseload import store
from caseload.chart import EventMark, attendance_chart
from caseload.register import (
    CellClass,
    PupilYearRecord,
    academic_year,
    attendance_series,
    code_breakdown,
    session_grid,
)
from models.state import OutsideWindowError, PupilState
from schemas.marks import Session

START = dt.date(2026, 9, 7)  # a Monday
WINDOW_DAYS = 126


def _worker_state(marks) -> PupilState:
    state = PupilState(marks[0].school_id, WINDOW_DAYS, max(m.date for m in marks))
    for mark in marks:
        try:
            state.apply(mark)
        except OutsideWindowError:
            pass  # the worker dead-letters it; the session is outside its window anyway
    return state


def _assert_agree(state: PupilState, years: dict[int, PupilYearRecord]) -> int:
    checked = 0
    for offset in range(WINDOW_DAYS):
        day = state.latest_date - dt.timedelta(days=offset)
        for session in (Session.AM, Session.PM):
            record = years.get(academic_year(day))
            ours = record.code_at(day, session) if record else None
            assert ours == state.code_at(day, session), f"{day} {session}"
            checked += ours is not None
    return checked


def test_store_agrees_with_the_worker_state_for_every_session_in_its_window(db, clock, make_mark, marks_for):
    codes = [("/", "\\"), ("N", "N"), ("/", "\\"), ("L", "\\"), ("I", "I"), ("/", "U"), ("C2", "C2"), ("V", "V"),
             ("/", "\\"), ("#", "#"), ("O", "O"), ("/", "\\")] * 5
    marks = marks_for("P1-AGREE", START, codes)
    day = marks[2].date
    marks += [make_mark("P1-AGREE", day, "AM", "I", recorded=f"{day}T12:00:00+00:00"),  # N amended to I at noon
              make_mark("P1-AGREE", day, "PM", "M", recorded=f"{day + dt.timedelta(days=1)}T08:00:00+00:00"),
              make_mark("P1-AGREE", day, "AM", "O", recorded=f"{day}T12:00:00+00:00")]  # same second: code order
    marks += marks[:40]  # redelivered
    random.Random(12).shuffle(marks)
    for start in range(0, len(marks), 37):  # several consumer batches
        with db.begin() as session:
            store.apply_marks(session, marks[start:start + 37], clock())
    with db() as session:
        years = store.pupil_years(session, "P1-AGREE")
    assert _assert_agree(_worker_state(marks), years) == 2 * len(codes)


pairs = st.sampled_from([("/", "\\"), ("N", "N"), ("I", "I"), ("L", "U"), ("G", "G"), ("M", "\\"), ("Y1", "Y1")])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(days=st.lists(pairs, min_size=1, max_size=30), amendments=st.lists(
    st.tuples(st.integers(0, 29), st.booleans(), st.sampled_from(["/", "I", "N", "O", "M", "C"]),
              st.integers(0, 90_000)),
    max_size=15), seed=st.integers(0, 10_000), redeliver=st.integers(0, 20))
def test_any_order_of_duplicates_and_amendments_gives_the_workers_codes(make_mark, marks_for, days, amendments,
                                                                       seed, redeliver):
    marks = marks_for("P1", START, days)
    session_days = sorted({m.date for m in marks})
    for index, pm, code, seconds in amendments:
        day = session_days[index % len(session_days)]
        stamp = dt.datetime.combine(day, dt.time(9), dt.timezone.utc) + dt.timedelta(seconds=seconds)
        marks.append(make_mark("P1", day, "PM" if pm else "AM", code, recorded=stamp))
    marks += marks[:redeliver]
    random.Random(seed).shuffle(marks)
    record = PupilYearRecord(academic_year(START))
    for mark in marks:
        record.apply(mark)
    _assert_agree(_worker_state(marks), {record.year: record})


def test_a_record_round_trips_through_its_stored_bytes(make_mark):
    record = PupilYearRecord(2025)
    record.apply(make_mark("P1", dt.date(2026, 7, 31), "PM", "N"))  # the year's last day fits
    copy = PupilYearRecord(2025, bytes(record.codes), record.stamps_bytes())
    assert copy.code_at(dt.date(2026, 7, 31), Session.PM) == "N"
    with pytest.raises(ValueError):
        record.apply(make_mark("P1", dt.date(2026, 8, 3), "AM", "/"))  # the next academic year


# -- the grid ---------------------------------------------------------------------------------------

def test_grid_has_a_row_per_week_and_cells_coloured_by_how_the_code_counts(make_mark, marks_for):
    record = PupilYearRecord(2026)
    for mark in marks_for("P1", START, [("/", "\\"), ("I", "I"), ("N", "U"), ("#", "#"), ("L", "V"), ("/", "\\")]):
        record.apply(mark)
    weeks = session_grid(record)
    assert [week.monday for week in weeks] == [START, START + dt.timedelta(days=7)]
    first = {(c.day.weekday(), c.session.value): c for c in weeks[0].cells}
    assert (first[(0, "AM")].code, first[(0, "AM")].css) == ("/", CellClass.ATTENDED)
    assert first[(1, "PM")].css is CellClass.AUTHORISED and first[(1, "PM")].code == "I"
    assert first[(2, "AM")].css is CellClass.UNAUTHORISED and first[(2, "PM")].css is CellClass.UNAUTHORISED  # U
    assert first[(3, "AM")].css is CellClass.NOT_POSSIBLE
    assert first[(4, "PM")].css is CellClass.ATTENDED  # V: an educational visit counts as attending
    assert "illness" in first[(1, "AM")].title and first[(1, "AM")].title.startswith("Tue 8 Sep AM: I")
    assert [c.css for c in weeks[1].cells[2:]] == [CellClass.NO_MARK] * 8
    breakdown = code_breakdown(record)
    assert ("/", "present (morning register)", 2) in breakdown and ("#", "planned whole-school closure", 2) in breakdown
    assert sum(count for _, _, count in breakdown) == 12 and breakdown[-1][2] == 1


def test_rolling_and_year_to_date_attendance_from_known_marks(marks_for):
    record = PupilYearRecord(2026)
    # 10 full days, then 5 days absent, then the school closed (not possible) for a day.
    for mark in marks_for("P1", START, [("/", "\\")] * 10 + [("N", "N")] * 5 + [("#", "#")]):
        record.apply(mark)
    series = attendance_series(record)
    assert len(series) == 15  # the closed day has no possible session
    assert [p.rolling for p in series[:4]] == [None, None, None, None]  # too few sessions to say
    assert series[4].rolling == 1.0 and series[9].rolling == 1.0
    assert series[12].rolling == pytest.approx(14 / 20)  # last 20 possible: 14 present, 6 absent
    assert series[14].rolling == pytest.approx(10 / 20)
    assert series[14].year_to_date == pytest.approx(20 / 30) and series[14].possible_ytd == 30


def test_chart_draws_the_series_the_targets_and_the_alerts(marks_for):
    record = PupilYearRecord(2026)
    for mark in marks_for("P1", START, [("/", "\\")] * 10 + [("N", "N")] * 5):
        record.apply(mark)
    series = attendance_series(record)
    svg = attendance_chart(series, earlier_level=0.85, events=[EventMark(dt.date(2026, 9, 24), "concern, tier 2")])
    rolling = re.search(r'data-series="rolling" points="([^"]+)"', svg).group(1).split()
    assert len(rolling) == sum(p.rolling is not None for p in series)
    ys = [float(point.split(",")[1]) for point in rolling]
    assert ys[0] == ys[5] and ys[-1] > ys[5]  # flat at 100%, then falling (SVG y grows downwards)
    assert 'data-series="target"' in svg and 'data-rate="0.8500"' in svg and "concern, tier 2" in svg
    assert "<script" not in svg
    assert "nothing to chart" in attendance_chart([], earlier_level=None, events=[])
