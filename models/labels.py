"""What "attendance dipping" means, precisely, for training and evaluation.

A pupil's attendance is dipping at the end of a school day when, over the next
`HORIZON_DAYS` (20) school days, they
  1. attend less than `FLOOR` (90%, the persistent-absence line) of their possible sessions;
  2. attend at least `DROP` (10 percentage points) less than their own earlier level this year;
  3. and the shortfall is not one short block: if the longest absence spell touching those
     20 days lasts at most `SHORT_BLOCK_SESSIONS` (10 school days) end to end, counting the
     part of it before and after the horizon, and treating that one spell as attended would
     bring the 20 days back to 90% or more, it is not a dip.
At least `MIN_FUTURE_SESSIONS` possible sessions must lie ahead, otherwise the row has no label.

Why each part:
  * The floor keeps a 100% -> 93% wobble from counting.
  * The drop keeps a pupil whose attendance is low but steady (a change the school already
    knows about, not a new one) from counting.
  * The short-block rule is what "not cry wolf" needs. A week of flu or a family holiday is one
    contiguous block of 4-10 days; it pushes a 20-day rate well under 90% (5 days off is 75%),
    so without the rule the model is taught that every week of illness is a dip, and alerts on
    the 12% of pupils who have one. With the rule those blocks are negatives, so the model
    learns to wait until an absence is longer than a short block, scattered, or recurring.
    A long illness (three weeks or more) is still a dip: it is longer than 10 school days.
The label looks only at attendance, never at who the pupil is.

Spells are counted over possible sessions in date order (sessions that are not possible, such
as a closure, neither break nor extend a spell), as the features do.
"""

from __future__ import annotations

import numpy as np

HORIZON_DAYS = 20
FLOOR = 0.90
DROP = 0.10
MIN_FUTURE_SESSIONS = 20
SHORT_BLOCK_SESSIONS = 20  # 10 school days: the longest one-off block (illness week, holiday)

DEFINITION = (
    f"At the end of a school day, a pupil's attendance is *dipping* if over the next {HORIZON_DAYS} school days "
    f"they attend (a) under {FLOOR:.0%} of possible sessions, (b) at least {DROP * 100:.0f} percentage points "
    f"below their own earlier rate this year, and (c) the shortfall is not one short block: when the longest "
    f"absence spell touching those days lasts at most {SHORT_BLOCK_SESSIONS // 2} school days end to end and "
    f"counting it as attended would lift the {HORIZON_DAYS} days back to {FLOOR:.0%}, it is not a dip. "
    f"Rows with fewer than {MIN_FUTURE_SESSIONS} possible sessions ahead are not labelled."
)


def dip_label(baseline_rate: np.ndarray, future_attended: np.ndarray, future_possible: np.ndarray,
              *, short_block: np.ndarray | None = None, floor: float = FLOOR, drop: float = DROP,
              min_future: int = MIN_FUTURE_SESSIONS) -> np.ndarray:
    """1 where the next horizon's attendance is a dip, 0 where not, -1 where too little future is known.

    `short_block` (bool per row) marks rows whose shortfall is one short block (part 3); None
    means no row is.
    """
    baseline_rate = np.asarray(baseline_rate, dtype=np.float64)
    future_possible = np.asarray(future_possible, dtype=np.float64)
    future_rate = np.divide(future_attended, future_possible, out=np.ones_like(future_possible),
                            where=future_possible > 0)
    label = ((future_rate < floor) & (future_rate <= baseline_rate - drop)).astype(np.int8)
    if short_block is not None:
        label[np.asarray(short_block, dtype=bool)] = 0
    label[future_possible < min_future] = -1
    return label


def pupil_labels(day_possible: np.ndarray, day_attended: np.ndarray, absent_sequence: np.ndarray,
                 row_day_index: np.ndarray, baseline_rate: np.ndarray, *, horizon_days: int = HORIZON_DAYS,
                 short_block_sessions: int = SHORT_BLOCK_SESSIONS, floor: float = FLOOR) -> np.ndarray:
    """Labels for one pupil's rows.

    day_possible / day_attended: possible and attended sessions on each school day of the year
    (int arrays of length n_days). absent_sequence: the pupil's possible sessions in date order,
    True where absent (length day_possible.sum()). row_day_index: the school-day index each row
    describes (the row is the state at that day's end). baseline_rate: per row.
    """
    n_days = len(day_possible)
    cum_possible = np.concatenate([[0], np.cumsum(day_possible)])
    cum_attended = np.concatenate([[0], np.cumsum(day_attended)])
    start = row_day_index + 1  # first future day
    end = np.minimum(start + horizon_days, n_days)
    p0, p1 = cum_possible[start], cum_possible[end]
    future_possible = p1 - p0
    future_attended = cum_attended[end] - cum_attended[start]

    absent = np.asarray(absent_sequence, dtype=bool)
    m = len(absent)
    short_block = np.zeros(len(row_day_index), dtype=bool)
    if m and absent.any():
        # Every position's spell: its first position and one past its last.
        index = np.arange(m)
        run_start = np.maximum.accumulate(np.where(absent & np.r_[True, ~absent[:-1]], index, 0))
        ends_here = absent & np.r_[~absent[1:], True]
        run_end = np.minimum.accumulate(np.where(ends_here, index + 1, m + 1)[::-1])[::-1]
        run_length = np.where(absent, run_end - run_start, 0)
        for i in range(len(row_day_index)):
            a, b = int(p0[i]), int(p1[i])
            if b <= a or future_attended[i] >= floor * future_possible[i]:
                continue
            window = run_length[a:b]
            j = a + int(np.argmax(window))
            if run_length[j] > short_block_sessions:
                continue
            inside = min(int(run_end[j]), b) - max(int(run_start[j]), a)
            short_block[i] = future_attended[i] + inside >= floor * future_possible[i]
    return dip_label(baseline_rate, future_attended, future_possible, short_block=short_block)
