"""Run a simulated school year: the public Python API of the simulator.

    summary = simulate_year(SimulationConfig(schools=10, pupils_per_school=1000,
                                             phase="secondary"), marks_path="marks.csv")
    for batch in iter_days(config): ...  # one school day of marks at a time

The year is produced day by day and written as it goes; only per-pupil state and counters
live in memory. A given config (seed included) always produces the same files.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from models.simulator import codes as C
from models.simulator.calendar import SchoolCalendar
from models.simulator.cohort import ROSTER_HEADER, Cohort, build_cohort
from models.simulator.episodes import TRUTH_HEADER, EpisodeBook, TruthRow, plan_episodes
from models.simulator.model import (
    PHASE_PARAMS,
    BaselineModel,
    build_propensity,
    build_season,
    target_rates,
)
from models.simulator.output import MARKS_HEADER, DayBatch, MarkFormatter
from models.simulator.profiles import PROFILES, Profile, ProfileName
from models.simulator.stats import CalibrationAccumulator, PhaseStats

# Register-taking times, local clock, seconds after midnight.
AM_REGISTER_OPENS = 8 * 3600 + 45 * 60
PM_REGISTER_OPENS = 13 * 3600 + 15 * 60
_MINUTE = 60


class SimulationConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    schools: int = Field(10, ge=1, le=9999)
    pupils_per_school: int = Field(300, ge=1, le=99999)
    phase: Literal["primary", "secondary", "mixed"] = "mixed"
    seed: int = Field(2025, ge=0)
    calendar_path: Path | None = Field(None, description="TOML school calendar; the 2025/26 year if unset.")
    profile: ProfileName = Field(
        "default", description="Episode shapes and mix (models.simulator.profiles): `default` is what the model "
        "is trained on; `shifted` is a deliberately different cohort for evaluation only.")

    @property
    def pupils(self) -> int:
        return self.schools * self.pupils_per_school

    @property
    def episode_profile(self) -> Profile:
        return PROFILES[self.profile]

    def calendar(self) -> SchoolCalendar:
        return SchoolCalendar.from_toml(self.calendar_path) if self.calendar_path else SchoolCalendar.default()


class SimulationSummary(BaseModel):
    config: SimulationConfig
    pupils: int
    schools: int
    school_days: int
    marks_written: int  # rows, amendments included
    amendments: int
    truth_rows: int
    episodes_by_kind: dict[str, int]
    elapsed_seconds: float
    stats: dict[str, PhaseStats]  # by phase name


@dataclass(frozen=True, slots=True)
class DayResult:
    batch: DayBatch
    final_codes: tuple[np.ndarray, np.ndarray]  # AM, PM after amendments: what counts


class Simulation:
    """A fully planned year, ready to be stepped through day by day."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.calendar = config.calendar()
        # Independent streams, so e.g. changing episode rates does not reshuffle the cohort.
        cohort_seed, plan_seed, day_seed = np.random.SeedSequence(config.seed).spawn(3)
        cohort_rng = np.random.default_rng(cohort_seed)
        plan_rng = np.random.default_rng(plan_seed)
        self._rng = np.random.default_rng(day_seed)

        self.cohort: Cohort = build_cohort(config.schools, config.pupils_per_school, config.phase, cohort_rng)
        rate, severe = target_rates(self.cohort, cohort_rng)
        part_time_share = np.array([p.part_time_share for p in PHASE_PARAMS], dtype=np.float64)[self.cohort.phase]
        profile = config.episode_profile
        self.episodes: EpisodeBook
        self.episodes = plan_episodes(self.cohort, self.calendar, severe, part_time_share, profile, plan_rng)
        self.formatter = MarkFormatter(self.cohort, self.calendar)
        propensity = build_propensity(self.cohort, rate, severe, scheduled=self.episodes.steady.mask(self.cohort.size))
        self.model = BaselineModel(self.cohort, propensity, build_season(self.calendar, profile))

    def truth(self) -> list[TruthRow]:
        return self.episodes.truth_rows(self.cohort, self.calendar)

    def days(self) -> Iterator[DayResult]:
        for day_index, day in enumerate(self.calendar.school_days):
            yield self._simulate_day(day_index, day)

    def _simulate_day(self, day_index: int, day: dt.date) -> DayResult:
        rng = self._rng
        weekday = day.weekday()
        finals: list[np.ndarray] = []
        for session in (0, 1):
            codes = self.model.step(day_index, weekday, session, rng)
            self.episodes.apply(day_index, weekday, session, codes, rng)
            finals.append(codes)
        return DayResult(self._register(day_index, day, finals), (finals[0], finals[1]))

    def _register(self, day_index: int, day: dt.date, finals: list[np.ndarray]) -> DayBatch:
        """Turn final codes into register rows: N first where the reason came in later,
        register times, and amendment rows placed as they were entered: before the school's PM
        register when entered that morning, after it otherwise."""
        rng = self._rng
        n = self.cohort.size
        school = self.cohort.school
        pupils = np.arange(n, dtype=np.int32)
        parts: list[_Rows] = []
        # Reasons learnt before the afternoon register (a parent rang in) are entered directly at PM.
        known_by_pm = np.zeros(n, dtype=bool)
        for session, final in enumerate(finals):
            n_first = (rng.random(n) < C.N_FIRST_PROBABILITY[final]) & ~known_by_pm
            original = np.where(n_first, C.NOT_YET_KNOWN, final).astype(np.int8)
            seconds = _register_seconds(session, original, school, len(self.cohort.school_ids), rng)
            parts.append(_Rows.of(pupils, session, original, np.zeros(n, np.int8), seconds, amendment=False))
            amended = np.flatnonzero(n_first).astype(np.int32)
            delay, amend_seconds = _amendment_times(session, amended.size, day.weekday(), rng)
            parts.append(_Rows.of(amended, session, final[amended], delay, amend_seconds, amendment=True))
            if session == 0:
                early = amended[(delay == 0) & (amend_seconds < PM_REGISTER_OPENS)]
                known_by_pm[early] = finals[1][early] == final[early]
        rows = _Rows(*(np.concatenate(column) for column in zip(*parts)))
        # Register order, as the rows were entered: the AM register, the amendments entered that
        # morning (a parent rang in before lunch), the PM register, then later amendments (of either
        # session); inside a block school by school.
        before_pm = rows.amendment & (rows.delay == 0) & (rows.second < PM_REGISTER_OPENS)
        block = np.select([before_pm, rows.amendment], [1, 3], default=2 * rows.session)
        order = np.lexsort((rows.session, rows.pupil, rows.amendment, school[rows.pupil], block))
        return DayBatch(
            date=day,
            day_index=day_index,
            pupil=rows.pupil[order],
            session=rows.session[order],
            code=rows.code[order],
            record_delay_days=rows.delay[order],
            record_second=rows.second[order],
            amendment=rows.amendment[order],
            formatter=self.formatter,
        )


class _Rows(NamedTuple):
    pupil: np.ndarray  # int32
    session: np.ndarray  # int8
    code: np.ndarray  # int8
    delay: np.ndarray  # int8
    second: np.ndarray  # int32
    amendment: np.ndarray  # bool

    @classmethod
    def of(cls, pupil: np.ndarray, session: int, code: np.ndarray, delay: np.ndarray, second: np.ndarray,
           amendment: bool) -> _Rows:
        size = pupil.size
        return cls(pupil, np.full(size, session, np.int8), code, delay, second, np.full(size, amendment, bool))


def _register_seconds(
    session: int, codes: np.ndarray, school: np.ndarray, n_schools: int, rng: np.random.Generator
) -> np.ndarray:
    """Local entry time of each mark: a school-wide start, each class a few minutes apart;
    late arrivals are entered when they reach the office."""
    opens = AM_REGISTER_OPENS if session == 0 else PM_REGISTER_OPENS
    school_start = opens + rng.integers(0, 10 * _MINUTE, size=n_schools)
    seconds = school_start[school] + rng.integers(0, 15 * _MINUTE, size=school.size)
    if session == 0:
        late = codes == C.LATE
        seconds[late] += rng.integers(5 * _MINUTE, 25 * _MINUTE, size=int(late.sum()))
        after_close = codes == C.AFTER_CLOSE
        seconds[after_close] += rng.integers(35 * _MINUTE, 75 * _MINUTE, size=int(after_close.sum()))
    return seconds.astype(np.int32)


# Days from a Friday to the next weekday, when its marks corrected "first thing the next weekday" are entered.
DAYS_FROM_FRIDAY_TO_NEXT_WEEKDAY = 3


def _amendment_times(session: int, count: int, weekday: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """When an N was corrected: later the same day (11:00-15:00 for a morning mark,
    14:00-15:30 for an afternoon one) or first thing the next weekday."""
    next_morning = rng.random(count) < (0.15 if session == 0 else 0.40)
    same_day = (
        rng.integers(11 * 3600, 15 * 3600, size=count)
        if session == 0
        else rng.integers(14 * 3600, 15 * 3600 + 30 * _MINUTE, size=count)
    )
    next_day = rng.integers(8 * 3600, 10 * 3600, size=count)
    delay = np.where(next_morning, DAYS_FROM_FRIDAY_TO_NEXT_WEEKDAY if weekday == 4 else 1, 0).astype(np.int8)
    return delay, np.where(next_morning, next_day, same_day).astype(np.int32)


def iter_days(config: SimulationConfig) -> Iterator[DayBatch]:
    """The year's marks one school day at a time, in register order."""
    for result in Simulation(config).days():
        yield result.batch


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), disable=not enabled,
    )


def simulate_year(
    config: SimulationConfig,
    marks_path: str | Path | None = None,
    truth_path: str | Path | None = None,
    roster_path: str | Path | None = None,
    progress: bool = False,
) -> SimulationSummary:
    """Simulate the whole year, writing whichever files are asked for as it goes, and return
    counts, timings and the calibration statistics. With no paths it only computes stats."""
    started = time.perf_counter()
    simulation = Simulation(config)
    cohort, calendar = simulation.cohort, simulation.calendar
    truth = simulation.truth()
    if roster_path is not None:
        _write_text(roster_path, ROSTER_HEADER, cohort.roster_csv_lines())
    if truth_path is not None:
        _write_text(truth_path, TRUTH_HEADER, [row.csv_line() for row in truth])

    accumulator = CalibrationAccumulator(cohort, calendar)
    marks = amendments = 0
    # A progress bar only on a terminal: redirected output must stay clean.
    bar = _progress_bar(progress and sys.stderr.isatty())
    with ExitStack() as stack:
        handle = None
        if marks_path is not None:
            handle = stack.enter_context(open(marks_path, "w", encoding="utf-8", newline=""))
            handle.write(MARKS_HEADER)
        stack.enter_context(bar)
        task = bar.add_task("simulating school days", total=len(calendar.school_days))
        for result in simulation.days():
            for session, codes in enumerate(result.final_codes):
                accumulator.add(result.batch.day_index, session, codes)
            marks += len(result.batch)
            amendments += int(result.batch.amendment.sum())
            if handle is not None:
                handle.write(result.batch.csv_text())
            bar.advance(task)

    kinds: dict[str, int] = {}
    for row in truth:
        kinds[row.kind] = kinds.get(row.kind, 0) + 1
    return SimulationSummary(
        config=config,
        pupils=cohort.size,
        schools=len(cohort.school_ids),
        school_days=len(calendar.school_days),
        marks_written=marks,
        amendments=amendments,
        truth_rows=len(truth),
        episodes_by_kind=kinds,
        elapsed_seconds=time.perf_counter() - started,
        stats=accumulator.finish(),
    )


def _write_text(path: str | Path, header: str, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(header)
        handle.write("".join(lines))
