"""`reconnect worker`, `reconnect topics` and `reconnect schema`: running and describing the stream."""

from __future__ import annotations

from pathlib import Path

import click

from streams.commands.options import bootstrap_option
from streams.settings import REPO_ROOT, load_settings

@click.command()
@bootstrap_option
@click.option("--web-port", type=int, default=None, help="Port for /metrics, /livez, /readyz (default 6066).")
@click.option("--web-bind", default=None, help="Interface to listen on (default 127.0.0.1; a container sets its own).")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None, help="Model artifact to load.")
@click.option("--loglevel", default=None, help="Log level (default: $RECONNECT_LOG_LEVEL or info).")
def worker(bootstrap: str | None, web_port: int | None, web_bind: str | None, model_path: Path | None,
           loglevel: str | None) -> None:
    """Run the stream worker: marks in, per-pupil state, interventions out."""
    settings = load_settings(kafka_bootstrap_servers=bootstrap, web_port=web_port, web_bind=web_bind,
                             model_path=model_path, log_level=loglevel)
    import logging

    from streams.connect import BrokerUnavailableError, wait_for_kafka
    from streams.launch import run_worker

    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s] [%(levelname)s] %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # its connection errors are summarised above
    try:
        wait_for_kafka(settings)
    except BrokerUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    logging.getLogger("kafka").setLevel(logging.WARNING)
    run_worker(settings)


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=REPO_ROOT / "schemas" / "json", show_default=True)
def schema(out_dir: Path) -> None:
    """Write the JSON Schemas and the AsyncAPI document of the event contracts."""
    from schemas.export import write_schemas

    for path in write_schemas(out_dir):
        click.echo(f"wrote {path}")


@click.group()
def topics() -> None:
    """Kafka topics, as defined in ops/topics.toml."""


@topics.command("create")
@bootstrap_option
def topics_create(bootstrap: str | None) -> None:
    """Create every topic (idempotent: existing topics are checked, not changed)."""
    from streams.topic_admin import TopicMismatchError, ensure_topics

    settings = load_settings(kafka_bootstrap_servers=bootstrap)
    try:
        report = ensure_topics(settings)
    except TopicMismatchError as exc:
        raise click.ClickException(str(exc)) from None
    for name, status in report.items():
        click.echo(f"{status:>8}  {name}")


COMMANDS: list[click.Command] = [worker, schema, topics]
