"""Episodes laid over the baseline: the dips the product must detect, with ground truth, and
the look-alikes it must not alert on.

  dips       avoidance, family_crisis, monday_friday, young_carer, recurrent_illness
  health     long_illness (four to eight weeks of I/M, the odd day in school): health is not a
             dip; the `health_needs` event is the right response
  one-off    illness_block (one to three weeks of I), term_time_holiday (one or two weeks of G),
             bereavement (a few days of C)
  other      low_steady (81-88% all year), part_time (a C2 timetable in the afternoons),
             suspension (a few days of E)
Partial and whole-school closures (Y3 for one year group, # or Y4 for the school) are laid
over everything; they are not possible sessions and have no truth rows.

Each episode is planned up front (pupil, kind, onset, recovery) from the profile
(models.simulator.profiles) and applied session by session, vectorised over the pupils that
have that kind of episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.simulator import codes as C
from models.simulator.calendar import SchoolCalendar
from models.simulator.cohort import PRIMARY, SEN_NONE, Cohort
from models.simulator.profiles import DEFAULT, DIP_KIND_ORDER, Profile

DIP_KINDS: tuple[str, ...] = DIP_KIND_ORDER
HEALTH_KINDS: tuple[str, ...] = ("long_illness",)
ONE_OFF_KINDS: tuple[str, ...] = ("illness_block", "term_time_holiday", "bereavement")
OTHER_KINDS: tuple[str, ...] = ("low_steady", "part_time", "suspension")
NON_DIP_KINDS: tuple[str, ...] = HEALTH_KINDS + ONE_OFF_KINDS + OTHER_KINDS
KINDS: tuple[str, ...] = DIP_KINDS + NON_DIP_KINDS
AVOIDANCE, FAMILY_CRISIS, MONDAY_FRIDAY, YOUNG_CARER, RECURRENT_ILLNESS = range(5)
LONG_ILLNESS = 5  # planned with the dips (one "changed attendance" episode per pupil), not a dip
BASELINE_DAYS = 30  # six school weeks of normal attendance before any dip
NO_RECOVERY = np.iinfo(np.int32).max
LOW_STEADY_RATE_RANGE = (0.12, 0.19)  # 81-88% attendance, the "low but steady" non-dip
ILLNESS_BLOCK_DAYS = ((4, 5, 5, 5, 6), (9, 10, 10, 11), (14, 15, 15, 16))  # one, two, three weeks
HOLIDAY_DAYS = ((4, 5, 5), (9, 10, 10))  # one, two weeks
SUSPENSION_PRIMARY_FACTOR = 1 / 3

# Codes for the absences of each dip kind (cumulative tables built below).
_DIP_CODES: dict[int, dict[str, float]] = {
    AVOIDANCE: {"O": 0.38, "N": 0.30, "I": 0.20, "G": 0.02, "M": 0.10},
    FAMILY_CRISIS: {"O": 0.35, "N": 0.25, "C": 0.20, "I": 0.20},
    MONDAY_FRIDAY: {"I": 0.35, "O": 0.35, "N": 0.20, "G": 0.10},
    YOUNG_CARER: {"O": 0.55, "N": 0.45},
    RECURRENT_ILLNESS: {"I": 0.90, "M": 0.05, "N": 0.05},
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


@dataclass(slots=True)
class Dips:
    """Dips and long illnesses: episodes whose absence is drawn day by day."""

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
    """Fixed blocks of a single code over whole days: illness, holidays, bereavement, C2, E."""

    pupil: np.ndarray  # int32
    start: np.ndarray  # int32 day index
    end: np.ndarray  # int32 day index, exclusive
    code: np.int8
    sessions: tuple[int, ...]  # which sessions the block covers
    kind: str | None  # the truth kind, None for no truth rows


@dataclass(frozen=True, slots=True)
class Closures:
    """School-level closures: (school, day, year group or -1 for the whole school, code)."""

    school: np.ndarray  # int32
    day: np.ndarray  # int32
    year_group: np.ndarray  # int8, -1 = whole school
    code: np.ndarray  # int8


def _allocate(total: int, shares: np.ndarray) -> np.ndarray:
    """Integer counts per share summing to total (largest remainder), so every kind with a
    non-zero share appears once the total allows it."""
    raw = total * shares / shares.sum()
    counts = np.floor(raw).astype(np.int64)
    for index in np.argsort(-(raw - counts))[: total - int(counts.sum())]:
        counts[index] += 1
    if total >= shares.size:
        for index in np.flatnonzero((counts == 0) & (shares > 0)):
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


def _uniform_int(rng: np.random.Generator, bounds: tuple[int, int], size: int) -> np.ndarray:
    return rng.integers(bounds[0], bounds[1], size=size)


def plan_dips(cohort: Cohort, n_days: int, eligible: np.ndarray, profile: Profile, rng: np.random.Generator) -> Dips:
    """The dips, and the long illnesses (drawn from the same pupils: one changed-attendance
    episode per pupil keeps each episode's ground truth clean)."""
    n_dips = int(round(profile.dip_rate * cohort.size))
    n_long = int(round(profile.long_illness_rate * cohort.size))
    pupils = _pick(rng, eligible, _risk_weight(cohort), n_dips + n_long)
    pupils = rng.permutation(pupils)
    counts = _allocate(min(n_dips, pupils.size), np.asarray(profile.dip_shares, dtype=np.float64))
    kinds = np.repeat(np.arange(len(DIP_KINDS), dtype=np.int8), counts)
    kind = np.concatenate([rng.permutation(kinds), np.full(pupils.size - kinds.size, LONG_ILLNESS, np.int8)])
    order = np.argsort(pupils, kind="stable")
    pupils, kind = pupils[order].astype(np.int32), kind[order]
    k = pupils.size
    last_onset = max(BASELINE_DAYS + 1, n_days - 25)
    onset = rng.integers(BASELINE_DAYS, last_onset, size=k).astype(np.int32)
    ramp = np.ones(k, dtype=np.int32)
    peak = np.zeros(k, dtype=np.float64)
    recovery = np.full(k, NO_RECOVERY, dtype=np.int64)

    def when(mask: np.ndarray, values: np.ndarray, into: np.ndarray) -> None:
        into[mask] = values[mask]

    def chance(share: float) -> np.ndarray:
        return rng.random(k) < share

    # Avoidance: absence creeps up over weeks; some turn it round after a while.
    a = kind == AVOIDANCE
    when(a, _uniform_int(rng, profile.avoidance_ramp, k), ramp)
    when(a, rng.uniform(*profile.avoidance_peak, size=k), peak)
    when(a & chance(profile.avoidance_recovery_share),
         onset + ramp + _uniform_int(rng, profile.avoidance_recovery_after, k), recovery)
    # Family crisis: a sudden drop held for weeks; most recover.
    f = kind == FAMILY_CRISIS
    when(f, rng.uniform(*profile.family_peak, size=k), peak)
    when(f & chance(profile.family_recovery_share), onset + _uniform_int(rng, profile.family_length, k), recovery)
    # Monday/Friday: long weekends become a habit.
    m = kind == MONDAY_FRIDAY
    when(m, _uniform_int(rng, profile.monday_friday_ramp, k), ramp)
    when(m, rng.uniform(*profile.monday_friday_peak, size=k), peak)
    when(m & chance(profile.monday_friday_recovery_share), onset + ramp + rng.integers(30, 51, size=k), recovery)
    # Young carer: `ramp` is the length of each stage (late, then after close, then missed).
    y = kind == YOUNG_CARER
    when(y, _uniform_int(rng, profile.carer_stage, k), ramp)
    when(y, rng.uniform(*profile.carer_peak, size=k), peak)
    # Recurrent illness: off sick on the same weekday most weeks (sometimes the next day too).
    r = kind == RECURRENT_ILLNESS
    when(r, _uniform_int(rng, profile.recurrent_ramp, k), ramp)
    when(r, rng.uniform(*profile.recurrent_peak, size=k), peak)
    when(r & chance(profile.recurrent_recovery_share), onset + ramp + rng.integers(20, 41, size=k), recovery)
    # Long illness: weeks off, the odd day in school, then back.
    li = kind == LONG_ILLNESS
    when(li, np.full(k, 0.93), peak)
    when(li, onset + _uniform_int(rng, profile.long_illness_length, k), recovery)

    recovery = np.where(recovery >= n_days, NO_RECOVERY, recovery).astype(np.int32)
    return Dips(pupil=pupils, kind=kind, onset=onset, recovery=recovery, ramp=ramp, peak=peak)


def _within_term_block(start: np.ndarray, length: np.ndarray, calendar: SchoolCalendar) -> np.ndarray:
    """True where [start, start+length) has no break inside it."""
    to_break = np.array(calendar.days_to_break, dtype=np.int32)
    return to_break[start] >= length - 1


def _place_blocks(calendar: SchoolCalendar, pupils: np.ndarray, length: np.ndarray, latest_end: np.ndarray,
                  rng: np.random.Generator, *, near_breaks: float = 0.0, earliest: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Start days for blocks of `length` school days inside one stretch of term, ending by each
    pupil's `latest_end`; `near_breaks` of them next to a break (a stretched holiday)."""
    n_days = len(calendar.school_days)
    last_before = np.array(sorted(calendar.break_starts_after - {n_days - 1}), dtype=np.int32)
    start = np.zeros(pupils.size, dtype=np.int32)
    ok = np.zeros(pupils.size, dtype=bool)
    for _attempt in range(30):
        todo = np.flatnonzero(~ok)
        if not todo.size:
            break
        limit = np.minimum(latest_end[pupils[todo]], n_days)
        anywhere = rng.integers(earliest, np.maximum(limit - length[todo], earliest + 1))
        if near_breaks and last_before.size:
            boundary = last_before[rng.integers(0, last_before.size, size=todo.size)]
            before = rng.random(todo.size) < 0.5
            adjacent = np.where(before, boundary - length[todo] + 1, boundary + 1)
            start[todo] = np.where(rng.random(todo.size) < near_breaks, adjacent, anywhere)
        else:
            start[todo] = anywhere
        ok = ((start >= 0) & (start + length <= np.minimum(latest_end[pupils], n_days))
              & _within_term_block(np.clip(start, 0, n_days - 1), length, calendar))
    return start, ok


def plan_illness_blocks(calendar: SchoolCalendar, pupils: np.ndarray, latest_end: np.ndarray, profile: Profile,
                        rng: np.random.Generator) -> Blocks:
    """One block of one to three weeks of illness (I) at any time, inside one stretch of term."""
    weeks = rng.choice(3, size=pupils.size, p=np.asarray(profile.illness_block_weeks) / sum(profile.illness_block_weeks))
    length = np.array([rng.choice(ILLNESS_BLOCK_DAYS[w]) for w in weeks], dtype=np.int32)
    start, ok = _place_blocks(calendar, pupils, length, latest_end, rng)
    return Blocks(pupils[ok], start[ok], start[ok] + length[ok], C.ILLNESS, (0, 1), "illness_block")


def plan_holidays(calendar: SchoolCalendar, pupils: np.ndarray, latest_end: np.ndarray, profile: Profile,
                  rng: np.random.Generator) -> Blocks:
    """One block of one or two weeks of unauthorised holiday (G); most families stretch a
    break, so 60% of blocks end on the last day before a break or start on the first day back."""
    two = rng.random(pupils.size) < profile.holiday_two_week_share
    length = np.array([rng.choice(HOLIDAY_DAYS[int(t)]) for t in two], dtype=np.int32)
    start, ok = _place_blocks(calendar, pupils, length, latest_end, rng, near_breaks=0.6, earliest=0)
    return Blocks(pupils[ok], start[ok], start[ok] + length[ok], C.HOLIDAY, (0, 1), "term_time_holiday")


def plan_leave(calendar: SchoolCalendar, pupils: np.ndarray, latest_end: np.ndarray, days: tuple[int, int],
               code: np.int8, kind: str, rng: np.random.Generator) -> Blocks:
    """Whole days of one authorised-absence code: a bereavement (C) or a suspension (E)."""
    length = rng.integers(days[0], days[1] + 1, size=pupils.size).astype(np.int32)
    start, ok = _place_blocks(calendar, pupils, length, latest_end, rng)
    return Blocks(pupils[ok], start[ok], start[ok] + length[ok], code, (0, 1), kind)


def plan_part_time(cohort: Cohort, n_days: int, share_by_pupil: np.ndarray, eligible: np.ndarray,
                   rng: np.random.Generator) -> Blocks:
    """Temporary part-time timetables (C2 in the afternoons for 4-12 weeks), mostly for
    pupils with SEN, as DfE guidance expects them to be short and support-led."""
    weight = np.where(cohort.sen != SEN_NONE, 4.0, 1.0)
    count = int(round(float(share_by_pupil.sum())))
    pupils = _pick(rng, eligible, weight * share_by_pupil, count)
    length = rng.integers(20, 61, size=pupils.size).astype(np.int32)
    start = rng.integers(0, np.maximum(n_days - length, 1)).astype(np.int32)
    return Blocks(pupils, start, np.minimum(start + length, n_days), C.PART_TIME, (1,), "part_time")


def plan_closures(cohort: Cohort, n_days: int, profile: Profile, rng: np.random.Generator) -> Closures:
    """Per school: a few days one year group cannot attend (part of the premises closed, Y3) and
    a few whole-school closures (planned #, or an unexpected Y4 such as a snow day)."""
    schools, days, years, codes = [], [], [], []
    for school in range(len(cohort.school_ids)):
        groups = np.unique(cohort.year_group[cohort.school == school])
        for _ in range(profile.partial_closure_days):
            schools.append(school)
            days.append(int(rng.integers(5, n_days)))
            years.append(int(rng.choice(groups)))
            codes.append(C.PART_CLOSED)
        for _ in range(profile.whole_closure_days):
            schools.append(school)
            days.append(int(rng.integers(5, n_days)))
            years.append(-1)
            codes.append(C.PLANNED_CLOSURE if rng.random() < 0.5 else C.SITE_CLOSED)
    return Closures(np.array(schools, np.int32), np.array(days, np.int32), np.array(years, np.int8),
                    np.array(codes, np.int8))


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

    def __init__(self, dips: Dips, blocks: list[Blocks], steady: SteadyLow, closures: Closures, cohort: Cohort,
                 profile: Profile = DEFAULT) -> None:
        self.dips = dips
        self.blocks = blocks
        self.steady = steady
        self.closures = closures
        self.cohort = cohort
        self.profile = profile
        self._dip_codes = {kind: _cumulative(weights) for kind, weights in _DIP_CODES.items()}
        self._steady_codes = _cumulative(_STEADY_CODES)

    def apply(self, day_index: int, weekday: int, session: int, codes: np.ndarray, rng: np.random.Generator) -> None:
        self.steady.apply(session, codes, rng, self._steady_codes)
        self._apply_dips(day_index, weekday, session, codes, rng)
        # Blocks come after: an illness week or a holiday is the whole story for those days.
        for block in self.blocks:
            if session not in block.sessions:
                continue
            active = (block.start <= day_index) & (day_index < block.end)
            codes[block.pupil[active]] = block.code
        # A closed school (or part of it) closes whatever else was going on.
        for school, year_group, code in zip(*(a[self.closures.day == day_index] for a in
                                              (self.closures.school, self.closures.year_group, self.closures.code))):
            affected = self.cohort.school == school
            if year_group >= 0:
                affected &= self.cohort.year_group == year_group
            codes[affected] = code

    def _apply_dips(self, day: int, weekday: int, session: int, codes: np.ndarray, rng: np.random.Generator) -> None:
        d = self.dips
        t = day - d.onset
        active = (t >= 0) & (day < d.recovery)
        if not active.any():
            return
        progress = np.clip((t + 1) / np.maximum(d.ramp, 1), 0.0, 1.0)
        monday_or_friday = weekday in (0, 4)
        recurrent_day = weekday == self.profile.recurrent_weekday
        next_to_it = weekday == (self.profile.recurrent_weekday + (1 if self.profile.recurrent_weekday < 4 else -1))
        recurrent = (d.peak * progress if recurrent_day
                     else self.profile.recurrent_extra_day * progress if next_to_it else 0.01 * progress)
        p_absent = np.select(
            [d.kind == AVOIDANCE, d.kind == FAMILY_CRISIS, d.kind == MONDAY_FRIDAY, d.kind == LONG_ILLNESS,
             d.kind == RECURRENT_ILLNESS],
            [d.peak * progress, d.peak, d.peak * progress if monday_or_friday else 0.03 * progress, d.peak,
             recurrent],
            0.0,
        )
        p_absent = np.where(active, p_absent, 0.0)
        whole_day = d.kind != YOUNG_CARER
        if session == 0:
            d.absent_today = rng.random(d.pupil.size) < p_absent
            absent = d.absent_today & whole_day
        else:
            # Afternoons mostly follow the morning; a few pupils come in after lunch (not the ill).
            back_after_lunch = (rng.random(d.pupil.size) >= 0.92) & ~np.isin(d.kind, (LONG_ILLNESS, RECURRENT_ILLNESS))
            absent = d.absent_today & whole_day & ~back_after_lunch
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

        names = DIP_KINDS + HEALTH_KINDS
        rows = [
            row(int(p), names[int(k)], int(o), int(r))
            for p, k, o, r in zip(self.dips.pupil, self.dips.kind, self.dips.onset, self.dips.recovery)
        ]
        for block in self.blocks:
            if block.kind is not None:
                rows += [row(int(p), block.kind, int(s), int(e))
                         for p, s, e in zip(block.pupil, block.start, block.end)]
        rows += [row(int(p), "low_steady", 0, NO_RECOVERY) for p in self.steady.pupil]
        order = {pid: i for i, pid in enumerate(cohort.pupil_ids.tolist())}
        return sorted(rows, key=lambda r: (order[r.pupil_id], KINDS.index(r.kind), r.onset_date))


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
    profile: Profile,
    rng: np.random.Generator,
) -> EpisodeBook:
    """Plan every episode. Low-steady pupils get nothing else, so their year stays steady; a
    pupil with a dip or long illness may also have a one-off block, but only before it (with a
    week's gap) so the episode's ground truth stays clean."""
    n = cohort.size
    n_days = len(calendar.school_days)
    low_steady = _pick(rng, ~severe, np.ones(n), int(round(profile.low_steady_rate * n)))
    is_low_steady = np.zeros(n, dtype=bool)
    is_low_steady[low_steady] = True

    part_time = plan_part_time(cohort, n_days, part_time_share * profile.part_time_factor, ~severe & ~is_low_steady,
                               rng)
    on_part_time = np.zeros(n, dtype=bool)
    on_part_time[part_time.pupil] = True

    dips = plan_dips(cohort, n_days, ~severe & ~is_low_steady & ~on_part_time, profile, rng)
    latest_end = np.full(n, n_days, dtype=np.int32)
    latest_end[dips.pupil] = dips.onset - 5
    others = ~is_low_steady
    ones = np.ones(n)

    illness = plan_illness_blocks(calendar, _pick(rng, others, ones, int(round(profile.illness_block_rate * n))),
                                  latest_end, profile, rng)
    holidays = plan_holidays(calendar, _pick(rng, others, ones, int(round(profile.holiday_rate * n))),
                             latest_end, profile, rng)
    bereavement = plan_leave(calendar, _pick(rng, others, ones, int(round(profile.bereavement_rate * n))),
                             latest_end, profile.bereavement_days, C.EXCEPTIONAL_LEAVE, "bereavement", rng)
    suspension_weight = np.where(cohort.phase == PRIMARY, SUSPENSION_PRIMARY_FACTOR, 1.0)
    suspended = _pick(rng, others, suspension_weight, int(round(profile.suspension_rate * float(suspension_weight.sum()))))
    suspensions = plan_leave(calendar, suspended, latest_end, profile.suspension_days, C.SUSPENDED, "suspension", rng)
    blocks = _drop_overlaps([illness, holidays, bereavement, suspensions])

    steady = SteadyLow(low_steady, rng.uniform(*LOW_STEADY_RATE_RANGE, size=low_steady.size))
    return EpisodeBook(dips, [part_time, *blocks], steady, plan_closures(cohort, n_days, profile, rng), cohort, profile)


def _drop_overlaps(blocks: list[Blocks]) -> list[Blocks]:
    """Keep the first block a pupil has (in list order) and drop any later one that overlaps
    (within two days) a kept block of the same pupil, so each episode is recognisable on its own."""
    taken: dict[int, list[tuple[int, int]]] = {}
    kept = []
    for block in blocks:
        keep = []
        for p, s, e in zip(block.pupil.tolist(), block.start.tolist(), block.end.tolist()):
            clash = any(s < te + 2 and ts < e + 2 for ts, te in taken.get(p, ()))
            keep.append(not clash)
            if not clash:
                taken.setdefault(p, []).append((s, e))
        mask = np.array(keep, dtype=bool)
        kept.append(Blocks(block.pupil[mask], block.start[mask], block.end[mask], block.code, block.sessions,
                           block.kind))
    return kept
