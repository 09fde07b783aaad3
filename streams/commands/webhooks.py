"""`reconnect bridge` and `reconnect receiver`: delivering interventions to pastoral systems."""

from __future__ import annotations

from pathlib import Path

import click

from streams.commands.options import bootstrap_option
from streams.settings import load_settings

@click.command()
@bootstrap_option
@click.option("--webhook", "webhook_url", default=None, metavar="URL",
              help="The pastoral system's webhook (default: $RECONNECT_WEBHOOK_URL).")
@click.option("--secret", default=None, help="Shared HMAC secret (default: $RECONNECT_WEBHOOK_SECRET; prefer the env).")
@click.option("--metrics-port", type=int, default=None, help="Port for the bridge's /metrics (default 9108; 0: none).")
@click.option("--max-attempts", type=int, default=None, help="Attempts per event before dead-lettering (default 10).")
@click.option("--from-latest", is_flag=True, help="A new consumer group starts at the end, not the beginning.")
@click.option("--until-idle", type=float, default=None, metavar="SECONDS",
              help="Stop after this long with nothing to deliver (demos and tests); default: run until stopped.")
def bridge(bootstrap: str | None, webhook_url: str | None, secret: str | None, metrics_port: int | None,
           max_attempts: int | None, from_latest: bool, until_idle: float | None) -> None:
    """Deliver interventions to a pastoral system's webhook: signed, retried, dead-lettered, exactly once by key."""
    import logging

    from streams.bridge import run_bridge
    from streams.connect import BrokerUnavailableError, wait_for_kafka

    settings = load_settings(kafka_bootstrap_servers=bootstrap, webhook_url=webhook_url,
                         bridge_metrics_port=metrics_port, webhook_max_attempts=max_attempts)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    secret = secret or (settings.webhook_secret.get_secret_value() if settings.webhook_secret else None)
    if not settings.webhook_url or not secret:
        raise click.ClickException("set --webhook/RECONNECT_WEBHOOK_URL and RECONNECT_WEBHOOK_SECRET")
    try:
        wait_for_kafka(settings)
    except BrokerUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    report = run_bridge(
        settings, settings.webhook_url, secret, dead_letter_topic=settings.topic_webhook_dead_letter,
        max_attempts=settings.webhook_max_attempts, backoff_base_s=settings.webhook_backoff_base_s,
        backoff_max_s=settings.webhook_backoff_max_s, timeout_s=settings.webhook_timeout_s,
        max_retry_after_s=settings.webhook_max_retry_after_s,
        metrics_port=settings.bridge_metrics_port or None, stop_when_idle_s=until_idle,
        start_from="latest" if from_latest else "earliest",
    )
    click.echo(report.line())


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8099, show_default=True)
@click.option("--secret", default=None, help="Shared HMAC secret (default: $RECONNECT_WEBHOOK_SECRET).")
@click.option("--store", "store_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append what is received here, one JSON a line.")
@click.option("--fail-first", type=int, default=0, help="Demo: answer 503 to the first N attempts of every event.")
def receiver(host: str, port: int, secret: str | None, store_path: Path | None, fail_first: int) -> None:
    """Run the reference webhook receiver (verifies signatures, de-duplicates by idempotency key). Local use only."""
    from streams.receiver import FailureScript, run_receiver

    settings = load_settings()
    secret = secret or (settings.webhook_secret.get_secret_value() if settings.webhook_secret else None)
    if not secret:
        raise click.ClickException("set --secret or RECONNECT_WEBHOOK_SECRET")
    summary = run_receiver(secret, host=host, port=port, store_path=store_path,
                           script=FailureScript(per_event=(503,) * fail_first),
                           on_ready=lambda r: click.echo(f"Receiving at {r.url}; GET {r.base_url}/received"))
    click.echo(f"received {summary['count']} events, {summary['duplicates']} duplicates, "
               f"{summary['unauthorised']} unauthorised")


COMMANDS: list[click.Command] = [bridge, receiver]
