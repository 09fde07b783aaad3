"""The model card: `run_evaluation` simulates a held-out cohort, evaluates the shipped model
on it through the real engine (models.evaluation) and writes `models/MODEL_CARD.md` with a
calibration curve and a lead-time histogram beside it (models/card/*.png).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from models import labels  # noqa: E402
from models.artifact import RiskModel, load_model  # noqa: E402
from models.evaluation import (  # noqa: E402
    EARLY_GRACE_DAYS,
    LABELS,
    LAST4,
    LATE_GRACE_DAYS,
    MODEL,
    YTD,
    EvaluationReport,
    evaluate,
)
from models.features import FEATURE_NAMES  # noqa: E402

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_CARD = MODELS_DIR / "MODEL_CARD.md"
DEFAULT_EVAL_SEED = 2024  # the training default is 7: a different cohort of pupils
TABLE_BEGIN, TABLE_END = "<!-- evaluation-table:begin -->", "<!-- evaluation-table:end -->"


def run_evaluation(model_path: Path, *, out_card: Path = DEFAULT_CARD, schools: int = 6,
                   pupils_per_school: int = 400, seed: int = DEFAULT_EVAL_SEED, phase: str = "mixed",
                   window_days: int = 126, scratch: Path | None = None) -> EvaluationReport:
    """Simulate a held-out cohort to a temporary directory, evaluate the model at `model_path`
    through the real engine, write the model card (and its figures) and return the report."""
    from models.simulator.generate import SimulationConfig, simulate_year

    model = load_model(Path(model_path))
    config = SimulationConfig(schools=schools, pupils_per_school=pupils_per_school, phase=phase, seed=seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        folder = Path(tmp)
        paths = {name: folder / f"{name}.csv" for name in ("marks", "truth", "roster")}
        summary = simulate_year(config, marks_path=paths["marks"], truth_path=paths["truth"],
                                roster_path=paths["roster"])
        report = evaluate(model, paths["marks"], paths["truth"], paths["roster"], window_days=window_days,
                          cohort={"simulation": config.model_dump(mode="json"),
                                  "episodes_by_kind": summary.episodes_by_kind,
                                  "marks_written": summary.marks_written})
    report.timing["evaluate_seconds"] = round(time.perf_counter() - started, 1)
    write_card(report, model, Path(out_card))
    return report


def write_card(report: EvaluationReport, model: RiskModel, out_card: Path) -> Path:
    figures = out_card.parent / "card"
    figures.mkdir(parents=True, exist_ok=True)
    calibration_png = _calibration_plot(report, figures / "calibration.png")
    lead_png = _lead_histogram(report, figures / "lead_time.png")
    out_card.write_text(render_card(report, model, calibration_png.relative_to(out_card.parent),
                                    lead_png.relative_to(out_card.parent)), encoding="utf-8")
    return out_card


def _calibration_plot(report: EvaluationReport, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(report.calibration["predicted"], report.calibration["observed"], marker="o", label="model")
    ax.set_xlabel("predicted probability of a dip (decile bins)")
    ax.set_ylabel("observed share of rows labelled dipping")
    ax.set_title("Calibration on the held-out cohort (day-end rows)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _lead_histogram(report: EvaluationReport, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = list(range(-EARLY_GRACE_DAYS, 101, 5))
    for system in (MODEL, YTD, LAST4):
        values = [min(v, 100) for v in report.lead_days[system]]
        ax.hist(values, bins=bins, histtype="step", linewidth=2, label=f"{LABELS[system]} (n={len(values)})")
    ax.axvline(20, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("school days from dip onset to first alert in the dip (capped at 100)")
    ax.set_ylabel("dip pupils")
    ax.set_title("Lead time on the held-out cohort")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _gap_lines(report: EvaluationReport) -> list[str]:
    lines = []
    names = {"flagged_share": "flagged share", "alerts_per_100_per_week": "alerts per 100 per week",
             "recall": "dip recall", "recall_within_20": "recall within 20 days",
             "flagged_share_without_dip": "flagged share of pupils without a dip"}
    for attribute, title in (("sen", "SEN (none / SEN support / EHC plan)"), ("fsm", "free school meals (yes / no)")):
        gaps = report.fairness_gaps[attribute]
        parts = [f"{names[k]} {v:.3f}" for k, v in gaps.items() if v is not None]
        lines.append(f"- **{title}**, largest gap between groups: " + "; ".join(parts) + ".")
    return lines


def render_card(report: EvaluationReport, model: RiskModel, calibration_png: Path, lead_png: Path) -> str:
    info = model.describe()
    training = dict(info["training"])
    sweep = training.pop("threshold_sweep", [])
    m = report.metrics[MODEL]
    sim = report.cohort.get("simulation", {})
    verdicts = [(key, report.passes(key)) for key in ("recall_within_20", "median_lead_days", "alert_precision",
                                                      "false_alarm_share", "alerts_per_100_per_week")]
    met = [k for k, v in verdicts if v]
    missed = [k for k, v in verdicts if v is False]
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    out: list[str] = [
        "# Model card: Reconnect attendance-dip risk model",
        "",
        f"Generated by `reconnect evaluate` ({now}). Do not edit by hand: rerun the command.",
        "",
        f"- Model version: `{info['version']}` ({info['estimator']}), trained {info['trained_at']}",
        f"- scikit-learn {info['sklearn_version']}; training data SHA-256 `{info['training_data_sha256']}`",
        f"- Alert policy: concern at calibrated score >= {report.policy['enter_score']:.3f} "
        f"(tiers at {report.policy['tier2_score']:.3f} / {report.policy['tier3_score']:.3f}, exit below "
        f"{report.policy['exit_score']:.3f}, cool-down {report.policy['cooldown_days']} days, at least "
        f"{report.policy['min_possible_sessions']} possible sessions this year)",
        "",
        "## Intended use and limits",
        "",
        "- **Supportive only.** An alert is a prompt for a pastoral conversation (a call home to listen, a "
        "wellbeing check-in, a school-nurse or young-carer conversation). It must never be used for "
        "enforcement, penalties or any decision about a family without a person looking at the whole picture.",
        "- Every alert carries its reasons (the pupil's own attendance numbers) so staff can check it.",
        "- **Evaluated on simulated data only.** The cohort simulator is calibrated to published national "
        "figures (DfE absence statistics), but its dip patterns are modelled, not observed. Numbers on a real "
        "school's registers will differ; validate on a school's own past year before relying on them.",
        "- The model sees attendance behaviour only. It cannot know why a pupil is absent; a dip caused by a "
        "long illness looks, at first, like a week of flu, and is only recognisable once it lasts longer.",
        "- A pupil needs at least 20 possible sessions this year before any alert, so the first two weeks of "
        "September are blind; pupils who join mid-year start with no history.",
        "",
        "## Evaluation on a held-out cohort",
        "",
        f"Held-out cohort: {sim.get('schools', '?')} schools x {sim.get('pupils_per_school', '?')} pupils "
        f"({sim.get('phase', '?')} phases), simulator seed {sim.get('seed', '?')} (training used seed "
        f"{info['training'].get('seed', '?')}: different pupils and schools), full year "
        f"{report.cohort.get('first_day')} to {report.cohort.get('last_day')} ({report.cohort.get('school_days')} "
        f"school days, {report.cohort.get('marks_read'):,} register rows). Episodes: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.cohort.get("episodes_by_kind", {}).items())) + ".",
        "",
        "The marks were replayed through the real `DecisionEngine` (state, features, model, policy), the same "
        "code the stream worker runs; alerts are the concerns it raised. Baselines are the reactive rules "
        "schools already have, applied to the same day-end attendance.",
        "",
        TABLE_BEGIN,
        report.markdown_table(),
        TABLE_END,
        "",
        f"Targets met: {', '.join(met) or 'none'}. Targets missed: {', '.join(missed) or 'none'}. "
        f"Better than both baselines on recall within 20 days and alert precision at once: "
        f"{'yes' if report.beats_baselines() else 'no'}.",
        "",
        f"Model alerts: {m.get('alerts')} concerns raised for {m.get('flagged')} of {m.get('pupils')} pupils "
        f"({m.get('dips')} dip pupils), plus {m.get('escalations')} escalations and {m.get('improving_events')} "
        "`improving` events (neither counted as alerts).",
        "",
        "### Definitions",
        "",
        "- **Alert**: a raised concern (a `concern` event that is not an escalation). **Flagged**: at least one alert.",
        f"- **Dip window**: from {EARLY_GRACE_DAYS} school days before the simulator's onset to {LATE_GRACE_DAYS} "
        "school days after its recovery (or the end of the year). An alert up to one school week before onset "
        "counts as early-correct; nothing in the marks announces a dip earlier, so earlier alerts are coincidences.",
        "- **Recall**: dip pupils with an alert inside their dip window. **Recall within 20 school days**: the first "
        "such alert at most 20 school days after onset. **Median lead**: school days from onset to that first alert "
        "(negative when early), over detected dips.",
        "- **Alert precision**: alerts inside a dip window of that pupil / all alerts. **Pupil precision**: flagged "
        "pupils with at least one alert inside a dip window / flagged pupils.",
        "- **False-alarm share**: pupils whose only episodes are a one-week illness and/or a term-time holiday, "
        "flagged at any time in the year.",
        "- **Alerts per 100 pupils per week**: alerts x 100 / pupils / (school days / 5).",
        "- **Baselines**: a pupil is flagged once, on the first day end at which, with at least 20 possible "
        "sessions this year, their attendance is below 90% year to date, or over their last 40 possible sessions "
        "(about four school weeks). Their ROC/PR-AUC rank rows by 1 - that rate; they give no probabilities (no Brier).",
        "- **ROC-AUC, PR-AUC, Brier**: the model's day-end score on every school day of every pupil of the held-out "
        f"cohort against the label below ({report.cohort.get('labelled_rows'):,} rows with a known label, "
        f"{report.cohort.get('positive_rows'):,} positive).",
        "",
        f"![Calibration curve]({calibration_png.as_posix()})",
        "",
        f"![Lead-time histogram]({lead_png.as_posix()})",
        "",
        "## Fairness audit",
        "",
        "SEN status and free-school-meal eligibility come from the roster and are used **only** here, never as "
        "model inputs. Absence, and dips, are more common among SEN and FSM pupils (nationally and in the "
        "simulator), so higher alert rates in those groups are expected; what must not differ is recall (are their "
        "dips found as often and as early?) and the flagged share of pupils without a dip (are they flagged "
        "wrongly more often?).",
        "",
        report.fairness_markdown(),
        "",
        *_gap_lines(report),
        "",
        "Groups are small (an EHC-plan group has tens of pupils and a handful of dips), so gaps of several "
        "points are within sampling noise at this cohort size.",
        "",
        "## Label: what \"attendance dipping\" means",
        "",
        labels.DEFINITION,
        "",
        "Why: the 90% floor is the persistent-absence line schools already use, so a dip is a fall into the range "
        "that matters and not a wobble from 100% to 93%. The 10-point drop against the pupil's own earlier rate "
        "makes it a *change*: a pupil who has been at 85% all year is known to the school already and is not a "
        "new dip. The short-block rule is what keeps the model from crying wolf: a week of flu or a family holiday "
        "is one contiguous block of 4-10 days and, without the rule, would count as a dip (five days off in twenty "
        "is 75%), teaching the model to alert on every week of illness. A long illness (three weeks or more) is "
        "still a dip. A 20-school-day horizon is the window in which a pastoral team can act before a dip becomes "
        "persistent absence.",
        "",
        "## Data",
        "",
        f"- Training: simulated cohort, {json.dumps(training.get('simulation', 'marks CSV'))}; data hash "
        f"`{info['training_data_sha256'][:16]}...`.",
        f"- Rows: day-end snapshots of every pupil with at least 20 possible sessions; fitted on every "
        f"{training.get('sample_every_school_days')}rd school day ({training.get('rows'):,} rows). Held-out "
        f"for model choice and threshold: schools {training.get('test_schools')} from {training.get('cutoff_day')} "
        "(later weeks, unseen schools); the candidates were fitted on earlier weeks of the other schools.",
        f"- Held-out evaluation cohort: seed {sim.get('seed')}, {report.cohort.get('pupils')} pupils; "
        f"{report.cohort.get('dead_lettered')} rows dead-lettered.",
        "",
        "## Features (attendance behaviour only)",
        "",
        "From the one pure feature function the stream uses (`models.features`); no demographic feature:",
        "",
        ", ".join(f"`{name}`" for name in FEATURE_NAMES) + ".",
        "",
        "## Model and training",
        "",
        "- Candidates, compared on the held-out split (later weeks of unseen schools): "
        + "; ".join(f"{k}: " + ", ".join(f"{mk} {mv}" for mk, mv in v.items())
                    for k, v in info["metrics"].get("candidates", {}).items())
        + f". Chosen: **{info['metrics'].get('estimator', info['estimator'])}** (higher PR-AUC).",
        "- Logistic regression: standardised features, L2 (C = 0.5). Gradient boosting: scikit-learn "
        "HistGradientBoostingClassifier, calibrated with isotonic regression (`CalibratedClassifierCV`, 3 folds "
        "of the training split), monotonic constraints "
        + ", ".join(f"`{k}` {'+' if v > 0 else '-'}" for k, v in training.get("monotonic_constraints", {}).items())
        + " (a direction that holds whatever else is known), others free.",
        f"- Alert threshold: the pastoral workload budget ({training.get('alert_budget_per_100_pupils_per_week')} "
        "alerts per 100 pupils per week, `reconnect train --budget`) is a hard cap on the held-out split; within "
        "it the entry threshold with the best F1 of alert precision and recall within 20 days is chosen "
        f"(against {info['metrics'].get('threshold_chosen_against')}), by running the real policy over "
        f"day-end scores. Chosen: {report.policy['enter_score']:.3f} (held-out alert rate "
        f"{info['metrics'].get('alerts_per_100_pupils_per_week')} per 100 pupils per week).",
        "- Explanations: per-feature log-odds contributions, by occlusion against a typical pupil "
        "(`RiskModel.contributions`), grouped into attendance patterns in each alert.",
        "",
        "Threshold sweep on the training cohort's held-out split:",
        "",
        "| enter score | alerts /100/wk | alert precision | recall within 20 d | F1 | within budget |",
        "|---|---|---|---|---|---|",
        *[f"| {s['enter_score']:.3f} | {s['alerts_per_100_per_week']:.3f} | {_f(s['alert_precision'])} | "
          f"{_f(s['recall_within_20'])} | {s['objective']:.3f} | {'yes' if s['within_budget'] else 'no'} |"
          for s in sweep[::2]],
        "",
        "## Versioning",
        "",
        "The artifact (`models/artifacts/risk_model.skops`) carries its version, the SHA-256 of its training "
        "data, the scikit-learn version it was fitted with, its metrics, its thresholds and its training "
        "settings. `load_model` refuses an artifact saved with another scikit-learn version "
        "(`ModelCompatibilityError`: retrain rather than risk wrong scores), and one whose feature list differs "
        "from the code's.",
        "",
        f"Timing: replay {report.timing.get('replay_seconds')} s ({report.timing.get('marks_per_second'):,} marks/s); "
        f"evaluation in total {report.timing.get('evaluate_seconds', report.timing.get('total_seconds'))} s.",
        "",
        "<!-- metrics-json",
        json.dumps({"metrics": report.metrics, "fairness_gaps": report.fairness_gaps}, default=str, sort_keys=True),
        "-->",
        "",
    ]
    return "\n".join(out)


def _f(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def card_table(card_text: str) -> str:
    """The evaluation table as written in a card (for checking it against a fresh evaluation)."""
    start = card_text.index(TABLE_BEGIN) + len(TABLE_BEGIN)
    return card_text[start:card_text.index(TABLE_END)].strip()
