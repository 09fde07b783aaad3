"""`reconnect ingest`: register exports into the marks topic."""

from __future__ import annotations

import time
from pathlib import Path

import click

from streams.commands.options import bootstrap_option
from streams.settings import load_settings

@click.command()
@click.argument("marks_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@bootstrap_option
def ingest(marks_csv: Path, bootstrap: str | None) -> None:
    """Publish an interchange CSV (school_id,pupil_id,date,session,code[,recorded_at]) to the marks topic."""
    from schemas.interchange import InterchangeFormatError
    from streams.ingest import ingest_file

    settings = load_settings(kafka_bootstrap_servers=bootstrap)
    started = time.perf_counter()
    try:
        report = ingest_file(marks_csv, settings)
    except InterchangeFormatError as exc:
        raise click.ClickException(str(exc)) from None
    elapsed = time.perf_counter() - started
    click.echo(f"{marks_csv}: {report.line()} in {elapsed:.1f}s")
    for reason, count in sorted(report.reasons.items()):
        click.echo(f"  rejected {count:>6}  {reason}")
    if report.failed:
        raise SystemExit(1)


COMMANDS: list[click.Command] = [ingest]
