"""Simulated statistics against national figures, with a pass/fail for each tolerance.

National figures are DfE pupil absence statistics for state-funded schools in England,
2023/24 (see /work/shared/reference/README.md) unless noted. Persistent and severe absence
are published overall (20.0% and 2.3%); the phase targets below are chosen so that, weighted
by the phases' shares of pupils aged 5-15 (primary Y1-Y6 about 55%, secondary Y7-Y11 about
45%), they give back the published overall figure:
    PA:     0.55 * 14.7 + 0.45 * 26.7 = 20.1  (published 20.0)
    severe: 0.55 * 1.0  + 0.45 * 3.9  = 2.3   (published 2.3)
They also match the published ordering (secondary PA roughly double primary).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from models.simulator.stats import PhaseStats


@dataclass(frozen=True, slots=True)
class Target:
    measure: str
    national: dict[str, float]  # by phase
    tolerance: float | None  # absolute, in the measure's unit; None: shown for information
    unit: str
    value: Callable[[PhaseStats], float]
    source: str


@dataclass(frozen=True, slots=True)
class Check:
    measure: str
    simulated: float
    national: float | None
    tolerance: float | None
    unit: str
    passed: bool | None  # None: informational
    source: str


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


TARGETS: tuple[Target, ...] = (
    Target("overall absence", {"primary": 5.5, "secondary": 8.9}, 1.0, "%", lambda s: s.overall, "2023/24"),
    Target("authorised absence", {"primary": 3.9, "secondary": 5.4}, 1.0, "%", lambda s: s.authorised,
           "2023/24 overall - unauthorised"),
    Target("unauthorised absence", {"primary": 1.6, "secondary": 3.5}, 1.0, "%", lambda s: s.unauthorised, "2023/24"),
    Target("persistent absence ≥10%", {"primary": 14.7, "secondary": 26.7}, 2.0, "% pupils", lambda s: s.persistent,
           "phase split of 20.0%"),
    Target("severe absence ≥50%", {"primary": 1.0, "secondary": 3.9}, 2.0, "% pupils", lambda s: s.severe,
           "phase split of 2.3%"),
    Target("FSM / not-FSM absence", {"primary": 1.92, "secondary": 1.92}, 0.5, "x",
           lambda s: _ratio(s.fsm, s.not_fsm), "autumn 2024: 10.0 / 5.2"),
    Target("SEN support / no SEN absence", {"primary": 1.74, "secondary": 1.74}, 0.5, "x",
           lambda s: _ratio(s.sen_support, s.sen_none), "autumn 2024: 10.1 / 5.8"),
    Target("EHCP / no SEN absence", {"primary": 2.26, "secondary": 2.26}, 0.6, "x",
           lambda s: _ratio(s.ehcp, s.sen_none), "autumn 2024: 13.1 / 5.8"),
    Target("EHCP > SEN support > no SEN", {"primary": 1.0, "secondary": 1.0}, 0.0, "bool",
           lambda s: float(s.ehcp > s.sen_support > s.sen_none), "autumn 2024 ordering"),
    Target("Friday - Wednesday, AM", {"primary": 1.2, "secondary": 1.6}, 0.6, "pts",
           lambda s: s.friday_minus_wednesday_am, "DfE, by weekday"),
    Target("Friday - Wednesday, PM", {"primary": 1.6, "secondary": 2.1}, 0.6, "pts",
           lambda s: s.friday_minus_wednesday_pm, "DfE, by weekday"),
    Target("sessions marked / or \\", {"primary": 94.2, "secondary": 90.0}, 1.5, "%",
           lambda s: s.present_code_share, "September 2024"),
    Target("spells of 2-4 sessions", {"primary": 50.0, "secondary": 50.0}, 10.0, "% spells",
           lambda s: s.spells_2_to_4_share, "September 2024: 'half'"),
    Target("pupils with C2 (part-time)", {"primary": 0.3, "secondary": 0.7}, 0.3, "% pupils",
           lambda s: s.part_time_pupils, "September 2024"),
    Target("illness (I) sessions", {"primary": 3.5, "secondary": 3.5}, None, "%",
           lambda s: s.illness, "2023/24, all phases"),
    Target("autumn: first week", {"primary": 4.7, "secondary": 4.7}, None, "%", lambda s: s.autumn_first_week,
           "autumn 2024, all phases"),
    Target("autumn: week before HT", {"primary": 7.0, "secondary": 7.0}, None, "%",
           lambda s: s.autumn_before_half_term, "autumn 2024, all phases"),
    Target("autumn: week after HT", {"primary": 5.9, "secondary": 5.9}, None, "%",
           lambda s: s.autumn_after_half_term, "autumn 2024, all phases"),
    Target("autumn: last week of term", {"primary": 9.4, "secondary": 9.4}, None, "%", lambda s: s.autumn_last_week,
           "autumn 2024, all phases"),
    Target("autumn shape 1st<preHT>postHT<last", {"primary": 1.0, "secondary": 1.0}, 0.0, "bool",
           lambda s: float(s.autumn_first_week < s.autumn_before_half_term > s.autumn_after_half_term
                           < s.autumn_last_week), "autumn 2024 pattern"),
    Target("term: autumn", {"primary": 6.7, "secondary": 6.7}, None, "%", lambda s: s.autumn, "2023/24, all phases"),
    Target("term: spring", {"primary": 7.2, "secondary": 7.2}, None, "%", lambda s: s.spring, "2023/24, all phases"),
    Target("term: summer", {"primary": 7.6, "secondary": 7.6}, None, "%", lambda s: s.summer, "2023/24, all phases"),
)


def calibration_checks(stats: PhaseStats) -> list[Check]:
    checks = []
    for target in TARGETS:
        simulated = float(target.value(stats))
        national = target.national.get(stats.phase)
        passed = None
        if target.tolerance is not None and national is not None:
            passed = abs(simulated - national) <= target.tolerance
        checks.append(Check(target.measure, simulated, national, target.tolerance, target.unit, passed, target.source))
    return checks


def failed_checks(stats: PhaseStats) -> list[Check]:
    return [check for check in calibration_checks(stats) if check.passed is False]


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "bool":
        return "yes" if value >= 0.5 else "no"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "pts":
        return f"{value:+.2f} pts"
    return f"{value:.2f}%"


def _tolerance(target: Target) -> str:
    if target.tolerance is None or target.unit == "bool":
        return ""
    suffix = {"x": "x", "pts": " pts"}.get(target.unit, " pts")
    return f"±{target.tolerance:g}{suffix}"


def calibration_table(stats_by_phase: dict[str, PhaseStats]) -> Table:
    """One row per measure, the phases side by side: simulated, national, verdict."""
    phases = list(stats_by_phase)
    table = Table(title="Simulated year vs national statistics (England)", caption=_CAPTION, caption_justify="left")
    table.add_column("measure", style="bold", min_width=24)
    for phase in phases:
        pupils = stats_by_phase[phase].pupils
        table.add_column(f"{phase}\nsimulated\n{pupils:,} pupils", justify="right", no_wrap=True)
        table.add_column(f"{phase}\nnational", justify="right", no_wrap=True)
        table.add_column("", justify="center", no_wrap=True)
    table.add_column("tolerance", justify="right", no_wrap=True)
    checks = {phase: calibration_checks(stats) for phase, stats in stats_by_phase.items()}
    for row_index, target in enumerate(TARGETS):
        cells = [target.measure]
        for phase in phases:
            check = checks[phase][row_index]
            verdict = {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: "[dim]info[/]"}[check.passed]
            cells += [_format(check.simulated, check.unit), _format(check.national, check.unit), verdict]
        cells.append(_tolerance(target))
        table.add_row(*cells)
    return table


_CAPTION = (
    "National: DfE pupil absence in schools in England 2023/24 (rates, unauthorised); PA and severe are the "
    "published 20.0% and 2.3% split by phase (see models/simulator/report.py); group ratios autumn 2024/25; "
    "weekday gaps from DfE daily attendance data; code, spell and C2 shares September 2024. "
    "'info' rows are all-phase figures, shown for shape only."
)


def render_report(stats_by_phase: dict[str, PhaseStats], console: Console | None = None) -> bool:
    """Print the calibration table; True when every checked tolerance passes."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # a file or pipe gets the full table, not 80 columns
            console = Console(width=140)
    console.print(calibration_table(stats_by_phase))
    return all(not failed_checks(stats) for stats in stats_by_phase.values())
