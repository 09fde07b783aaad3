"""`reconnect-dev`: the demo, the benchmarks and the embedded broker. Development only."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from streams.settings import REPO_ROOT


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Reconnect development tools: the demo, the benchmarks, the embedded broker."""


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=REPO_ROOT / "BENCHMARKS.md",
              show_default=True)
@click.option("--marks", default=60_000, show_default=True, help="Marks for the throughput runs.")
@click.option("--burst-pupils", default=50_000, show_default=True, help="Pupils in the registration burst.")
@click.option("--burst-seconds", default=120.0, show_default=True,
              help="Seconds over which the burst is published (a trust marks within about 10 minutes).")
@click.option("--replay-pupils", default=2_000, show_default=True, help="Pupils in the full-year replay.")
@click.option("--backtest-pupils", default=50_000, show_default=True,
              help="Pupils in the backtest year (issue 13: a year of 50,000 during a meeting); 0 skips it.")
@click.option("--no-profile", is_flag=True, help="Skip the py-spy profile of the worker.")
def bench(out: Path, marks: int, burst_pupils: int, burst_seconds: float, replay_pupils: int, backtest_pupils: int,
          no_profile: bool) -> None:
    """Measure throughput against the transport and framework ceilings, latency, memory and cost."""
    from devtools.bench import run_bench

    click.echo(run_bench(out, marks=marks, burst_pupils=burst_pupils, burst_seconds=burst_seconds,
                         replay_pupils=replay_pupils, backtest_pupils=backtest_pupils, profile=not no_profile,
                         echo=click.echo))
    click.echo(f"wrote {out}")


@cli.command()
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Model to measure (default: the shipped one).")
@click.option("--seed", "seeds", type=int, multiple=True,
              help="Development cohort seed (repeatable; default: nine). Evaluation and training seeds are refused.")
@click.option("--enter", "enter_scores", type=click.FloatRange(0, 1), multiple=True,
              help="Entry score to measure at (repeatable; default: the model's own).")
@click.option("--schools", default=4, show_default=True)
@click.option("--pupils-per-school", default=300, show_default=True)
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=REPO_ROOT / "var" / "frontier",
              show_default=True, help="Where the simulated cohorts are kept between runs.")
def frontier(model_path: Path | None, seeds: tuple[int, ...], enter_scores: tuple[float, ...], schools: int,
             pupils_per_school: int, cache: Path) -> None:
    """Alert precision against dips caught within 20 days, pooled over development cohorts."""
    from devtools.frontier import DEFAULT_SEEDS, HeldBackSeed, measure, render
    from models.artifact import load_model
    from streams.settings import load_settings

    settings = load_settings()
    model = load_model(model_path or settings.model_path)
    enter = enter_scores or (model.policy.enter_score,)
    try:
        points = measure(model, seeds or DEFAULT_SEEDS, enter, cache=cache, window_days=settings.state_window_days,
                         schools=schools, pupils_per_school=pupils_per_school, echo=click.echo)
    except HeldBackSeed as refused:
        raise click.UsageError(str(refused)) from None
    click.echo(render(points, shipped=model.policy.enter_score))


@cli.command()
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Model to compare (default: the shipped one).")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=REPO_ROOT / "var" / "frontier",
              show_default=True, help="Where the simulated cohorts are kept between runs.")
def ceiling(model_path: Path | None, cache: Path) -> None:
    """How close a model taught the simulator's own dips, on the full register, comes to the targets."""
    from devtools.ceiling import measure_ceiling, render_ceiling
    from devtools.frontier import HeldBackSeed
    from models.artifact import load_model
    from streams.settings import load_settings

    settings = load_settings()
    model = load_model(model_path or settings.model_path)
    try:
        result = measure_ceiling(model, cache=cache, window_days=settings.state_window_days, echo=click.echo)
    except HeldBackSeed as refused:
        raise click.UsageError(str(refused)) from None
    click.echo(render_ceiling(result, shipped_enter=model.policy.enter_score))


@cli.command()
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (default: a free one).")
def broker(port: int | None) -> None:
    """Run the embedded Kafka-compatible broker (tansu, in memory) until Ctrl-C or SIGTERM. Dev and tests only."""
    from devtools.broker import EmbeddedBroker, stop_on_signals

    with EmbeddedBroker(port=port) as embedded, stop_on_signals():
        click.echo(f"Embedded broker on {embedded.bootstrap} (pid {embedded.process.pid}); "
                   f"export KAFKA_BOOTSTRAP_SERVERS={embedded.bootstrap}", err=False)
        sys.stdout.flush()
        try:
            while embedded.process.poll() is None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass


@cli.command()
@click.option("--schools", default=2, show_default=True)
@click.option("--pupils-per-school", default=150, show_default=True)
@click.option("--seed", default=11, show_default=True)
@click.option("--pace", default=1.5, show_default=True, help="Seconds per school day of the live week.")
@click.option("--hold/--no-hold", default=None,
              help="Keep everything running after the live week until Ctrl-C (default: when run in a terminal).")
def demo(schools: int, pupils_per_school: int, seed: int, pace: float, hold: bool | None) -> None:
    """Embedded broker, a worker, the caseload and a simulated school week: watch interventions arrive."""
    from devtools.demo import run_demo

    hold = sys.stdin.isatty() and sys.stdout.isatty() if hold is None else hold
    sys.exit(run_demo(schools=schools, pupils_per_school=pupils_per_school, seed=seed, pace=pace, hold=hold))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
