"""The baseline absence model: who is absent in each session, and with which code.

Each pupil has a target absence rate drawn from a heavy-tailed distribution and raised for
FSM and SEN. Absence comes in spells: a pupil who is attending starts a spell with a small
per-session hazard (split into illness, other authorised and unauthorised reasons) and the
spell then runs for a drawn number of sessions. This alternating-renewal process has
long-run absence rate hL / (hL + 1 - h) for hazard h and mean spell length L, which is how
target rates become hazards (see build_propensity). Seasonality and the day of the week scale the hazards.
Everything is vectorised across pupils; the only loop is over sessions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from models.simulator import codes as C
from models.simulator.calendar import SchoolCalendar
from models.simulator.cohort import PRIMARY, SECONDARY, SEN_EHCP, SEN_SUPPORT, Cohort
from models.simulator.profiles import DEFAULT, Profile


@dataclass(frozen=True, slots=True)
class LengthDistribution:
    """Spell length in sessions, before a pupil's stretch factor."""

    values: np.ndarray
    probabilities: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.dot(self.values, self.probabilities))

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.choice(self.values, size=size, p=self.probabilities)


def _lengths(pairs: dict[int, float]) -> LengthDistribution:
    values = np.array(list(pairs), dtype=np.int16)
    probabilities = np.array(list(pairs.values()), dtype=np.float64)
    return LengthDistribution(values, probabilities / probabilities.sum())


# Half of absence spells last 2 to 4 sessions (DfE, September 2024). Illness tends to whole
# days; other authorised absence (appointments, religious observance) is mostly one session;
# unauthorised absence has both single sessions (leaving at lunch) and multi-day runs.
ILLNESS_LENGTHS = _lengths({1: 0.13, 2: 0.38, 3: 0.05, 4: 0.20, 6: 0.11, 8: 0.06, 10: 0.04, 16: 0.03})
AUTHORISED_OTHER_LENGTHS = _lengths({1: 0.60, 2: 0.25, 4: 0.10, 6: 0.05})
UNAUTHORISED_LENGTHS = _lengths({1: 0.30, 2: 0.33, 3: 0.06, 4: 0.15, 6: 0.07, 10: 0.05, 20: 0.04})

ILLNESS_CLASS, AUTHORISED_CLASS, UNAUTHORISED_CLASS, EXTRA_CLASS = 0, 1, 2, 3
WARM_UP_SESSIONS = 20  # two weeks: longer than all but the rarest spells
WARM_UP_WEEKDAY = 1  # a Tuesday: no Wednesday or Friday effect while warming up


@dataclass(frozen=True, slots=True)
class PhaseParams:
    """Knobs of the baseline model for one phase, calibrated against 2023/24 national data."""

    median_rate: float  # median of the bulk lognormal target absence rate
    sigma: float  # spread of the bulk lognormal (log scale)
    elevated_share: float  # pupils drawn from the "disengaging" component (10-30% absence)
    severe_share: float  # pupils drawn from the severe-absence component
    fsm_multiplier: float
    sen_support_multiplier: float
    ehcp_multiplier: float
    unauthorised_share_base: float  # share of a low-absence pupil's absence that is unauthorised
    unauthorised_share_slope: float  # extra share as the pupil's rate approaches 30%
    authorised_other_share: float  # of authorised absence, the non-illness part
    authorised_other_codes: dict[str, float]
    unauthorised_codes: dict[str, float]
    late_am_rate: float  # L marks per AM session at the median pupil
    after_close_am_rate: float  # U marks per AM session at the median pupil
    approved_rate: float  # B/V/P per session
    wednesday_factor: float
    pm_start_factor: float  # spells starting in the afternoon relative to the morning
    friday_day_extra: float  # extra whole-day Friday absence, per unit of target rate
    friday_pm_extra: float  # extra Friday-afternoon absence, per unit of target rate
    part_time_share: float  # pupils on a C2 part-time timetable at some point


# The group multipliers act on the lognormal bulk only. The severe and elevated components,
# dips and episodes dilute them, so they sit above the published raw ratios (FSM 1.9x, SEN
# support 1.7x, EHCP 2.3x) and were tuned until the simulated gaps landed near those ratios.
# median/sigma/elevated/severe were tuned together against overall, PA and severe absence.
PRIMARY_PARAMS = PhaseParams(
    median_rate=0.0150,
    sigma=0.77,
    elevated_share=0.0,
    severe_share=0.007,
    fsm_multiplier=2.20,
    sen_support_multiplier=1.85,
    ehcp_multiplier=2.50,
    unauthorised_share_base=0.09,
    unauthorised_share_slope=0.35,
    authorised_other_share=0.14,
    authorised_other_codes={"M": 0.62, "C": 0.20, "R": 0.13, "E": 0.05},
    unauthorised_codes={"O": 0.62, "N": 0.13, "G": 0.25},
    late_am_rate=0.004,
    after_close_am_rate=0.0012,
    approved_rate=0.0008,
    wednesday_factor=0.85,
    pm_start_factor=0.40,
    friday_day_extra=0.22,
    friday_pm_extra=0.10,
    part_time_share=0.003,
)

SECONDARY_PARAMS = PhaseParams(
    median_rate=0.0082,
    sigma=0.90,
    elevated_share=0.19,
    severe_share=0.038,
    fsm_multiplier=2.30,
    sen_support_multiplier=1.80,
    ehcp_multiplier=2.50,
    unauthorised_share_base=0.10,
    unauthorised_share_slope=0.40,
    authorised_other_share=0.16,
    authorised_other_codes={"M": 0.50, "C": 0.15, "R": 0.05, "E": 0.30},
    unauthorised_codes={"O": 0.74, "N": 0.14, "G": 0.12},
    late_am_rate=0.012,
    after_close_am_rate=0.004,
    approved_rate=0.0020,
    wednesday_factor=0.85,
    pm_start_factor=0.40,
    friday_day_extra=0.21,
    friday_pm_extra=0.09,
    part_time_share=0.007,
)

PHASE_PARAMS: tuple[PhaseParams, PhaseParams] = (PRIMARY_PARAMS, SECONDARY_PARAMS)
ELEVATED_RATE_RANGE = (0.10, 0.25)
SEVERE_RATE_RANGE = (0.48, 0.85)
APPROVED_CODES = C.code_indices(("B", "V", "P"))


@dataclass(frozen=True, slots=True)
class Propensity:
    """Per-pupil hazards and rates; arrays aligned with the cohort."""

    target_rate: np.ndarray  # float64
    severe: np.ndarray  # bool: drawn from the severe component
    hazard: np.ndarray  # float64 (n, 3): illness, other authorised, unauthorised per session
    unauthorised_share: np.ndarray  # float64
    stretch: np.ndarray  # float64: spell-length multiplier, > 1 for heavy absentees
    late_p: np.ndarray  # float64 per AM session
    after_close_p: np.ndarray  # float64 per AM session
    friday_day_p: np.ndarray  # float64
    friday_pm_p: np.ndarray  # float64


def _per_pupil(cohort: Cohort, field: str) -> np.ndarray:
    values = np.array([getattr(PHASE_PARAMS[p], field) for p in (PRIMARY, SECONDARY)], dtype=np.float64)
    return values[cohort.phase]


def target_rates(cohort: Cohort, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Target absence rate per pupil: a lognormal bulk times group multipliers, plus a
    severe component (a few pupils who miss half or more of school)."""
    n = cohort.size
    median = _per_pupil(cohort, "median_rate")
    sigma = _per_pupil(cohort, "sigma")
    rate = median * np.exp(sigma * rng.standard_normal(n))
    rate *= np.where(cohort.fsm, _per_pupil(cohort, "fsm_multiplier"), 1.0)
    rate *= np.select(
        [cohort.sen == SEN_SUPPORT, cohort.sen == SEN_EHCP],
        [_per_pupil(cohort, "sen_support_multiplier"), _per_pupil(cohort, "ehcp_multiplier")],
        1.0,
    )
    rate = np.minimum(rate, 0.45)
    # A middle group, commoner in secondary: pupils drifting out of school whose absence sits
    # in the persistent band without being severe. A single lognormal cannot put a quarter
    # of secondary pupils over 10% while keeping the mean under 9%.
    weight = rate / median
    elevated_p = _per_pupil(cohort, "elevated_share") * weight / weight.mean()
    elevated = rng.random(n) < elevated_p
    rate = np.where(elevated, np.maximum(rate, rng.uniform(*ELEVATED_RATE_RANGE, size=n)), rate)
    # Severe absence is concentrated among FSM and SEN pupils (over a third of severely
    # absent pupils had SEN in 2021/22), so the draw is weighted by the same multipliers.
    severe_p = _per_pupil(cohort, "severe_share") * weight / weight.mean()
    severe = rng.random(n) < severe_p
    rate = np.where(severe, rng.uniform(*SEVERE_RATE_RANGE, size=n), rate)
    return rate, severe


def stretch_factor(rate: np.ndarray) -> np.ndarray:
    """Heavy absentees have longer spells: a pupil absent 80% of the time is not absent in
    hundreds of separate half-days."""
    return 1.0 + 5.0 * np.clip(rate - 0.2, 0.0, None)


def build_propensity(
    cohort: Cohort, rate: np.ndarray, severe: np.ndarray, scheduled: np.ndarray | None = None
) -> Propensity:
    """Hazards that reproduce each pupil's target rate. Pupils in `scheduled` (low but steady
    attenders, whose absence the episode book schedules) get no spells of their own."""
    stretch = stretch_factor(rate)
    unauth = np.clip(
        _per_pupil(cohort, "unauthorised_share_base")
        + _per_pupil(cohort, "unauthorised_share_slope") * np.clip(rate / 0.3, 0.0, 1.0),
        0.0,
        0.9,
    )
    auth_other = (1.0 - unauth) * _per_pupil(cohort, "authorised_other_share")
    illness = 1.0 - unauth - auth_other
    shares = np.stack([illness, auth_other, unauth], axis=1)
    distributions = (ILLNESS_LENGTHS, AUTHORISED_OTHER_LENGTHS, UNAUTHORISED_LENGTHS)
    mean_lengths = np.stack([d.mean * stretch for d in distributions], axis=1)
    # Alternating renewal with the starting session absent: with h_c = k * share_c / L_c the
    # long-run rate is k / (k + 1 - k * S), S = sum_c share_c / L_c; solve that for k.
    s = (shares / mean_lengths).sum(axis=1)
    k = rate / (1.0 - rate + rate * s)
    hazard = k[:, None] * shares / mean_lengths
    if scheduled is not None:
        hazard[scheduled] = 0.0
    friday = np.where(scheduled, 0.0, rate) if scheduled is not None else rate
    relative = np.sqrt(rate / _per_pupil(cohort, "median_rate"))
    return Propensity(
        target_rate=rate,
        severe=severe,
        hazard=hazard,
        unauthorised_share=unauth,
        stretch=stretch,
        late_p=np.minimum(_per_pupil(cohort, "late_am_rate") * relative, 0.2),
        after_close_p=np.minimum(_per_pupil(cohort, "after_close_am_rate") * relative, 0.1),
        friday_day_p=np.minimum(_per_pupil(cohort, "friday_day_extra") * friday, 0.5),
        friday_pm_p=np.minimum(_per_pupil(cohort, "friday_pm_extra") * friday, 0.5),
    )


@dataclass(frozen=True, slots=True)
class Season:
    """Per-day hazard multipliers (mean 1 over the year) for illness and for other absence."""

    illness: np.ndarray  # float64, one per school day
    other: np.ndarray  # float64
    first_after_break: np.ndarray  # bool: spell state is re-warmed on the first day back


def build_season(calendar: SchoolCalendar, profile: Profile = DEFAULT) -> Season:
    days = calendar.school_days
    n = len(days)
    to_break = np.array(calendar.days_to_break, dtype=np.int32)
    since_break = np.array(calendar.days_since_break, dtype=np.int32)
    gap_after = np.array(
        [(following - day).days for day, following in zip(days, days[1:])] + [60], dtype=np.int32
    )
    # Length of the break each day leads up to: a week for half-terms, 2+ for holidays.
    break_length = np.empty(n, dtype=np.int32)
    running = 60
    for index in range(n - 1, -1, -1):
        if to_break[index] == 0:
            running = gap_after[index]
        break_length[index] = running
    long_break = break_length > 10

    # Respiratory illness peaks in midwinter (UKHSA surveillance; the profile sets when and how
    # strongly), trough half a year later.
    month, day = profile.illness_peak_month_day
    day_of_year = np.array([(d - dt.date(d.year, month, day)).days for d in days], dtype=np.float64)
    winter = 1.0 + profile.illness_amplitude * np.cos(2.0 * np.pi * day_of_year / 365.25)
    # Autumn 2024: absence 4.7% in the first week, 7.0% before half-term, 9.4% in the last
    # week of term, illness driving the rise; unauthorised absence also rises before breaks.
    pre_break_illness = np.where(to_break < 5, np.where(long_break, 1.90, 1.05), 1.0)
    pre_break_illness *= np.where((to_break >= 5) & (to_break < 10) & long_break, 1.12, 1.0)
    illness = winter * pre_break_illness

    pre_break_other = np.where(to_break < 5, np.where(long_break, 1.35, 1.10), 1.0)
    # Summer has the highest absence of the three terms (2023/24: 6.7, 7.2, 7.6%) although
    # illness is lowest then: term-time holidays and end-of-year drift; the first week of
    # September is a little better attended than the rest of the year.
    summer_term = np.array([calendar.term_of(d) == "summer" for d in days], dtype=bool)
    first_week = np.clip(0.9 + 0.1 * np.arange(n) / 5.0, None, 1.0)
    other = pre_break_other * np.where(summer_term, 1.25, 1.0) * first_week
    return Season(
        illness=illness / illness.mean(),
        other=other / other.mean(),
        first_after_break=(since_break == 0),
    )


@dataclass(slots=True)
class SpellState:
    """What each pupil is doing between sessions: the code and sessions left of a spell."""

    remaining: np.ndarray  # int16
    code: np.ndarray  # int8

    @classmethod
    def empty(cls, n: int) -> SpellState:
        return cls(np.zeros(n, dtype=np.int16), np.zeros(n, dtype=np.int8))


def _cumulative_table(weights_by_phase: tuple[dict[str, float], dict[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-phase cumulative probabilities over a shared code list, for vectorised choice."""
    codes = sorted({code for weights in weights_by_phase for code in weights})
    table = np.array([[weights.get(code, 0.0) for code in codes] for weights in weights_by_phase], dtype=np.float64)
    table /= table.sum(axis=1, keepdims=True)
    return C.code_indices(codes), np.cumsum(table, axis=1)


def choose(rng: np.random.Generator, options: np.ndarray, cumulative: np.ndarray) -> np.ndarray:
    """Vectorised categorical draw: one row of `cumulative` per draw."""
    u = rng.random(cumulative.shape[0])[:, None]
    picked = np.minimum((u > cumulative).sum(axis=1), options.shape[0] - 1)
    return options[picked]


class BaselineModel:
    """Steps every pupil through one session at a time and returns the codes."""

    def __init__(self, cohort: Cohort, propensity: Propensity, season: Season) -> None:
        self.cohort = cohort
        self.p = propensity
        self.season = season
        self.state = SpellState.empty(cohort.size)
        self._auth_codes, auth_cum = _cumulative_table(tuple(p.authorised_other_codes for p in PHASE_PARAMS))
        self._unauth_codes, unauth_cum = _cumulative_table(tuple(p.unauthorised_codes for p in PHASE_PARAMS))
        self._auth_cum = auth_cum[cohort.phase]
        self._unauth_cum = unauth_cum[cohort.phase]
        wednesday = _per_pupil(cohort, "wednesday_factor")
        pm = _per_pupil(cohort, "pm_start_factor")
        # Normalised so the average session multiplier is 1 (hazards stay calibrated).
        self._session_factor = np.stack([2.0 / (1.0 + pm), 2.0 * pm / (1.0 + pm)])
        self._wednesday = wednesday
        self._approved_p = _per_pupil(cohort, "approved_rate")

    def step(self, day_index: int, weekday: int, session: int, rng: np.random.Generator) -> np.ndarray:
        """Codes (int8 indices) for all pupils in one session; advances the spell state."""
        if session == 0 and self.season.first_after_break[day_index]:
            # Start from a steady state rather than an empty one: a pupil ill over the break
            # (or before the first day) is still ill on the first day back.
            self.state.remaining[:] = 0
            for warm in range(WARM_UP_SESSIONS):
                self._advance(day_index, WARM_UP_WEEKDAY, warm % 2, rng)
        return self._advance(day_index, weekday, session, rng)

    def _advance(self, day_index: int, weekday: int, session: int, rng: np.random.Generator) -> np.ndarray:
        n = self.cohort.size
        state = self.state
        in_spell = state.remaining > 0
        codes = np.where(in_spell, state.code, C.PRESENT_AM if session == 0 else C.PRESENT_PM).astype(np.int8)
        state.remaining[in_spell] -= 1

        factor = self._session_factor[session] * (self._wednesday if weekday == 2 else 1.0)
        hazard = self.p.hazard * factor[:, None]
        hazard[:, ILLNESS_CLASS] *= self.season.illness[day_index]
        hazard[:, AUTHORISED_CLASS:] *= self.season.other[day_index]
        cumulative = np.cumsum(hazard, axis=1)
        extra = np.zeros(n, dtype=np.float64)
        if weekday == 4:
            extra = self.p.friday_day_p if session == 0 else self.p.friday_pm_p
        total = cumulative[:, -1] + extra

        u = rng.random(n)
        starts = np.flatnonzero(~in_spell & (u < total))
        if starts.size:
            self._start_spells(starts, u[starts], cumulative[starts], session, codes, rng)

        attending = np.flatnonzero(codes == (C.PRESENT_AM if session == 0 else C.PRESENT_PM))
        self._present_variants(attending, session, codes, rng)
        return codes

    def _start_spells(
        self, who: np.ndarray, u: np.ndarray, cumulative: np.ndarray, session: int,
        codes: np.ndarray, rng: np.random.Generator,
    ) -> None:
        reason = (u[:, None] >= cumulative).sum(axis=1)  # 0..2, or 3 for the Friday extra
        # The Friday extra is a day or afternoon off: illness or unauthorised by the pupil's mix.
        friday = reason == EXTRA_CLASS
        if friday.any():
            unauthorised = rng.random(int(friday.sum())) < self.p.unauthorised_share[who[friday]]
            reason[friday] = np.where(unauthorised, UNAUTHORISED_CLASS, ILLNESS_CLASS)

        spell_codes = np.full(who.size, C.ILLNESS, dtype=np.int8)
        lengths = np.empty(who.size, dtype=np.float64)
        for klass, distribution in (
            (ILLNESS_CLASS, ILLNESS_LENGTHS),
            (AUTHORISED_CLASS, AUTHORISED_OTHER_LENGTHS),
            (UNAUTHORISED_CLASS, UNAUTHORISED_LENGTHS),
        ):
            mask = reason == klass
            count = int(mask.sum())
            if not count:
                continue
            lengths[mask] = distribution.draw(rng, count)
            if klass == AUTHORISED_CLASS:
                spell_codes[mask] = choose(rng, self._auth_codes, self._auth_cum[who[mask]])
            elif klass == UNAUTHORISED_CLASS:
                spell_codes[mask] = choose(rng, self._unauth_codes, self._unauth_cum[who[mask]])
        lengths = np.ceil(lengths * self.p.stretch[who])
        lengths[friday] = 2 - session  # whole Friday from the morning, or just the afternoon
        codes[who] = spell_codes
        self.state.code[who] = spell_codes
        self.state.remaining[who] = (lengths - 1).astype(np.int16)

    def _present_variants(self, who: np.ndarray, session: int, codes: np.ndarray, rng: np.random.Generator) -> None:
        """Late marks in the morning and the occasional approved off-site activity."""
        u = rng.random(who.size)
        if session == 0:
            late = u < self.p.late_p[who]
            after_close = (u >= self.p.late_p[who]) & (u < self.p.late_p[who] + self.p.after_close_p[who])
            codes[who[late]] = C.LATE
            codes[who[after_close]] = C.AFTER_CLOSE
        approved = np.flatnonzero(rng.random(who.size) < self._approved_p[who])
        if approved.size:
            codes[who[approved]] = APPROVED_CODES[rng.integers(0, APPROVED_CODES.size, size=approved.size)]
