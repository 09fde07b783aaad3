"""Options several commands share."""

from __future__ import annotations

import click

bootstrap_option = click.option("--bootstrap", "bootstrap", default=None, metavar="HOST:PORT[,...]",
                                help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS).")
