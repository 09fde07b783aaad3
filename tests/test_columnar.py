"""The columnar replay (models.columnar) against the engine it must equal: the same features for
every mark that changes a record, the same final states, the same refusals, outcomes and
interventions, on cohorts with duplicates, amendments, late corrections, out-of-order rows and
marks older than the window (hypothesis-generated, simulated and crafted)."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.artifact import load_model
from models.columnar import MarkColumns, recording_key, register_year, replay_columns
from models.engine import DecisionEngine, concern_candidates, concern_due
from models.evaluation.run import OFFLINE_LIMITS
from models.features import summarise
from models.history import RegisterHistory
from models.policy import PolicyConfig, PolicyInputs, PolicyState, can_raise, concern_tier
from models.state import ApplyOutcome, OutsideWindowError, PupilState
from schemas.codes import CODES
from schemas.interchange import read_marks
from schemas.marks import RegisterMark, Session
from schemas.recording import RECORDING_EPOCH, supersedes

WINDOW = 42  # short, so that late corrections fall outside it


@pytest.fixture(scope="module")
def model(model_path):
    return load_model(model_path)


def mark(pupil: str, day: dt.date, pm: bool, code: str, recorded: dt.datetime, school: str = "SCH1") -> RegisterMark:
    return RegisterMark.from_checked(schema_version=1, school_id=school, pupil_id=pupil, date=day,
                                     session=Session.PM if pm else Session.AM, code=code, recorded_at=recorded,
                                     original_code=None)


def engine_replay(engine: DecisionEngine, marks: list[RegisterMark], batch_sizes: list[int]):
    """The engine over the marks in file order, in micro-batches of the given sizes (cycled)."""
    states: dict[str, PupilState] = {}
    events, rejected, outcomes = [], [], {}
    begin, turn = 0, 0
    while begin < len(marks):
        size = batch_sizes[turn % len(batch_sizes)]
        result = engine.process(marks[begin:begin + size], states)
        events += [(begin + index, event) for event, index in zip(result.events, result.event_marks)]
        rejected += [(begin + index, rejection.reason, rejection.detail) for index, rejection in result.rejected]
        for outcome, count in result.outcomes.items():
            outcomes[outcome.value] = outcomes.get(outcome.value, 0) + count
        begin += size
        turn += 1
    return events, rejected, {k: v for k, v in outcomes.items() if v}, states


def assert_same_replay(engine: DecisionEngine, marks: list[RegisterMark], batch_sizes=(7, 2, 50)) -> object:
    columns = MarkColumns.from_marks(marks)
    fast = replay_columns(engine, columns)
    events, rejected, outcomes, states = engine_replay(engine, marks, list(batch_sizes))
    assert [(row, e.model_dump()) for row, e in zip(fast.event_rows, fast.events)] == [
        (row, e.model_dump()) for row, e in events]
    assert [(row, r.reason, r.detail) for row, r in fast.rejected] == rejected
    assert dict(fast.outcomes) == outcomes
    assert fast.states is not None and set(fast.states) == set(states)
    assert all(fast.states[pupil].to_bytes() == state.to_bytes() for pupil, state in states.items())
    assert fast.applied.sum() == len(marks) - len(rejected)
    return fast


def oracle_windows(marks: list[RegisterMark], window: int) -> dict[int, dict]:
    """The straightforward counts: apply the marks one at a time; after each that changes a
    record, the pupil's state summarised on its own."""
    states: dict[str, PupilState] = {}
    found = {}
    for row, m in enumerate(marks):
        state = states.setdefault(m.pupil_id, PupilState(m.school_id, window, m.date))
        try:
            outcome = state.apply(m)
        except OutsideWindowError:
            continue
        if outcome in (ApplyOutcome.NEW, ApplyOutcome.AMENDED):
            found[row] = summarise(state).model_dump()
    return found


# -- cohorts ------------------------------------------------------------------------------------
CODES_DRAWN = ["/", "\\", "/", "\\", "/", "\\", "N", "I", "L", "M", "G", "C", "U", "O", "#", "E", "C2", "B"]


@st.composite
def cohorts(draw) -> list[RegisterMark]:
    """A few pupils' registers in register order, then: duplicates, amendments the same day, late
    corrections (some older than the window by then), a register taken late (out of date order),
    leave entered ahead, the pupils interleaved."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    pupils = draw(st.integers(1, 4))
    start = dt.date(2025, 7, 7) + dt.timedelta(days=draw(st.integers(0, 60)))  # some cross 1 August
    streams = []
    for p in range(pupils):
        pupil = f"P{p:03d}"
        days = draw(st.integers(15, 70))
        dip_from = draw(st.integers(0, days))
        dip_code = draw(st.sampled_from(["N", "I", "O", "/"]))
        school = draw(st.sampled_from(["SCH1", "SCH2"]))
        rows: list[RegisterMark] = []
        day = start
        for d in range(days):
            day += dt.timedelta(days=1 if day.weekday() < 4 else 3)
            for pm in (False, True):
                code = dip_code if d >= dip_from and rng.random() < 0.8 else rng.choice(CODES_DRAWN)
                at = dt.datetime.combine(day, dt.time(8 + 5 * pm, rng.randrange(60)), dt.timezone.utc)
                rows.append(mark(pupil, day, pm, code, at, school if d < days // 2 else "SCH3"))
        events = list(rows)
        for _ in range(rng.randrange(0, 12)):  # amendments: later the same day, or weeks later
            original = rng.choice(rows)
            later = dt.timedelta(hours=rng.choice([1, 3])) if rng.random() < 0.6 else dt.timedelta(days=rng.randrange(1, 90))
            amended = mark(pupil, original.date, original.session is Session.PM, rng.choice(CODES_DRAWN),
                           original.recorded_at + later, original.school_id)
            position = min(len(events), events.index(original) + 1 + rng.randrange(0, 6 + later.days * 2))
            events.insert(position, amended)
        for _ in range(rng.randrange(0, 6)):  # redelivered, soon or much later
            again = rng.randrange(len(events))
            events.insert(rng.randrange(again + 1, len(events) + 1), events[again])
        if rng.random() < 0.25 and len(events) > 4:  # one register taken late: out of date order
            i = rng.randrange(1, len(events) - 1)
            events.insert(rng.randrange(i, len(events)), events.pop(i))
        if rng.random() < 0.15:  # leave entered ahead of the days between
            ahead = rows[-1].date + dt.timedelta(days=rng.randrange(1, 20))
            events.insert(rng.randrange(len(events)), mark(pupil, ahead, False, "G",
                                                           dt.datetime.combine(start, dt.time(7), dt.timezone.utc)))
        streams.append(events)
    # Interleave the pupils, keeping each pupil's own order.
    merged: list[RegisterMark] = []
    cursors = [0] * len(streams)
    while any(c < len(s) for c, s in zip(cursors, streams)):
        choice = rng.choice([i for i, s in enumerate(streams) if cursors[i] < len(s)])
        merged.append(streams[choice][cursors[choice]])
        cursors[choice] += 1
    return merged


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cohorts())
def test_columnar_replay_equals_the_engine_on_generated_cohorts(model, marks):
    engine = DecisionEngine(model, window_days=WINDOW)
    assert_same_replay(engine, marks)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cohorts())
def test_columnar_features_equal_the_state_summarised_mark_by_mark(model, marks):
    engine = DecisionEngine(model, window_days=WINDOW)
    fast = replay_columns(engine, MarkColumns.from_marks(marks), keep_features=True)
    expected = oracle_windows(marks, WINDOW)
    seen = {row: fast.windows.row(i).model_dump() for i, row in enumerate(fast.window_rows)}
    # Pupils replayed by the engine have no columnar windows; every other changed mark has one.
    engine_pupils = {m.pupil_id for m in marks} - {marks[row].pupil_id for row in fast.window_rows}
    assert seen == {row: counts for row, counts in expected.items() if marks[row].pupil_id not in engine_pupils}
    assert len(engine_pupils) == fast.engine_pupils


def test_out_of_order_pupils_are_replayed_by_the_engine_and_still_equal(model, make_pupil_marks):
    late_register = make_pupil_marks("P1", dt.date(2025, 9, 8), [("/", "\\")] * 30 + [("N", "N")] * 12)
    late_register.insert(40, late_register.pop(20))  # a morning's register sent a week late
    in_order = make_pupil_marks("P2", dt.date(2025, 9, 8), [("/", "\\")] * 30 + [("N", "N")] * 12)
    fast = assert_same_replay(DecisionEngine(model, window_days=126), late_register + in_order)
    assert (fast.engine_pupils, fast.columnar_pupils) == (1, 1)
    assert fast.events, "the dips raise concerns"


def test_a_correction_older_than_the_window_is_refused_in_columns_as_by_the_engine(model, make_pupil_marks):
    marks = make_pupil_marks("P1", dt.date(2025, 9, 8), [("/", "\\")] * 30 + [("N", "N")] * 15)
    first = marks[0]
    late = mark("P1", first.date, False, "I", first.recorded_at + dt.timedelta(days=70))  # the window is 42 days
    soon = mark("P1", marks[61].date, True, "I", marks[61].recorded_at + dt.timedelta(hours=3))
    fast = assert_same_replay(DecisionEngine(model, window_days=WINDOW), marks + [soon, late])
    assert fast.engine_pupils == 0 and [row for row, _ in fast.rejected] == [len(marks) + 1]
    assert fast.outcomes["amended"] == 1


@pytest.mark.slow
def test_a_simulated_year_with_amendments_gives_identical_events_states_and_register(model, tmp_path):
    from models.simulator.generate import SimulationConfig, simulate_year

    path = tmp_path / "marks.csv"
    simulate_year(SimulationConfig(schools=1, pupils_per_school=60, seed=11), marks_path=path)
    rows = [row for row in read_marks(path, limits=OFFLINE_LIMITS) if row.mark is not None]
    marks = [row.mark for row in rows]
    fast = assert_same_replay(DecisionEngine(model, window_days=126), marks, batch_sizes=(1000,))
    assert fast.outcomes["amended"] > 0 and len(fast.events) > 0
    history = RegisterHistory()
    history.record_many(marks)
    expected = history.finish()
    got = register_year(MarkColumns.from_marks(marks), fast.applied)
    assert got.pupils == expected.pupils and list(got.schools) == list(expected.schools)
    assert np.array_equal(got.days, expected.days) and np.array_equal(got.codes, expected.codes)


def test_the_crafted_cohort_with_bad_rows_replays_the_same(model, crafted_csv):
    rows = [row for row in read_marks(crafted_csv()) if row.mark is not None]
    assert_same_replay(DecisionEngine(model, window_days=126), [row.mark for row in rows], batch_sizes=(13, 250))


@pytest.mark.parametrize("chunk_marks", [1, 150])
def test_pupils_taken_in_many_chunks_replay_as_in_one(model, crafted_csv, monkeypatch, chunk_marks):
    import models.columnar

    marks = [row.mark for row in read_marks(crafted_csv()) if row.mark is not None]
    whole = replay_columns(DecisionEngine(model, window_days=126), MarkColumns.from_marks(marks))
    monkeypatch.setattr(models.columnar, "CHUNK_MARKS", chunk_marks)
    chunked = assert_same_replay(DecisionEngine(model, window_days=126), marks, batch_sizes=(13, 250))
    assert [e.model_dump() for e in chunked.events] == [e.model_dump() for e in whole.events]
    assert chunked.event_rows == whole.event_rows and np.array_equal(chunked.applied, whole.applied)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 255), st.integers(0, 2**32 - 1), st.integers(1, 255))
def test_the_recording_key_orders_recordings_as_supersedes_does(stamp, code, held_stamp, held_code):
    assert supersedes(stamp, code, held_stamp, held_code) == bool(
        recording_key(stamp, code) > recording_key(held_stamp, held_code))


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_concern_candidates_and_due_are_exactly_where_a_never_alerted_pupil_can_be_raised(data):
    config = PolicyConfig()
    n = data.draw(st.integers(1, 30))
    ints = st.lists(st.integers(0, 60), min_size=n, max_size=n)
    rates = st.lists(st.sampled_from([0.0, 0.5, 0.85, 0.89999, 0.9, 0.95, 1.0]), min_size=n, max_size=n)
    flags = st.lists(st.booleans(), min_size=n, max_size=n)
    columns = {
        "day": np.full(n, dt.date(2025, 11, 3).toordinal()), "year": np.full(n, 2025),
        "possible_ytd": np.array(data.draw(ints)) , "recent_rate": np.array(data.draw(rates)),
        "short_rate": np.array(data.draw(rates)), "unarranged_rate": np.array(data.draw(rates)),
        "rate_20": np.array(data.draw(rates)), "rate_40": np.array(data.draw(rates)),
        "possible_40": np.array(data.draw(ints)), "current_run": np.array(data.draw(ints)),
        "health_absence": np.array(data.draw(flags)), "known_run": np.array(data.draw(ints)),
        "unexplained_run": np.array(data.draw(ints)), "one_block": np.array(data.draw(flags)),
        "health_absence_ytd": np.array(data.draw(ints)), "usual_rate": np.array(data.draw(rates)),
        "earlier_rate": np.array(data.draw(rates)),
        "same_weekday_days": np.array(data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))),
        "day_end": np.array(data.draw(flags)),
    }
    inputs = PolicyInputs(columns)
    mask = concern_candidates(inputs, config)
    assert [bool(m) for m in mask] == [can_raise(PolicyState(), config, inputs.row(i)) for i in range(n)]
    scores = np.array(data.draw(st.lists(st.sampled_from([np.nan, 0.0, 0.3, config.enter_score,
                                                           np.nextafter(config.enter_score, 0), config.tier2_score,
                                                           config.tier3_score, 0.99]), min_size=n, max_size=n)))
    due = concern_due(inputs, config, scores)
    assert [bool(d) for d in due] == [concern_tier(config, float(scores[i]), inputs.row(i)) > 0 for i in range(n)]


def test_columns_rebuild_the_marks_the_engine_takes(make_pupil_marks):
    marks = make_pupil_marks("P1", dt.date(2025, 9, 8), [("/", "\\"), ("I", "N")])
    columns = MarkColumns.from_marks(marks)
    for i, original in enumerate(marks):
        rebuilt = columns.mark(i)
        assert (rebuilt.pupil_id, rebuilt.school_id, rebuilt.date, rebuilt.session, rebuilt.code) == (
            original.pupil_id, original.school_id, original.date, original.session, original.code)
        assert rebuilt.recorded_at == original.recorded_at.replace(microsecond=0)
        assert rebuilt.recorded_at > RECORDING_EPOCH and CODES[rebuilt.code].index == columns.code[i]


def test_the_cycle_collector_is_off_inside_a_chunk_and_back_on_however_it_ends(model, crafted_csv, monkeypatch):
    import gc

    import models.columnar

    marks = [row.mark for row in read_marks(crafted_csv()) if row.mark is not None]
    seen: list[bool] = []
    walk = models.columnar._walk  # noqa: SLF001

    def watched(*args, **kwargs):
        seen.append(gc.isenabled())
        return walk(*args, **kwargs)

    monkeypatch.setattr(models.columnar, "_walk", watched)
    assert gc.isenabled()
    replay_columns(DecisionEngine(model, window_days=126), MarkColumns.from_marks(marks))
    assert seen and not any(seen) and gc.isenabled()

    def broken(*args, **kwargs):
        raise RuntimeError("a defect in a chunk")

    monkeypatch.setattr(models.columnar, "_walk", broken)
    with pytest.raises(RuntimeError):
        replay_columns(DecisionEngine(model, window_days=126), MarkColumns.from_marks(marks))
    assert gc.isenabled()
    gc.disable()  # a caller that had it off finds it off
    try:
        monkeypatch.setattr(models.columnar, "_walk", walk)
        replay_columns(DecisionEngine(model, window_days=126), MarkColumns.from_marks(marks))
        assert not gc.isenabled()
    finally:
        gc.enable()
