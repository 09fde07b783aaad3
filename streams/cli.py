"""`reconnect`: the one command that drives everything."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from models.simulator.cli import simulate
from streams.settings import REPO_ROOT, Settings, get_settings


def _settings(**overrides: object) -> Settings:
    """Settings from the environment, with command-line overrides pushed into it.

    The environment is updated too, so the Faust app (built from the environment at import)
    and any child process see the same values.
    """
    env_names = {"kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS"}
    for field, value in overrides.items():
        if value is not None:
            os.environ[env_names.get(field, f"RECONNECT_{field.upper()}")] = str(value)
    get_settings.cache_clear()
    return get_settings()


bootstrap_option = click.option("--bootstrap", "bootstrap", default=None, metavar="HOST:PORT[,...]",
                                help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Reconnect: early, explained, supportive signals from school register marks."""


@cli.command()
@bootstrap_option
@click.option("--web-port", type=int, default=None, help="Port for /metrics, /livez, /readyz (default 6066).")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None, help="Model artifact to load.")
@click.option("--loglevel", default=None, help="Log level (default: $RECONNECT_LOG_LEVEL or info).")
def worker(bootstrap: str | None, web_port: int | None, model_path: Path | None, loglevel: str | None) -> None:
    """Run the stream worker: marks in, per-pupil state, interventions out."""
    settings = _settings(kafka_bootstrap_servers=bootstrap, web_port=web_port, model_path=model_path,
                         log_level=loglevel)
    import logging

    from faust.worker import Worker

    from streams.connect import BrokerUnavailableError, wait_for_kafka

    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s] [%(levelname)s] %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # its connection errors are summarised above
    try:
        wait_for_kafka(settings)
    except BrokerUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    logging.getLogger("kafka").setLevel(logging.WARNING)

    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=settings.scoring_threads)

    from streams.app import app

    app.finalize()
    app.worker_init()
    app.discover()
    app.worker_init_post_autodiscover()
    Worker(app, loglevel=settings.log_level).execute_from_commandline()


@cli.command()
@click.argument("marks_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@bootstrap_option
def ingest(marks_csv: Path, bootstrap: str | None) -> None:
    """Publish an interchange CSV (school_id,pupil_id,date,session,code[,recorded_at]) to the marks topic."""
    from schemas.interchange import InterchangeFormatError
    from streams.ingest import ingest_file

    settings = _settings(kafka_bootstrap_servers=bootstrap)
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


@cli.command()
@click.argument("marks_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the interventions, one JSON a line.")
@click.option("--dead-letter", "dead_letter_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write rejected rows (JSON lines); default: beside --out.")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None)
def replay(marks_csv: Path, out: Path, dead_letter_path: Path | None, model_path: Path | None) -> None:
    """Run state, features, model and policy in-process over a CSV, with no broker."""
    from models.artifact import ModelCompatibilityError, load_model
    from models.engine import DecisionEngine
    from models.replay import replay_file
    from schemas.interchange import InterchangeFormatError

    settings = _settings(model_path=model_path)
    try:
        engine = DecisionEngine(load_model(settings.model_path), window_days=settings.state_window_days)
    except ModelCompatibilityError as exc:
        raise click.ClickException(str(exc)) from None
    dead_letter_path = dead_letter_path or out.with_name(out.stem + ".dead-letter.jsonl")
    started = time.perf_counter()
    with out.open("w") as events_file, dead_letter_path.open("w") as letters:
        try:
            report, _ = replay_file(marks_csv, engine, out=events_file, dead_letters=letters,
                                    max_future_days=settings.max_future_days)
        except InterchangeFormatError as exc:
            raise click.ClickException(str(exc)) from None
    elapsed = time.perf_counter() - started
    click.echo(f"{marks_csv}: read {report.read}, applied {report.applied}, dead-lettered {report.dead_lettered}, "
               f"interventions {report.events} -> {out} ({report.read / max(elapsed, 1e-9):,.0f} marks/s)")


@cli.command()
@click.option("--marks", "marks_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Train on this interchange CSV; default: simulate a cohort (with ground truth) first.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Where to save the model.")
@click.option("--schools", default=6, show_default=True, help="Schools in the simulated training cohort.")
@click.option("--pupils-per-school", default=400, show_default=True)
@click.option("--seed", default=7, show_default=True, help="Training cohort seed (evaluation uses another).")
@click.option("--budget", default=None, type=float,
              help="Pastoral workload budget: concerns per 100 pupils per week (sets the alert threshold).")
@click.option("--estimator", type=click.Choice(["logistic", "boosted", "best"]), default="best",
              show_default=True, help="Which of the compared estimators to ship (best: by held-out PR-AUC).")
def train(marks_csv: Path | None, out: Path | None, schools: int, pupils_per_school: int, seed: int,
          budget: float | None, estimator: str) -> None:
    """Fit, compare and calibrate the risk model on features from the stream's own feature code."""
    from models.artifact import save_model
    from models.training import DEFAULT_ALERT_BUDGET, file_sha256, train_on_simulation
    from models.training import train as fit
    from schemas.interchange import read_marks

    settings = _settings()
    out = out or settings.model_path
    budget = budget if budget is not None else DEFAULT_ALERT_BUDGET
    ship = None if estimator == "best" else estimator
    started = time.perf_counter()
    if marks_csv is None:
        from models.simulator import SimulationConfig

        click.echo(f"Simulating {schools} schools x {pupils_per_school} pupils (seed {seed}) to train on...")
        model = train_on_simulation(SimulationConfig(schools=schools, pupils_per_school=pupils_per_school,
                                                     phase="mixed", seed=seed),
                                    window_days=settings.state_window_days, budget=budget, ship=ship)
    else:
        marks = (row.mark for row in read_marks(marks_csv) if row.mark is not None)
        model = fit(marks, window_days=settings.state_window_days, data_sha256=file_sha256(marks_csv), seed=seed,
                    budget=budget, ship=ship)
    save_model(model, out)
    click.echo(f"Model {model.version} ({model.metrics['estimator']}) saved to {out} "
               f"in {time.perf_counter() - started:.0f}s")
    click.echo(json.dumps({"metrics": {k: v for k, v in model.metrics.items() if k != "candidates"},
                           "compared": model.metrics.get("candidates"), "policy": model.policy.model_dump()},
                          indent=2, default=str))


@cli.command()
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--card", "card_path", type=click.Path(dir_okay=False, path_type=Path),
              default=REPO_ROOT / "models" / "MODEL_CARD.md", show_default=True)
@click.option("--schools", default=6, show_default=True, help="Schools in the held-out evaluation cohort.")
@click.option("--pupils-per-school", default=400, show_default=True)
@click.option("--seed", default=2024, show_default=True, help="Evaluation cohort seed (not the training seed).")
def evaluate(model_path: Path | None, card_path: Path, schools: int, pupils_per_school: int, seed: int) -> None:
    """Evaluate the model and two reactive baselines on a held-out simulated cohort; write the model card."""
    from models.card import run_evaluation

    settings = _settings(model_path=model_path)
    started = time.perf_counter()
    report = run_evaluation(settings.model_path, out_card=card_path, schools=schools,
                            pupils_per_school=pupils_per_school, seed=seed, window_days=settings.state_window_days)
    click.echo(report.table())
    click.echo()
    click.echo(report.fairness_table())
    click.echo(f"\nBeats both baselines on recall within 20 days and precision: {report.beats_baselines()}")
    click.echo(f"Model card written to {card_path} in {time.perf_counter() - started:.0f}s")


@cli.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=REPO_ROOT / "schemas" / "json", show_default=True)
def schema(out_dir: Path) -> None:
    """Write the JSON Schemas and the AsyncAPI document of the event contracts."""
    from schemas.export import write_schemas

    for path in write_schemas(out_dir):
        click.echo(f"wrote {path}")


@cli.command()
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

    settings = _settings(kafka_bootstrap_servers=bootstrap, webhook_url=webhook_url,
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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8099, show_default=True)
@click.option("--secret", default=None, help="Shared HMAC secret (default: $RECONNECT_WEBHOOK_SECRET).")
@click.option("--store", "store_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append what is received here, one JSON a line.")
@click.option("--fail-first", type=int, default=0, help="Demo: answer 503 to the first N attempts of every event.")
def receiver(host: str, port: int, secret: str | None, store_path: Path | None, fail_first: int) -> None:
    """Run the reference webhook receiver (verifies signatures, de-duplicates by idempotency key). Local use only."""
    from streams.receiver import FailureScript, run_receiver

    settings = _settings()
    secret = secret or (settings.webhook_secret.get_secret_value() if settings.webhook_secret else None)
    if not secret:
        raise click.ClickException("set --secret or RECONNECT_WEBHOOK_SECRET")
    summary = run_receiver(secret, host=host, port=port, store_path=store_path,
                           script=FailureScript(per_event=(503,) * fail_first),
                           on_ready=lambda r: click.echo(f"Receiving at {r.url}; GET {r.base_url}/received"))
    click.echo(f"received {summary['count']} events, {summary['duplicates']} duplicates, "
               f"{summary['unauthorised']} unauthorised")


@cli.command()
@click.option("--marks", "marks_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Interchange CSV of register marks covering the weeks around the actions.")
@click.option("--outcomes", "outcomes_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="Outcome events, one JSON a line (e.g. exported from the outcomes topic).")
@click.option("--days", default=20, show_default=True, help="School days in each window (20 = four weeks).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def outcomes(marks_csv: Path, outcomes_path: Path, days: int, as_json: bool) -> None:
    """Per action type: attendance in the four weeks after the action against the four weeks before."""
    from models.outcomes import format_report, report_from_files

    try:
        report = report_from_files(outcomes_path, marks_csv, days=days)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else format_report(report))


@cli.group()
def topics() -> None:
    """Kafka topics, as defined in ops/topics.toml."""


@topics.command("create")
@bootstrap_option
def topics_create(bootstrap: str | None) -> None:
    """Create every topic (idempotent: existing topics are checked, not changed)."""
    from ops.topics import TopicMismatchError, ensure_topics

    settings = _settings(kafka_bootstrap_servers=bootstrap)
    try:
        report = ensure_topics(settings)
    except TopicMismatchError as exc:
        raise click.ClickException(str(exc)) from None
    for name, status in report.items():
        click.echo(f"{status:>8}  {name}")


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=REPO_ROOT / "BENCHMARKS.md",
              show_default=True)
@click.option("--marks", default=60_000, show_default=True, help="Marks for the throughput runs.")
@click.option("--burst-pupils", default=50_000, show_default=True, help="Pupils in the registration burst.")
@click.option("--burst-seconds", default=120.0, show_default=True,
              help="Seconds over which the burst is published (a trust marks within about 10 minutes).")
@click.option("--replay-pupils", default=2_000, show_default=True, help="Pupils in the full-year replay.")
@click.option("--no-profile", is_flag=True, help="Skip the py-spy profile of the worker.")
def bench(out: Path, marks: int, burst_pupils: int, burst_seconds: float, replay_pupils: int, no_profile: bool) -> None:
    """Measure throughput against the transport and framework ceilings, latency, memory and cost."""
    from streams.bench import run_bench

    click.echo(run_bench(out, marks=marks, burst_pupils=burst_pupils, burst_seconds=burst_seconds,
                         replay_pupils=replay_pupils, profile=not no_profile, echo=click.echo))
    click.echo(f"wrote {out}")


@cli.command()
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (default: a free one).")
def broker(port: int | None) -> None:
    """Run the embedded Kafka-compatible broker (tansu, in memory) until Ctrl-C. Dev and tests only."""
    from ops.broker import EmbeddedBroker

    with EmbeddedBroker(port=port) as embedded:
        click.echo(f"Embedded broker on {embedded.bootstrap}; export KAFKA_BOOTSTRAP_SERVERS={embedded.bootstrap}")
        try:
            while embedded.process and embedded.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


@cli.command()
@click.option("--schools", default=2, show_default=True)
@click.option("--pupils-per-school", default=150, show_default=True)
@click.option("--seed", default=11, show_default=True)
@click.option("--pace", default=1.5, show_default=True, help="Seconds per school day of the live week.")
def demo(schools: int, pupils_per_school: int, seed: int, pace: float) -> None:
    """Embedded broker, a worker and a simulated school week: watch interventions arrive."""
    from streams.demo import run_demo

    sys.exit(run_demo(schools=schools, pupils_per_school=pupils_per_school, seed=seed, pace=pace))


cli.add_command(simulate)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
