"""Fitting the risk model: a scikit-learn Pipeline on features from the one feature function.

Split by time and by school: the model learns from the earlier part of the year in some
schools and is measured on the later part of the year in schools it has never seen.
The alert threshold is chosen for a pastoral workload budget (alerts per 100 pupils a week)
by running the real policy over the held-out rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from models.artifact import RiskModel
from models.dataset import TrainingSet, build_training_set
from models.features import FEATURE_NAMES
from models.policy import PolicyConfig, PolicyState, decide

DEFAULT_ALERT_BUDGET = 1.0  # concerns per 100 pupils per school week
SCHOOL_DAYS_PER_WEEK = 5


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
    in_test_school = np.isin(ts.school_id, test_schools) if test_schools else np.zeros(len(ts), dtype=bool)
    if not test_schools:  # one school: split by time alone
        in_test_school = np.ones(len(ts), dtype=bool)
    train = (ts.day < cutoff) & ~in_test_school if test_schools else ts.day < cutoff
    test = (ts.day >= cutoff) & in_test_school
    return Split(train=train, test=test, cutoff_day=cutoff, test_schools=test_schools)


def make_pipeline(seed: int = 0) -> Pipeline:
    return Pipeline([
        ("scale", StandardScaler()),
        ("classify", LogisticRegression(C=0.5, max_iter=2000, random_state=seed)),
    ])


def simulate_alert_rate(scores: np.ndarray, ts: TrainingSet, config: PolicyConfig) -> float:
    """Concerns per 100 pupils per week when the policy sees these day-end scores in order."""
    order = np.lexsort((ts.day, ts.pupil_id.astype(str)))
    states: dict[str, PolicyState] = {}
    concerns = 0
    for i in order:
        state = states.setdefault(ts.pupil_id[i], PolicyState())
        decision = decide(state, config, float(scores[i]), day=int(ts.day[i]), possible_sessions=10**6,
                          recent_rate=float(ts.X[i, FEATURE_NAMES.index("rate_20")]),
                          short_rate=float(ts.X[i, FEATURE_NAMES.index("rate_10")]))
        concerns += decision is not None and decision.kind == "concern"
    pupils = len(np.unique(ts.pupil_id))
    weeks = max((int(ts.day.max()) - int(ts.day.min()) + 1) / 7, 1 / 7)
    return 100 * concerns / max(pupils, 1) / weeks


def choose_policy(scores: np.ndarray, ts: TrainingSet, budget: float, base: PolicyConfig | None = None) -> PolicyConfig:
    """The lowest entry threshold whose alert rate stays within the budget."""
    base = base or PolicyConfig()
    chosen = None
    for enter in np.round(np.arange(0.95, 0.049, -0.025), 3):
        config = _thresholds(base, float(enter))
        if simulate_alert_rate(scores, ts, config) > budget:
            break
        chosen = config
    return chosen or _thresholds(base, 0.95)


def _thresholds(base: PolicyConfig, enter: float) -> PolicyConfig:
    """Tiers spaced above the entry threshold, exit well below it (hysteresis)."""
    tier2 = enter + (1 - enter) * 0.4
    tier3 = enter + (1 - enter) * 0.75
    return base.model_copy(update={"enter_score": enter, "exit_score": enter * 0.5,
                                   "tier2_score": tier2, "tier3_score": tier3})


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def train(marks: Iterable, *, window_days: int, data_sha256: str, seed: int = 0,
          budget: float = DEFAULT_ALERT_BUDGET, version: str | None = None, sample_every: int = 3) -> RiskModel:
    ts = build_training_set(marks, window_days=window_days, sample_every=sample_every)
    if len(ts) == 0 or len(np.unique(ts.y)) < 2:
        raise ValueError("the training data has no dips (or only dips) to learn from; simulate a larger cohort")
    split = time_and_school_split(ts, seed=seed)
    train_set, test_set = ts.subset(split.train), ts.subset(split.test)
    pipeline = make_pipeline(seed).fit(train_set.X, train_set.y)
    test_scores = pipeline.predict_proba(test_set.X)[:, 1]
    policy = choose_policy(test_scores, test_set, budget)
    metrics = {
        "rows_train": int(len(train_set)), "rows_test": int(len(test_set)),
        "positive_rate_train": round(float(train_set.y.mean()), 4),
        "roc_auc": round(float(roc_auc_score(test_set.y, test_scores)), 4) if len(np.unique(test_set.y)) > 1 else None,
        "pr_auc": round(float(average_precision_score(test_set.y, test_scores)), 4) if test_set.y.any() else None,
        "brier": round(float(brier_score_loss(test_set.y, test_scores)), 4),
        "alerts_per_100_pupils_per_week": round(simulate_alert_rate(test_scores, test_set, policy), 3),
    }
    # Refit on every row for the shipped model: the split above was for honest numbers.
    pipeline = make_pipeline(seed).fit(ts.X, ts.y)
    now = dt.datetime.now(dt.timezone.utc)
    return RiskModel(
        pipeline=pipeline, version=version or f"risk-{now:%Y%m%d%H%M%S}-{data_sha256[:8]}", policy=policy,
        training_data_sha256=data_sha256, metrics=metrics,
        training={"rows": int(len(ts)), "sample_every_school_days": sample_every, "seed": seed,
                  "alert_budget_per_100_pupils_per_week": budget,
                  "cutoff_day": dt.date.fromordinal(split.cutoff_day).isoformat(),
                  "test_schools": list(split.test_schools), "window_days": window_days},
        reference=np.median(ts.X[ts.y == 0], axis=0),
    )
