"""`reconnect simulate`: write a simulated school year, report its calibration, or stream it."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click
from rich.console import Console

from models.simulator.generate import SimulationConfig, simulate_year


def _date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from None


@click.command("simulate")
@click.option("--schools", type=click.IntRange(1, 9999), default=10, show_default=True)
@click.option("--pupils-per-school", type=click.IntRange(1, 99999), default=300, show_default=True)
@click.option("--phase", type=click.Choice(["primary", "secondary", "mixed"]), default="mixed", show_default=True)
@click.option("--seed", type=click.IntRange(0), default=2025, show_default=True)
@click.option("--profile", type=click.Choice(["default", "shifted"]), default="default", show_default=True,
              help="Episode shapes and mix: `shifted` is the deliberately different profile evaluation uses "
              "(models.simulator.profiles).")
@click.option("--out", "marks_path", type=click.Path(dir_okay=False, path_type=Path), help="marks.csv to write.")
@click.option("--truth", "truth_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Ground-truth episodes CSV.")
@click.option("--roster", "roster_path", type=click.Path(dir_okay=False, path_type=Path), help="Pupil roster CSV.")
@click.option("--calendar", "calendar_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="School calendar TOML (default: England 2025/26).")
@click.option("--report", is_flag=True, help="Print simulated vs national statistics (exit 1 if a tolerance fails).")
@click.option("--no-progress", is_flag=True, help="No progress bar (it is also off when not on a terminal).")
@click.option("--live", is_flag=True, help="Publish marks to Kafka instead of writing files.")
@click.option("--bootstrap", help="HOST:PORT[,HOST:PORT] of Kafka (default: from settings).")
@click.option("--from-date", callback=_date, help="Live: first date to publish (YYYY-MM-DD).")
@click.option("--to-date", callback=_date, help="Live: last date to publish (YYYY-MM-DD).")
@click.option("--pace-seconds-per-day", type=click.FloatRange(0, min_open=True),
              help="Live: spread each school day over this many seconds (default: as fast as possible).")
def simulate(
    schools: int,
    pupils_per_school: int,
    phase: str,
    seed: int,
    profile: str,
    marks_path: Path | None,
    truth_path: Path | None,
    roster_path: Path | None,
    calendar_path: Path | None,
    report: bool,
    no_progress: bool,
    live: bool,
    bootstrap: str | None,
    from_date: dt.date | None,
    to_date: dt.date | None,
    pace_seconds_per_day: float | None,
) -> None:
    """Simulate a school year of register marks calibrated to national absence statistics."""
    config = SimulationConfig(
        schools=schools, pupils_per_school=pupils_per_school, phase=phase, seed=seed, calendar_path=calendar_path,
        profile=profile,
    )
    err = Console(stderr=True)
    if live:
        if report or marks_path:
            raise click.UsageError("--live publishes to Kafka; run --report/--out without --live")
        _run_live(config, err, bootstrap, from_date, to_date, pace_seconds_per_day, progress=not no_progress)
        return
    if from_date or to_date or pace_seconds_per_day or bootstrap:
        raise click.UsageError("--from-date/--to-date/--pace-seconds-per-day/--bootstrap need --live")

    summary = simulate_year(config, marks_path, truth_path, roster_path, progress=not no_progress)
    err.print(
        f"simulated {summary.pupils:,} pupils in {summary.schools} schools over {summary.school_days} days: "
        f"{summary.marks_written:,} marks ({summary.amendments:,} amendments), {summary.truth_rows:,} episodes "
        f"in {summary.elapsed_seconds:.1f}s"
    )
    for label, path in (("marks", marks_path), ("truth", truth_path), ("roster", roster_path)):
        if path is not None:
            err.print(f"  {label}: {path}")
    if report:
        from models.simulator.report import render_report

        if not render_report(summary.stats):
            sys.exit(1)


def _run_live(
    config: SimulationConfig,
    err: Console,
    bootstrap: str | None,
    from_date: dt.date | None,
    to_date: dt.date | None,
    pace: float | None,
    progress: bool,
) -> None:
    from streams.settings import load_settings
    from streams.simulate_live import publish_live

    settings = load_settings(kafka_bootstrap_servers=bootstrap)
    show = progress and err.is_terminal

    def on_day(day: dt.date, count: int) -> None:
        if show:
            err.print(f"  {day.isoformat()}: {count:,} marks")

    counts = publish_live(
        config, from_date=from_date, to_date=to_date, pace_seconds_per_day=pace, topic=settings.topic_marks,
        bootstrap=settings.bootstrap_list, on_day=on_day,
    )
    err.print(
        f"published {counts.marks:,} marks ({counts.amendments:,} amendments) over {counts.days} school days "
        f"to {counts.topic} in {counts.elapsed_seconds:.1f}s ({counts.marks_per_second:,.0f}/s)"
    )
