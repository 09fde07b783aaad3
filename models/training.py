"""Fitting the risk model: a scikit-learn Pipeline on features from the one feature function.

Split by time and by school: the candidates learn from the earlier part of the year in some
schools and are measured on the later part of the year in schools they have never seen.
Two candidates are compared on that held-out split: a logistic regression (standardised
features) and a histogram gradient-boosted classifier with monotonic constraints where the
direction is certain; both are calibrated (`CalibratedClassifierCV`, fitted on the training
split only). The better on held-out PR-AUC is kept, and refitted on every row for shipping.

The alert threshold: the pastoral workload budget (concerns per 100 pupils per school week)
is a hard cap. Within it, the entry threshold that meets the most alert targets
(models.evaluation.targets) is chosen, ties broken by the F1 of alert precision and recall
within 20 school days, by the real policy run over the held-out schools' day-end scores from
the first day of the year (models.evaluation.policy_sim; `policy_rows` says why the whole
year). Against the label's own dip episodes no ground truth is needed, so the same code runs on
a real register export; with ground truth for the training cohort (`validation_truth`, never an
evaluation cohort) the choice is made against truth.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from models.artifact import RiskModel
from models.dataset import TrainingSet, build_training_set
from models.evaluation.policy_sim import PolicySimulation
from models.evaluation.ranking import ranking_metrics
from models.evaluation.scoring import alerts_per_100_per_week, score_alerts
from models.evaluation.targets import TARGETS
from models.evaluation.truth import Episode, Truth
from models.features import FEATURE_NAMES
from models.labels import EPISODE_GAP_DAYS, LABEL_DIP, label_episodes
from models.policy import PolicyConfig, thresholds

DEFAULT_ALERT_BUDGET = 1.0  # concerns per 100 pupils per school week
SCHOOL_DAYS_PER_WEEK = 5
THRESHOLD_GRID = tuple(float(t) for t in np.round(np.arange(0.20, 0.951, 0.025), 3)) + (0.975, 0.99)

# Directions that hold whatever else is known about the pupil: less recent attendance, a bigger
# drop below their own level, a longer current absence, or longer since a full week in school
# never make a dip less likely. Everything else is left free (0).
MONOTONIC: dict[str, int] = {
    "rate_10": -1, "rate_20": -1, "rate_40": -1, "drop_vs_baseline": 1, "current_absence_run": 1,
    "school_days_since_full_week": 1,
}
MONOTONIC_CST = tuple(MONOTONIC.get(name, 0) for name in FEATURE_NAMES)
CANDIDATES = ("logistic", "boosted")


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    test: np.ndarray
    cutoff_day: int
    test_schools: tuple[str, ...]


def time_and_school_split(ts: TrainingSet, *, train_fraction_days: float = 0.6, test_school_share: float = 0.34,
                          seed: int = 0) -> Split:
    """Train on earlier days of training schools; test on later days of held-out schools."""
    days = np.unique(ts.day)
    cutoff = int(days[min(int(len(days) * train_fraction_days), len(days) - 1)])
    schools = np.unique(ts.school_id)
    rng = np.random.default_rng(seed)
    n_test = max(1, int(round(len(schools) * test_school_share))) if len(schools) > 1 else 0
    test_schools = tuple(sorted(rng.choice(schools, size=n_test, replace=False))) if n_test else ()
    in_test_school = np.isin(ts.school_id, test_schools) if test_schools else np.ones(len(ts), dtype=bool)
    train = (ts.day < cutoff) & ~in_test_school if test_schools else ts.day < cutoff
    test = (ts.day >= cutoff) & in_test_school
    return Split(train=train, test=test, cutoff_day=cutoff, test_schools=test_schools)


def policy_rows(rows: TrainingSet, split: Split) -> np.ndarray:
    """The day ends the entry threshold is chosen on: every school day of the held-out schools, so
    the policy runs over them from September as the engine does. Started cold at the split's
    cutoff instead, it would raise a concern on the cutoff's first day for every pupil already
    deep in a dip: counted as caught, early and right, those flattered precision and lead time
    (on the training cohort, 0.87 and 5.5 school days, where the engine over the same schools and
    weeks gave 0.71 and 12). The held-out schools' rows were never fitted on. With a single school
    there is no school to hold out, and the later days (cold start and all) are all there is."""
    if not split.test_schools:
        return rows.day >= split.cutoff_day
    return np.isin(rows.school_id, split.test_schools)


def make_pipeline(kind: str = "boosted", seed: int = 0, *, calibrate: bool = True) -> Pipeline:
    """An unfitted candidate. The calibrated probability is what the policy thresholds."""
    if kind == "logistic":
        return Pipeline([
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(C=0.5, max_iter=2000, random_state=seed)),
        ])  # a logistic regression's probabilities are calibrated by its own loss
    if kind != "boosted":
        raise ValueError(f"unknown model kind {kind!r}")
    boosted = HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.08, max_leaf_nodes=31, min_samples_leaf=50, l2_regularization=1.0,
        monotonic_cst=list(MONOTONIC_CST), random_state=seed)
    # ensemble=False: one boosted model refitted on all rows, calibrated on cross-validated
    # predictions. An ensemble of three would triple the cost of every scoring call.
    final = CalibratedClassifierCV(boosted, method="isotonic", cv=3, ensemble=False) if calibrate else boosted
    return Pipeline([("classify", final)])


# -- threshold ------------------------------------------------------------------------------
def label_truth(ts: TrainingSet, *, max_gap_days: int = EPISODE_GAP_DAYS) -> Truth:
    """Dip episodes read off the label itself (models.labels.label_episodes): stands in for
    ground truth when none exists. An episode runs to the school day after its last positive row."""
    index = {d.toordinal(): i for i, d in enumerate(ts.school_days)}
    positive = ts.y == 1
    pupils = sorted(set(ts.pupil_id.tolist()))
    number = {p: i for i, p in enumerate(pupils)}
    days = np.fromiter((index[int(d)] for d in ts.day[positive]), np.int64, int(positive.sum()))
    who = np.fromiter((number[p] for p in ts.pupil_id[positive]), np.int64, int(positive.sum()))
    episodes: dict[str, list[Episode]] = defaultdict(list)
    last = len(ts.school_days) - 1
    for pupil, first, final in label_episodes(who, days, max_gap_days=max_gap_days):
        episodes[pupils[pupil]].append(Episode(LABEL_DIP, ts.school_days[first], ts.school_days[min(final + 1, last)]))
    return Truth(dict(episodes), {}, {}, pupils)


def threshold_objective(metrics: dict[str, Any]) -> float:
    """F1 of alert precision and recall within 20 school days."""
    p, r = metrics.get("alert_precision") or 0.0, metrics.get("recall_within_20") or 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def targets_met(metrics: dict[str, Any]) -> int:
    """How many of the alert targets (models.evaluation.targets) these validation figures meet;
    a figure the validation cannot measure (e.g. no one-off pupils without ground truth) is skipped."""
    return sum(bool(target.passes(metrics.get(target.key))) for target in TARGETS)


def choose_policy(scores: np.ndarray, ts: TrainingSet, budget: float, base: PolicyConfig | None = None, *,
                  truth: Truth | None = None) -> tuple[PolicyConfig, list[dict[str, Any]]]:
    """The entry threshold for the budget: among thresholds whose alert rate on these rows is
    within `budget`, the one that meets the most alert targets against `truth` (default: the
    label's own episodes), then the best `threshold_objective`. Returns the policy and the
    whole sweep."""
    base = base or PolicyConfig()
    dip_kinds = None
    pupils = sorted(set(ts.pupil_id.tolist()))
    school_days = ts.school_days
    first, last = int(ts.day.min()), int(ts.day.max())
    days_covered = [d for d in school_days if first <= d.toordinal() <= last]
    if truth is None:
        truth, dip_kinds = label_truth(ts), (LABEL_DIP,)
    else:  # episodes that could be seen in the rows' period: an alert during any of them is right
        first_day = days_covered[0]
        truth = Truth({p: [e for e in eps if e.recovery is None or e.recovery >= first_day]
                       for p, eps in truth.episodes.items()}, truth.sen, truth.fsm, truth.pupils)
    simulation = PolicySimulation(ts, base)
    sweep = []
    for enter in THRESHOLD_GRID:
        config = thresholds(base, enter)
        alerts = simulation.alerts(scores, config)
        rate = alerts_per_100_per_week(alerts, len(pupils), len(days_covered))
        metrics = score_alerts(alerts, truth, days_covered, pupils, dip_kinds=dip_kinds).metrics()
        sweep.append({"enter_score": enter, "alerts_per_100_per_week": round(rate, 3),
                      "alert_precision": metrics["alert_precision"], "recall_within_20": metrics["recall_within_20"],
                      "median_lead_days": metrics["median_lead_days"],
                      "one_off_flagged_share": metrics["one_off_flagged_share"],
                      "no_dip_flagged_share": metrics["no_dip_flagged_share"],
                      "targets_met": targets_met(metrics),
                      "objective": round(threshold_objective(metrics), 4), "within_budget": rate <= budget})
    feasible = [s for s in sweep if s["within_budget"]]
    # No threshold within budget: the highest one, marked so (metrics["budget_met"] is False).
    best = (max(feasible, key=lambda s: (s["targets_met"], s["objective"], -s["enter_score"])) if feasible
            else sweep[-1])
    return thresholds(base, best["enter_score"]), sweep


def simulate_alert_rate(scores: np.ndarray, ts: TrainingSet, config: PolicyConfig) -> float:
    """Concerns raised per 100 pupils per school week when the policy sees these day-end scores."""
    pupils = len(np.unique(ts.pupil_id))
    first, last = int(ts.day.min()), int(ts.day.max())
    days = sum(1 for d in ts.school_days if first <= d.toordinal() <= last) or 1
    return alerts_per_100_per_week(PolicySimulation(ts, config).alerts(scores, config), pupils, days)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# The shipped estimator: None ships whichever candidate ranks dips better on held-out data
# (PR-AUC). Both are measured at every training and in the model card. On the simulated
# cohorts the calibrated boosted model wins clearly on precision and on not flagging a week
# of illness (logistic regression cannot express "a block of I codes that has ended"), at
# about 20 µs per mark in a micro-batch against under 1 µs; `--estimator logistic` trades
# that precision for speed and exact linear explanations.
SHIPPED_ESTIMATOR: str | None = None


# -- training --------------------------------------------------------------------------------
def train(marks: Iterable, *, window_days: int, data_sha256: str, seed: int = 0,
          budget: float = DEFAULT_ALERT_BUDGET, version: str | None = None, sample_every: int = 3,
          candidates: tuple[str, ...] = CANDIDATES, validation_truth: Truth | None = None,
          ship: str | None = SHIPPED_ESTIMATOR) -> RiskModel:
    """Fit, compare, calibrate, choose the threshold for `budget`, refit on all rows.

    Every candidate is fitted and measured on the held-out split (recorded in the metrics);
    `ship` names the one saved (None: the best on PR-AUC).

    `validation_truth` (optional): ground truth for the training cohort's held-out schools, to
    choose the threshold against truth rather than the label (never the evaluation cohort).
    """
    # Day-end rows every school day: the policy sweep needs each day; fitting uses every
    # `sample_every`-th day (neighbouring days are near-duplicates).
    # Unlabelled rows (the year's last 20 school days) are kept for the policy's run alone.
    every_row = build_training_set(marks, window_days=window_days, sample_every=1, keep_unlabelled=True)
    ts = every_row.subset(every_row.y >= 0)
    if len(ts) == 0 or len(np.unique(ts.y)) < 2:
        raise ValueError("the training data has no dips (or only dips) to learn from; simulate a larger cohort")
    day_number = {d.toordinal(): i for i, d in enumerate(ts.school_days)}
    sampled = np.fromiter((day_number[int(d)] % sample_every == 0 for d in ts.day), bool, len(ts))
    split = time_and_school_split(ts, seed=seed)
    train_set, test_set = ts.subset(split.train & sampled), ts.subset(split.test)
    policy_set = every_row.subset(policy_rows(every_row, split))
    if len(np.unique(train_set.y)) < 2 or len(test_set) == 0:
        raise ValueError("the time-and-school split left no dips to learn from or nothing to test on")
    compared: dict[str, dict[str, Any]] = {}
    fitted: dict[str, tuple[Pipeline, np.ndarray]] = {}
    for kind in candidates:
        pipeline = make_pipeline(kind, seed).fit(train_set.X, train_set.y)
        scores = pipeline.predict_proba(test_set.X)[:, 1]
        compared[kind] = ranking_metrics(scores, test_set.y)
        fitted[kind] = (pipeline, scores)
    chosen = ship if ship in fitted else max(candidates, key=lambda k: compared[k]["pr_auc"] or 0.0)
    policy_scores = fitted[chosen][0].predict_proba(policy_set.X)[:, 1]
    policy, sweep = choose_policy(policy_scores, policy_set, budget, truth=validation_truth)
    alerts_rate = simulate_alert_rate(policy_scores, policy_set, policy)
    metrics = {
        "rows_train": int(len(train_set)), "rows_test": int(len(test_set)),
        "positive_rate_train": round(float(train_set.y.mean()), 4),
        "estimator": chosen, "candidates": compared, **compared[chosen],
        "alerts_per_100_pupils_per_week": round(alerts_rate, 3), "budget_met": bool(alerts_rate <= budget),
        "threshold_objective": next(s["objective"] for s in sweep if s["enter_score"] == policy.enter_score),
        "threshold_chosen_against": "ground truth (validation cohort)" if validation_truth else "label episodes",
        "threshold_chosen_over": (f"the held-out schools' whole year ({len(split.test_schools)} "
                                  f"school{'s' if len(split.test_schools) > 1 else ''}, {len(policy_set):,} day ends)"
                                  if split.test_schools
                                  else f"the later school days ({len(policy_set):,} day ends)"),
    }
    # Refit on every row for the shipped model: the split above was for honest numbers.
    fit_rows = ts.subset(sampled)
    pipeline = make_pipeline(chosen, seed).fit(fit_rows.X, fit_rows.y)
    now = dt.datetime.now(dt.timezone.utc)
    return RiskModel(
        pipeline=pipeline, version=version or f"risk-{now:%Y%m%d%H%M%S}-{data_sha256[:8]}", policy=policy,
        training_data_sha256=data_sha256, metrics=metrics,
        training={"rows": int(len(fit_rows)), "sample_every_school_days": sample_every, "seed": seed,
                  "alert_budget_per_100_pupils_per_week": budget,
                  "cutoff_day": dt.date.fromordinal(split.cutoff_day).isoformat(),
                  "test_schools": list(split.test_schools), "window_days": window_days,
                  "monotonic_constraints": {k: v for k, v in MONOTONIC.items()},
                  "threshold_sweep": sweep},
        reference=np.median(fit_rows.X[fit_rows.y == 0], axis=0),
    )


def train_on_simulation(config: Any, *, window_days: int, budget: float = DEFAULT_ALERT_BUDGET,
                        version: str | None = None, sample_every: int = 3,
                        scratch: Path | None = None, ship: str | None = SHIPPED_ESTIMATOR) -> RiskModel:
    """Simulate a training cohort (marks, truth, roster), then `train` with the cohort's own
    ground truth choosing the threshold on its held-out schools. `config` is a
    models.simulator SimulationConfig; use a different seed from the evaluation cohort."""
    import tempfile

    from models.evaluation.run import OFFLINE_LIMITS
    from models.simulator.generate import simulate_year
    from schemas.interchange import read_marks

    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        folder = Path(tmp)
        marks_csv, truth_csv, roster_csv = folder / "marks.csv", folder / "truth.csv", folder / "roster.csv"
        simulate_year(config, marks_path=marks_csv, truth_path=truth_csv, roster_path=roster_csv)
        truth = Truth.load(truth_csv, roster_csv)
        marks = (row.mark for row in read_marks(marks_csv, limits=OFFLINE_LIMITS) if row.mark is not None)
        model = train(marks, window_days=window_days, data_sha256=file_sha256(marks_csv), seed=config.seed,
                      budget=budget, version=version, sample_every=sample_every, validation_truth=truth, ship=ship)
    model.training["simulation"] = config.model_dump(mode="json")
    return model
