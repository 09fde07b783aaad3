"""The pure feature function, the alert policy and the explanations."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pytest

from models.explain import build_event, concern_reasons
from models.features import FEATURE_NAMES, features, summarise
from models.policy import DecisionKind, PolicyConfig, PolicyState, decide
from models.state import PupilState
from schemas.events import ACTION_TEXT, InterventionKind, ReasonCode, SupportAction, TIER_TEXT
from tests.conftest import MONDAY, pupil_marks

ENFORCEMENT = re.compile(r"\b(fines?|fined|penalt\w*|prosecut\w*|enforce\w*|magistrate\w*|court|sanction\w*)\b",
                         re.IGNORECASE)


def state_from(days, start=MONDAY) -> PupilState:
    marks = pupil_marks("P1", start, days)
    state = PupilState("SCH1", 126, marks[0].date)
    for m in marks:
        state.apply(m)
    return state


def test_counts_over_recent_possible_sessions():
    # 20 present days, then 5 days of N: the last 10 sessions all absent.
    stats = summarise(state_from([("/", "\\")] * 20 + [("N", "N")] * 5))
    assert (stats.possible_10, stats.attended_10) == (10, 0)
    assert (stats.possible_20, stats.attended_20) == (20, 10)
    assert (stats.possible_40, stats.attended_40) == (40, 30)
    assert (stats.possible_ytd, stats.attended_ytd) == (50, 40)
    assert stats.current_absence_run == 10
    assert stats.absence_spells_40 == 1
    assert stats.unauthorised_40 == 10
    assert stats.earlier_possible == 30 and stats.earlier_attended == 30


def test_not_possible_sessions_are_not_counted():
    stats = summarise(state_from([("/", "\\")] * 10 + [("Y1", "Y1")] * 3 + [("#", "#")] * 2))
    assert stats.possible_ytd == 20 and stats.attended_ytd == 20 and stats.current_absence_run == 0


def test_patterns_are_measured():
    # Four weeks: absent every Monday and Friday; late every other Wednesday morning.
    week = [("N", "N"), ("/", "\\"), ("L", "\\"), ("/", "\\"), ("N", "N")]
    stats, row = features(state_from([("/", "\\")] * 30 + week * 4))
    assert stats.monday_friday_absences_40 == stats.absences_40 == 16
    assert stats.late_20 == 2
    values = dict(zip(FEATURE_NAMES, row))
    assert values["monday_friday_excess_40"] == pytest.approx(0.6)
    assert values["am_pm_asymmetry_40"] == pytest.approx(0.0)


def test_missed_mornings_show_as_asymmetry():
    _, row = features(state_from([("/", "\\")] * 30 + [("U", "\\")] * 20))
    values = dict(zip(FEATURE_NAMES, row))
    assert values["am_pm_asymmetry_40"] == pytest.approx(1.0)


def test_full_week_recency():
    stats = summarise(state_from([("/", "\\")] * 10 + [("N", "\\")] * 10))
    assert stats.sessions_since_full_week == 20
    stats = summarise(state_from([("/", "\\")] * 10))
    assert stats.sessions_since_full_week == 0


def test_features_are_finite_for_a_brand_new_pupil():
    _, row = features(state_from([("/", "\\")]))
    assert len(row) == len(FEATURE_NAMES)
    assert np.all(np.isfinite(row))


CONFIG = PolicyConfig(enter_score=0.5, exit_score=0.2, tier2_score=0.7, tier3_score=0.9, cooldown_days=21,
                      escalation_gap_days=7, recovery_days=3, min_possible_sessions=20)


def run(scores, *, start=800_000, possible=100, short_rate=1.0):
    state = PolicyState()
    out = []
    for offset, score in enumerate(scores):
        out.append(decide(state, CONFIG, score, day=start + offset, possible_sessions=possible, recent_rate=0.7,
                          short_rate=short_rate))
    return out, state


def test_raises_once_not_every_day():
    decisions, _ = run([0.6] * 15)
    raised = [d for d in decisions if d]
    assert len(raised) == 1 and raised[0].kind is DecisionKind.CONCERN and raised[0].tier == 1


def test_hysteresis_no_flapping_between_thresholds():
    decisions, state = run([0.6, 0.4, 0.55, 0.3, 0.6, 0.45])
    assert sum(d is not None for d in decisions) == 1
    assert state.flagged


def test_escalation_needs_a_higher_tier_and_a_gap():
    decisions, _ = run([0.6, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95])
    kinds = [(i, d.tier, d.escalation) for i, d in enumerate(decisions) if d]
    assert kinds == [(0, 1, False), (7, 3, True)]


def test_recovery_emits_improving_then_cooldown():
    decisions, state = run([0.8, 0.1, 0.1, 0.1, 0.8, 0.8])
    events = [(i, d.kind) for i, d in enumerate(decisions) if d]
    assert events == [(0, DecisionKind.CONCERN), (3, DecisionKind.IMPROVING)]
    assert not state.flagged
    decisions, _ = run([0.8, 0.1, 0.1, 0.1] + [0.8] * 30)
    concern_days = [i for i, d in enumerate(decisions) if d and d.kind is DecisionKind.CONCERN]
    assert concern_days == [0, 24]  # 21 days after the improving event on day 3


def test_a_low_score_without_attendance_back_is_not_recovery():
    decisions, state = run([0.8] + [0.05] * 10, short_rate=0.6)
    assert [d.kind for d in decisions if d] == [DecisionKind.CONCERN]
    assert state.flagged


def test_no_alert_without_enough_evidence():
    decisions, _ = run([0.99] * 5, possible=10)
    assert not any(decisions)


def test_policy_state_round_trip():
    _, state = run([0.8])
    restored, offset = PolicyState.from_bytes(state.to_bytes(), 0)
    assert restored.to_bytes() == state.to_bytes() and offset == len(state.to_bytes())


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError):
        PolicyConfig(enter_score=0.5, exit_score=0.6)


def test_reasons_follow_the_contributions_and_quote_the_pupils_numbers():
    stats = summarise(state_from([("/", "\\")] * 30 + [("/", "N"), ("N", "N"), ("L", "\\"), ("N", "N"), ("N", "N")] * 2))
    weights = np.zeros(len(FEATURE_NAMES))
    weights[FEATURE_NAMES.index("drop_vs_baseline")] = 2.0
    weights[FEATURE_NAMES.index("current_absence_run")] = 1.0
    weights[FEATURE_NAMES.index("health_share_40")] = -3.0  # lowers risk: never a reason
    reasons = concern_reasons(weights, stats)
    assert [r.code for r in reasons] == [ReasonCode.RECENT_DROP, ReasonCode.CONSECUTIVE_ABSENCE]
    assert f"Attended {stats.attended_20} of the last 20 sessions" in reasons[0].text
    assert "down from 100% earlier this year" in reasons[0].text
    assert "missed the last 4 sessions in a row" in reasons[1].text


@pytest.mark.parametrize("feature, action", [
    ("late_rate_20", SupportAction.YOUNG_CARER_CONVERSATION),
    ("monday_friday_excess_40", SupportAction.WELLBEING_CHECK_IN),
    ("health_share_40", SupportAction.SCHOOL_NURSE_HEALTH_PLAN),
    ("current_absence_run", SupportAction.CALL_HOME_TO_LISTEN),
])
def test_actions_follow_the_pattern(feature, action):
    stats = summarise(state_from([("/", "\\")] * 30 + [("I", "I"), ("L", "\\"), ("N", "N"), ("N", "N"), ("N", "N")] * 2))
    weights = np.zeros(len(FEATURE_NAMES))
    weights[FEATURE_NAMES.index(feature)] = 1.0
    event = build_event(kind=InterventionKind.CONCERN, tier=3, escalation=False, score=0.9, pupil_id="P1",
                        school_id="SCH1", as_of=dt.date(2025, 10, 1), stats=stats, contributions=weights,
                        model_version="test", support_needs=frozenset({"sen"}))
    assert event.suggested_actions[0] is SupportAction.CHECK_IN_CONVERSATION
    assert action in event.suggested_actions
    assert SupportAction.SENCO_REVIEW in event.suggested_actions
    assert SupportAction.EARLY_HELP_CONVERSATION in event.suggested_actions  # tier 3


def test_event_ids_are_deterministic_and_distinct():
    stats = summarise(state_from([("/", "\\")] * 25))
    kwargs = dict(kind=InterventionKind.CONCERN, tier=1, escalation=False, score=0.6, pupil_id="P1",
                  school_id="SCH1", as_of=dt.date(2025, 10, 1), stats=stats,
                  contributions=np.ones(len(FEATURE_NAMES)), model_version="m1")
    assert build_event(**kwargs).event_id == build_event(**kwargs).event_id
    assert build_event(**kwargs).event_id != build_event(**{**kwargs, "tier": 2}).event_id


def test_no_vocabulary_can_express_enforcement():
    texts = [*ACTION_TEXT.values(), *TIER_TEXT.values(), *(a.value for a in SupportAction),
             *(r.value for r in ReasonCode)]
    for text in texts:
        assert not ENFORCEMENT.search(text.replace("_", " ")), text


def test_actions_follow_the_order_of_the_reasons_in_every_process():
    """Regression: actions were collected through a set, so their order changed with the
    process's string-hash seed and the stream and replay disagreed."""
    from models.explain import concern_actions
    from schemas.events import Reason

    stats = summarise(state_from([("/", "\\")] * 30))
    mf = Reason(code=ReasonCode.MONDAY_FRIDAY_PATTERN, text="x", weight=2.0)
    late = Reason(code=ReasonCode.LATE_MORNINGS, text="y", weight=1.0)
    assert concern_actions([mf, late], stats, 1) == [SupportAction.CHECK_IN_CONVERSATION,
                                                     SupportAction.WELLBEING_CHECK_IN,
                                                     SupportAction.YOUNG_CARER_CONVERSATION]
    assert concern_actions([late, mf], stats, 1) == [SupportAction.CHECK_IN_CONVERSATION,
                                                     SupportAction.YOUNG_CARER_CONVERSATION,
                                                     SupportAction.WELLBEING_CHECK_IN]


@pytest.mark.parametrize("explained_run, raised", [(0, True), (6, False), (10, False), (12, True)])
def test_a_short_explained_illness_is_waited_out(explained_run, raised):
    """A week of flu is not a dip: while the current absence is illness of at most ten sessions
    no new concern is raised; past that, it is."""
    state = PolicyState()
    decision = decide(state, CONFIG, 0.95, day=800_000, possible_sessions=100, recent_rate=0.5, short_rate=0.2,
                      explained_run=explained_run)
    assert (decision is not None) is raised
    assert state.flagged is raised


def test_explained_runs_only_count_when_the_whole_run_is_illness():
    from models.policy import explained_runs

    runs = explained_runs(np.array([0, 6, 6, 12]), np.array([0, 6, 5, 12]))
    assert runs.tolist() == [0, 6, 0, 12]
