"""The small-batch scorer (models.engine.SmallBatchScorer) gives the model's own probabilities bit for
bit, or is not used at all."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from models.artifact import RiskModel, load_model
from models.engine import DecisionEngine, SmallBatchScorer
from models.features import FEATURE_NAMES
from models.policy import PolicyConfig


@pytest.fixture(scope="module")
def model(model_path):
    return load_model(model_path)


@pytest.fixture(scope="module")
def scorer(model):
    built = SmallBatchScorer.of(model)
    assert built is not None, "the shipped model has the structure the scorer walks"
    return built


def test_real_feature_rows_score_identically(model, scorer, engine, crafted_csv):
    from models.features import feature_matrix, snapshot, summarise_batch
    from models.state import PupilState
    from schemas.interchange import read_marks

    states: dict[str, PupilState] = {}
    snapshots = []
    for row in read_marks(crafted_csv()):
        if row.mark is None:
            continue
        state = states.setdefault(row.mark.pupil_id, PupilState(row.mark.school_id, 126, row.mark.date))
        state.apply(row.mark)
        snapshots.append(snapshot(state))
    X = feature_matrix(summarise_batch(snapshots))
    for size in (1, 2, 13, SmallBatchScorer.LIMIT):
        for begin in range(0, len(X) - size, max(len(X) // 25, 1)):
            rows = X[begin:begin + size]
            assert np.array_equal(scorer.score(rows), model.score(rows))


@settings(max_examples=150, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.just(len(FEATURE_NAMES))),
              elements=st.one_of(st.floats(-5, 5, allow_nan=False), st.just(np.nan), st.just(0.0), st.just(1.0),
                                 st.floats(allow_nan=False, allow_infinity=True))))
def test_any_rows_score_identically(model, scorer, rows):
    assert np.array_equal(scorer.score(rows), model.score(rows))


def test_the_engine_scores_small_batches_with_it_and_the_events_do_not_change(model, make_pupil_marks):
    marks = make_pupil_marks("P1", __import__("datetime").date(2025, 9, 8), [("/", "\\")] * 30 + [("N", "N")] * 15)
    fast, plain = DecisionEngine(model, window_days=126), DecisionEngine(model, window_days=126)
    plain.scoring._scorer = None  # noqa: SLF001 - the model's own scoring, for comparison
    assert fast.scoring._scorer is not None  # noqa: SLF001
    events = [[], []]
    for engine, found in zip((fast, plain), events):
        states: dict = {}
        for mark in marks:  # one mark at a time: every scoring call is a small one
            found += engine.process([mark], states).events
    assert events[0] == events[1] and events[0]


def test_a_model_of_another_structure_is_scored_by_the_model_itself():
    X = np.random.default_rng(3).random((40, len(FEATURE_NAMES)))
    pipeline = Pipeline([("classify", DummyClassifier(strategy="prior").fit(X, [0, 1] * 20))])
    other = RiskModel(pipeline=pipeline, version="dummy", policy=PolicyConfig())
    assert SmallBatchScorer.of(other) is None
    engine = DecisionEngine(other, window_days=126)
    assert np.array_equal(engine.scoring.score(X[:3]), other.score(X[:3]))


def test_a_lone_row_takes_the_single_row_layout_and_scores_identically(model, scorer):
    assert scorer.knots is not None, "the shipped model's calibrator is scored in Python floats for a lone row"
    rows = np.random.default_rng(11).normal(0.4, 0.7, size=(300, len(FEATURE_NAMES)))
    rows[::4, ::5] = np.nan
    rows[1::6] = np.round(rows[1::6], 1)
    rows[2::9] = np.inf
    one_by_one = np.array([scorer.score_one(row) for row in rows])
    assert np.array_equal(one_by_one, model.score(rows))


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, (len(FEATURE_NAMES),),
              elements=st.one_of(st.floats(-5, 5, allow_nan=False), st.just(np.nan), st.just(0.0), st.just(1.0),
                                 st.floats(allow_nan=False, allow_infinity=True))))
def test_any_lone_row_scores_identically(model, scorer, row):
    assert scorer.score(row[None, :])[0] == model.score(row[None, :])[0]


@pytest.mark.parametrize("where", [-3.0, 0.0, 0.37, 2.5, np.inf])
def test_the_calibration_of_one_number_is_numpys(scorer, where):
    low, high = scorer.clip_range
    xs = np.asarray(scorer.knots[0])
    near = xs[np.argmin(np.abs(xs - where))] if np.isfinite(where) else where
    for x in (where, near, np.nextafter(near, -np.inf), np.nextafter(near, np.inf), low, high):
        assert scorer.calibrate_one(float(x)) == np.interp(np.clip(x, low, high), *scorer.curve)


def test_a_calibration_that_differs_from_numpys_is_not_used_for_lone_rows(model, monkeypatch):
    monkeypatch.setattr(SmallBatchScorer, "calibrate_one", lambda self, raw: 0.5)
    built = SmallBatchScorer.of(model)
    assert built is not None and built.knots is None
    rows = np.random.default_rng(5).random((20, len(FEATURE_NAMES)))
    assert np.array_equal(np.array([built.score(row[None, :])[0] for row in rows]), model.score(rows))
