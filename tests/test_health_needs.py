"""The `health_needs` event: 15 school days of illness this year, in a row or added up, once a year,
counted across the state window; the year-to-date illness count in the changelog record."""

from __future__ import annotations

import datetime as dt
import re
import struct

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from devtools.registers import MONDAY, pupil_marks
from models.artifact import RiskModel
from models.engine import DecisionEngine
from models.features import FEATURE_NAMES, summarise
from models.policy import PolicyConfig, PolicyState
from models.state import FORMAT_VERSION, PupilState
from schemas.events import (
    HEALTH_NEEDS_TIER_TEXT,
    InterventionEvent,
    InterventionKind,
    Tier,
)

PRESENT = ("/", "\\")
ILL = ("I", "I")
ENFORCEMENT = re.compile(r"\b(fines?|fined|penalt\w*|prosecut\w*|enforce\w*|magistrate\w*|court|sanction\w*)\b",
                         re.IGNORECASE)


@pytest.fixture(scope="module")
def engine_factory():
    """Engines over a model that never scores a dip: health needs do not depend on the score."""
    y = np.zeros(10, dtype=int)
    y[0] = 1
    pipeline = Pipeline([("classify", DummyClassifier(strategy="prior"))]).fit(np.zeros((10, len(FEATURE_NAMES))), y)
    model = RiskModel(pipeline=pipeline, version="quiet", policy=PolicyConfig(),
                      reference=np.zeros(len(FEATURE_NAMES)))
    return lambda: DecisionEngine(model, window_days=126)


def health_events(engine, days, start=MONDAY, states=None):
    states = {} if states is None else states
    marks = pupil_marks("P1", start, days)
    events = []
    for i in range(0, len(marks), 2):
        events += [e for e in engine.process(marks[i:i + 2], states).events if e.kind is InterventionKind.HEALTH_NEEDS]
    return events, marks, states


def test_fifteen_days_added_up_from_short_spells(engine_factory):
    spell = [ILL] * 3 + [PRESENT] * 7  # five separate three-day illnesses: 15 days in all
    events, marks, _ = health_events(engine_factory(), spell * 5 + [PRESENT] * 10)
    [event] = events
    fifteenth = [m.date for m in marks if m.code == "I"][-1]
    assert event.as_of == fifteenth
    assert event.window.health_absence_ytd == 30


def test_once_a_year_then_again_the_next_year(engine_factory):
    engine = engine_factory()
    first, _, states = health_events(engine, [PRESENT] * 5 + [ILL] * 20, start=dt.date(2025, 1, 6))
    later, _, states = health_events(engine, [PRESENT] * 5 + [ILL] * 16, start=dt.date(2025, 3, 3), states=states)
    assert len(first) == 1 and later == []
    assert states["P1"].policy.health_needs_year == 2024
    next_year, _, _ = health_events(engine, [ILL] * 16, start=MONDAY, states=states)  # September 2025
    assert len(next_year) == 1 and next_year[0].as_of == dt.date(2025, 9, 26)


def test_illness_older_than_the_window_still_counts(engine_factory):
    """Ten days in September, the window (126 days) slides past them, five more in spring."""
    days = [PRESENT] * 5 + [ILL] * 10 + [PRESENT] * 100 + [ILL] * 6
    events, marks, states = health_events(engine_factory(), days)
    state = states["P1"]
    assert state.folded_health == 20, "the September illness was folded into the year's count"
    [event] = events
    assert event.as_of == [m.date for m in marks if m.code == "I"][29]  # the 30th illness session


def test_medical_appointments_count_other_absence_does_not(engine_factory):
    events, _, _ = health_events(engine_factory(), [PRESENT] * 5 + [("M", "I")] * 15)
    assert len(events) == 1
    events, _, _ = health_events(engine_factory(), [PRESENT] * 5 + [("O", "I")] * 20)
    assert events == []  # 20 sessions of illness, not 30


def test_the_event_is_supportive_and_fits_the_contract(engine_factory):
    [event], _, _ = health_events(engine_factory(), [PRESENT] * 5 + [ILL] * 15)
    assert event.tier is Tier.CLEAR_DIP and event.tier_text == HEALTH_NEEDS_TIER_TEXT
    assert InterventionEvent.model_validate_json(event.model_dump_json()) == event
    texts = [event.tier_text, *(r.text for r in event.reasons), *event.suggested_actions_text]
    assert not any(ENFORCEMENT.search(text) for text in texts)
    assert event.event_id == InterventionEvent.make_id("P1", event.as_of, InterventionKind.HEALTH_NEEDS, 2)


def test_state_record_keeps_the_year_count_and_the_event(engine_factory):
    _, _, states = health_events(engine_factory(), [PRESENT] * 5 + [ILL] * 10 + [PRESENT] * 100 + [ILL] * 6)
    state = states["P1"]
    restored = PupilState.from_bytes(state.to_bytes())
    assert restored == state and restored.folded_health == state.folded_health
    assert restored.policy.health_needs_year == 2025
    assert summarise(restored).health_absence_ytd == summarise(state).health_absence_ytd == 32


def version_2_record(state: PupilState) -> bytes:
    """The record as format 2 wrote it: no folded illness, a shorter policy struct."""
    school = state.school_id.encode()
    policy = state.policy
    return b"".join((
        struct.pack("<BHiiIIH", 2, state.window_days, state.origin, state.year, state.folded_possible,
                    state.folded_attended, len(school)),
        school,
        struct.pack("<BBiBiBBB", policy.flagged, policy.tier, policy.last_alert, policy.low_days, policy.last_low,
                    policy.alert_rate_pct, policy.plan_open, policy.alert_reason),
        bytes(state.codes), state.stamps.tobytes(),
    ))


def test_a_version_2_record_still_loads():
    state = PupilState("SCH1", 126, MONDAY)
    for m in pupil_marks("P1", MONDAY, [PRESENT, ILL, ("N", "/")] * 10):
        state.apply(m)
    state.policy = PolicyState()
    state.policy.flagged, state.policy.tier, state.policy.last_alert = True, 2, MONDAY.toordinal()
    old = PupilState.from_bytes(version_2_record(state))
    assert FORMAT_VERSION > 2
    assert old.sessions() == state.sessions() and old.folded_health == 0
    assert (old.policy.flagged, old.policy.tier, old.policy.health_needs_year) == (True, 2, 0)
    assert PupilState.from_bytes(old.to_bytes()) == old  # written back in the current format
