"""Where a model stands on the alert targets, on development cohorts: `reconnect-dev frontier`.

A change to the features, the label or the policy is judged by the frontier it gives (alert
precision against dips caught within 20 school days, at each entry score), pooled over several
cohorts: one cohort of 1,200 pupils has some 80 dips, so its shares move by several hundredths
from seed to seed. The evaluation cohorts (`models.evaluation.cohorts`) are the final measure and
nothing may be chosen on them, and the training cohort is in-sample: so this tool simulates other
seeds of the training profile only, and refuses those.

Each cohort is simulated once into the cache directory and replayed through the engine's own rules
in columns (`models.training.EngineReplay` over `models.columnar`, held equal to `DecisionEngine` by
tests), as the stream would decide, and as `reconnect train --validation-cohort` chooses its threshold.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from models.artifact import RiskModel
from models.evaluation.cohorts import EVALUATION_COHORTS
from models.evaluation.run import OFFLINE_LIMITS
from models.evaluation.scoring import SCHOOL_DAYS_PER_WEEK, AlertScore, score_alerts
from models.evaluation.targets import BY_KEY, share_interval
from models.evaluation.truth import Truth
from models.policy import thresholds
from models.simulator.generate import SimulationConfig, simulate_year
from models.training import EngineReplay
from reports.tables import fmt, markdown
from streams.mark_columns import read_mark_columns

PROFILE = "default"  # the training profile: the shifted one is what evaluation holds back
DEFAULT_SEEDS = (99, 101, 103, 105, 107, 109, 111, 113, 115)


class HeldBackSeed(ValueError):
    """A seed whose cohort must not be used to choose anything."""


def refuse_held_back(seeds: Sequence[int], model: RiskModel) -> None:
    evaluation = {config.seed for config in EVALUATION_COHORTS.values()}
    training = model.training.get("simulation") or {}
    validation = model.training.get("validation") or {}
    for seed in seeds:
        if seed in evaluation:
            raise HeldBackSeed(f"seed {seed} is an evaluation cohort's: nothing may be chosen on it "
                               f"(evaluation seeds {sorted(evaluation)})")
        if seed == training.get("seed") and training.get("profile", PROFILE) == PROFILE:
            raise HeldBackSeed(f"seed {seed} is the model's own training cohort: its figures are in-sample")
        if seed == validation.get("seed") and validation.get("profile", PROFILE) == PROFILE:
            raise HeldBackSeed(f"seed {seed} is the model's validation cohort: its threshold was chosen on it")


def cohort_files(cache: Path, seed: int, schools: int, pupils_per_school: int) -> dict[str, Path]:
    """The cohort's marks, truth and roster, simulated into the cache the first time (into a folder
    renamed only once complete, so an interrupted run never leaves a cut-short cohort to be reused)."""
    folder = cache / f"{PROFILE}-{schools}x{pupils_per_school}-seed{seed}"
    names = ("marks", "truth", "roster")
    if not folder.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".simulating-") as scratch:
            partial = Path(scratch) / "cohort"
            partial.mkdir()
            simulate_year(SimulationConfig(schools=schools, pupils_per_school=pupils_per_school, phase="mixed",
                                           seed=seed, profile=PROFILE),
                          **{f"{name}_path": partial / f"{name}.csv" for name in names})
            partial.rename(folder)
    return {name: folder / f"{name}.csv" for name in names}


def pooled(scores: Sequence[AlertScore]) -> AlertScore:
    """One score over several cohorts: every count added, the lead times together (a rate over time
    needs each cohort's own pupils and days: `FrontierPoint.concerns_per_100_per_week`)."""
    counts = {f.name: sum(getattr(s, f.name) for s in scores) for f in fields(AlertScore)
              if f.name not in ("lead_days", "flagged_pupils")}
    return AlertScore(**counts, lead_days=[lead for s in scores for lead in s.lead_days])


@dataclass
class FrontierPoint:
    enter_score: float
    pooled: AlertScore
    per_cohort: list[AlertScore]

    @property
    def concerns_per_100_per_week(self) -> float | None:
        """Over every cohort's pupil-weeks (the pooled score's pupils and school days are sums)."""
        pupil_weeks = sum(s.pupils * s.school_days for s in self.per_cohort) / SCHOOL_DAYS_PER_WEEK
        return 100 * self.pooled.alerts / pupil_weeks if pupil_weeks else None

    def spread(self, key: str) -> tuple[float, float] | None:
        values = [v for v in (s.metrics()[key] for s in self.per_cohort) if v is not None]
        return (min(values), max(values)) if values else None


def measure(model: RiskModel, seeds: Sequence[int], enter_scores: Sequence[float], *, cache: Path,
            window_days: int, schools: int = 4, pupils_per_school: int = 300,
            echo: Callable[[str], None] = lambda line: None) -> list[FrontierPoint]:
    refuse_held_back(seeds, model)
    per_score: dict[float, list[AlertScore]] = {enter: [] for enter in enter_scores}
    for seed in seeds:
        files = cohort_files(cache, seed, schools, pupils_per_school)
        truth = Truth.load(files["truth"], files["roster"])
        columns = read_mark_columns(files["marks"], limits=OFFLINE_LIMITS).columns
        replay = EngineReplay(model, columns, window_days=window_days)
        for enter in enter_scores:
            score = score_alerts(replay(thresholds(model.policy, enter)), truth, columns.school_days)
            per_score[enter].append(score)
            m = score.metrics()
            echo(f"seed {seed} entry {enter:.3f}: alert precision {fmt(m['alert_precision'])}, "
                 f"caught within 20 d {fmt(m['recall_within_20'])}, concerns {score.alerts}")
    return [FrontierPoint(enter, pooled(scores), scores) for enter, scores in per_score.items()]


def _with_interval(part: int, whole: int) -> str:
    interval = share_interval(part, whole)
    if interval is None:
        return "n/a"
    return f"{part / whole:.3f} ({part}/{whole}; {interval[0]:.2f}-{interval[1]:.2f})"


def _spread(point: FrontierPoint, key: str) -> str:
    spread = point.spread(key)
    return "n/a" if spread is None else f"{spread[0]:.2f}-{spread[1]:.2f}"


def render(points: Sequence[FrontierPoint], *, shipped: float) -> str:
    rows = []
    for point in points:
        m, shares = point.pooled.metrics(), point.pooled.shares()
        rows.append([
            f"{point.enter_score:.3f}" + (" (shipped)" if point.enter_score == shipped else ""),
            _with_interval(*shares["alert_precision"]), _spread(point, "alert_precision"),
            _with_interval(*shares["recall_within_20"]), _spread(point, "recall_within_20"),
            fmt(m["median_lead_days"], 1),
            fmt(m["one_off_flagged_share"]), fmt(m["no_dip_flagged_share"]), fmt(point.concerns_per_100_per_week),
        ])
    cohorts = len(points[0].per_cohort) if points else 0
    header = ["entry score", "alert precision (pooled; 95% interval)", "per cohort",
              "caught within 20 d (pooled; 95% interval)", "per cohort", "median lead (days)",
              "one-off flagged", "no-dip flagged", "concerns /100/wk"]
    targets = "; ".join(f"{BY_KEY[key].title} {BY_KEY[key].goal}" for key in ("alert_precision", "recall_within_20"))
    return (f"Pooled over {cohorts} development cohort{'' if cohorts == 1 else 's'} (profile {PROFILE}). Targets: {targets}.\n\n"
            + markdown(header, rows))
