"""The reactive rules schools already have, as the model's comparison.

  ytd_below_90           the first day end at which a pupil, with at least 20 possible sessions
                         this year, attends under 90% of them year to date;
  last_4_weeks_below_90  the same, over their last 40 possible sessions (about four weeks).

One alert per pupil, on the final register's day-end counts (`models.history.DayEndCounts`),
scored with the same functions as the model's alerts. For ranking metrics a rule's score is
its underlying number: 1 - the rate it thresholds.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from models.history import DayEndCounts, RegisterYear

YTD, LAST4 = "ytd_below_90", "last_4_weeks_below_90"
BASELINES = (YTD, LAST4)
BASELINE_FLOOR = 0.90
BASELINE_MIN_POSSIBLE = 20


def _rate_inputs(counts: DayEndCounts, which: str) -> tuple[np.ndarray, np.ndarray]:
    if which == YTD:
        return counts.attended_ytd, counts.possible_ytd
    if which == LAST4:
        return counts.attended_40, counts.possible_40
    raise ValueError(f"unknown baseline {which!r}")


def baseline_fires(counts: DayEndCounts, which: str) -> np.ndarray:
    """Where the rule holds at a day end (bool, pupils x register days)."""
    attended, possible = _rate_inputs(counts, which)
    return (counts.possible_ytd >= BASELINE_MIN_POSSIBLE) & (attended < BASELINE_FLOOR * possible)


def first_fires(year: RegisterYear, which: str) -> np.ndarray:
    """Per pupil, the register-day index of the rule's first firing, -1 if it never fires."""
    fires = baseline_fires(year.day_end_counts, which)
    return np.where(fires.any(axis=1), np.argmax(fires, axis=1), -1)


def baseline_alerts(year: RegisterYear, which: str) -> dict[str, list[dt.date]]:
    """pupil -> [date of the rule's first firing], for pupils it fires for."""
    first = first_fires(year, which)
    return {year.pupils[p]: [dt.date.fromordinal(int(year.days[d]))] for p, d in enumerate(first.tolist()) if d >= 0}


def baseline_scores(year: RegisterYear, pupil: np.ndarray, day: np.ndarray, which: str) -> np.ndarray:
    """1 - the rule's rate at these (pupil index, register-day index) day ends."""
    attended, possible = _rate_inputs(year.day_end_counts, which)
    return 1 - attended[pupil, day] / np.maximum(possible[pupil, day], 1)
