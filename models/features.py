"""The one pure feature function: per-pupil state in, attendance-behaviour features out.

Training, offline replay and the stream all call `summarise` and `feature_vector`, so what
was evaluated is what runs. Only attendance behaviour goes in; demographics never do.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from models.state import ATTENDED, HEALTH, LATE, POSSIBLE, UNAUTHORISED, PupilState

# Translation tables over code indices (bytes.translate runs in C).
POSSIBLE_TABLE = POSSIBLE + bytes(256 - len(POSSIBLE))
ATTENDED_TABLE = ATTENDED + bytes(256 - len(ATTENDED))
SEQUENCE_TABLE = bytes((ord("A") if i < len(ATTENDED) and ATTENDED[i] else ord("X")) for i in range(256))
NOT_POSSIBLE_CODES = bytes(i for i in range(256) if i >= len(POSSIBLE) or not POSSIBLE[i])

RECENT_SHORT, RECENT, RECENT_LONG = 10, 20, 40
FULL_WEEK_SESSIONS = 10
FULL_WEEK = b"A" * FULL_WEEK_SESSIONS
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
    """The counts every feature and explanation needs, from one pupil's state.

    The hot path of the stream: whole-window counts run in C over the byte arrays
    (bytes.translate / count / rfind); Python touches only the last 40 possible sessions.
    """
    codes = state.codes
    origin = state.origin
    year_slot = max((state.year_start_ordinal - origin) * 2, 0)
    possible_flags = codes.translate(POSSIBLE_TABLE)
    recent: list[int] = []  # slot indices of the last RECENT_LONG possible sessions, newest first
    end = len(codes)
    while len(recent) < RECENT_LONG:
        end = possible_flags.rfind(1, 0, end)
        if end < 0:
            break
        recent.append(end)
    in_year = codes[year_slot:]
    ytd_possible = state.folded_possible + in_year.translate(POSSIBLE_TABLE).count(1)
    ytd_attended = state.folded_attended + in_year.translate(ATTENDED_TABLE).count(1)
    # Possible sessions in date order as A (attended) / X (absent), for runs and full weeks.
    sequence = codes.translate(SEQUENCE_TABLE, NOT_POSSIBLE_CODES)
    full_week = sequence.rfind(FULL_WEEK)
    since_full_week = len(sequence) - full_week - FULL_WEEK_SESSIONS if full_week >= 0 else len(sequence)

    # One pass over the recent sessions, newest first, with the lookups bound locally.
    attended_table, late_table, unauthorised_table, health_table = ATTENDED, LATE, UNAUTHORISED, HEALTH
    attended_10 = attended_20 = attended_40 = recent_20_in_year = recent_20_in_year_attended = 0
    current_run = longest = spells = streak = 0
    run_open = True
    unauthorised = health = mon_fri = pm_possible = am_absent = pm_absent = late_20 = late_prev = 0
    weekday_base = origin - 1
    for position, slot in enumerate(recent):
        code = codes[slot]
        is_pm = slot & 1
        pm_possible += is_pm
        if position < RECENT:
            late_20 += late_table[code]
            if slot >= year_slot:
                recent_20_in_year += 1
                recent_20_in_year_attended += attended_table[code]
        else:
            late_prev += late_table[code]
        if attended_table[code]:
            attended_40 += 1
            if position < RECENT:
                attended_20 += 1
                if position < RECENT_SHORT:
                    attended_10 += 1
            streak = 0
            run_open = False
            continue
        if run_open:
            current_run += 1
        streak += 1
        if streak == 1:
            spells += 1
        if streak > longest:
            longest = streak
        unauthorised += unauthorised_table[code]
        health += health_table[code]
        if (weekday_base + (slot >> 1)) % 7 in (MONDAY, FRIDAY):
            mon_fri += 1
        if is_pm:
            pm_absent += 1
        else:
            am_absent += 1
    n_recent = len(recent)
    return WindowStats(
        latest_date=state.latest_date,
        possible_10=min(n_recent, RECENT_SHORT), attended_10=attended_10,
        possible_20=min(n_recent, RECENT), attended_20=attended_20,
        possible_40=n_recent, attended_40=attended_40,
        possible_ytd=ytd_possible, attended_ytd=ytd_attended,
        earlier_possible=ytd_possible - recent_20_in_year,
        earlier_attended=ytd_attended - recent_20_in_year_attended,
        current_absence_run=current_run, longest_absence_run_40=longest, absence_spells_40=spells,
        unauthorised_40=unauthorised, health_40=health, late_20=late_20, late_previous_20=late_prev,
        monday_friday_absences_40=mon_fri,
        am_possible_40=n_recent - pm_possible, am_absences_40=am_absent, pm_possible_40=pm_possible,
        pm_absences_40=pm_absent, sessions_since_full_week=since_full_week,
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
