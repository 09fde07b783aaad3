"""`reconnect caseload`: the pastoral caseload web app and its administration.

`reconnect caseload` alone runs the web app with its Kafka consumer (until Ctrl-C); the
subcommands add staff accounts, import display names and migrate the database. The settings
are built once here (options win over the environment) and passed down.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from caseload.settings import CaseloadSettings, load_settings


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _sessions(settings: CaseloadSettings):
    from caseload.db import make_engine, session_factory, upgrade

    engine = make_engine(settings.database_url)
    upgrade(engine)
    return session_factory(engine)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--bind", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8080).")
@click.option("--bootstrap", default=None, metavar="HOST:PORT[,...]",
              help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS).")
@click.option("--database-url", default=None, help="SQLAlchemy URL (default: $RECONNECT_CASELOAD_DATABASE_URL "
              "or a SQLite file under var/).")
@click.pass_context
def caseload(ctx: click.Context, bind: str | None, port: int | None, bootstrap: str | None,
             database_url: str | None) -> None:
    """The pastoral caseload: where intervention events land, are looked at and acted on."""
    ctx.obj = load_settings(bind=bind, port=port, kafka_bootstrap_servers=bootstrap, database_url=database_url)
    if ctx.invoked_subcommand is None:
        from caseload.server import serve

        serve(ctx.obj)


@caseload.command("migrate")
@click.pass_obj
def migrate(settings: CaseloadSettings) -> None:
    """Bring the caseload database to the latest schema (the app also does this at start)."""
    from caseload.db import current_revision, make_engine, upgrade
    from caseload.server import safe_url

    engine = make_engine(settings.database_url)
    upgrade(engine)
    click.echo(f"{safe_url(settings.database_url)} is at revision {current_revision(engine)}")


@caseload.command("add-user")
@click.argument("username")
@click.option("--role", required=True, help="The staff role (e.g. head_of_year, pastoral_lead, senco).")
@click.option("--school", "schools", multiple=True, required=True, help="A school whose cases they see (repeatable).")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Read the password from this file (first line) instead of prompting.")
@click.option("--replace", is_flag=True, help="Reset an existing account's password, role and schools.")
@click.pass_obj
def add_user(settings: CaseloadSettings, username: str, role: str, schools: tuple[str, ...],
             password_file: Path | None, replace: bool) -> None:
    """Create a staff account that can sign in to the caseload."""
    from caseload.auth import AccountError, create_staff

    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        password = lines[0] if lines else ""
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    sessions = _sessions(settings)
    try:
        with sessions.begin() as session:
            staff = create_staff(session, username, password, role, schools, _now(), replace=replace)
            staff_id = staff.id
    except AccountError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{'Reset' if replace else 'Added'} {username} (id {staff_id}), role {role}, "
               f"schools {', '.join(sorted(set(schools)))}")


@caseload.command("disable-user")
@click.argument("username")
@click.pass_obj
def disable_user(settings: CaseloadSettings, username: str) -> None:
    """Stop a staff account signing in (ending its sign-ins now); `add-user --replace` enables it again."""
    from caseload.auth import disable_staff

    with _sessions(settings).begin() as session:
        if not disable_staff(session, username):
            raise click.ClickException(f"no account {username!r}")
    click.echo(f"Disabled {username}")


@caseload.command("import-names")
@click.argument("names_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def import_names_command(settings: CaseloadSettings, names_file: Path) -> None:
    """Import display names (CSV: pseudonym,name,year_group,tutor_group) into the caseload database only."""
    from caseload.names import NamesFileError, import_names

    sessions = _sessions(settings)
    try:
        with sessions.begin() as session:
            result = import_names(session, names_file, _now())
    except NamesFileError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Imported {result.imported} names; {len(result.rejected)} rows rejected")
    for line, reason in result.rejected[:20]:
        click.echo(f"  line {line}: {reason}")
    if len(result.rejected) > 20:
        click.echo(f"  ... and {len(result.rejected) - 20} more")


def main() -> None:
    caseload(prog_name="reconnect caseload")
