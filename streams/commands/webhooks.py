"""`reconnect bridge` and `reconnect receiver`: delivering interventions to pastoral systems.

Secrets come from the settings (RECONNECT_WEBHOOK_SECRET, or a .env file) or from a file given
with --secret-file, never from the command line (where any user could read them in the process
list), and they are never printed.
"""

from __future__ import annotations

from pathlib import Path

import click

from streams.commands.options import bootstrap_option
from streams.settings import load_settings

secret_file_option = click.option(
    "--secret-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    help="A file holding the signing secret(s): whsec_..., several separated by whitespace during a rotation "
         "(default: $RECONNECT_WEBHOOK_SECRET).")


def _read_secret_file(path: Path | None) -> str | None:
    return path.read_text(encoding="utf-8").strip() if path is not None else None


@click.command()
@bootstrap_option
@click.option("--webhook", "webhook_url", default=None, metavar="URL",
              help="The pastoral system's webhook (default: $RECONNECT_WEBHOOK_URL).")
@secret_file_option
@click.option("--metrics-port", type=int, default=None, help="Port for the bridge's /metrics (default 9108).")
@click.option("--no-metrics", is_flag=True, help="Do not serve /metrics.")
@click.option("--max-attempts", type=int, default=None, help="Attempts per event before dead-lettering (default 10).")
@click.option("--from-latest", is_flag=True, help="A new consumer group starts at the end, not the beginning.")
@click.option("--until-idle", type=float, default=None, metavar="SECONDS",
              help="Stop after this long with nothing to deliver (demos and tests); default: run until stopped.")
def bridge(bootstrap: str | None, webhook_url: str | None, secret_file: Path | None, metrics_port: int | None,
           no_metrics: bool, max_attempts: int | None, from_latest: bool, until_idle: float | None) -> None:
    """Deliver interventions to a pastoral system's webhook: signed (Standard Webhooks), retried, dead-lettered."""
    import logging

    from streams.connect import BrokerUnavailableError, wait_for_kafka
    from streams.webhook.bridge import RunOptions, run_bridge
    from streams.webhook.signing import InvalidSecretError, parse_secrets

    settings = load_settings(kafka_bootstrap_servers=bootstrap, webhook_url=webhook_url,
                             webhook_secret=_read_secret_file(secret_file), bridge_metrics_port=metrics_port,
                             webhook_max_attempts=max_attempts)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    if not settings.webhook_url or settings.webhook_secret is None:
        raise click.ClickException("set --webhook or RECONNECT_WEBHOOK_URL, and RECONNECT_WEBHOOK_SECRET or "
                                   "--secret-file")
    try:
        parse_secrets(settings.webhook_secret.get_secret_value())
    except InvalidSecretError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        wait_for_kafka(settings)
    except BrokerUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    report = run_bridge(settings, RunOptions(stop_when_idle_s=until_idle, from_latest=from_latest,
                                             serve_metrics=not no_metrics))
    click.echo(report.line())


@click.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8099; 0: any free port).")
@secret_file_option
@click.option("--store", "store_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append what is received here, one JSON a line.")
@click.option("--fail-first", type=int, default=0, help="Demo: answer 503 to the first N attempts of every event.")
def receiver(host: str | None, port: int | None, secret_file: Path | None, store_path: Path | None,
             fail_first: int) -> None:
    """Run the reference webhook receiver (verifies signatures, de-duplicates by webhook-id). Local use only."""
    import dataclasses

    from streams.webhook.receiver import FailureScript, ReceiverConfig, run_receiver
    from streams.webhook.signing import InvalidSecretError, parse_secrets

    settings = load_settings(webhook_secret=_read_secret_file(secret_file))
    if settings.webhook_secret is None:
        raise click.ClickException("set RECONNECT_WEBHOOK_SECRET or --secret-file")
    try:
        secrets = parse_secrets(settings.webhook_secret.get_secret_value())
    except InvalidSecretError as exc:
        raise click.ClickException(str(exc)) from None
    given = {name: value for name, value in (("host", host), ("port", port)) if value is not None}
    config = dataclasses.replace(ReceiverConfig(), **given)
    summary = run_receiver(secrets, config=config, store_path=store_path,
                           script=FailureScript(per_event=(503,) * fail_first),
                           on_ready=lambda r: click.echo(f"Receiving at {r.url}; GET {r.base_url}/received"))
    click.echo(f"received {summary['count']} events, {summary['duplicates']} duplicates, "
               f"{summary['unauthorised']} unauthorised, {summary['bad_requests']} bad requests")


COMMANDS: list[click.Command] = [bridge, receiver]
