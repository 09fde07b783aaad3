"""Episodes laid over the baseline: the dips the product must detect, with ground truth, and
look-alikes it must not alert on, plus part-time timetables.

Each episode is planned up front (pupil, kind, onset, recovery) and applied session by
session, vectorised over the pupils that have that kind of episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.simulator import codes as C
from models.simulator.calendar import SchoolCalendar
from models.simulator.cohort import SEN_NONE, Cohort

DIP_KINDS: tuple[str, ...] = ("avoidance", "family_crisis", "monday_friday", "young_carer", "long_illness")
NON_DIP_KINDS: tuple[str, ...] = ("one_week_illness", "term_time_holiday", "low_steady")
KINDS: tuple[str, ...] = DIP_KINDS + NON_DIP_KINDS
AVOIDANCE, FAMILY_CRISIS, MONDAY_FRIDAY, YOUNG_CARER, LONG_ILLNESS = range(5)
# Shares among dips: long illness and avoidance are the commonest causes schools report.
DIP_KIND_SHARES = np.array([0.25, 0.20, 0.20, 0.10, 0.25], dtype=np.float64)
BASELINE_DAYS = 30  # six school weeks of normal attendance before any dip
NO_RECOVERY = np.iinfo(np.int32).max
LOW_STEADY_RATE_RANGE = (0.12, 0.19)  # 81-88% attendance, the "low but steady" non-dip

# Codes for the absences of each dip kind (cumulative tables built below).
_DIP_CODES: dict[int, dict[str, float]] = {
    AVOIDANCE: {"O": 0.38, "N": 0.30, "I": 0.20, "G": 0.02, "M": 0.10},
    FAMILY_CRISIS: {"O": 0.35, "N": 0.25, "C": 0.20, "I": 0.20},
    MONDAY_FRIDAY: {"I": 0.35, "O": 0.35, "N": 0.20, "G": 0.10},
    YOUNG_CARER: {"O": 0.55, "N": 0.45},
    LONG_ILLNESS: {"I": 0.85, "M": 0.15},
}
# A low-but-steady attender's days off: mostly illness and unexplained, some appointments.
_STEADY_CODES: dict[str, float] = {"I": 0.45, "O": 0.25, "N": 0.10, "M": 0.12, "G": 0.08}


@dataclass(frozen=True, slots=True)
class TruthRow:
    pupil_id: str
    school_id: str
    kind: str
    onset_date: str
    recovery_date: str  # "" when the pupil has not recovered by the end of the year

    def csv_line(self) -> str:
        return f"{self.pupil_id},{self.school_id},{self.kind},{self.onset_date},{self.recovery_date}\n"


TRUTH_HEADER = "pupil_id,school_id,kind,onset_date,recovery_date\n"


@dataclass(frozen=True, slots=True)
class EpisodeRates:
    dip: float = 0.07
    one_week_illness: float = 0.12
    term_time_holiday: float = 0.04
    low_steady: float = 0.03


@dataclass(slots=True)
class Dips:
    pupil: np.ndarray  # int32
    kind: np.ndarray  # int8
    onset: np.ndarray  # int32 day index
    recovery: np.ndarray  # int32 day index of the first normal day, NO_RECOVERY if none
    ramp: np.ndarray  # int32 days to reach the peak (gradual kinds)
    peak: np.ndarray  # float64 peak probability of absence
    absent_today: np.ndarray = field(init=False)  # bool: the morning decision, reused at PM

    def __post_init__(self) -> None:
        self.absent_today = np.zeros(self.pupil.size, dtype=bool)


@dataclass(frozen=True, slots=True)
class Blocks:
    """Fixed blocks of a single code over whole days: one-week illness, holidays, C2."""

    pupil: np.ndarray  # int32
    start: np.ndarray  # int32 day index
    end: np.ndarray  # int32 day index, exclusive
    code: np.int8
    sessions: tuple[int, ...]  # which sessions the block covers


def _allocate(total: int, shares: np.ndarray) -> np.ndarray:
    """Integer counts per share summing to total (largest remainder), so every kind with a
    non-zero share appears once the total allows it."""
    raw = total * shares / shares.sum()
    counts = np.floor(raw).astype(np.int64)
    for index in np.argsort(-(raw - counts))[: total - int(counts.sum())]:
        counts[index] += 1
    if total >= shares.size:
        for index in np.flatnonzero(counts == 0):
            counts[np.argmax(counts)] -= 1
            counts[index] += 1
    return counts


def _pick(rng: np.random.Generator, eligible: np.ndarray, weights: np.ndarray, count: int) -> np.ndarray:
    count = min(count, int(eligible.sum()))
    if count <= 0:
        return np.empty(0, dtype=np.int32)
    candidates = np.flatnonzero(eligible)
    p = weights[candidates] / weights[candidates].sum()
    return np.sort(rng.choice(candidates, size=count, replace=False, p=p)).astype(np.int32)


def _risk_weight(cohort: Cohort) -> np.ndarray:
    """Dips are commoner among disadvantaged and SEN pupils, as absence itself is."""
    return np.where(cohort.fsm, 1.5, 1.0) * np.where(cohort.sen != SEN_NONE, 1.5, 1.0)


def plan_dips(cohort: Cohort, n_days: int, eligible: np.ndarray, rate: float, rng: np.random.Generator) -> Dips:
    pupils = _pick(rng, eligible, _risk_weight(cohort), int(round(rate * cohort.size)))
    counts = _allocate(pupils.size, DIP_KIND_SHARES)
    kind = rng.permutation(np.repeat(np.arange(len(DIP_KINDS), dtype=np.int8), counts))
    k = pupils.size
    last_onset = max(BASELINE_DAYS + 1, n_days - 25)
    onset = rng.integers(BASELINE_DAYS, last_onset, size=k).astype(np.int32)
    ramp = np.ones(k, dtype=np.int32)
    peak = np.zeros(k, dtype=np.float64)
    recovery = np.full(k, NO_RECOVERY, dtype=np.int64)

    def when(mask: np.ndarray, values: np.ndarray, into: np.ndarray) -> None:
        into[mask] = values[mask]

    size = (k,)
    # Avoidance: absence creeps up over 3-7 weeks; a third turn it round after a while.
    a = kind == AVOIDANCE
    when(a, rng.integers(15, 36, size=size), ramp)
    when(a, rng.uniform(0.35, 0.75, size=size), peak)
    when(a & (rng.random(size) < 0.35), onset + ramp + rng.integers(15, 41, size=size), recovery)
    # Family crisis: a sudden drop held for 3-9 weeks; most recover.
    f = kind == FAMILY_CRISIS
    when(f, rng.uniform(0.45, 0.85, size=size), peak)
    when(f & (rng.random(size) < 0.75), onset + rng.integers(15, 46, size=size), recovery)
    # Monday/Friday: long weekends become a habit over 2-5 weeks.
    m = kind == MONDAY_FRIDAY
    when(m, rng.integers(10, 26, size=size), ramp)
    when(m, rng.uniform(0.6, 0.95, size=size), peak)
    when(m & (rng.random(size) < 0.2), onset + ramp + rng.integers(30, 51, size=size), recovery)
    # Young carer: `ramp` is the length of each stage (late, then after close, then missed).
    y = kind == YOUNG_CARER
    when(y, rng.integers(10, 16, size=size), ramp)
    when(y, rng.uniform(0.4, 0.7, size=size), peak)
    # Long illness: 3-8 weeks off, then back.
    li = kind == LONG_ILLNESS
    when(li, np.full(size, 0.93), peak)
    when(li, onset + rng.integers(15, 41, size=size), recovery)

    recovery = np.where(recovery >= n_days, NO_RECOVERY, recovery).astype(np.int32)
    return Dips(pupil=pupils, kind=kind, onset=onset, recovery=recovery, ramp=ramp, peak=peak)


def _within_term_block(start: np.ndarray, length: np.ndarray, calendar: SchoolCalendar) -> np.ndarray:
    """True where [start, start+length) has no break inside it."""
    to_break = np.array(calendar.days_to_break, dtype=np.int32)
    return to_break[start] >= length - 1


def plan_one_week_illness(
    calendar: SchoolCalendar, pupils: np.ndarray, latest_end: np.ndarray, rng: np.random.Generator
) -> Blocks:
    """About five school days of illness (I) at any time, inside one stretch of term."""
    n_days = len(calendar.school_days)
    length = rng.choice(np.array([4, 5, 5, 5, 6], dtype=np.int32), size=pupils.size)
    start = np.zeros(pupils.size, dtype=np.int32)
    ok = np.zeros(pupils.size, dtype=bool)
    for _attempt in range(20):
        todo = ~ok
        if not todo.any():
            break
        high = np.maximum(np.minimum(latest_end[pupils[todo]], n_days) - length[todo], 6)
        start[todo] = rng.integers(5, high)
        ok = _within_term_block(start, length, calendar) & (start + length <= np.minimum(latest_end[pupils], n_days))
    return Blocks(pupils[ok], start[ok], start[ok] + length[ok], C.ILLNESS, (0, 1))


def plan_holidays(
    calendar: SchoolCalendar, pupils: np.ndarray, latest_end: np.ndarray, rng: np.random.Generator
) -> Blocks:
    """One block of 5-10 days of unauthorised holiday (G); most families stretch a break,
    so 60% of blocks end on the last day before a break or start on the first day back."""
    n_days = len(calendar.school_days)
    last_before = np.array(sorted(calendar.break_starts_after - {n_days - 1}), dtype=np.int32)
    length = rng.integers(5, 11, size=pupils.size).astype(np.int32)
    start = np.zeros(pupils.size, dtype=np.int32)
    ok = np.zeros(pupils.size, dtype=bool)
    for _attempt in range(20):
        todo = np.flatnonzero(~ok)
        if not todo.size:
            break
        boundary = last_before[rng.integers(0, last_before.size, size=todo.size)]
        before = rng.random(todo.size) < 0.5
        adjacent = np.where(before, boundary - length[todo] + 1, boundary + 1)
        anywhere = rng.integers(0, max(1, n_days - 10), size=todo.size)
        start[todo] = np.where(rng.random(todo.size) < 0.6, adjacent, anywhere)
        ok = (
            (start >= 0)
            & (start + length <= np.minimum(latest_end[pupils], n_days))
            & _within_term_block(np.clip(start, 0, n_days - 1), length, calendar)
        )
    return Blocks(pupils[ok], start[ok], start[ok] + length[ok], C.HOLIDAY, (0, 1))


def plan_part_time(
    cohort: Cohort, n_days: int, share_by_pupil: np.ndarray, eligible: np.ndarray, rng: np.random.Generator
) -> Blocks:
    """Temporary part-time timetables (C2 in the afternoons for 4-12 weeks), mostly for
    pupils with SEN, as DfE guidance expects them to be short and support-led."""
    weight = np.where(cohort.sen != SEN_NONE, 4.0, 1.0)
    count = int(round(float(share_by_pupil.sum())))
    pupils = _pick(rng, eligible, weight * share_by_pupil, count)
    length = rng.integers(20, 61, size=pupils.size).astype(np.int32)
    start = rng.integers(0, np.maximum(n_days - length, 1)).astype(np.int32)
    return Blocks(pupils, start, np.minimum(start + length, n_days), C.PART_TIME, (1,))


@dataclass(slots=True)
class SteadyLow:
    """Pupils who miss a steady share of days all year (the `low_steady` non-dip).

    Their absence is scheduled, not drawn as spells: each pupil earns "credit" at their rate
    (with day-to-day jitter) and takes a day off when a whole day's credit is due. That keeps
    every month close to the annual rate, which is what makes them steady rather than a dip.
    """

    pupil: np.ndarray  # int32
    rate: np.ndarray  # float64 target absence rate
    credit: np.ndarray = field(init=False)  # float64, in days
    absent_today: np.ndarray = field(init=False)  # bool
    codes_today: np.ndarray = field(init=False)  # int8

    def __post_init__(self) -> None:
        # A random starting credit so the pupils' days off are not all on the same date.
        self.credit = (np.arange(self.pupil.size, dtype=np.float64) * 0.618) % 1.0
        self.absent_today = np.zeros(self.pupil.size, dtype=bool)
        self.codes_today = np.zeros(self.pupil.size, dtype=np.int8)

    def mask(self, n: int) -> np.ndarray:
        chosen = np.zeros(n, dtype=bool)
        chosen[self.pupil] = True
        return chosen

    def apply(
        self, session: int, codes: np.ndarray, rng: np.random.Generator, table: tuple[np.ndarray, np.ndarray]
    ) -> None:
        if session == 0:
            self.credit += self.rate * rng.uniform(0.4, 1.6, size=self.pupil.size)
            self.absent_today = self.credit >= 1.0
            self.credit[self.absent_today] -= 1.0
            self.codes_today = _draw(rng, *table, self.pupil.size)
        codes[self.pupil[self.absent_today]] = self.codes_today[self.absent_today]


class EpisodeBook:
    """All planned episodes; applies them to each session's codes and lists ground truth."""

    def __init__(self, dips: Dips, blocks: list[Blocks], steady: SteadyLow) -> None:
        self.dips = dips
        self.blocks = blocks
        self.steady = steady
        self._dip_codes = {kind: _cumulative(weights) for kind, weights in _DIP_CODES.items()}
        self._steady_codes = _cumulative(_STEADY_CODES)

    def apply(self, day_index: int, weekday: int, session: int, codes: np.ndarray, rng: np.random.Generator) -> None:
        self.steady.apply(session, codes, rng, self._steady_codes)
        self._apply_dips(day_index, weekday, session, codes, rng)
        # Blocks come last: a week of illness or a holiday is the whole story for those days.
        for block in self.blocks:
            if session not in block.sessions:
                continue
            active = (block.start <= day_index) & (day_index < block.end)
            codes[block.pupil[active]] = block.code

    def _apply_dips(self, day: int, weekday: int, session: int, codes: np.ndarray, rng: np.random.Generator) -> None:
        d = self.dips
        t = day - d.onset
        active = (t >= 0) & (day < d.recovery)
        if not active.any():
            return
        progress = np.clip((t + 1) / np.maximum(d.ramp, 1), 0.0, 1.0)
        monday_or_friday = weekday in (0, 4)
        p_absent = np.select(
            [d.kind == AVOIDANCE, d.kind == FAMILY_CRISIS, d.kind == MONDAY_FRIDAY, d.kind == LONG_ILLNESS],
            [d.peak * progress, d.peak, d.peak * progress if monday_or_friday else 0.03 * progress, d.peak],
            0.0,
        )
        p_absent = np.where(active, p_absent, 0.0)
        whole_day = d.kind != YOUNG_CARER
        if session == 0:
            d.absent_today = rng.random(d.pupil.size) < p_absent
            absent = d.absent_today & whole_day
        else:
            # Afternoons mostly follow the morning; a few pupils come in after lunch.
            absent = d.absent_today & whole_day & (rng.random(d.pupil.size) < 0.92)
        for kind, (options, cumulative) in self._dip_codes.items():
            chosen = absent & (d.kind == kind)
            if chosen.any():
                codes[d.pupil[chosen]] = _draw(rng, options, cumulative, int(chosen.sum()))
        self._apply_young_carer(t, active & (d.kind == YOUNG_CARER), session, codes, rng)

    def _apply_young_carer(
        self, t: np.ndarray, active: np.ndarray, session: int, codes: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Mornings slip from late (L) to after the register closes (U) to missed (N/O),
        while afternoons are mostly attended."""
        if not active.any():
            return
        d = self.dips
        who = np.flatnonzero(active)
        pupils = d.pupil[who]
        u = rng.random(who.size)
        if session == 1:
            ill = u < 0.04
            codes[pupils[ill]] = C.ILLNESS
            return
        stage = np.minimum(t[who] // d.ramp[who], 2)
        p_late = np.array([0.45, 0.25, 0.15])[stage]
        p_after = np.array([0.08, 0.35, 0.20])[stage]
        p_missed = np.array([0.02, 0.10, 1.0])[stage] * np.where(stage == 2, d.peak[who], 1.0)
        missed = u < p_missed
        after = (u >= p_missed) & (u < p_missed + p_after)
        late = (u >= p_missed + p_after) & (u < p_missed + p_after + p_late)
        options, cumulative = self._dip_codes[YOUNG_CARER]
        codes[pupils[missed]] = _draw(rng, options, cumulative, int(missed.sum()))
        # Lateness only turns an ordinary morning into a late one, not an illness into lateness.
        on_time = codes[pupils] == C.PRESENT_AM
        codes[pupils[after & on_time]] = C.AFTER_CLOSE
        codes[pupils[late & on_time]] = C.LATE

    def truth_rows(self, cohort: Cohort, calendar: SchoolCalendar) -> list[TruthRow]:
        days = [d.isoformat() for d in calendar.school_days]

        def row(pupil: int, kind: str, onset: int, recovery: int) -> TruthRow:
            return TruthRow(
                pupil_id=str(cohort.pupil_ids[pupil]),
                school_id=cohort.school_ids[int(cohort.school[pupil])],
                kind=kind,
                onset_date=days[onset],
                recovery_date=days[recovery] if recovery < len(days) else "",
            )

        rows = [
            row(int(p), DIP_KINDS[int(k)], int(o), int(r))
            for p, k, o, r in zip(self.dips.pupil, self.dips.kind, self.dips.onset, self.dips.recovery)
        ]
        for block in self.blocks:
            kind = {C.ILLNESS: "one_week_illness", C.HOLIDAY: "term_time_holiday"}.get(block.code)
            if kind is None:
                continue
            rows += [row(int(p), kind, int(s), int(e)) for p, s, e in zip(block.pupil, block.start, block.end)]
        rows += [row(int(p), "low_steady", 0, NO_RECOVERY) for p in self.steady.pupil]
        order = {pid: i for i, pid in enumerate(cohort.pupil_ids.tolist())}
        return sorted(rows, key=lambda r: (order[r.pupil_id], KINDS.index(r.kind)))


def _cumulative(weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    options = C.code_indices(tuple(weights))
    probabilities = np.array(list(weights.values()), dtype=np.float64)
    return options, np.cumsum(probabilities / probabilities.sum())


def _draw(rng: np.random.Generator, options: np.ndarray, cumulative: np.ndarray, size: int) -> np.ndarray:
    picked = np.minimum(np.searchsorted(cumulative, rng.random(size), side="right"), options.size - 1)
    return options[picked]


def plan_episodes(
    cohort: Cohort,
    calendar: SchoolCalendar,
    severe: np.ndarray,
    part_time_share: np.ndarray,
    rates: EpisodeRates,
    rng: np.random.Generator,
) -> EpisodeBook:
    """Plan every episode. Low-steady pupils get no dip, holiday, illness week or part-time
    timetable, so their year stays steady."""
    n = cohort.size
    n_days = len(calendar.school_days)
    low_steady = _pick(rng, ~severe, np.ones(n), int(round(rates.low_steady * n)))
    is_low_steady = np.zeros(n, dtype=bool)
    is_low_steady[low_steady] = True

    part_time = plan_part_time(cohort, n_days, part_time_share, ~severe & ~is_low_steady, rng)
    on_part_time = np.zeros(n, dtype=bool)
    on_part_time[part_time.pupil] = True

    dips = plan_dips(cohort, n_days, ~severe & ~is_low_steady & ~on_part_time, rates.dip, rng)
    # A pupil with a dip may also have an illness week or a holiday, but only before the dip
    # (with a week's gap) so the dip's ground truth stays clean.
    latest_end = np.full(n, n_days, dtype=np.int32)
    latest_end[dips.pupil] = dips.onset - 5

    ill_pupils = _pick(rng, ~is_low_steady, np.ones(n), int(round(rates.one_week_illness * n)))
    illness = plan_one_week_illness(calendar, ill_pupils, latest_end, rng)
    holiday_pupils = _pick(rng, ~is_low_steady, np.ones(n), int(round(rates.term_time_holiday * n)))
    holidays = plan_holidays(calendar, holiday_pupils, latest_end, rng)
    illness = _drop_overlaps(illness, holidays)

    steady = SteadyLow(low_steady, rng.uniform(*LOW_STEADY_RATE_RANGE, size=low_steady.size))
    return EpisodeBook(dips, [part_time, illness, holidays], steady)


def _drop_overlaps(first: Blocks, second: Blocks) -> Blocks:
    """Remove blocks of `first` that overlap (within two days) a block of `second` for the
    same pupil, so each non-dip episode is recognisable on its own."""
    second_by_pupil = {int(p): (int(s), int(e)) for p, s, e in zip(second.pupil, second.start, second.end)}
    keep = np.array(
        [
            not (int(p) in second_by_pupil
                 and int(s) < second_by_pupil[int(p)][1] + 2 and second_by_pupil[int(p)][0] < int(e) + 2)
            for p, s, e in zip(first.pupil, first.start, first.end)
        ],
        dtype=bool,
    )
    return Blocks(first.pupil[keep], first.start[keep], first.end[keep], first.code, first.sessions)
