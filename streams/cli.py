"""`reconnect`: the one production command. Each area's subcommands live in streams/commands/."""

from __future__ import annotations

import click

from caseload.cli import caseload as caseload_group
from streams.commands import ingest, modelling, webhooks, worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Reconnect: early, explained, supportive signals from school register marks."""


for _module in (worker, ingest, modelling, webhooks):
    for _command in _module.COMMANDS:
        cli.add_command(_command)
# The caseload is its own package, reached by the rest only through topics and contracts; this
# mount of its command group is the one import of it in production code (ARCHITECTURE.md).
cli.add_command(caseload_group)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
