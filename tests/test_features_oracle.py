"""The vectorised feature code against a plain, obviously-correct oracle, on random states."""

from __future__ import annotations

import datetime as dt

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.features import FEATURE_NAMES, STAT_NAMES, features_batch, snapshot
from models.state import OutsideWindowError, PupilState
from schemas.codes import CODES
from schemas.marks import Session

CODE_NAMES = sorted(CODES)


def oracle(state: PupilState) -> dict[str, int]:
    """The definitions of WindowSummary, written the slow and simple way."""
    held = [(day, session, CODES[code]) for day, session, code in state.sessions()]
    possible = [(d, s, c) for d, s, c in held if c.possible_session]
    year_start = dt.date(state.year, 8, 1)
    recent = possible[::-1][:40]
    ytd = [(d, s, c) for d, s, c in possible if d >= year_start]
    recent_20_in_year = [x for x in recent[:20] if x[0] >= year_start]
    attended = [c.attending for _, _, c in recent]
    runs, run = [], 0
    for flag in attended + [True]:
        if flag:
            if run:
                runs.append(run)
            run = 0
        else:
            run += 1
    current = next((i for i, flag in enumerate(attended) if flag), len(attended))
    sequence = "".join("A" if c.attending else "X" for _, _, c in possible)
    last_week = sequence.rfind("A" * 10)
    absent = [(d, s, c) for d, s, c in recent if not c.attending]
    # Runs of absence newest first: (index of the run's newest session, length); the longest wins,
    # the most recent of equally long ones.
    spells, start = [], None
    for i, flag in enumerate(attended + [True]):
        if not flag and start is None:
            start = i
        elif flag and start is not None:
            spells.append((start, i - start))
            start = None
    block = max(spells, key=lambda spell: (spell[1], -spell[0]), default=None)
    since = block[0] if block else 0

    def leave(c) -> bool:
        return c.absence and bool(c.authorised) and not c.health and not c.holiday

    # Days off on one weekday: each absent session's run (within the 40), then the days of a day
    # or two off whose every session in the 40 was missed, not as leave.
    run_of = {}
    for newest, length in spells:
        for i in range(newest, newest + length):
            run_of[i] = length
    by_day: dict[dt.date, list[bool]] = {}
    for i, (d, _, c) in enumerate(recent):
        by_day.setdefault(d, []).append(not c.attending and run_of[i] <= 4 and not leave(c))
    if recent and recent[0][1] is Session.AM:  # the latest day, its afternoon not in yet
        del by_day[recent[0][0]]
    per_weekday = [sum(all(off) for d, off in by_day.items() if d.weekday() == w) for w in range(7)]
    most = max(per_weekday)

    return {
        "possible_10": len(recent[:10]), "attended_10": sum(attended[:10]),
        "possible_20": len(recent[:20]), "attended_20": sum(attended[:20]),
        "possible_40": len(recent), "attended_40": sum(attended),
        "possible_ytd": state.folded_possible + len(ytd),
        "attended_ytd": state.folded_attended + sum(c.attending for _, _, c in ytd),
        "earlier_possible": state.folded_possible + len(ytd) - len(recent_20_in_year),
        "earlier_attended": state.folded_attended + sum(c.attending for _, _, c in ytd)
        - sum(c.attending for _, _, c in recent_20_in_year),
        "current_absence_run": current, "longest_absence_run_40": max(runs, default=0),
        "current_run_explained": sum(c.health or c.holiday for _, _, c in recent[:current]),
        "current_run_health": sum(c.health for _, _, c in recent[:current]),
        "current_run_leave": sum(leave(c) for _, _, c in recent[:current]),
        "health_absence_ytd": state.folded_health + sum(c.health for _, _, c in ytd),
        "arranged_20": sum(c.code in ("C2", "E") for _, _, c in recent[:20]),
        "arranged_40": sum(c.code in ("C2", "E") for _, _, c in recent),
        "possible_since_block": since, "attended_since_block": sum(attended[:since]),
        "absence_spells_40": len(runs),
        "unauthorised_40": sum(c.unauthorised for _, _, c in absent),
        "health_40": sum(c.health for _, _, c in absent),
        "late_20": sum(c.late for _, _, c in recent[:20]),
        "late_previous_20": sum(c.late for _, _, c in recent[20:]),
        "monday_friday_absences_40": sum(d.weekday() in (0, 4) for d, _, _ in absent),
        "am_possible_40": sum(s is Session.AM for _, s, _ in recent),
        "am_absences_40": sum(s is Session.AM for _, s, _ in absent),
        "pm_possible_40": sum(s is Session.PM for _, s, _ in recent),
        "pm_absences_40": sum(s is Session.PM for _, s, _ in absent),
        "sessions_since_full_week": len(sequence) - last_week - 10 if last_week >= 0 else len(sequence),
        "same_weekday_days_off_40": most, "same_weekday": per_weekday.index(most) + 1 if most else 0,
    }


marks = st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.sampled_from(CODE_NAMES + ["/", "\\"] * 6),
                           st.integers(1, 10**6)), min_size=1, max_size=300)


def build(window: int, start: dt.date, steps) -> PupilState:
    state = PupilState("S", window, start)
    day = start
    for advance, pm, code, stamp in steps:
        day += dt.timedelta(days=advance)
        try:
            state.apply_raw(day.toordinal(), pm, CODES[code].index, stamp, "S")
        except OutsideWindowError:
            pass
    return state


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([60, 126]), st.dates(dt.date(2024, 6, 1), dt.date(2025, 10, 1)), marks),
                min_size=1, max_size=6))
def test_batch_features_match_the_oracle(cases):
    states = [build(window, start, steps) for window, start, steps in cases]
    batch, X = features_batch([snapshot(s) for s in states])
    assert X.shape == (len(states), len(FEATURE_NAMES)) and np.all(np.isfinite(X))
    for i, state in enumerate(states):
        row = batch.row(i)
        expected = oracle(state)
        assert set(expected) == set(STAT_NAMES), "every count has an oracle"
        assert {name: getattr(row, name) for name in expected} == expected
        assert row.latest_date == state.latest_date
