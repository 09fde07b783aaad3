"""Training: versioned artifacts, monotonic constraints, and the alert budget."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from models.artifact import ModelCompatibilityError, RiskModel, load_model, save_model
from models.dataset import KEPT_STATS, TrainingSet
from models.evaluation.policy_sim import PolicySimulation
from models.features import FEATURE_NAMES
from models.policy import PolicyConfig
from models.training import (
    MONOTONIC,
    MONOTONIC_CST,
    choose_policy,
    make_pipeline,
    policy_rows,
    simulate_alert_rate,
    time_and_school_split,
)


def synthetic(n_pupils: int = 60, n_days: int = 40, seed: int = 0) -> TrainingSet:
    """Rows whose dip label depends on drop_vs_baseline and current_absence_run."""
    rng = np.random.default_rng(seed)
    days = [dt.date(2025, 9, 1) + dt.timedelta(days=i) for i in range(n_days * 7 // 5 + 7)]
    days = [d for d in days if d.weekday() < 5][:n_days]
    n = n_pupils * n_days
    # Each pupil's features persist from day to day, with a little daily noise.
    X = np.repeat(rng.normal(0, 1, size=(n_pupils, len(FEATURE_NAMES))), n_days, axis=0)
    X += rng.normal(0, 0.2, size=X.shape)
    drop = FEATURE_NAMES.index("drop_vs_baseline")
    run = FEATURE_NAMES.index("current_absence_run")
    logit = 2.0 * X[:, drop] + 1.0 * X[:, run] - 3.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    pupil = np.repeat([f"P{i}" for i in range(n_pupils)], n_days).astype(object)
    day = np.tile([d.toordinal() for d in days], n_pupils).astype(np.int32)
    # Every pupil at 75% recently in scattered spells (nothing holds a concern back); 80% over
    # the last 10 sessions, so a recovery never counts.
    stats = {name: np.full(n, 40, dtype=np.int64) for name in KEPT_STATS}
    for name in ("current_absence_run", "current_run_explained", "current_run_leave", "current_run_health",
                 "health_40", "health_absence_ytd", "arranged_20"):
        stats[name] = np.zeros(n, dtype=np.int64)
    stats.update({"possible_10": np.full(n, 10), "attended_10": np.full(n, 8), "possible_20": np.full(n, 20),
                  "attended_20": np.full(n, 15), "attended_40": np.full(n, 30), "longest_absence_run_40": np.full(n, 2),
                  "possible_since_block": np.full(n, 4), "attended_since_block": np.full(n, 4)})
    return TrainingSet(X, y, pupil, np.full(n, "S", dtype=object), day, days, stats)


def test_load_refuses_another_scikit_learn_version(tmp_path):
    ts = synthetic(10, 20)
    pipeline = make_pipeline("logistic").fit(ts.X, ts.y)
    model = RiskModel(pipeline=pipeline, version="test", policy=PolicyConfig(), sklearn_version="0.24.2")
    path = save_model(model, tmp_path / "old.skops")
    with pytest.raises(ModelCompatibilityError, match=r"saved with scikit-learn 0\.24\.2.*retrain"):
        load_model(path)
    model.sklearn_version = __import__("sklearn").__version__
    assert load_model(save_model(model, tmp_path / "ok.skops")).version == "test"


@pytest.mark.slow
def test_monotonic_constraints_are_wired_and_respected():
    assert MONOTONIC_CST[FEATURE_NAMES.index("drop_vs_baseline")] == 1
    assert MONOTONIC_CST[FEATURE_NAMES.index("rate_20")] == -1
    ts = synthetic(80, 30, seed=1)
    pipeline = make_pipeline("boosted", calibrate=True).fit(ts.X, ts.y)
    base = np.random.default_rng(2).normal(0, 1, size=(30, len(FEATURE_NAMES)))
    grid = np.linspace(-3, 3, 25)
    for name, direction in MONOTONIC.items():
        column = FEATURE_NAMES.index(name)
        for row in base:
            probe = np.repeat(row[None, :], len(grid), axis=0)
            probe[:, column] = grid
            scores = pipeline.predict_proba(probe)[:, 1]
            steps = np.diff(scores) * direction
            assert (steps >= -1e-12).all(), f"{name} is not monotonic ({direction:+d})"


@pytest.mark.parametrize("budget", [1.0, 3.0, 8.0])
def test_threshold_respects_the_budget(budget):
    ts = synthetic(80, 40, seed=3)
    pipeline = make_pipeline("logistic").fit(ts.X, ts.y)
    scores = pipeline.predict_proba(ts.X)[:, 1]
    policy, sweep = choose_policy(scores, ts, budget)
    rate = simulate_alert_rate(scores, ts, policy)
    assert rate <= budget
    chosen = next(s for s in sweep if s["enter_score"] == policy.enter_score)
    assert chosen["within_budget"] and chosen["alerts_per_100_per_week"] == pytest.approx(rate, abs=1e-3)
    # Every threshold below the chosen one that was not taken was over budget, met fewer targets or
    # scored worse.
    for s in sweep:
        if s["enter_score"] < policy.enter_score:
            assert not s["within_budget"] or (s["targets_met"], s["objective"]) <= (chosen["targets_met"],
                                                                                     chosen["objective"])


def test_a_tighter_budget_never_lowers_the_threshold():
    ts = synthetic(80, 40, seed=4)
    scores = make_pipeline("logistic").fit(ts.X, ts.y).predict_proba(ts.X)[:, 1]
    loose, _ = choose_policy(scores, ts, 50.0)
    tight, _ = choose_policy(scores, ts, 1.0)
    assert tight.enter_score >= loose.enter_score
    assert simulate_alert_rate(scores, ts, tight) <= 1.0


def test_the_threshold_is_chosen_over_the_held_out_schools_whole_year():
    """Started cold at the cutoff, the policy would raise a concern on the cutoff's first day for a
    pupil already deep in a dip and count it as caught at once; run from the first day, as the
    engine runs, that pupil was raised long before and the cutoff changes nothing."""
    two_schools = synthetic(40, 40, seed=5)
    two_schools.school_id[two_schools.pupil_id.astype(str) >= "P2"] = "T"
    split = time_and_school_split(two_schools, seed=0)
    chosen = policy_rows(two_schools, split)
    held_out = np.isin(two_schools.school_id, split.test_schools)
    assert split.test_schools and (chosen == held_out).all()
    assert two_schools.day[chosen].min() < split.cutoff_day <= two_schools.day[chosen].max()
    assert not (chosen & split.train).any()

    one_school = synthetic(10, 40, seed=5)
    alone = time_and_school_split(one_school, seed=0)
    assert (policy_rows(one_school, alone) == (one_school.day >= alone.cutoff_day)).all()

    # One pupil scored high every day: from the first day the policy raises them once, on the
    # first day it may; from the cutoff it would raise them again there.
    pupil = two_schools.pupil_id == two_schools.pupil_id[chosen][0]
    rows = two_schools.subset(pupil)
    config = PolicyConfig(enter_score=0.5, exit_score=0.2, tier2_score=0.6, tier3_score=0.7, min_possible_sessions=1)
    whole_year = PolicySimulation(rows, config).alerts(np.full(len(rows), 0.9), config)
    later = rows.subset(rows.day >= split.cutoff_day)
    cold = PolicySimulation(later, config).alerts(np.full(len(later), 0.9), config)
    (raised,) = whole_year.values()
    assert raised == [dt.date.fromordinal(int(rows.day.min()))]
    assert list(cold.values()) == [[dt.date.fromordinal(int(later.day.min()))]]


@pytest.mark.slow
def test_training_chooses_its_threshold_over_the_held_out_schools_whole_year(tmp_path):
    """End to end on a small simulated cohort: the threshold sweep ran over every school day of
    the held-out schools (never the schools fitted on), the chosen entry score is one the sweep
    measured within the budget, and the shipped pipeline scores the features it was fitted on."""
    from models.simulator import SimulationConfig
    from models.training import train_on_simulation

    config = SimulationConfig(schools=3, pupils_per_school=150, phase="mixed", seed=13)
    model = train_on_simulation(config, window_days=126, scratch=tmp_path)
    assert model.metrics["threshold_chosen_against"] == "ground truth (validation cohort)"
    assert model.metrics["threshold_chosen_over"].startswith("the held-out schools' whole year (1 school, ")
    sweep = {s["enter_score"]: s for s in model.training["threshold_sweep"]}
    chosen = sweep[model.policy.enter_score]
    assert chosen["within_budget"] or not any(s["within_budget"] for s in sweep.values())
    assert model.metrics["alerts_per_100_pupils_per_week"] == pytest.approx(chosen["alerts_per_100_per_week"], abs=1e-3)
    assert len(model.training["test_schools"]) == 1
    scores = model.score(np.zeros((3, len(FEATURE_NAMES))))
    assert scores.shape == (3,) and np.isfinite(scores).all()
