"""Why an alert was raised, in words a head of year could read to a parent, and what might help.

Reasons come from what drove this pupil's score: the model's per-feature contributions
(log-odds) are grouped into attendance patterns, the strongest patterns are rendered as
sentences with the pupil's own numbers, and each pattern suggests supportive next steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.features import FEATURE_NAMES, rate
from schemas.events import (
    ACTION_TEXT,
    TIER_TEXT,
    InterventionEvent,
    InterventionKind,
    Reason,
    ReasonCode,
    SupportAction,
    Tier,
    WindowSummary,
)

MAX_REASONS = 3
# A drop this large, or this many sessions missed in a row, reads as sudden rather than gradual.
SUDDEN_DROP = 0.25
SUDDEN_RUN = 4
# A recent rate this far below the pupil's own earlier level is described as a drop.
NOTABLE_DROP = 0.05

FEATURE_PATTERN: dict[str, ReasonCode | None] = {
    "rate_10": ReasonCode.LOW_RECENT_ATTENDANCE,
    "rate_20": ReasonCode.LOW_RECENT_ATTENDANCE,
    "rate_40": ReasonCode.LOW_RECENT_ATTENDANCE,
    "baseline_rate": ReasonCode.LOW_RECENT_ATTENDANCE,
    "drop_vs_baseline": ReasonCode.LOW_RECENT_ATTENDANCE,
    "trend_20": ReasonCode.LOW_RECENT_ATTENDANCE,
    "rate_ytd": ReasonCode.LOW_YEAR_TO_DATE,
    "current_absence_run": ReasonCode.CONSECUTIVE_ABSENCE,
    "longest_absence_run_40": ReasonCode.REPEATED_SPELLS,
    "absence_spells_40": ReasonCode.REPEATED_SPELLS,
    "unauthorised_share_40": ReasonCode.UNEXPLAINED_ABSENCE,
    "health_share_40": ReasonCode.HEALTH_ABSENCE,
    "late_rate_20": ReasonCode.LATE_MORNINGS,
    "late_trend_20": ReasonCode.LATE_MORNINGS,
    "monday_friday_excess_40": ReasonCode.MONDAY_FRIDAY_PATTERN,
    "am_pm_asymmetry_40": ReasonCode.MISSED_MORNINGS,
    "school_days_since_full_week": ReasonCode.NO_RECENT_FULL_WEEK,
    "evidence": None,
}
assert set(FEATURE_PATTERN) == set(FEATURE_NAMES), "every feature needs a pattern (or None)"

PATTERN_ACTIONS: dict[ReasonCode, tuple[SupportAction, ...]] = {
    ReasonCode.CONSECUTIVE_ABSENCE: (SupportAction.CALL_HOME_TO_LISTEN,),
    ReasonCode.UNEXPLAINED_ABSENCE: (SupportAction.CALL_HOME_TO_LISTEN,),
    ReasonCode.MONDAY_FRIDAY_PATTERN: (SupportAction.WELLBEING_CHECK_IN,),
    ReasonCode.LATE_MORNINGS: (SupportAction.YOUNG_CARER_CONVERSATION,),
    ReasonCode.MISSED_MORNINGS: (SupportAction.YOUNG_CARER_CONVERSATION,),
    ReasonCode.HEALTH_ABSENCE: (SupportAction.SCHOOL_NURSE_HEALTH_PLAN,),
    ReasonCode.REPEATED_SPELLS: (SupportAction.WELLBEING_CHECK_IN,),
    ReasonCode.NO_RECENT_FULL_WEEK: (SupportAction.WELLBEING_CHECK_IN,),
}


def _pct(value: float) -> str:
    return f"{round(value * 100)}%"


def _sessions(count: int) -> str:
    return f"{count} session" if count == 1 else f"{count} sessions"


def _drop(stats: WindowSummary) -> float:
    return rate(stats.earlier_attended, stats.earlier_possible) - rate(stats.attended_20, stats.possible_20)


def describe(code: ReasonCode, stats: WindowSummary) -> tuple[ReasonCode, str]:
    """The sentence for a pattern, with the pupil's own numbers. May refine the code."""
    recent = (f"Attended {stats.attended_20} of the last {_sessions(stats.possible_20)} "
              f"({_pct(stats.attended_20 / max(stats.possible_20, 1))})")
    absences = stats.absences_40
    span = f"the last {_sessions(stats.possible_40)}"
    if code is ReasonCode.LOW_RECENT_ATTENDANCE:
        if stats.earlier_possible >= 20 and _drop(stats) >= NOTABLE_DROP:
            earlier = stats.earlier_attended / stats.earlier_possible
            return ReasonCode.RECENT_DROP, f"{recent}, down from {_pct(earlier)} earlier this year"
        return code, recent
    if code is ReasonCode.LOW_YEAR_TO_DATE:
        return code, (f"Attended {stats.attended_ytd} of {_sessions(stats.possible_ytd)} this year "
                      f"({_pct(stats.attended_ytd / max(stats.possible_ytd, 1))})")
    if code is ReasonCode.CONSECUTIVE_ABSENCE:
        return code, f"Has missed the last {_sessions(stats.current_absence_run)} in a row"
    if code is ReasonCode.REPEATED_SPELLS:
        return code, (f"{stats.absence_spells_40} separate spells of absence in {span}, "
                      f"the longest {_sessions(stats.longest_absence_run_40)}")
    if code is ReasonCode.UNEXPLAINED_ABSENCE:
        return code, (f"{stats.unauthorised_40} of {absences} absences in {span} "
                      f"have no reason agreed with school yet")
    if code is ReasonCode.HEALTH_ABSENCE:
        return code, f"{stats.health_40} of {absences} absences in {span} were for illness or medical appointments"
    if code is ReasonCode.LATE_MORNINGS:
        older = stats.possible_40 - stats.possible_20
        return code, (f"Arrived late {stats.late_20} times in the last {_sessions(stats.possible_20)}, "
                      f"against {stats.late_previous_20} in the {_sessions(older)} before")
    if code is ReasonCode.MONDAY_FRIDAY_PATTERN:
        return code, f"{stats.monday_friday_absences_40} of {absences} absences in {span} were on a Monday or Friday"
    if code is ReasonCode.MISSED_MORNINGS:
        return code, (f"Missed {stats.am_absences_40} of {stats.am_possible_40} mornings but "
                      f"{stats.pm_absences_40} of {stats.pm_possible_40} afternoons in {span}")
    if code is ReasonCode.NO_RECENT_FULL_WEEK:
        return code, f"Has not attended a full week (10 sessions in a row) for {stats.sessions_since_full_week // 2} school days"
    raise ValueError(f"no description for {code}")


def concern_reasons(contributions: Sequence[float], stats: WindowSummary) -> list[Reason]:
    """The strongest patterns that raised this pupil's score, strongest first."""
    by_pattern: dict[ReasonCode, float] = {}
    for name, weight in zip(FEATURE_NAMES, contributions):
        pattern = FEATURE_PATTERN[name]
        if pattern is not None:
            by_pattern[pattern] = by_pattern.get(pattern, 0.0) + float(weight)
    ranked = sorted((item for item in by_pattern.items() if item[1] > 0), key=lambda item: -item[1])
    if not ranked:
        ranked = [(ReasonCode.LOW_RECENT_ATTENDANCE, 0.0)]
    reasons = []
    for pattern, weight in ranked[:MAX_REASONS]:
        code, text = describe(pattern, stats)
        reasons.append(Reason(code=code, text=text, weight=round(weight, 4)))
    return reasons


def concern_actions(reasons: Sequence[Reason], stats: WindowSummary, tier: int,
                    support_needs: frozenset[str] = frozenset()) -> list[SupportAction]:
    actions = [SupportAction.CHECK_IN_CONVERSATION]
    if _drop(stats) >= SUDDEN_DROP or stats.current_absence_run >= SUDDEN_RUN:
        actions.append(SupportAction.CALL_HOME_TO_LISTEN)
    for reason in reasons:  # in order of strength: a set here would order by string hash, per process
        actions.extend(PATTERN_ACTIONS.get(reason.code, ()))
    if "sen" in support_needs:
        actions.append(SupportAction.SENCO_REVIEW)
    if tier >= Tier.SUSTAINED_DIP:
        actions.append(SupportAction.EARLY_HELP_CONVERSATION)
    return list(dict.fromkeys(actions))


def build_event(
    *, kind: InterventionKind, tier: int, escalation: bool, score: float, pupil_id: str, school_id: str,
    as_of, stats: WindowSummary, contributions: Sequence[float] | None, model_version: str,
    rate_at_alert: float | None = None, support_needs: frozenset[str] = frozenset(),
) -> InterventionEvent:
    if kind is InterventionKind.CONCERN:
        assert contributions is not None
        reasons = concern_reasons(contributions, stats)
        actions = concern_actions(reasons, stats, tier, support_needs)
    else:
        recent = (f"Attended {stats.attended_20} of the last {_sessions(stats.possible_20)} "
                  f"({_pct(stats.attended_20 / max(stats.possible_20, 1))})")
        if rate_at_alert is not None:
            recent += f", up from {_pct(rate_at_alert)} when the concern was raised"
        reasons = [Reason(code=ReasonCode.RECOVERING, text=recent, weight=0.0)]
        actions = [SupportAction.RECOGNISE_PROGRESS, SupportAction.CHECK_IN_CONVERSATION]
    tier_enum = Tier(tier)
    return InterventionEvent(
        event_id=InterventionEvent.make_id(pupil_id, as_of, kind, tier),
        pupil_id=pupil_id, school_id=school_id, as_of=as_of, kind=kind, tier=tier_enum,
        tier_text=TIER_TEXT[tier_enum], escalation=escalation, risk_score=round(float(score), 4),
        reasons=reasons, suggested_actions=actions, suggested_actions_text=[ACTION_TEXT[a] for a in actions],
        model_version=model_version, window=stats,
    )
