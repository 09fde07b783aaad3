"""The one pure feature function: per-pupil state in, attendance-behaviour features out.

Training, offline replay and the stream all call `summarise` and `feature_vector`, so what
was evaluated is what runs. Only attendance behaviour goes in; demographics never do.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from models.state import ATTENDED, HEALTH, LATE, POSSIBLE, UNAUTHORISED, PupilState

RECENT_SHORT, RECENT, RECENT_LONG = 10, 20, 40
FULL_WEEK_SESSIONS = 10
# Shrinks rates computed on few sessions towards a typical pupil's attendance (national ~93%).
PRIOR_RATE = 0.93
PRIOR_WEIGHT = 10.0
MONDAY, FRIDAY = 0, 4


@dataclass(slots=True)
class WindowStats:
    """Counts behind a decision, most recent possible sessions first. Plain numbers, no names."""

    latest_date: dt.date
    possible_10: int
    attended_10: int
    possible_20: int
    attended_20: int
    possible_40: int
    attended_40: int
    possible_ytd: int
    attended_ytd: int
    earlier_possible: int
    earlier_attended: int
    current_absence_run: int
    longest_absence_run_40: int
    absence_spells_40: int
    unauthorised_40: int
    health_40: int
    late_20: int
    late_previous_20: int
    monday_friday_absences_40: int
    am_possible_40: int
    am_absences_40: int
    pm_possible_40: int
    pm_absences_40: int
    sessions_since_full_week: int

    @property
    def absences_40(self) -> int:
        return self.possible_40 - self.attended_40

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def rate(attended: int, possible: int) -> float:
    return (attended + PRIOR_RATE * PRIOR_WEIGHT) / (possible + PRIOR_WEIGHT)


def summarise(state: PupilState) -> WindowStats:
    """One backward pass over the window: the counts every feature and explanation needs."""
    codes = state.codes
    origin = state.origin
    year_start = state.year_start_ordinal
    recent: list[int] = []  # slot indices of the last RECENT_LONG possible sessions, newest first
    ytd_possible = state.folded_possible
    ytd_attended = state.folded_attended
    earlier_possible = earlier_attended = 0
    run = 0
    since_full_week = -1
    seen = 0
    for slot in range(len(codes) - 1, -1, -1):
        code = codes[slot]
        if not POSSIBLE[code]:
            continue
        attended = ATTENDED[code]
        in_year = origin + (slot >> 1) >= year_start
        if in_year:
            ytd_possible += 1
            ytd_attended += attended
        if seen < RECENT_LONG:
            recent.append(slot)
        if seen >= RECENT and in_year:
            earlier_possible += 1
            earlier_attended += attended
        if since_full_week < 0:
            run = run + 1 if attended else 0
            if run == FULL_WEEK_SESSIONS:
                since_full_week = seen + 1 - FULL_WEEK_SESSIONS
        seen += 1
    if since_full_week < 0:
        since_full_week = seen
    earlier_possible += state.folded_possible
    earlier_attended += state.folded_attended

    attended_flags = [ATTENDED[codes[s]] for s in recent]
    current_run = 0
    for flag in attended_flags:
        if flag:
            break
        current_run += 1
    longest = spells = streak = 0
    for flag in attended_flags:
        if flag:
            streak = 0
        else:
            streak += 1
            spells += streak == 1
            longest = max(longest, streak)
    unauthorised = health = mon_fri = am_possible = am_absent = pm_possible = pm_absent = 0
    for slot, flag in zip(recent, attended_flags):
        code = codes[slot]
        is_pm = slot & 1
        am_possible += not is_pm
        pm_possible += is_pm
        if flag:
            continue
        unauthorised += UNAUTHORISED[code]
        health += HEALTH[code]
        weekday = (origin + (slot >> 1) - 1) % 7
        mon_fri += weekday in (MONDAY, FRIDAY)
        am_absent += not is_pm
        pm_absent += is_pm
    late = [LATE[codes[s]] for s in recent]
    return WindowStats(
        latest_date=state.latest_date,
        possible_10=min(len(recent), RECENT_SHORT), attended_10=sum(attended_flags[:RECENT_SHORT]),
        possible_20=min(len(recent), RECENT), attended_20=sum(attended_flags[:RECENT]),
        possible_40=len(recent), attended_40=sum(attended_flags),
        possible_ytd=ytd_possible, attended_ytd=ytd_attended,
        earlier_possible=earlier_possible, earlier_attended=earlier_attended,
        current_absence_run=current_run, longest_absence_run_40=longest, absence_spells_40=spells,
        unauthorised_40=unauthorised, health_40=health,
        late_20=sum(late[:RECENT]), late_previous_20=sum(late[RECENT:]),
        monday_friday_absences_40=mon_fri,
        am_possible_40=am_possible, am_absences_40=am_absent, pm_possible_40=pm_possible, pm_absences_40=pm_absent,
        sessions_since_full_week=since_full_week,
    )


FEATURE_NAMES: tuple[str, ...] = (
    "rate_10", "rate_20", "rate_40", "rate_ytd", "baseline_rate", "drop_vs_baseline", "trend_20",
    "current_absence_run", "longest_absence_run_40", "absence_spells_40", "unauthorised_share_40",
    "health_share_40", "late_rate_20", "late_trend_20", "monday_friday_excess_40", "am_pm_asymmetry_40",
    "school_days_since_full_week", "evidence",
)
# Monday and Friday are two of five weekdays: absences spread evenly put 40% on them.
EVEN_MONDAY_FRIDAY_SHARE = 0.4
EVIDENCE_SESSIONS = 100


def feature_vector(stats: WindowStats) -> tuple[float, ...]:
    """The model's inputs, in FEATURE_NAMES order."""
    rate_20 = rate(stats.attended_20, stats.possible_20)
    baseline = rate(stats.earlier_attended, stats.earlier_possible)
    older_20 = rate(stats.attended_40 - stats.attended_20, stats.possible_40 - stats.possible_20)
    absences = stats.absences_40
    older_possible = max(stats.possible_40 - stats.possible_20, 1)
    return (
        rate(stats.attended_10, stats.possible_10),
        rate_20,
        rate(stats.attended_40, stats.possible_40),
        rate(stats.attended_ytd, stats.possible_ytd),
        baseline,
        baseline - rate_20,
        rate_20 - older_20,
        float(stats.current_absence_run),
        float(stats.longest_absence_run_40),
        float(stats.absence_spells_40),
        stats.unauthorised_40 / absences if absences else 0.0,
        stats.health_40 / absences if absences else 0.0,
        stats.late_20 / max(stats.possible_20, 1),
        stats.late_20 / max(stats.possible_20, 1) - stats.late_previous_20 / older_possible,
        stats.monday_friday_absences_40 / absences - EVEN_MONDAY_FRIDAY_SHARE if absences else 0.0,
        stats.am_absences_40 / max(stats.am_possible_40, 1) - stats.pm_absences_40 / max(stats.pm_possible_40, 1),
        stats.sessions_since_full_week / 2,
        min(stats.possible_ytd, EVIDENCE_SESSIONS) / EVIDENCE_SESSIONS,
    )


def features(state: PupilState) -> tuple[WindowStats, tuple[float, ...]]:
    stats = summarise(state)
    return stats, feature_vector(stats)
