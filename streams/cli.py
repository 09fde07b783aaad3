"""`reconnect`: the one production command. Each area's subcommands live in streams/commands/."""

from __future__ import annotations

import click

from streams.commands import ingest, modelling, webhooks, worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Reconnect: early, explained, supportive signals from school register marks."""


for _module in (worker, ingest, modelling, webhooks):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
