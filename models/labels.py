"""What "attendance dipping" means, precisely, for training, evaluation and the backtest.

A pupil's attendance is dipping at the end of a school day when, over the next
`HORIZON_DAYS` (20) school days, they
  1. attend less than `FLOOR` (90%, the persistent-absence line) of their possible sessions;
  2. attend at least `DROP` (10 percentage points) less than their own earlier level this year;
  3. and the shortfall is not one block, nor an illness:
       one block   the longest absence spell touching those 20 days lasts from two days
                   (`BLOCK_MIN_SESSIONS`; a single day off is not a block) to ten
                   (`SHORT_BLOCK_SESSIONS`) end to end, counting the part of it before and
                   after the horizon, and treating it as attended would bring the 20 days back
                   to 90% or more;
       an illness  the absences of those 20 days are all illness or medical (I, M) but at most
                   `OTHER_ABSENCES` (2) sessions, and include a spell of illness of a week
                   (`ILLNESS_SPELL_SESSIONS`) or more: a long illness, even with a day in school.
Sessions the school arranged itself (a part-time timetable C2, a suspension E) are left out
of the 20 days: the school knows about them; they are not a dip it needs telling about.
At least `MIN_FUTURE_SESSIONS` possible sessions must lie ahead, and the pupil's own earlier
level must rest on at least `MIN_EARLIER_SESSIONS` possible sessions this year (a dip is a change
against the pupil's own level, which is unknown before then); otherwise the row has no label.
Nor has a row whose own earlier level is under `SEVERE_ABSENCE_LEVEL` (50%): the pupil is already
severely absent, the school's attendance lead already works with them, and the policy raises no
concern for them (`models.policy`, `ALREADY_SEVERE`); their long spells are their pattern, not a
change to warn of, and neither training nor a backtest should count them as dips.

Why each part:
  * The floor keeps a 100% -> 93% wobble from counting.
  * The drop keeps a pupil whose attendance is low but steady (a change the school already
    knows about, not a new one) from counting.
  * The one-block rule is what "not cry wolf" needs. A week of flu, a family holiday or a
    bereavement is one contiguous block; it pushes a 20-day rate well under 90% (5 days off is
    75%), so without the rule the model is taught that every such week is a dip. With it those
    blocks are negatives, so the model learns to wait for what follows. Health is not a dip
    (issue 13): a long illness is one block of I/M however long, and is the `health_needs`
    event's business, not a concern's. Repeated short spells (illness every Monday) are not one
    block: they still count.
The label looks only at attendance, never at who the pupil is. It is computed on the final
register (`models.history.RegisterYear`): with hindsight, as a label should be.

Spells are counted over possible sessions in date order (sessions that are not possible, such
as a closure, neither break nor extend a spell), as the features do.
"""

from __future__ import annotations

import numpy as np

from models.definitions import (
    BLOCK_MIN_SESSIONS,
    DROP,
    FLOOR,
    ILLNESS_SPELL_SESSIONS,
    OTHER_ABSENCES,
    SEVERE_ABSENCE_LEVEL,
    SHORT_BLOCK_SESSIONS,
)
from models.history import RegisterYear
from models.rates import rate

HORIZON_DAYS = 20
MIN_FUTURE_SESSIONS = 20
MIN_EARLIER_SESSIONS = 20

DEFINITION = (
    f"At the end of a school day, a pupil's attendance is *dipping* if over the next {HORIZON_DAYS} school days "
    f"they attend (a) under {FLOOR:.0%} of possible sessions, (b) at least {DROP * 100:.0f} percentage points "
    f"below their own earlier rate this year, and (c) the shortfall is not one block, nor an illness: when "
    f"the longest absence spell touching those days lasts {BLOCK_MIN_SESSIONS // 2} to {SHORT_BLOCK_SESSIONS // 2} "
    f"school days end to end and counting it as attended would lift the {HORIZON_DAYS} days back to {FLOOR:.0%}, or when the "
    f"absences are all illness or medical (I, M) but {OTHER_ABSENCES} sessions and include a spell of illness "
    f"of {ILLNESS_SPELL_SESSIONS // 2} school days or more, it is not a dip. Sessions the school arranged (a part-time "
    f"timetable C2, a suspension E) are left out of the {HORIZON_DAYS} days. Rows with fewer than "
    f"{MIN_FUTURE_SESSIONS} possible sessions ahead, or fewer than {MIN_EARLIER_SESSIONS} earlier possible "
    f"sessions this year to know the pupil's own level by, are not labelled; nor are rows of a pupil whose own "
    f"earlier level is under {SEVERE_ABSENCE_LEVEL:.0%} (already severely absent)."
)


def dip_label(baseline_rate: np.ndarray, future_attended: np.ndarray, future_possible: np.ndarray,
              *, one_block: np.ndarray | None = None, floor: float = FLOOR, drop: float = DROP,
              min_future: int = MIN_FUTURE_SESSIONS) -> np.ndarray:
    """1 where the next horizon's attendance is a dip, 0 where not, -1 where too little future is known.

    `one_block` (bool per row) marks rows whose shortfall is one exempt block (part 3); None
    means no row is.
    """
    baseline_rate = np.asarray(baseline_rate, dtype=np.float64)
    future_possible = np.asarray(future_possible, dtype=np.float64)
    future_rate = np.divide(future_attended, future_possible, out=np.ones_like(future_possible),
                            where=future_possible > 0)
    label = ((future_rate < floor) & (future_rate <= baseline_rate - drop)).astype(np.int8)
    if one_block is not None:
        label[np.asarray(one_block, dtype=bool)] = 0
    label[future_possible < min_future] = -1
    return label


def pupil_labels(session_day: np.ndarray, attended: np.ndarray, health: np.ndarray, n_days: int,
                 row_day: np.ndarray, baseline_rate: np.ndarray, *, horizon_days: int = HORIZON_DAYS,
                 short_block_sessions: int = SHORT_BLOCK_SESSIONS, block_min_sessions: int = BLOCK_MIN_SESSIONS,
                 illness_spell_sessions: int = ILLNESS_SPELL_SESSIONS,
                 other_absences: int = OTHER_ABSENCES, floor: float = FLOOR) -> np.ndarray:
    """Labels for one pupil's rows.

    session_day / attended / health: the pupil's counted sessions (possible, not arranged) in
    date order: the register day index of each, whether attended, whether an illness or medical
    absence. row_day: the day index each row describes (the row is the state at that day's
    end). baseline_rate: per row.
    """
    session_day = np.asarray(session_day, dtype=np.int64)
    attended = np.asarray(attended, dtype=bool)
    row_day = np.asarray(row_day, dtype=np.int64)
    day_possible = np.bincount(session_day, minlength=n_days)[:n_days]
    day_attended = np.bincount(session_day, weights=attended, minlength=n_days)[:n_days]
    cum_possible = np.concatenate([[0], np.cumsum(day_possible)]).astype(np.int64)
    cum_attended = np.concatenate([[0], np.cumsum(day_attended)])
    start = np.minimum(row_day + 1, n_days)  # first future day
    end = np.minimum(start + horizon_days, n_days)
    p0, p1 = cum_possible[start], cum_possible[end]
    future_possible = p1 - p0
    future_attended = cum_attended[end] - cum_attended[start]
    one_block = np.zeros(len(row_day), dtype=bool)
    absent = ~attended
    m = len(absent)
    short = (future_attended < floor * future_possible) & (future_possible > 0)
    if m and absent.any() and short.any():
        # Every position's spell: its first position, one past its last, and whether it is all illness.
        index = np.arange(m)
        run_start = np.maximum.accumulate(np.where(absent & np.r_[True, ~absent[:-1]], index, 0))
        ends_here = absent & np.r_[~absent[1:], True]
        run_end = np.minimum.accumulate(np.where(ends_here, index + 1, m + 1)[::-1])[::-1]
        run_length = np.where(absent, run_end - run_start, 0)
        not_health = np.concatenate([[0], np.cumsum(absent & ~np.asarray(health, dtype=bool))])
        all_health = absent & (not_health[np.minimum(run_end, m)] == not_health[run_start])
        # For each short row, the longest spell touching its horizon (the first of equals).
        rows = np.flatnonzero(short)
        width = 2 * horizon_days
        a, b = p0[rows], p1[rows]
        positions = a[:, None] + np.arange(width)[None, :]
        inside_horizon = positions < b[:, None]
        lengths = np.where(inside_horizon, run_length[np.minimum(positions, m - 1)], -1)
        j = a + np.argmax(lengths, axis=1)
        j = np.minimum(j, m - 1)
        inside = np.minimum(run_end[j], b) - np.maximum(run_start[j], a)
        block = ((run_length[j] >= block_min_sessions) & (run_length[j] <= short_block_sessions)
                 & (future_attended[rows] + inside >= floor * future_possible[rows]))
        illness = ((not_health[b] - not_health[a] <= other_absences) & all_health[j]
                   & (run_length[j] >= illness_spell_sessions))
        one_block[rows] = block | illness
    return dip_label(baseline_rate, future_attended, future_possible, one_block=one_block)


def year_labels(year: RegisterYear, pupil: np.ndarray, day: np.ndarray, *,
                horizon_days: int = HORIZON_DAYS) -> np.ndarray:
    """Labels of rows (pupil index, register-day index) of a finished register (int8, -1 unknown)."""
    pupil = np.asarray(pupil, dtype=np.int64)
    day = np.asarray(day, dtype=np.int64)
    labels = np.full(len(pupil), -1, dtype=np.int8)
    if not len(pupil):
        return labels
    counts = year.day_end_counts
    baseline = rate(counts.earlier_attended, counts.earlier_possible)[pupil, day]
    own_level_known = counts.earlier_possible[pupil, day] >= MIN_EARLIER_SESSIONS
    counted = year.flag("possible") & ~year.flag("arranged")
    attended_all = year.flag("attended")
    health_all = year.flag("health")
    n_days = len(year.days)
    slot_day = np.repeat(np.arange(n_days), 2)
    order = np.argsort(pupil, kind="stable")
    sorted_pupils = pupil[order]
    bounds = np.flatnonzero(np.r_[True, sorted_pupils[1:] != sorted_pupils[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        rows = order[a:b]
        p = int(sorted_pupils[a])
        keep = counted[p].reshape(-1)
        labels[rows] = pupil_labels(slot_day[keep], attended_all[p].reshape(-1)[keep],
                                    health_all[p].reshape(-1)[keep], n_days, day[rows], baseline[rows],
                                    horizon_days=horizon_days)
    labels[~own_level_known | (baseline < SEVERE_ABSENCE_LEVEL)] = -1
    return labels


EPISODE_GAP_DAYS = 10  # positive days at most this far apart belong to one dip episode
LABEL_DIP = "label_dip"  # the episode kind of a dip read off the label


def label_episodes(pupil: np.ndarray, day: np.ndarray, *, max_gap_days: int = EPISODE_GAP_DAYS,
                   ) -> list[tuple[int, int, int]]:
    """Dip episodes read off the label itself, where no ground truth exists: runs of a pupil's
    positive rows (pupil index, register-day index), gaps of at most `max_gap_days` school days
    joined. Returns (pupil, first day, last day) per episode, by pupil then date."""
    pupil = np.asarray(pupil, dtype=np.int64)
    day = np.asarray(day, dtype=np.int64)
    if not len(pupil):
        return []
    order = np.lexsort((day, pupil))
    pupil, day = pupil[order], day[order]
    new = np.r_[True, (pupil[1:] != pupil[:-1]) | (day[1:] - day[:-1] > max_gap_days)]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(pupil)] - 1
    return list(zip(pupil[starts].tolist(), day[starts].tolist(), day[ends].tolist()))
