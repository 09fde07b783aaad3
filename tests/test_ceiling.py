"""`reconnect-dev ceiling`: the register detail it adds, read by hand, and its refusals."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from devtools.ceiling import (
    ARRANGED,
    COUNT_WINDOWS,
    HEALTH,
    HOLIDAY,
    LATE,
    MARK_KINDS,
    NOT_POSSIBLE,
    OTHER_AUTHORISED,
    PRESENT,
    RECENT_COLUMNS,
    UNAUTHORISED,
    mark_kind,
    measure_ceiling,
    register_detail,
    score_alone,
)
from models.history import RegisterYear
from schemas.codes import CODES

MONDAY = dt.date(2025, 9, 8)


def _register(days: list[tuple[str, str]]) -> RegisterYear:
    """One pupil, a school day each weekday from MONDAY, (AM, PM) codes."""
    dates, weekday = [], MONDAY
    while len(dates) < len(days):
        if weekday.weekday() < 5:
            dates.append(weekday)
        weekday += dt.timedelta(days=1)
    codes = np.array([[[CODES[am].index, CODES[pm].index] for am, pm in days]], dtype=np.uint8)
    return RegisterYear(pupils=["P1"], schools=np.array(["S1"], dtype=object),
                        days=np.array([d.toordinal() for d in dates], dtype=np.int64), codes=codes)


def test_each_code_reads_as_the_kind_of_mark_a_pastoral_lead_would_call_it():
    expected = {"/": PRESENT, "\\": PRESENT, "L": LATE, "U": LATE, "N": UNAUTHORISED, "O": UNAUTHORISED,
                "G": HOLIDAY, "I": HEALTH, "M": HEALTH, "C2": ARRANGED, "E": ARRANGED, "C": OTHER_AUTHORISED,
                "R": OTHER_AUTHORISED, "X": NOT_POSSIBLE, "#": NOT_POSSIBLE}
    assert {code: mark_kind(CODES[code]) for code in expected} == expected
    assert mark_kind(None) == NOT_POSSIBLE


def test_register_detail_by_hand():
    # Two weeks: Monday off sick both weeks, an unexplained Wednesday afternoon, late on the 2nd Friday.
    week = [("I", "I"), ("/", "/"), ("/", "N"), ("/", "/"), ("/", "/")]
    second = [("I", "I"), ("/", "/"), ("/", "/"), ("/", "/"), ("L", "/")]
    register = _register(week + second)
    last = register.days[-1]
    detail = register_detail(register, ["P1", "P1"], np.array([register.days[2], last]))
    assert detail.shape == (2, RECENT_COLUMNS + len(COUNT_WINDOWS) * (MARK_KINDS - 1) + 5)

    on_wednesday, at_the_end = detail
    # The last 20 days session by session, most recent first; before the year: no possible session.
    assert list(on_wednesday[:6]) == [PRESENT, UNAUTHORISED, PRESENT, PRESENT, HEALTH, HEALTH]
    assert set(on_wednesday[6:RECENT_COLUMNS]) == {NOT_POSSIBLE}
    assert list(at_the_end[:4]) == [LATE, PRESENT, PRESENT, PRESENT]

    counts = at_the_end[RECENT_COLUMNS:RECENT_COLUMNS + len(COUNT_WINDOWS) * (MARK_KINDS - 1)]
    counts = counts.reshape(len(COUNT_WINDOWS), MARK_KINDS - 1)  # window x kind (PRESENT first)
    last_week, whole = counts[0], counts[-1]  # 5 and 400 register days
    assert list(last_week) == [7, 1, 0, 0, 2, 0, 0]  # present, late, unauthorised, holiday, health, ...
    assert list(whole) == [14, 1, 1, 0, 4, 0, 0]

    weekdays = at_the_end[-5:]  # Monday first
    assert list(weekdays) == [2, 0, 1, 0, 0]  # a late Friday is not a day off
    assert list(on_wednesday[-5:]) == [1, 0, 1, 0, 0]


def test_register_detail_refuses_a_day_not_on_the_register():
    register = _register([("/", "/")] * 3)
    with pytest.raises(ValueError, match="register day"):
        register_detail(register, ["P1"], np.array([register.days[-1] + 1]))


def test_the_ceiling_is_judged_on_cohorts_it_was_not_fitted_on_and_never_on_held_back_ones(model_path, tmp_path):
    from devtools.frontier import HeldBackSeed
    from models.artifact import load_model
    from models.evaluation.cohorts import DEFAULT_EVAL_SEED

    model = load_model(model_path)
    with pytest.raises(ValueError, match="not be the ones it was fitted on"):
        measure_ceiling(model, cache=tmp_path, window_days=126, fit_seeds=(99, 101), judge_seeds=(101,))
    with pytest.raises(HeldBackSeed, match="evaluation cohort"):
        measure_ceiling(model, cache=tmp_path, window_days=126, fit_seeds=(99,), judge_seeds=(DEFAULT_EVAL_SEED,))
    assert not any(tmp_path.iterdir())  # refused before simulating anything


@pytest.mark.slow
def test_the_shipped_models_row_is_the_evaluations_own_threshold_sweep(model_path, tmp_path):
    """One logic everywhere: beside the ceiling, the shipped model is scored exactly as the card's sweep."""
    from devtools.ceiling import load_cohort
    from models.artifact import load_model
    from models.evaluation.diagnostics import threshold_sweep

    model = load_model(model_path)
    result = measure_ceiling(model, cache=tmp_path, window_days=126, fit_seeds=(3,), judge_seeds=(5,),
                             enter_scores=(0.5, model.policy.enter_score), schools=1, pupils_per_school=120)
    judged = load_cohort(tmp_path, 5, 1, 120, 126)
    sweep = threshold_sweep(judged.rows, model.score(judged.rows.X), judged.truth, model.policy,
                            enter_scores=(0.5,))
    for point, row in zip(result.shipped, sweep, strict=True):
        assert point.enter_score == row["enter_score"]
        metrics = point.pooled.metrics()
        for key in ("alert_precision", "recall_within_20", "alerts", "no_dip_flagged_share"):
            assert metrics[key] == row[key]
    assert result.shipped[0].pooled.dips > 0
    assert [p.enter_score for p in result.ceiling] == [0.5, model.policy.enter_score]
    assert result.ceiling[0].pooled.alerts >= result.ceiling[1].pooled.alerts
    assert [p.pooled.alerts for p in result.ceiling_score_alone] != [p.pooled.alerts for p in result.ceiling]


def test_the_score_alone_decides_while_measuring_and_only_then():
    from devtools.registers import policy_row
    from models.policy import PolicyConfig, PolicyState, decide

    config = PolicyConfig(enter_score=0.5, exit_score=0.25, tier2_score=0.7, tier3_score=0.85)
    present, usual = ("/", "\\"), ([("O", "O")] * 3 + [("/", "\\")] * 7) * 5  # 70%: under the 90% line
    unheard = policy_row(usual + [("N", "N")] * 10, config)  # the register's two-week rule raises it
    flu = policy_row([present] * 30 + [("I", "I")] * 5, config)  # health holds it back

    def raised(score, row):
        return decide(PolicyState(), config, score, row) is not None

    assert raised(0.05, unheard) and not raised(0.6, flu)
    with score_alone():
        assert not raised(0.05, unheard) and raised(0.6, flu)
    assert raised(0.05, unheard) and not raised(0.6, flu)
