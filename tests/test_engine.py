"""The engine scores less (issue 11): only distinct feature rows, only rows the policy can act on,
explanations in one call per batch; its scores and events are identical to the straightforward
path that scores every row and explains alert by alert."""

from __future__ import annotations

import numpy as np
import pytest

from models.artifact import load_model
from models.engine import BatchResult, DecisionEngine, distinct_rows
from models.evaluation.run import OFFLINE_LIMITS
from models.explain import contributions
from models.replay import replay_file
from schemas.events import InterventionKind


def one_row_contributions(model, row: np.ndarray) -> np.ndarray:
    """The straightforward attribution of one row, the oracle for the batched one: each feature
    alone set back to the reference pupil's value, the change in log-odds read off (exact
    coefficient times standardised difference for a linear final step)."""
    row = np.asarray(row, dtype=np.float64).reshape(1, -1)
    reference = model.reference if model.reference is not None else np.zeros(row.shape[1])
    final = model.pipeline[-1]
    if hasattr(final, "coef_"):
        both = np.vstack([row, reference])
        transformed = model.pipeline[:-1].transform(both) if len(model.pipeline) > 1 else both
        return (transformed[0] - transformed[1]) * np.ravel(final.coef_)
    probe = np.repeat(row, row.shape[1], axis=0)
    probe[np.arange(row.shape[1]), np.arange(row.shape[1])] = reference
    p = np.clip(model.pipeline.predict_proba(np.vstack([row, probe]))[:, 1], 1e-9, 1 - 1e-9)
    logit = np.log(p / (1 - p))
    return logit[0] - logit[1:]

class Straightforward(DecisionEngine):
    """Every changed mark scored on its own row, every concern explained with its own scoring calls."""

    def _needs_score(self, pending, rows):
        return [True] * len(pending)

    def _score(self, X, need, result):
        result.scored += len(X)
        return self.model.score(X).tolist()

    def _explain(self, rows):
        return np.vstack([one_row_contributions(self.model, row) for row in rows])


class Counting(DecisionEngine):
    """The economical engine, counting rows that reached the policy and rows sent to the model."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.decided_rows = 0
        self.scored_rows = 0

    def process(self, marks, states) -> BatchResult:
        result = super().process(marks, states)
        self.scored_rows += result.scored
        return result

    def _needs_score(self, pending, rows):
        self.decided_rows += len(pending)
        return super()._needs_score(pending, rows)


@pytest.fixture(scope="module")
def year_csv(tmp_path_factory):
    from models.simulator.generate import SimulationConfig, simulate_year

    path = tmp_path_factory.mktemp("engine") / "marks.csv"
    simulate_year(SimulationConfig(schools=1, pupils_per_school=40, seed=3), marks_path=path)
    return path


@pytest.mark.slow
def test_economical_scoring_gives_the_straightforward_events(model_path, year_csv):
    model = load_model(model_path)
    economical = Counting(model, window_days=126)
    _, fast = replay_file(year_csv, economical, limits=OFFLINE_LIMITS)
    _, plain = replay_file(year_csv, Straightforward(model, window_days=126), limits=OFFLINE_LIMITS)
    assert [e.model_dump() for e in fast] == [e.model_dump() for e in plain]
    kinds = {e.kind for e in fast}
    assert InterventionKind.CONCERN in kinds, "the cohort must exercise concerns (and their explanations)"
    assert economical.scored_rows < economical.decided_rows / 3, "most rows need no score"


def test_batched_attributions_equal_one_row_at_a_time(model_path):
    model = load_model(model_path)
    rows = np.random.default_rng(4).normal(0.5, 0.3, size=(7, len(model.feature_names)))
    assert np.array_equal(contributions(model, rows), np.vstack([one_row_contributions(model, r) for r in rows]))


def test_distinct_rows_map_back_exactly():
    X = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [0.0, -0.0], [0.0, 0.0]])
    unique, inverse = distinct_rows(X)
    assert np.array_equal(unique[inverse], X)
    assert len(unique) == 4, "byte-distinct: -0.0 and 0.0 are scored apart, as the model would see them"
