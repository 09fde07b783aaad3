"""Offline commands over the pure engine: replay, train, evaluate, simulate, outcome reports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from streams.settings import REPO_ROOT, load_settings
from streams.simulate_cli import simulate

@click.command()
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

    settings = load_settings(model_path=model_path)
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


@click.command()
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

    settings = load_settings()
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


@click.command()
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--card", "card_path", type=click.Path(dir_okay=False, path_type=Path),
              default=REPO_ROOT / "models" / "MODEL_CARD.md", show_default=True)
@click.option("--schools", default=6, show_default=True, help="Schools in the held-out evaluation cohort.")
@click.option("--pupils-per-school", default=400, show_default=True)
@click.option("--seed", default=2024, show_default=True, help="Evaluation cohort seed (not the training seed).")
def evaluate(model_path: Path | None, card_path: Path, schools: int, pupils_per_school: int, seed: int) -> None:
    """Evaluate the model and two reactive baselines on a held-out simulated cohort; write the model card."""
    from models.card import run_evaluation

    settings = load_settings(model_path=model_path)
    started = time.perf_counter()
    report = run_evaluation(settings.model_path, out_card=card_path, schools=schools,
                            pupils_per_school=pupils_per_school, seed=seed, window_days=settings.state_window_days)
    click.echo(report.table())
    click.echo()
    click.echo(report.fairness_table())
    click.echo(f"\nBeats both baselines on recall within 20 days and precision: {report.beats_baselines()}")
    click.echo(f"Model card written to {card_path} in {time.perf_counter() - started:.0f}s")


@click.command()
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


COMMANDS: list[click.Command] = [simulate, replay, train, evaluate, outcomes]
