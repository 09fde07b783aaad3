"""`reconnect ingest` (register exports into the marks topic) and `reconnect dead-letters`
(what could not be used, and its replay after a fix)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from streams.commands.options import bootstrap_option
from streams.settings import load_settings

EXIT_CODES_HELP = ("Exit status: 0 every row published; 3 some rows rejected (dead-lettered, every other row "
                   "published); 4 some records not acknowledged by the broker (re-run: marks are idempotent); "
                   "1 the file is not an interchange CSV (nothing sent).")


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("marks_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@bootstrap_option
def ingest(marks_csv: Path, bootstrap: str | None) -> None:
    """Publish an interchange CSV (school_id,pupil_id,date,session,code[,recorded_at]) to the marks topic.

    Every row is published or dead-lettered with its line number and reason, whatever its bytes;
    the run always ends with its summary."""
    from schemas.interchange import InterchangeFormatError
    from streams.ingest import IngestExit, IngestReport, ingest_file

    settings = load_settings(kafka_bootstrap_servers=bootstrap)
    started = time.perf_counter()
    try:
        report = ingest_file(marks_csv, settings)
    except InterchangeFormatError as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo(f"{marks_csv}: {IngestReport().line()}: the file was refused")
        sys.exit(IngestExit.FILE_REFUSED)
    elapsed = time.perf_counter() - started
    click.echo(f"{marks_csv}: {report.line()} in {elapsed:.1f}s")
    for reason, count in sorted(report.reasons.items()):
        click.echo(f"  rejected {count:>6}  {reason}")
    if report.send_error:
        click.echo(f"  first send failure: {report.send_error}", err=True)
    sys.exit(report.exit_code)


# -- dead letters --------------------------------------------------------------------------------

def _selection(reasons: tuple[str, ...], stages: tuple[str, ...], since: str | None, source_file: str | None):
    from streams.deadletters import Selection, parse_since

    try:
        since_at = parse_since(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    return Selection(reasons=frozenset(reasons), stages=frozenset(stages), since=since_at, source_file=source_file)


def selection_options(command):
    for option in reversed([
        click.option("--reason", "reasons", multiple=True, metavar="REASON",
                     help="Only this reason (e.g. future_date); repeat for several."),
        click.option("--stage", "stages", multiple=True, type=click.Choice(["ingest", "worker", "replay"]),
                     help="Only dead letters from this stage; repeat for several."),
        click.option("--since", default=None, metavar="WHEN",
                     help="Only those dead-lettered since WHEN: an ISO date or timestamp, or an age like 12h or 7d."),
        click.option("--source-file", default=None, metavar="PATH",
                     help="Only rows of this ingested file (as named when it was ingested)."),
    ]):
        command = option(command)
    return command


@click.group("dead-letters")
def dead_letters() -> None:
    """List and replay what could not be used (the dead-letter topic).

    Dead letters keep the raw input for RECONNECT_DEAD_LETTER_RETENTION_DAYS (default 90) days."""


@dead_letters.command("list")
@selection_options
@click.option("--show-raw", is_flag=True, help="Also print each record's detail and raw input (may name a pupil).")
@click.option("--limit", default=50, show_default=True, help="Records listed after the counts (0: none).")
@bootstrap_option
def list_dead_letters(reasons, stages, since, source_file, show_raw: bool, limit: int, bootstrap: str | None) -> None:
    """Counts by reason and stage, then the records: when, stage, reason, where from and size.

    The raw input is not printed unless --show-raw is given: it may carry pupil data."""
    from kafka.errors import KafkaError

    from streams.deadletters import DeadLetterTopicMissing, describe, read_dead_letters, summarise

    settings = load_settings(kafka_bootstrap_servers=bootstrap)
    selection = _selection(reasons, stages, since, source_file)
    try:
        listing = summarise(read_dead_letters(settings), selection)
    except (DeadLetterTopicMissing, TimeoutError, KafkaError) as exc:
        raise click.ClickException(f"cannot read the dead letters: {exc}") from None
    click.echo(f"{settings.topic_dead_letter}: {listing.total} dead letters"
               + ("" if selection.is_everything else " selected")
               + f" (kept {settings.dead_letter_retention_days} days: RECONNECT_DEAD_LETTER_RETENTION_DAYS)")
    click.echo("by reason:")
    for reason, count in sorted(listing.by_reason.items()):
        click.echo(f"  {count:>7}  {reason}")
    if listing.unreadable:
        click.echo(f"  {listing.unreadable:>7}  (unreadable record)")
    click.echo("by stage:")
    for stage, count in sorted(listing.by_stage.items()):
        click.echo(f"  {count:>7}  {stage}")
    if limit and listing.selected:
        ordered = sorted(listing.selected, key=lambda stored: (stored.letter is not None, stored.letter and
                                                               stored.letter.dead_lettered_at))
        shown = ordered[-limit:]
        click.echo(f"records ({'the last ' + str(len(shown)) + ' of ' if len(shown) < listing.total else ''}"
                   f"{listing.total}; raw input {'shown' if show_raw else 'hidden, --show-raw prints it'}):")
        if show_raw:
            click.echo("warning: raw input and details may carry pupil data; do not paste them into tickets",
                       err=True)
        for stored in shown:
            for line in describe(stored, show_raw=show_raw):
                click.echo(line)


@dead_letters.command("replay", epilog="Exit status: 0 all selected replayed; 3 some still rejected or not "
                      "replayable; 4 some not acknowledged by the broker.")
@selection_options
@click.option("--all", "everything", is_flag=True, help="Replay every dead letter (without it, a filter is required).")
@click.option("--dry-run", is_flag=True, help="Validate and count, publish nothing.")
@bootstrap_option
def replay_dead_letters(reasons, stages, since, source_file, everything: bool, dry_run: bool,
                        bootstrap: str | None) -> None:
    """Re-publish the input of selected dead letters to the marks topic, after a fix.

    Each is validated again with today's settings: what now passes goes to the marks topic keyed by
    its pupil; what still fails is counted by reason and left where it is. Replaying twice is
    harmless: the same recording of a session replaces itself downstream."""
    from kafka.errors import KafkaError

    from streams.deadletters import DeadLetterTopicMissing, read_dead_letters, replay

    settings = load_settings(kafka_bootstrap_servers=bootstrap)
    selection = _selection(reasons, stages, since, source_file)
    if selection.is_everything and not everything:
        raise click.UsageError("choose what to replay (--reason, --stage, --since, --source-file) or pass --all")
    try:
        letters = [stored for stored in read_dead_letters(settings) if selection(stored)]
    except (DeadLetterTopicMissing, TimeoutError, KafkaError) as exc:
        raise click.ClickException(f"cannot read the dead letters: {exc}") from None
    report = replay(settings, letters, dry_run=dry_run)
    click.echo(("dry run: " if dry_run else "") + report.line())
    for reason, count in sorted(report.still_rejected.items()):
        click.echo(f"  still rejected {count:>6}  {reason}")
    for why, count in sorted(report.not_replayable.items()):
        click.echo(f"  not replayable {count:>6}  {why}")
    if report.send_error:
        click.echo(f"  first send failure: {report.send_error}", err=True)
    if report.failed:
        sys.exit(4)
    sys.exit(3 if report.still_rejected or report.not_replayable else 0)


COMMANDS: list[click.Command] = [ingest, dead_letters]
