"""Offline commands over the pure engine: simulate, replay, train, evaluate, backtest, outcome reports.

Computing lives in `models` (pure), rendering in `reports`; these commands read files, show
progress and print.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import click

from streams.settings import REPO_ROOT, load_settings
from streams.simulate_cli import simulate


@contextmanager
def one_scoring_thread():
    """Score on one OpenMP thread, as the worker does: thousands of small predict calls on a
    shared machine are many times slower with a thread pool spinning. Entered after scikit-learn
    is imported (loading a model does), or it limits nothing."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _load(model_path: Path):
    from models.artifact import ModelCompatibilityError, load_model

    try:
        return load_model(model_path)
    except ModelCompatibilityError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.argument("marks_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the interventions, one JSON a line.")
@click.option("--dead-letter", "dead_letter_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write rejected rows (JSON lines); default: beside --out.")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None)
@click.option("--row-by-row", is_flag=True,
              help="Feed the engine micro-batches of marks read row by row (the stream's path; the same results, "
                   "many times slower) instead of replaying in columns.")
def replay(marks_csv: Path, out: Path, dead_letter_path: Path | None, model_path: Path | None,
           row_by_row: bool) -> None:
    """Run state, features, model and policy in-process over a CSV, with no broker."""
    from models.engine import DecisionEngine
    from models.replay import replay_columnar, replay_file
    from schemas.interchange import InterchangeFormatError
    from streams.mark_columns import read_mark_columns

    settings = load_settings(model_path=model_path)
    engine = DecisionEngine(_load(settings.model_path), window_days=settings.state_window_days)
    dead_letter_path = dead_letter_path or out.with_name(out.stem + ".dead-letter.jsonl")
    started = time.perf_counter()
    with out.open("w") as events_file, dead_letter_path.open("w") as letters, one_scoring_thread():
        try:
            if row_by_row:
                report, _ = replay_file(marks_csv, engine, out=events_file, dead_letters=letters,
                                        limits=settings.mark_limits())
            else:
                source = read_mark_columns(marks_csv, limits=settings.mark_limits())
                report, _ = replay_columnar(source, engine, out=events_file, dead_letters=letters, keep_states=False)
        except InterchangeFormatError as exc:
            raise click.ClickException(str(exc)) from None
    elapsed = time.perf_counter() - started
    click.echo(f"{marks_csv}: read {report.read}, applied {report.applied}, dead-lettered {report.dead_lettered}, "
               f"interventions {report.events} -> {out} ({report.read / max(elapsed, 1e-9):,.0f} marks/s)")


@click.command()
@click.option("--marks", "marks_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Train on this interchange CSV; default: simulate a cohort (with ground truth) first.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Where to save the model.")
@click.option("--schools", default=12, show_default=True, help="Schools in the simulated training cohort.")
@click.option("--pupils-per-school", default=400, show_default=True)
@click.option("--seed", default=7, show_default=True, help="Training cohort seed (evaluation uses others).")
@click.option("--budget", default=None, type=float,
              help="Pastoral workload budget: concerns per 100 pupils per week (sets the alert threshold).")
@click.option("--estimator", type=click.Choice(["logistic", "boosted", "best"]), default="best",
              show_default=True, help="Which of the compared estimators to ship (best: by held-out PR-AUC).")
@click.option("--target", type=click.Choice(["label", "episodes", "label-or-episodes"]), default=None,
              help="What the model learns: the label; or, simulated training only, the simulator's own dip "
                   "episodes, or either (models.training.label_or_episode_target). Default: label-or-episodes "
                   "when simulating (the shipped model's), the label for a register export, which has no ground "
                   "truth.")
@click.option("--validation-cohort/--day-ends", default=None,
              help="Choose the alert threshold by replaying a validation cohort kept apart through the engine with "
                   "the model shipped (simulated training only; the default when simulating), or at the held-out "
                   "schools' day ends (the only way for a register export).")
def train(marks_csv: Path | None, out: Path | None, schools: int, pupils_per_school: int, seed: int,
          budget: float | None, estimator: str, target: str | None, validation_cohort: bool | None) -> None:
    """Fit, compare and calibrate the risk model on features from the stream's own feature code."""
    from models.artifact import save_model
    from models.evaluation.run import OFFLINE_LIMITS
    from models.training import (
        DEFAULT_ALERT_BUDGET,
        TARGET_EPISODES,
        TARGET_LABEL,
        TARGET_LABEL_OR_EPISODES,
        file_sha256,
        train_on_simulation,
    )
    from models.training import train as fit
    from schemas.interchange import read_marks

    simulating = marks_csv is None
    if not simulating and (target not in (None, "label") or validation_cohort):
        raise click.UsageError("--target episodes, --target label-or-episodes and --validation-cohort need a "
                               "simulated cohort's ground truth; a register export has none")
    target = target or ("label-or-episodes" if simulating else "label")
    validation_cohort = simulating if validation_cohort is None else validation_cohort
    settings = load_settings()
    out = out or settings.model_path
    budget = budget if budget is not None else DEFAULT_ALERT_BUDGET
    ship = None if estimator == "best" else estimator
    learnt = {"label": TARGET_LABEL, "episodes": TARGET_EPISODES, "label-or-episodes": TARGET_LABEL_OR_EPISODES}[target]
    started = time.perf_counter()
    if marks_csv is None:
        from models.simulator import SimulationConfig

        click.echo(f"Simulating {schools} schools x {pupils_per_school} pupils (seed {seed}, profile default) "
                   "to train on...")
        model = train_on_simulation(SimulationConfig(schools=schools, pupils_per_school=pupils_per_school,
                                                     phase="mixed", seed=seed),
                                    window_days=settings.state_window_days, budget=budget, target=learnt,
                                    validate=validation_cohort, ship=ship)
    else:
        marks = (row.mark for row in read_marks(marks_csv, limits=OFFLINE_LIMITS) if row.mark is not None)
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
@click.option("--schools", type=click.IntRange(1), default=None,
              help="Schools per cohort (default: 4, as the targets are stated for).")
@click.option("--pupils-per-school", type=click.IntRange(1), default=None, help="Default: 300.")
@click.option("--cohort", "cohorts", multiple=True, type=click.Choice(["held-out", "shifted"]),
              help="Evaluate only this cohort (repeatable); default: both.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every figure as JSON here.")
def evaluate(model_path: Path | None, card_path: Path, schools: int | None, pupils_per_school: int | None,
             cohorts: tuple[str, ...], json_path: Path | None) -> None:
    """Evaluate the model and two reactive baselines on two unseen cohorts (held-out and shifted
    profile) against every target; rewrite the model card."""
    from models.evaluation.cohorts import EVALUATION_COHORTS, evaluate_cohorts, scaled
    from reports.card import write_card
    from reports.tables import evaluation_plain, fairness_plain, targets_summary

    settings = load_settings(model_path=model_path)
    model = _load(settings.model_path)
    chosen = scaled(EVALUATION_COHORTS, schools=schools, pupils_per_school=pupils_per_school,
                    names=cohorts or None)
    started = time.perf_counter()
    with one_scoring_thread():
        report = evaluate_cohorts(model, window_days=settings.state_window_days, cohorts=chosen,
                                  on_cohort=lambda name: click.echo(f"Simulating and replaying the {name} cohort...",
                                                                    err=True))
    write_card(report, model, card_path)
    click.echo(evaluation_plain(report))
    for cohort in report.cohorts:
        click.echo(f"\nFairness, {cohort.name} cohort:\n{fairness_plain(cohort.fairness)}")
    click.echo("")
    for line in targets_summary(report):
        click.echo(line)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), default=str, indent=1), encoding="utf-8")
    click.echo(f"Model card written to {card_path} in {time.perf_counter() - started:.0f}s")


@click.command()
@click.argument("marks_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--roster", "roster_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Roster CSV (school_id,pupil_id,phase,year_group,sen,fsm): adds the fairness table.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("backtest"),
              show_default=True, help="Folder for backtest.md, backtest.html and the figures.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--no-progress", is_flag=True, help="No progress bar (it is also off when not on a terminal).")
@click.option("--row-by-row", is_flag=True, help="Replay mark by mark through the engine (the same report, slower).")
def backtest(marks_csv: Path, roster_csv: Path | None, out_dir: Path, model_path: Path | None,
             no_progress: bool, row_by_row: bool) -> None:
    """Replay a past year of a trust's registers through the real engine and report what the alerts
    would have been: against the labels of what followed, beside the reactive rules, by week,
    by school and (with a roster) by group."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from models.backtest import backtest as run_backtest
    from models.evaluation.run import OFFLINE_LIMITS
    from reports.backtest import write_report
    from schemas.interchange import InterchangeFormatError
    from streams.mark_columns import read_mark_columns

    settings = load_settings(model_path=model_path)
    model = _load(settings.model_path)
    err = Console(stderr=True)
    total = _data_rows(marks_csv)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=err,
                        disable=no_progress or not err.is_terminal)
    started = time.perf_counter()
    with progress, one_scoring_thread():
        task = progress.add_task("replaying register rows", total=total)
        try:
            report = run_backtest(model, marks_csv, roster_csv=roster_csv, window_days=settings.state_window_days,
                                  limits=OFFLINE_LIMITS, on_rows=lambda n: progress.advance(task, n),
                                  read_columns=None if row_by_row else partial(read_mark_columns, limits=OFFLINE_LIMITS))
        except InterchangeFormatError as exc:
            raise click.ClickException(str(exc)) from None
        progress.update(task, description="labelling and scoring done")
    written = write_report(report, out_dir)
    elapsed = time.perf_counter() - started
    click.echo(f"{marks_csv}: {report.marks_read:,} rows, {report.pupils:,} pupils, {report.schools} schools; "
               f"{report.events.get('concern', 0):,} concerns; report in {elapsed:.0f}s "
               f"({report.marks_read / max(elapsed, 1e-9):,.0f} rows/s)")
    click.echo(f"  {written['html']}\n  {written['markdown']}")


def _data_rows(path: Path) -> int:
    """Lines after the header (for the progress bar's total), counted in 1 MiB blocks."""
    lines = 0
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            lines += block.count(b"\n")
    return max(lines - 1, 0)


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


COMMANDS: list[click.Command] = [simulate, replay, train, evaluate, backtest, outcomes]
