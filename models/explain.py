"""Why an alert was raised, in words a head of year could read to a parent, and what might help.

Reasons for a `concern` come from what drove this pupil's score: the model's per-feature
contributions (log-odds, `contributions`, one scoring call for a whole batch of alerts) are
grouped into attendance patterns, the strongest patterns are rendered as sentences with the
pupil's own numbers, and each pattern suggests supportive next steps. Repeated short spells of
illness, and days off on the same weekday week after week, are named from the register whatever
the model weighed: they are a wellbeing pattern (a recognised sign of emotionally based school
avoidance), so they suggest a wellbeing conversation rather than a medical one. A `health_needs`
event says how much illness there has been this year and suggests the health-needs steps (school
nurse, work sent home, the local authority's health-needs education service).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.definitions import UNEXPLAINED_WEEK_SESSIONS, WEEKDAY_PATTERN_DAYS
from models.features import FEATURE_NAMES, rate
from models.policy import unexplained_sessions
from schemas.events import (
    ACTION_TEXT,
    InterventionEvent,
    InterventionKind,
    Reason,
    ReasonCode,
    SupportAction,
    Tier,
    WindowSummary,
    tier_text,
)

MAX_REASONS = 3
# Named here rather than by `calendar.day_name`, which follows the process's locale.
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# A drop this large, or this many sessions missed in a row, reads as sudden rather than gradual.
SUDDEN_DROP = 0.25
SUDDEN_RUN = 4
# A recent rate this far below the pupil's own earlier level is described as a drop.
NOTABLE_DROP = 0.05
# Illness that comes back: most of the window's absence is illness or appointments, in at least
# this many separate spells, none longer than two days.
REPEATED_ILLNESS_SPELLS = 2
REPEATED_ILLNESS_LONGEST = 4

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
    "rate_since_block": ReasonCode.LOW_RECENT_ATTENDANCE,
    "block_share_40": ReasonCode.REPEATED_SPELLS,
    "current_run_known_share": None,  # context: how much of the current absence has a known reason
    "arranged_share_40": None,  # context: sessions the school arranged itself
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
    ReasonCode.REPEATED_ILLNESS: (SupportAction.WELLBEING_CHECK_IN,),
    ReasonCode.SAME_WEEKDAY_PATTERN: (SupportAction.WELLBEING_CHECK_IN,),
}
HEALTH_NEEDS_ACTIONS = (SupportAction.SCHOOL_NURSE_HEALTH_PLAN, SupportAction.WORK_SENT_HOME,
                        SupportAction.HEALTH_NEEDS_EDUCATION_CONVERSATION)


# -- attributions ------------------------------------------------------------------------------
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def contributions(model: Any, rows: np.ndarray) -> np.ndarray:
    """Per-feature log-odds contributions against the model's reference pupil, one row per input row.

    The batched form of `RiskModel.contributions` (same numbers, row for row): a linear final
    step is exact (coefficient times standardised difference, no scoring call); otherwise each
    feature alone is set back to its reference value and the change in log-odds is read off,
    with one scoring call for every probe of every row.
    """
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    n, width = rows.shape
    reference = model.reference if model.reference is not None else np.zeros(width)
    final = model.pipeline[-1]
    if hasattr(final, "coef_"):
        stacked = np.vstack([rows, reference])
        transformed = model.pipeline[:-1].transform(stacked) if len(model.pipeline) > 1 else stacked
        return (transformed[:-1] - transformed[-1]) * np.ravel(final.coef_)
    probe = np.repeat(rows, width, axis=0)
    column = np.tile(np.arange(width), n)
    probe[np.arange(n * width), column] = np.asarray(reference, dtype=np.float64)[column]
    logit = _logit(model.score(np.vstack([rows, probe])))
    return logit[:n, None] - logit[n:].reshape(n, width)


def _pct(value: float) -> str:
    return f"{round(value * 100)}%"


def _sessions(count: int) -> str:
    return f"{count} session" if count == 1 else f"{count} sessions"


def _drop(stats: WindowSummary) -> float:
    return rate(stats.earlier_attended, stats.earlier_possible) - rate(stats.attended_20, stats.possible_20)


def repeated_illness(stats: WindowSummary) -> bool:
    """Most of the window's absence is illness or appointments, in several short spells."""
    absences = stats.absences_40
    return (absences > 0 and 2 * stats.health_40 >= absences
            and stats.absence_spells_40 >= REPEATED_ILLNESS_SPELLS
            and stats.longest_absence_run_40 <= REPEATED_ILLNESS_LONGEST)


def _repeated_illness_text(stats: WindowSummary) -> str:
    text = (f"{stats.health_40} of {stats.absences_40} absences in the last {_sessions(stats.possible_40)} were "
            f"for illness or appointments, in {stats.absence_spells_40} separate short spells")
    if 2 * stats.monday_friday_absences_40 >= stats.absences_40:
        text += f"; {stats.monday_friday_absences_40} of the absences were on a Monday or Friday"
    return text


def same_weekday_pattern(stats: WindowSummary) -> bool:
    """Days off on one weekday, a day or two at a time, as often as the policy's weekday rule asks."""
    return stats.same_weekday > 0 and stats.same_weekday_days_off_40 >= WEEKDAY_PATTERN_DAYS


def _same_weekday_text(stats: WindowSummary) -> str:
    return (f"Off on {stats.same_weekday_days_off_40} {WEEKDAY_NAMES[stats.same_weekday - 1]}s in the last "
            f"{stats.possible_40 // 2} school days, a day or two at a time")


def unexplained_run(stats: WindowSummary) -> int:
    return int(unexplained_sessions(stats.current_absence_run, stats.current_run_explained, stats.current_run_leave))


def _unexplained_run_text(stats: WindowSummary, with_level: bool = True) -> str:
    run = unexplained_run(stats)
    text = (f"Has missed the last {_sessions(run)} in a row ({run // 2} school days), "
            "with no reason agreed with school yet")
    earlier = _earlier_level(stats) if with_level else None
    if earlier is not None:  # whether they usually attend is why the run is raised
        text += f", after attending {_pct(earlier)} earlier this year"
    return text


def _earlier_level(stats: WindowSummary) -> float | None:
    """The pupil's own level this year before the last 20 sessions, as an alert shows it, once it
    rests on 20 sessions or more."""
    return stats.earlier_attended / stats.earlier_possible if stats.earlier_possible >= 20 else None


def describe(code: ReasonCode, stats: WindowSummary) -> tuple[ReasonCode, str]:
    """The sentence for a pattern, with the pupil's own numbers. May refine the code."""
    recent = (f"Attended {stats.attended_20} of the last {_sessions(stats.possible_20)} "
              f"({_pct(stats.attended_20 / max(stats.possible_20, 1))})")
    absences = stats.absences_40
    span = f"the last {_sessions(stats.possible_40)}"
    if code is ReasonCode.LOW_RECENT_ATTENDANCE:
        earlier = _earlier_level(stats)
        if earlier is not None and _drop(stats) >= NOTABLE_DROP:
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
    if code in (ReasonCode.HEALTH_ABSENCE, ReasonCode.REPEATED_ILLNESS):
        if repeated_illness(stats):
            return ReasonCode.REPEATED_ILLNESS, _repeated_illness_text(stats)
        return ReasonCode.HEALTH_ABSENCE, (f"{stats.health_40} of {absences} absences in {span} were for illness "
                                           "or medical appointments")
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
    # Register facts, named whatever the model weighed (they decide the suggested step), in place
    # of the weakest of the model's patterns.
    run_fact = (unexplained_run(stats) >= UNEXPLAINED_WEEK_SESSIONS
                and all(r.code is not ReasonCode.CONSECUTIVE_ABSENCE for r in reasons))
    if run_fact and stats.unauthorised_40 <= unexplained_run(stats):  # the run is all the window's unexplained absence
        reasons = [r for r in reasons if r.code is not ReasonCode.UNEXPLAINED_ABSENCE]
    facts = []
    if same_weekday_pattern(stats):
        facts.append(Reason(code=ReasonCode.SAME_WEEKDAY_PATTERN, text=_same_weekday_text(stats), weight=0.0))
    if repeated_illness(stats) and all(r.code is not ReasonCode.REPEATED_ILLNESS for r in reasons):
        facts.append(Reason(code=ReasonCode.REPEATED_ILLNESS, text=_repeated_illness_text(stats), weight=0.0))
    kept = reasons[:MAX_REASONS - len(facts) - run_fact]
    if run_fact:  # the earlier level once: a "down from" reason already says it
        level = all(r.code is not ReasonCode.RECENT_DROP for r in kept)
        facts.insert(0, Reason(code=ReasonCode.CONSECUTIVE_ABSENCE, text=_unexplained_run_text(stats, level),
                               weight=0.0))
    return kept + facts


def health_needs_reasons(stats: WindowSummary) -> list[Reason]:
    """Why a `health_needs` event: the year's illness, and the current spell if the pupil is off sick."""
    sessions = stats.health_absence_ytd
    text = (f"Absent through illness or medical appointments for {sessions / 2:g} school days this year "
            f"({_sessions(sessions)}): from 15 days, consecutive or added up, the local authority arranges "
            "education for children who cannot attend because of their health")
    reasons = [Reason(code=ReasonCode.EXTENDED_ILLNESS, text=text, weight=0.0)]
    if stats.current_absence_run and stats.current_run_health == stats.current_absence_run:
        reasons.append(Reason(code=ReasonCode.HEALTH_ABSENCE, weight=0.0,
                              text=f"Off sick for the last {_sessions(stats.current_absence_run)} in a row"))
    return reasons


def concern_actions(reasons: Sequence[Reason], stats: WindowSummary, tier: int,
                    support_needs: frozenset[str] = frozenset()) -> list[SupportAction]:
    # A check-in needs the pupil in school: for a pupil away now, a call home comes first.
    if stats.current_absence_run >= SUDDEN_RUN:
        actions = [SupportAction.CALL_HOME_TO_LISTEN, SupportAction.CHECK_IN_CONVERSATION]
    else:
        actions = [SupportAction.CHECK_IN_CONVERSATION]
        if _drop(stats) >= SUDDEN_DROP:
            actions.append(SupportAction.CALL_HOME_TO_LISTEN)
    for reason in reasons:  # in order of strength: a set here would order by string hash, per process
        actions.extend(PATTERN_ACTIONS.get(reason.code, ()))
    if repeated_illness(stats):
        actions.append(SupportAction.WELLBEING_CHECK_IN)
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
    elif kind is InterventionKind.HEALTH_NEEDS:
        reasons = health_needs_reasons(stats)
        actions = list(HEALTH_NEEDS_ACTIONS)
        if "sen" in support_needs:
            actions.append(SupportAction.SENCO_REVIEW)
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
        tier_text=tier_text(kind, tier_enum), escalation=escalation, risk_score=round(float(score), 4),
        reasons=reasons, suggested_actions=actions, suggested_actions_text=[ACTION_TEXT[a] for a in actions],
        model_version=model_version, window=stats,
    )
