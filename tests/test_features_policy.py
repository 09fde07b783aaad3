"""The pure feature function, the alert policy and the explanations."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pytest

from devtools import registers
from devtools.registers import MONDAY, pupil_marks
from devtools.registers import pupil_state as state_from
from models.engine import DecisionEngine
from models.explain import build_event, concern_actions, concern_reasons
from models.features import FEATURE_NAMES, features, summarise
from models.policy import PolicyConfig, PolicyRow, PolicyState, decide
from models.state import PupilState
from schemas.events import (
    ACTION_TEXT,
    HEALTH_NEEDS_TIER_TEXT,
    TIER_TEXT,
    InterventionKind,
    Reason,
    ReasonCode,
    SupportAction,
)

ENFORCEMENT = re.compile(r"\b(fines?|fined|penalt\w*|prosecut\w*|enforce\w*|magistrate\w*|court|sanction\w*)\b",
                         re.IGNORECASE)


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


@pytest.mark.parametrize("week, expected", [
    ([("I", "I")] + [("/", "\\")] * 4, (4, 1)),  # off sick every Monday
    ([("/", "\\")] * 4 + [("O", "O")], (4, 5)),  # every Friday
    ([("N", "N"), ("N", "N")] + [("/", "\\")] * 3, (4, 1)),  # Monday and Tuesday: both count, Monday named
    ([("N", "N")] * 3 + [("/", "\\")] * 2, (0, 0)),  # three days off is a block, not a day off
    ([("N", "/")] + [("/", "\\")] * 4, (0, 0)),  # a morning is not a day off
    ([("G", "G")] + [("/", "\\")] * 4, (4, 1)),  # a holiday's reason does not change the weekday
    ([("C", "C")] + [("/", "\\")] * 4, (0, 0)),  # leave the school authorised does
])
def test_days_off_on_the_same_weekday(week, expected):
    stats = summarise(state_from([("/", "\\")] * 30 + week * 4))
    assert (stats.same_weekday_days_off_40, stats.same_weekday) == expected


def test_todays_day_off_counts_once_its_afternoon_is_in():
    days = [("/", "\\")] * 30 + ([("I", "I")] + [("/", "\\")] * 4) * 2 + [("I", "I")]
    marks = pupil_marks("P1", MONDAY, days)
    state = PupilState("SCH1", 126, marks[0].date)
    for m in marks[:-1]:
        state.apply(m)
    assert summarise(state).same_weekday_days_off_40 == 2  # the third Monday's morning only
    state.apply(marks[-1])
    assert summarise(state).same_weekday_days_off_40 == 3


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


def policy_row(day: int = 800_000, **values) -> PolicyRow:
    """A mark whose register lets a concern through (70% recently, no current absence)."""
    defaults = dict(day=day, year=2025, possible_ytd=100, recent_rate=0.7, short_rate=1.0, unarranged_rate=0.7,
                    rate_20=0.7, rate_40=0.7, possible_40=40, current_run=0, health_absence=False, known_run=0,
                    unexplained_run=0, one_block=False, health_absence_ytd=0, usual_rate=0.95, earlier_rate=0.95,
                    same_weekday_days=0)
    return PolicyRow(**{**defaults, **values})


def run(scores, *, start=800_000, possible=100, short_rate=1.0):
    state = PolicyState()
    out = []
    for offset, score in enumerate(scores):
        out.append(decide(state, CONFIG, score, policy_row(start + offset, possible_ytd=possible, short_rate=short_rate)))
    return out, state


def test_raises_once_not_every_day():
    decisions, _ = run([0.6] * 15)
    raised = [d for d in decisions if d]
    assert len(raised) == 1 and raised[0].kind is InterventionKind.CONCERN and raised[0].tier == 1


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
    assert events == [(0, InterventionKind.CONCERN), (3, InterventionKind.IMPROVING)]
    assert not state.flagged
    decisions, _ = run([0.8, 0.1, 0.1, 0.1] + [0.8] * 30)
    concern_days = [i for i, d in enumerate(decisions) if d and d.kind is InterventionKind.CONCERN]
    assert concern_days == [0, 24]  # 21 days after the improving event on day 3


def test_a_low_score_without_attendance_back_is_not_recovery():
    decisions, state = run([0.8] + [0.05] * 10, short_rate=0.6)
    assert [d.kind for d in decisions if d] == [InterventionKind.CONCERN]
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
    assert event.suggested_actions[:2] == [SupportAction.CALL_HOME_TO_LISTEN, SupportAction.CHECK_IN_CONVERSATION]
    assert action in event.suggested_actions
    assert SupportAction.SENCO_REVIEW in event.suggested_actions
    assert SupportAction.EARLY_HELP_CONVERSATION in event.suggested_actions  # tier 3


@pytest.mark.parametrize("last_days, first_steps", [
    ([("/", "\\")], [SupportAction.CHECK_IN_CONVERSATION]),  # in school today: talk to them
    ([("N", "N")], [SupportAction.CHECK_IN_CONVERSATION]),  # a day off: first-day calling has it
    ([("N", "N")] * 2, [SupportAction.CALL_HOME_TO_LISTEN, SupportAction.CHECK_IN_CONVERSATION]),
    ([("N", "N")] * 6, [SupportAction.CALL_HOME_TO_LISTEN, SupportAction.CHECK_IN_CONVERSATION]),
])
def test_a_pupil_away_now_gets_a_call_home_first(last_days, first_steps):
    """A check-in needs the pupil in school: for a pupil away for two days or more, the first step
    a head of year takes is a call home, and the check-in follows when they are back."""
    days = [("/", "\\")] * 30 + [("O", "O"), ("/", "\\")] * 5 + last_days
    stats = summarise(state_from(days))
    reasons = [Reason(code=ReasonCode.REPEATED_SPELLS, text="x", weight=1.0)]
    actions = concern_actions(reasons, stats, 1)
    assert actions[:len(first_steps)] == first_steps
    assert actions.count(SupportAction.CALL_HOME_TO_LISTEN) <= 1 and SupportAction.CHECK_IN_CONVERSATION in actions


def test_the_console_line_reads_as_sentences():
    stats = summarise(state_from([("/", "\\")] * 30 + [("N", "N")] * 3))
    weights = np.zeros(len(FEATURE_NAMES))
    weights[[FEATURE_NAMES.index("rate_20"), FEATURE_NAMES.index("current_absence_run")]] = 1.0
    event = build_event(kind=InterventionKind.CONCERN, tier=2, escalation=False, score=0.9, pupil_id="P1",
                        school_id="SCH1", as_of=dt.date(2025, 10, 1), stats=stats, contributions=weights,
                        model_version="test")
    line = event.headline()
    assert len(event.reasons) >= 2 and ". ".join(r.text for r in event.reasons) in line
    assert not re.search(r"; [A-Z]", line)
    assert line.endswith("Suggested: call home to listen, check in conversation")


@pytest.mark.parametrize("earlier, both", [
    ([("/", "\\")] * 14, False),  # the run is the window's only unexplained absence: said once
    ([("O", "\\"), ("/", "\\")] * 7, True),  # other unexplained sessions earlier in the window
])
def test_an_unexplained_run_is_not_said_twice(earlier, both):
    stats = summarise(state_from([("/", "\\")] * 30 + earlier + [("N", "N")] * 6))
    weights = np.zeros(len(FEATURE_NAMES))
    weights[FEATURE_NAMES.index("unauthorised_share_40")] = 1.0
    codes = [r.code for r in concern_reasons(weights, stats)]
    assert codes.count(ReasonCode.CONSECUTIVE_ABSENCE) == 1
    assert (ReasonCode.UNEXPLAINED_ABSENCE in codes) is both


@pytest.mark.parametrize("drop_weighed", [False, True])
def test_the_level_before_an_unexplained_run_is_said_once(drop_weighed):
    stats = summarise(state_from([("/", "\\")] * 44 + [("N", "N")] * 6))
    weights = np.zeros(len(FEATURE_NAMES))
    weights[FEATURE_NAMES.index("unauthorised_share_40")] = 1.0
    weights[FEATURE_NAMES.index("rate_20")] = 2.0 if drop_weighed else 0.0
    reasons = concern_reasons(weights, stats)
    text = " ".join(r.text for r in reasons)
    assert (ReasonCode.RECENT_DROP in [r.code for r in reasons]) is drop_weighed
    assert text.count("100% earlier this year") == 1
    assert ("after attending 100% earlier this year" in text) is not drop_weighed


def test_event_ids_are_deterministic_and_distinct():
    stats = summarise(state_from([("/", "\\")] * 25))
    kwargs = dict(kind=InterventionKind.CONCERN, tier=1, escalation=False, score=0.6, pupil_id="P1",
                  school_id="SCH1", as_of=dt.date(2025, 10, 1), stats=stats,
                  contributions=np.ones(len(FEATURE_NAMES)), model_version="m1")
    assert build_event(**kwargs).event_id == build_event(**kwargs).event_id
    assert build_event(**kwargs).event_id != build_event(**{**kwargs, "tier": 2}).event_id


def test_no_vocabulary_can_express_enforcement():
    texts = [*ACTION_TEXT.values(), *TIER_TEXT.values(), HEALTH_NEEDS_TIER_TEXT, *(a.value for a in SupportAction),
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


@pytest.mark.parametrize("row, raised", [
    (policy_row(), True),
    (policy_row(current_run=40, health_absence=True, known_run=40), False),  # illness, however long
    (policy_row(current_run=20, known_run=20), False),  # a two-week holiday is waited out
    (policy_row(current_run=22, known_run=22), True),  # longer than that, it is not
    (policy_row(recent_rate=0.9, unarranged_rate=0.9), False),  # 18 of 20: nothing to talk about
    (policy_row(one_block=True), False),  # one block, judged by what followed it
    (policy_row(possible_ytd=19), False),  # too little evidence this year
    (policy_row(usual_rate=0.45, rate_20=0.3, rate_40=0.3), False),  # severely absent all year: known already
    (policy_row(usual_rate=0.5), True),  # half their sessions is the line, not below it
])
def test_the_register_holds_a_concern_back(row, raised):
    state = PolicyState()
    decision = decide(state, CONFIG, 0.95, row)
    assert (decision is not None) is raised
    assert state.flagged is raised


def test_an_escalation_waits_while_the_pupil_is_ill():
    state = PolicyState()
    assert decide(state, CONFIG, 0.6, policy_row(800_000)).tier == 1
    ill = policy_row(800_010, current_run=12, health_absence=True, known_run=12)
    assert decide(state, CONFIG, 0.95, ill) is None
    assert decide(state, CONFIG, 0.95, policy_row(800_011)).escalation


def test_the_registers_tier_escalates_a_flagged_pupil_whatever_the_score():
    """Flagged at tier 1, the pupil then attends under half of four weeks (the register's tier 3):
    escalated a week on even though the score has slid under the entry threshold (the model comes
    to see the lower level as the pupil's own), as a head of year would. Not while ill."""
    state = PolicyState()
    assert decide(state, CONFIG, 0.6, policy_row(800_000)).tier == 1
    sustained = {"rate_20": 0.3, "rate_40": 0.4, "recent_rate": 0.3, "unarranged_rate": 0.3, "short_rate": 0.3}
    assert decide(state, CONFIG, 0.3, policy_row(800_003, **sustained)) is None  # a week has not passed
    ill = policy_row(800_008, **sustained, current_run=12, health_absence=True, known_run=12)
    assert decide(state, CONFIG, 0.3, ill) is None
    escalation = decide(state, CONFIG, 0.3, policy_row(800_009, **sustained))
    assert escalation.escalation and escalation.tier == 3 and state.tier == 3
    # Nothing sustained on the register and a score under the entry: no escalation.
    quiet = PolicyState()
    decide(quiet, CONFIG, 0.6, policy_row(800_000))
    assert decide(quiet, CONFIG, 0.3, policy_row(800_009, short_rate=0.5)) is None and quiet.tier == 1


def inputs_of(days):
    return registers.policy_row(days, CONFIG)


def test_policy_inputs_read_the_current_run():
    ill = inputs_of([("/", "\\")] * 30 + [("I", "I")] * 3)
    assert ill.health_absence and ill.known_run == 6 and ill.unexplained_run == 0
    mixed = inputs_of([("/", "\\")] * 30 + [("I", "I"), ("N", "N")])
    assert not mixed.health_absence and mixed.known_run == 0 and mixed.unexplained_run == 2
    leave = inputs_of([("/", "\\")] * 30 + [("C", "C")] * 2)
    assert leave.known_run == 4 and not leave.health_absence
    assert ill.year == 2025 and ill.possible_ytd == 66


@pytest.mark.parametrize("usual_rate, raised", [(0.95, True), (0.8, False)])
def test_longer_than_a_week_unexplained_from_a_pupil_who_usually_attends_is_a_concern_whatever_the_score(
        usual_rate, raised):
    """Six school days and nobody has heard from them: no longer one holiday week nobody reported, so a
    call home, even when the model scores it low. For a pupil already persistently absent, such runs
    are their pattern and the score decides."""
    state = PolicyState()
    row = policy_row(current_run=12, unexplained_run=12, recent_rate=0.4, unarranged_rate=0.4, rate_20=0.4,
                     usual_rate=usual_rate)
    decision = decide(state, CONFIG, 0.05, row)
    assert (decision is not None) is raised
    if raised:
        assert decision.kind is InterventionKind.CONCERN and decision.tier == 2


@pytest.mark.parametrize("earlier_days_off, raised", [(2, True), (3, False)])
def test_a_pupil_who_usually_attends_is_judged_on_the_level_an_alert_shows(earlier_days_off, raised):
    """25 of 28 sessions earlier this year is 89%, under the line, though shrunk towards a typical pupil
    it is 90.3%: an alert would say "down from 89%", so the rules for a pupil who usually attends do
    not apply and the score decides. 26 of 28 (93%) is a usual attender's level."""
    earlier = [("O", "\\")] * earlier_days_off + [("/", "\\")] * (14 - earlier_days_off)
    row = inputs_of(earlier + [("/", "\\")] * 4 + [("N", "N")] * 6)
    assert row.unexplained_run == 12 and row.usual_rate >= 0.9 and (row.earlier_rate >= 0.9) is raised
    decision = decide(PolicyState(), CONFIG, 0.05, row)
    assert (decision is not None) is raised


@pytest.mark.parametrize("sessions", [9, 10, 11])
def test_a_week_or_less_unexplained_is_the_scores_call(sessions):
    """At the time, a week away with no reason given cannot be told from a holiday week nobody reported."""
    row = policy_row(current_run=sessions, unexplained_run=sessions, recent_rate=0.5, unarranged_rate=0.5,
                     rate_20=0.5, usual_rate=0.95)
    assert decide(PolicyState(), CONFIG, 0.05, row) is None
    raised = decide(PolicyState(), CONFIG, CONFIG.enter_score, row)
    assert raised is not None and raised.tier >= (2 if sessions >= 10 else 1), "the run still sets the tier"


# -- the outcome loop: what an open support plan does to the policy -----------------------------
def test_an_open_plan_counts_as_flagged_so_no_new_concern_is_raised():
    state = PolicyState()
    state.start_plan()
    decision = decide(state, CONFIG, 0.6, policy_row(800_000, recent_rate=0.6, short_rate=0.6))
    assert decision is None and state.flagged and state.plan_open


def test_recovery_under_an_open_plan_still_says_improving():
    state = PolicyState()
    state.start_plan()
    kinds = [decide(state, CONFIG, 0.05, policy_row(800_000 + d, recent_rate=0.95, short_rate=1.0))
             for d in range(3)]
    assert [k.kind for k in kinds if k] == [InterventionKind.IMPROVING]
    state.close_plan()
    assert not state.plan_open


def _concern(stats, weights):
    return build_event(kind=InterventionKind.CONCERN, tier=2, escalation=True, score=0.8, pupil_id="P1",
                       school_id="SCH1", as_of=dt.date(2025, 10, 1), stats=stats, contributions=weights,
                       model_version="t")


def test_same_pattern_is_held_back_while_a_plan_is_open_but_a_new_pattern_is_not():
    stats = summarise(state_from([("/", "\\")] * 30 + [("L", "\\"), ("N", "N"), ("N", "N"), ("/", "N"), ("I", "I")] * 2))
    drop, late = np.zeros(len(FEATURE_NAMES)), np.zeros(len(FEATURE_NAMES))
    drop[FEATURE_NAMES.index("drop_vs_baseline")] = 1.0
    late[FEATURE_NAMES.index("late_rate_20")] = 1.0
    policy = PolicyState()
    assert not DecisionEngine._suppressed_by_plan(policy, _concern(stats, drop))  # first alert: remembered
    policy.start_plan()
    assert DecisionEngine._suppressed_by_plan(policy, _concern(stats, drop))  # same pattern, plan open
    assert not DecisionEngine._suppressed_by_plan(policy, _concern(stats, late))  # a new pattern goes out
    policy.close_plan()
    assert not DecisionEngine._suppressed_by_plan(policy, _concern(stats, late))
