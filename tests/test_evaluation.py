"""Evaluation metrics on hand-made inputs with known answers, the label, and the model card
checked against a fresh evaluation through the real engine."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from models.dataset import TrainingSet
from models.evaluation import LAST4, YTD, Episode, Truth, baseline_alerts, score_alerts
from models.features import FEATURE_NAMES
from models.labels import pupil_labels

START = dt.date(2025, 9, 1)
DAYS = [d for d in (START + dt.timedelta(days=i) for i in range(120)) if d.weekday() < 5][:60]


def day(i: int) -> dt.date:
    return DAYS[i]


def truth(episodes: dict[str, list[Episode]], pupils: list[str]) -> Truth:
    return Truth(episodes, {p: "none" for p in pupils}, {p: False for p in pupils}, pupils)


@pytest.fixture
def cohort():
    pupils = ["A", "B", "C", "D", "E", "F", "G"]
    episodes = {
        "A": [Episode("avoidance", day(10), None)],
        "B": [Episode("family_crisis", day(10), day(45))],
        "C": [Episode("long_illness", day(30), day(50))],
        "D": [Episode("one_week_illness", day(5), day(10))],
        "E": [Episode("term_time_holiday", day(20), day(27)), Episode("one_week_illness", day(40), day(45))],
        "G": [Episode("monday_friday", day(30), None)],
    }
    return truth(episodes, pupils)


def test_alert_scores_by_hand(cohort):
    alerts = {
        "A": [day(18)],  # 8 school days after onset: detected within 20
        "B": [day(40)],  # 30 days after onset: detected, not within 20
        "C": [day(26)],  # 4 days early: counts as early-correct (lead -4)
        "D": [day(7)],  # a week of illness flagged: a false alarm
        "F": [day(3)],  # no episode at all: a false alert
        "G": [day(23)],  # 7 days before onset: too early, not a detection
    }
    score = score_alerts(alerts, cohort, DAYS)
    m = score.metrics()
    assert score.dips == 4 and score.detected == 3 and score.detected_within_20 == 2
    assert sorted(score.lead_days) == [-4, 8, 30]
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["recall_within_20"] == pytest.approx(2 / 4)
    assert m["median_lead_days"] == 8
    assert m["alert_precision"] == pytest.approx(3 / 6)
    assert m["pupil_precision"] == pytest.approx(3 / 6)
    assert m["false_alarm_share"] == pytest.approx(1 / 2)  # D flagged, E not
    assert m["alerts_per_100_per_week"] == pytest.approx(100 * 6 / 7 / 12)


def test_repeat_alerts_count_for_precision_not_recall(cohort):
    alerts = {"A": [day(12), day(40)], "D": [day(6), day(30)]}
    score = score_alerts(alerts, cohort, DAYS)
    assert score.detected == 1 and score.lead_days == [2]
    assert score.alerts == 4 and score.alerts_in_dip == 2
    assert score.flagged == 2 and score.flagged_with_dip_alert == 1


def test_alert_after_recovery_grace_is_wrong(cohort):
    score = score_alerts({"B": [day(56)]}, cohort, DAYS)  # recovery day 45 + 10 = 55
    assert score.detected == 0 and score.alerts_in_dip == 0
    assert score_alerts({"B": [day(55)]}, cohort, DAYS).alerts_in_dip == 1


def rows_for(pupils_days_stats: list[tuple[str, int, int, int, int, int]]) -> TrainingSet:
    """(pupil, day index, attended_ytd, possible_ytd, attended_40, possible_40) per row."""
    n = len(pupils_days_stats)
    pupil, days, att, pos, att40, pos40 = (np.array(c) for c in zip(*pupils_days_stats))
    zeros = np.zeros(n, dtype=np.int64)
    return TrainingSet(
        X=np.zeros((n, len(FEATURE_NAMES))), y=np.zeros(n, np.int8), pupil_id=pupil.astype(object),
        school_id=np.full(n, "S", dtype=object), day=np.array([DAYS[d].toordinal() for d in days], np.int32),
        school_days=DAYS,
        stats={"attended_ytd": att, "possible_ytd": pos, "attended_40": att40, "possible_40": pos40,
               "attended_10": zeros, "possible_10": zeros, "attended_20": zeros, "possible_20": zeros},
    )


def test_baselines_fire_once_on_the_first_day_below_90_with_enough_evidence():
    rows = rows_for([
        ("P", 5, 8, 10, 8, 10),  # 80% but only 10 possible sessions: too little evidence
        ("P", 10, 19, 20, 19, 20),  # 95%
        ("P", 11, 19, 22, 19, 22),  # 86.4%: both rules fire
        ("P", 12, 19, 24, 19, 24),  # still below: no second alert
        ("Q", 20, 37, 40, 30, 40),  # YTD 92.5% (no), last 4 weeks 75% (yes)
    ])
    ytd, last4 = baseline_alerts(rows, YTD), baseline_alerts(rows, LAST4)
    assert ytd == {"P": [day(11)]}
    assert last4 == {"P": [day(11)], "Q": [day(20)]}


def test_label_ignores_one_short_block_but_not_a_long_illness():
    n_days = 60
    possible = np.full(n_days, 2)

    def labels(absent_days: set[int], row: int) -> int:
        attended = np.array([0 if d in absent_days else 2 for d in range(n_days)])
        absent = np.repeat([d in absent_days for d in range(n_days)], 2)
        return int(pupil_labels(possible, attended, absent, np.array([row]), np.array([1.0]))[0])

    week_off = set(range(30, 35))  # five school days of illness: one short block
    assert labels(week_off, 27) == 0
    assert labels(set(range(30, 50)), 27) == 1  # four weeks off: a dip
    assert labels(set(range(30, 36)) | {38, 40, 42, 44}, 27) == 1  # a block plus more absence: a dip
    assert labels(set(range(30, 36)) | {40, 44}, 27) == 0  # 36 of 40 without the block: 90%, not a dip
    # Most of a two-week block lies before the row; it is still one block of ten days.
    assert labels(set(range(20, 30)), 25) == 0
    assert labels(set(range(20, 32)), 25) == 1  # twelve days: longer than a short block
    assert labels(set(), 55) == -1  # too little future to label


@pytest.mark.slow
def test_card_table_matches_a_fresh_evaluation(tmp_path, model_path):
    """Evaluate a small held-out cohort through the real engine, write the card, and check the
    numbers written to it are the report's; and that observing the engine changes nothing."""
    from models.artifact import load_model
    from models.card import card_table, run_evaluation
    from models.engine import DecisionEngine
    from models.evaluation import MODEL, ObservedEngine
    from models.dataset import DayEndRecorder
    from models.replay import replay_file
    from models.simulator.generate import SimulationConfig, simulate_year

    card = tmp_path / "MODEL_CARD.md"
    report = run_evaluation(model_path, out_card=card, schools=2, pupils_per_school=100, seed=99)
    text = card.read_text()
    assert card_table(text) == report.markdown_table()
    written = json.loads(text.split("<!-- metrics-json\n", 1)[1].split("\n-->", 1)[0])
    assert written["metrics"] == json.loads(json.dumps(report.metrics, default=str))
    assert (tmp_path / "card" / "calibration.png").stat().st_size > 1000
    assert (tmp_path / "card" / "lead_time.png").stat().st_size > 1000
    model_row = next(r for r in report.table_rows() if r[0].startswith("Alert precision"))
    assert model_row[1] == f"{report.metrics[MODEL]['alert_precision']:.3f}"
    assert report.metrics[MODEL]["pupils"] == 200

    marks = tmp_path / "marks.csv"
    simulate_year(SimulationConfig(schools=1, pupils_per_school=80, seed=5), marks_path=marks)
    model = load_model(model_path)
    _, plain = replay_file(marks, DecisionEngine(model, window_days=126), max_future_days=100_000)
    observed = ObservedEngine(DecisionEngine(model, window_days=126), DayEndRecorder())
    _, watched = replay_file(marks, observed, max_future_days=100_000)
    assert [e.model_dump() for e in plain] == [e.model_dump() for e in watched]
