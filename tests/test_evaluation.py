"""Evaluation on hand-made inputs with known answers: alert scoring, the reactive baselines on a
register, the label, fairness ratios, targets; and the model card against a fresh evaluation."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from devtools.registers import MONDAY, pupil_marks
from models.evaluation.baselines import LAST4, YTD, baseline_alerts, first_fires
from models.evaluation.fairness import Comparison, FairnessAudit, audit
from models.evaluation.ranking import ranking_metrics
from models.evaluation.scoring import score_alerts
from models.evaluation.targets import BY_KEY, TARGETS
from models.evaluation.truth import DIP_KINDS, KNOWN_KINDS, Episode, Truth
from models.history import RegisterHistory
from models.labels import pupil_labels, year_labels
from schemas.events import WindowSummary

START = dt.date(2025, 9, 1)
DAYS = [d for d in (START + dt.timedelta(days=i) for i in range(120)) if d.weekday() < 5][:60]


def day(i: int) -> dt.date:
    return DAYS[i]


def truth(episodes: dict[str, list[Episode]], pupils: list[str]) -> Truth:
    return Truth(episodes, {p: "none" for p in pupils}, {p: False for p in pupils}, pupils)


@pytest.fixture
def cohort():
    pupils = ["A", "B", "C", "D", "E", "F", "G", "H"]
    episodes = {
        "A": [Episode("avoidance", day(10), None)],
        "B": [Episode("family_crisis", day(10), day(45))],
        "C": [Episode("recurrent_illness", day(30), day(50))],
        "D": [Episode("illness_block", day(5), day(10))],
        "E": [Episode("term_time_holiday", day(20), day(27)), Episode("illness_block", day(40), day(45))],
        "G": [Episode("monday_friday", day(30), None)],
        "H": [Episode("long_illness", day(20), day(40))],
    }
    return truth(episodes, pupils)


def test_alert_scores_by_hand(cohort):
    alerts = {
        "A": [day(18)],  # 8 school days after onset: caught within 20
        "B": [day(40)],  # 30 days after onset: caught, not within 20
        "C": [day(26)],  # 4 days early: counts as early-correct (lead -4)
        "D": [day(7)],  # a week of illness flagged: a one-off false alarm
        "F": [day(3)],  # no episode at all: a false alert
        "G": [day(23)],  # 7 days before onset: too early, not a catch
        "H": [day(25)],  # a concern during a long illness: health is not a dip
    }
    score = score_alerts(alerts, cohort, DAYS)
    m = score.metrics()
    assert score.dips == 4 and score.detected == 3 and score.detected_within_20 == 2
    assert sorted(score.lead_days) == [-4, 8, 30]
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["recall_within_20"] == pytest.approx(2 / 4)
    assert m["median_lead_days"] == 8
    assert m["alert_precision"] == pytest.approx(3 / 7)
    assert m["pupil_precision"] == pytest.approx(3 / 7)
    assert m["one_off_flagged_share"] == pytest.approx(1 / 2)  # D flagged, E not
    assert m["no_dip_flagged_share"] == pytest.approx(3 / 4)  # D, F, H of D, E, F, H
    assert m["long_illness_concern_share"] == 1.0
    assert m["alerts_per_100_per_week"] == pytest.approx(100 * 7 / 8 / 12)
    assert score.shares() == {"recall_within_20": (2, 4), "alert_precision": (3, 7),
                              "one_off_flagged_share": (1, 2), "no_dip_flagged_share": (3, 4)}


@pytest.mark.parametrize("part, whole", [(54, 84), (68, 108), (0, 40), (40, 40), (1, 3)])
def test_a_share_s_interval_is_wilson_s_score_interval(part, whole):
    """Checked against the formula itself: centre (p + z^2/2n) / (1 + z^2/n), half-width
    z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n), z the normal's 97.5th percentile."""
    from models.evaluation.targets import share_interval

    z, p = 1.959963984540054, part / whole
    centre = (p + z * z / (2 * whole)) / (1 + z * z / whole)
    half = z * ((p * (1 - p) / whole + z * z / (4 * whole * whole)) ** 0.5) / (1 + z * z / whole)
    low, high = share_interval(part, whole)
    assert low == pytest.approx(centre - half, abs=1e-9) and high == pytest.approx(centre + half, abs=1e-9)
    assert 0 <= low <= p <= high <= 1
    assert share_interval(0, 0) is None


def test_the_card_says_whether_a_target_lies_inside_a_share_s_interval():
    """54 of 84 dips (0.64, interval 0.54 to 0.74) is wholly below 0.85; 68 of 108 concerns
    (0.63, interval 0.54 to 0.71) includes 0.70; 1 of 180 one-off pupils is wholly below 0.05."""
    from models.evaluation.run import CohortEvaluation, EvaluationReport
    from reports.card import _share_with_interval, how_sure_section

    cohort = CohortEvaluation("held-out", {}, {}, {}, None, {}, {}, {},  # type: ignore[arg-type]
                              shares={"recall_within_20": (54, 84), "alert_precision": (68, 108),
                                      "one_off_flagged_share": (1, 180), "no_dip_flagged_share": (30, 1000)})
    assert _share_with_interval(cohort, "recall_within_20") == "54 of 84; 95% interval 0.54 to 0.74, wholly below the target"
    assert _share_with_interval(cohort, "alert_precision") == ("68 of 108; 95% interval 0.54 to 0.71, which includes "
                                                               "the target")
    assert _share_with_interval(cohort, "median_lead_days") == ""
    table = how_sure_section(EvaluationReport([cohort], {}, {}))
    assert "| Alert precision (concerns inside a real dip) | >= 0.7 | 0.630 (68 of 108) | 0.54 to 0.71 (includes the target) |" in table
    assert "| 0.006 (1 of 180) | 0.00 to 0.03 (below the target) |" in table
    assert how_sure_section(EvaluationReport([CohortEvaluation("c", {}, {}, {}, None, {}, {}, {})], {}, {})) == ""  # type: ignore[arg-type]


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


def test_every_simulator_kind_is_scored_as_something():
    from models.simulator.episodes import KINDS

    assert set(KINDS) == set(KNOWN_KINDS)
    assert "long_illness" not in DIP_KINDS, "health is not a dip"


def register_of(days_by_pupil: dict[str, list[tuple[str, str]]]):
    history = RegisterHistory()
    for pupil, days in days_by_pupil.items():
        history.record_many(pupil_marks(pupil, MONDAY, days))
    return history.finish()


def test_baselines_fire_once_on_the_first_day_below_90_with_enough_evidence():
    present, absent = ("/", "\\"), ("N", "N")
    register = register_of({
        "P1": [present] * 10 + [absent] + [present] * 9,  # 18 of 20 = 90%: not below; then 95%...
        "Q1": [absent] * 5 + [present] * 20,  # below from the start, but 20 sessions of evidence only on day 10
        "R1": [present] * 25 + [absent] * 3,  # the last four weeks (40 sessions) drop first: day 27
    })
    ytd, last4 = baseline_alerts(register, YTD), baseline_alerts(register, LAST4)
    assert "P1" not in ytd and "P1" not in last4
    assert ytd["Q1"] == last4["Q1"] == [register.dates[9]]  # 10 of 20 sessions
    # R: 50 present then absent days; YTD 50/54 = 92.6% (day 26), 50/56 = 89.3% (day 27).
    assert ytd["R1"] == [register.dates[27]]
    # Last 40: four absences of 40 = 90% (day 26, not below), six = 85% (day 27).
    assert last4["R1"] == [register.dates[27]]
    assert first_fires(register, YTD).tolist()[register.index["P1"]] == -1


def test_label_ignores_one_block_and_an_illness_but_not_a_pattern():
    n_days = 60

    def label(absent_days: set[int], row: int, *, health: bool = False) -> int:
        session_day = np.repeat(np.arange(n_days), 2)
        attended = np.repeat([d not in absent_days for d in range(n_days)], 2)
        return int(pupil_labels(session_day, attended, ~attended & health, n_days, np.array([row]),
                                np.array([1.0]))[0])

    assert label(set(range(30, 35)), 27) == 0  # five school days off: one block
    assert label(set(range(30, 50)), 27) == 1  # four weeks off, unexplained: a dip
    assert label(set(range(30, 50)), 27, health=True) == 0  # four weeks of illness: health, not a dip
    assert label(set(range(30, 36)) | {38, 40, 42, 44}, 27) == 1  # a block plus more absence: a dip
    assert label(set(range(30, 36)) | {40, 44}, 27) == 0  # 36 of 40 without the block: 90%, not a dip
    assert label({30, 35, 40, 45}, 27) == 1  # one day a week, four weeks running: a pattern
    assert label({30, 35, 40, 45}, 27, health=True) == 1  # ... even when each is illness
    # Most of a two-week block lies before the row; it is still one block of ten days.
    assert label(set(range(20, 30)), 25) == 0
    assert label(set(range(20, 32)), 25) == 1  # twelve days: longer than a short block
    assert label(set(), 55) == -1  # too little future to label


def test_a_severely_absent_pupil_is_not_labelled_a_pupil_at_60_percent_is():
    """The same four weeks of unexplained absence after ten weeks at 30% (own level under 50%: the
    attendance lead's already, and the policy raises nothing) and after ten weeks at 60%."""
    severe_week = [("N", "N"), ("N", "N"), ("N", "N"), ("N", "/"), ("/", "\\")]
    persistent_week = [("N", "N"), ("N", "/"), ("/", "\\"), ("/", "\\"), ("/", "\\")]
    tail = [("N", "N")] * 20 + [("/", "\\")] * 25
    register = register_of({"S1": severe_week * 10 + tail, "P1": persistent_week * 10 + tail})
    row_day = 49  # the last day before the four weeks
    labels = year_labels(register, np.array([register.index["S1"], register.index["P1"]]), np.array([row_day] * 2))
    assert labels.tolist() == [-1, 1]


def test_ranking_metrics_round_once_and_skip_unknown_labels():
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.9])
    y = np.array([0, 0, 1, 1, -1])
    m = ranking_metrics(scores, y)
    assert m["roc_auc"] == 0.75 and m["brier"] == round(((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4), 4)
    assert ranking_metrics(scores, np.array([0, 0, 0, 0, -1])) == {"roc_auc": None, "pr_auc": None, "brier": None}


def test_fairness_ratio_and_what_drives_it():
    pupils = [f"S{i}" for i in range(10)] + [f"N{i}" for i in range(10)]
    sen = {p: ("sen_support" if p.startswith("S") else "none") for p in pupils}
    groups = Truth({}, sen, {p: False for p in pupils}, pupils)
    register = register_of({**{f"S{i}": [("/", "\\")] * 30 + [("O", "O")] * (6 if i < 6 else 0) for i in range(10)},
                            **{f"N{i}": [("/", "\\")] * 30 + [("O", "O")] * (6 if i < 1 else 0) for i in range(10)}})
    # Pupils who missed a week are flagged in both groups alike; more SEN pupils missed one.
    alerts = {p: [register.dates[-1]] for p in ("S0", "S1", "S2", "S3", "S4", "S5", "N0")}
    comparison = next(c for c in audit(alerts, groups, register.dates, register=register).comparisons
                      if c.group == "sen_support")
    assert comparison.ratio == pytest.approx(6.0) and not comparison.within
    assert comparison.adjusted_ratio == pytest.approx(1.0) and comparison.explained_by_attendance
    # 6 of 10 against 1 of 10: log(6) +- 1.96 * sqrt(1/6 - 1/10 + 1/1 - 1/10), by hand 0.87 to 41.2.
    assert (comparison.group_flagged, comparison.group_pupils) == (6, 10)
    assert (comparison.versus_flagged, comparison.versus_pupils) == (1, 10)
    low, high = comparison.ratio_interval
    assert low == pytest.approx(0.8735, abs=1e-3) and high == pytest.approx(41.21, abs=0.05)
    assert not comparison.clearly_over  # ten pupils a side cannot show a gap


def test_the_longest_unexplained_run_skips_sessions_that_are_not_possible_and_stops_at_a_reason():
    from models.evaluation.fairness import longest_unexplained_run_by_pupil

    present = ("/", "\\")
    register = register_of({
        "P1": [present, ("O", "N"), ("#", "#"), ("N", "O"), present, ("O", "O")],  # a closure inside the run: 4
        "P2": [present, ("O", "I"), ("O", "G"), ("O", "C"), ("O", "/")],  # illness, holiday, leave break it: 1
        "P3": [present] * 6,
    })
    assert longest_unexplained_run_by_pupil(register) == {"P1": 4, "P2": 1, "P3": 0}


def test_fairness_ratio_at_equal_attendance_and_equal_long_unexplained_runs():
    """Same attendance in both groups, but more of one group's absence came as a long unexplained run,
    which the register's rules answer whatever the score: at equal runs, the rates are equal."""
    pupils = [f"S{i}" for i in range(10)] + [f"N{i}" for i in range(10)]
    sen = {p: ("sen_support" if p.startswith("S") else "none") for p in pupils}
    groups = Truth({}, sen, {p: False for p in pupils}, pupils)
    present, off = ("/", "\\"), ("O", "O")
    long_run = [present] * 30 + [off] * 6 + [present] * 6  # 12 sessions in a row
    scattered = [present] * 30 + [off, present] * 6  # the same 12 sessions, a day at a time
    register = register_of({**{f"S{i}": long_run if i < 6 else scattered for i in range(10)},
                            **{f"N{i}": long_run if i < 1 else scattered for i in range(10)}})
    alerts = {p: [register.dates[-1]] for p in ("S0", "S1", "S2", "S3", "S4", "S5", "N0")}
    comparison = next(c for c in audit(alerts, groups, register.dates, register=register,
                                       long_run_sessions=12).comparisons if c.group == "sen_support")
    assert comparison.ratio == pytest.approx(6.0) and comparison.adjusted_ratio == pytest.approx(6.0)
    assert comparison.run_adjusted_ratio == pytest.approx(1.0) and comparison.explained_by_long_runs
    assert (comparison.group_long_run_share, comparison.versus_long_run_share) == (0.6, 0.1)
    at_13 = next(c for c in audit(alerts, groups, register.dates, register=register,
                                  long_run_sessions=13).comparisons if c.group == "sen_support")
    assert at_13.run_adjusted_ratio == pytest.approx(6.0) and not at_13.explained_by_long_runs
    # The flagged counts split by the run: all six of the group's runs and the comparison's one flagged.
    assert (comparison.group_run_flagged, comparison.group_run_pupils) == (6, 6)
    assert (comparison.versus_run_flagged, comparison.versus_run_pupils) == (1, 1)
    assert (at_13.group_run_pupils, at_13.versus_run_pupils) == (0, 0)


def test_a_gap_neither_standardisation_explains_gives_the_flagged_counts_split_by_the_run():
    from reports.tables import gap_sentences

    gap = Comparison("sen", "ehcp", "none", group_share=4 / 28, versus_share=33 / 933, ratio=4.04, adjusted_ratio=2.1,
                     group_mean_attendance=0.91, versus_mean_attendance=0.94, run_adjusted_ratio=2.0,
                     long_run_sessions=10, group_long_run_share=3 / 28, versus_long_run_share=61 / 933,
                     group_flagged=4, group_pupils=28, versus_flagged=33, versus_pupils=933,
                     group_run_flagged=3, group_run_pupils=3, versus_run_flagged=27, versus_run_pupils=61)
    [sentence] = gap_sentences(FairnessAudit([], [gap]))
    assert ("Of those with such a run, 3 of 3 (1.000) were flagged, against 27 of 61 (0.443) in the comparison "
            "group; of those without one, 1 of 25 (0.040) against 6 of 872 (0.007)") in sentence


def test_fairness_counts_what_the_register_showed_at_the_first_concern_of_pupils_flagged_without_a_dip():
    from models.evaluation.diagnostics import SCORE_ONLY, UNDER_HALF, UNEXPLAINED_WEEK, first_concern_behaviour
    from models.explain import build_event
    from models.features import FEATURE_NAMES
    from models.policy import PolicyConfig
    from schemas.events import InterventionKind

    def concern(pupil: str, at: int, stats, *, escalation: bool = False):
        return build_event(kind=InterventionKind.CONCERN, tier=2, escalation=escalation, score=0.9, pupil_id=pupil,
                           school_id="S", as_of=day(at), stats=stats, contributions=[0.1] * len(FEATURE_NAMES),
                           model_version="test")

    week_off = window(current_absence_run=10, attended_20=10, attended_10=0, longest_absence_run_40=10)
    events = [concern("S1", 30, window(attended_20=9)), concern("S1", 20, week_off),  # S1's first is day 20
              concern("S2", 25, window()), concern("S2", 35, week_off, escalation=True),
              concern("N1", 30, window(attended_20=9)),
              concern("N2", 30, window(attended_20=11, attended_40=15))]  # 55% of 20, but 37.5% of 40
    shown = first_concern_behaviour(events, PolicyConfig())
    assert shown == {"S1": UNEXPLAINED_WEEK, "S2": SCORE_ONLY, "N1": UNDER_HALF, "N2": UNDER_HALF}
    pupils = ["S1", "S2", "S3", "N1", "N2"]
    groups = Truth({}, {p: ("ehcp" if p.startswith("S") else "none") for p in pupils}, {p: False for p in pupils},
                   pupils)
    alerts = {"S1": [day(20)], "S2": [day(25)], "N1": [day(30)]}
    comparison = next(c for c in audit(alerts, groups, DAYS, behaviour=shown).comparisons if c.group == "ehcp")
    assert comparison.group_behaviour == {UNEXPLAINED_WEEK: 1, SCORE_ONLY: 1}
    assert comparison.versus_behaviour == {UNDER_HALF: 1}


def test_a_fairness_gap_is_shown_only_when_its_whole_interval_is_over_the_limit():
    def compare(flagged: int, pupils: int, versus_flagged: int, versus_pupils: int) -> Comparison:
        share, versus_share = flagged / pupils, versus_flagged / versus_pupils
        return Comparison("sen", "ehcp", "none", share, versus_share, share / versus_share, None, None, None,
                          group_flagged=flagged, group_pupils=pupils, versus_flagged=versus_flagged,
                          versus_pupils=versus_pupils)

    clear = compare(30, 100, 10, 1000)  # 30x; by hand the interval is 15.1 to 59.6
    assert clear.ratio_interval[0] == pytest.approx(15.11, abs=0.02) and clear.clearly_over
    few = compare(3, 28, 30, 1000)  # 3.6x, as a cohort's EHC-plan group can show
    assert few.ratio_interval[0] < 1.5 < few.ratio_interval[1] and not few.clearly_over
    assert compare(0, 30, 5, 1000).ratio_interval is None


def test_targets_are_the_issue_13_figures():
    assert {t.key: (t.op, t.target) for t in TARGETS} == {
        "recall_within_20": (">=", 0.85), "alert_precision": (">=", 0.70), "one_off_flagged_share": ("<=", 0.05),
        "no_dip_flagged_share": ("<=", 0.08), "median_lead_days": ("<=", 10), "alerts_per_100_per_week": ("<=", 1.0)}
    assert BY_KEY["median_lead_days"].reaches_stretch(8.0) and not BY_KEY["median_lead_days"].reaches_stretch(9.0)
    assert BY_KEY["alert_precision"].passes(None) is None


@pytest.mark.slow
def test_card_matches_a_fresh_evaluation_and_observing_changes_nothing(tmp_path, model_path):
    """Evaluate two small cohorts through the real engine, write the card, and check the numbers
    written to it are the report's; and that observing the engine changes no decision."""
    from models.artifact import load_model
    from models.dataset import DayEndRecorder
    from models.engine import DecisionEngine
    from models.evaluation.cohorts import EVALUATION_COHORTS, evaluate_cohorts, scaled
    from models.evaluation.run import MODEL, OFFLINE_LIMITS, ObservedEngine
    from models.replay import replay_file
    from models.simulator.generate import SimulationConfig, simulate_year
    from reports.card import card_table, write_card
    from reports.tables import evaluation_markdown

    model = load_model(model_path)
    report = evaluate_cohorts(model, window_days=126, scratch=tmp_path,
                              cohorts=scaled(EVALUATION_COHORTS, schools=2, pupils_per_school=60))
    card = write_card(report, model, tmp_path / "MODEL_CARD.md")
    text = card.read_text()
    assert card_table(text) == evaluation_markdown(report)
    written = json.loads(text.split("<!-- metrics-json\n", 1)[1].split("\n-->", 1)[0])
    assert set(written) == {"held-out", "shifted"}
    assert written["shifted"]["metrics"] == json.loads(json.dumps(report.cohorts[1].metrics, default=str))
    assert written["shifted"]["threshold_sweep"] == json.loads(json.dumps(report.cohorts[1].threshold_sweep))
    assert written["held-out"]["outside_dip"] == json.loads(json.dumps(report.cohorts[0].outside_dip.to_dict()))
    assert written["held-out"]["late_dips"] == json.loads(json.dumps(report.cohorts[0].late_dips.to_dict()))
    shares, model_metrics = report.cohorts[0].shares, report.cohorts[0].metrics[MODEL]
    part, whole = shares["recall_within_20"]
    assert whole == model_metrics["dips"] > 0 and part / whole == pytest.approx(model_metrics["recall_within_20"])
    assert written["held-out"]["shares"]["alert_precision"] == list(shares["alert_precision"])
    assert "#### How sure are these shares?" in text
    assert report.cohorts[0].late_dips.dips == report.cohorts[0].metrics[MODEL]["dips"]
    assert "#### Would another entry threshold have met both targets?" in text
    assert "#### Dips not caught within 20 school days: what stood in the way" in text
    missed = {key for _, key in report.missed()}
    assert ("`reconnect-dev ceiling`" in text) == bool(missed & {"recall_within_20", "alert_precision",
                                                                "median_lead_days"})
    assert (tmp_path / "card" / "calibration.png").stat().st_size > 1000
    assert (tmp_path / "card" / "lead_time_shifted.png").stat().st_size > 1000
    assert report.cohorts[1].cohort["simulation"]["profile"] == "shifted"
    assert all(c.metrics[MODEL]["pupils"] == 120 for c in report.cohorts)

    marks = tmp_path / "marks.csv"
    simulate_year(SimulationConfig(schools=1, pupils_per_school=60, seed=5), marks_path=marks)
    _, plain = replay_file(marks, DecisionEngine(model, window_days=126), limits=OFFLINE_LIMITS)
    observed = ObservedEngine(DecisionEngine(model, window_days=126), DayEndRecorder())
    _, watched = replay_file(marks, observed, limits=OFFLINE_LIMITS)
    assert [e.model_dump() for e in plain] == [e.model_dump() for e in watched]


# -- why targets are missed: the threshold sweep and concerns outside a dip window -------------
# The window counts of an ordinary school day in a modest dip: 14 of the last 20 sessions, no
# current absence, absence in short separate spells (not one block): nothing holds a concern back
# and the register alone asks for none (tier 1), so whether a concern is raised is the score's call.
MODEST_DIP = {
    "possible_ytd": 60, "attended_ytd": 48, "possible_10": 10, "attended_10": 7, "possible_20": 20,
    "attended_20": 14, "possible_40": 40, "attended_40": 30, "earlier_possible": 20, "earlier_attended": 20,
    "current_absence_run": 0, "longest_absence_run_40": 2, "absence_spells_40": 5, "unauthorised_40": 10,
    "health_40": 0, "late_20": 0, "late_previous_20": 0, "monday_friday_absences_40": 4, "am_possible_40": 20,
    "am_absences_40": 5, "pm_possible_40": 20, "pm_absences_40": 5, "sessions_since_full_week": 12,
}


def window(**changes) -> WindowSummary:
    return WindowSummary(latest_date=day(30), **{**MODEST_DIP, **changes})


def day_end_rows(scores: dict[str, list[float]]):
    """Day-end rows (one per pupil per school day of DAYS) with MODEST_DIP counts, and their scores."""
    from models.dataset import TrainingSet
    from models.policy import POLICY_COUNTS

    pupils = sorted(scores)
    n = len(pupils) * len(DAYS)
    counts = {name: np.full(n, window().model_dump().get(name, 0), dtype=np.int64) for name in POLICY_COUNTS}
    rows = TrainingSet(X=np.zeros((n, 0)), y=np.zeros(n, dtype=np.int8), pupil_id=np.repeat(pupils, len(DAYS)),
                       school_id=np.full(n, "S"), day=np.tile([d.toordinal() for d in DAYS], len(pupils)),
                       school_days=DAYS, stats=counts)
    return rows, np.concatenate([scores[p] for p in pupils])


def sweep_of(dip_score: float, false_alarm_score: float):
    """A's avoidance starts on day 10 and scores `dip_score` from then on; B has no episode and
    scores `false_alarm_score` on day 30 only. Everything else scores 0.05."""
    from models.evaluation.diagnostics import threshold_sweep
    from models.policy import PolicyConfig, thresholds

    quiet = [0.05] * len(DAYS)
    a = [0.05] * 10 + [dip_score] * (len(DAYS) - 10)
    b = [*quiet[:30], false_alarm_score, *quiet[31:]]
    rows, scores = day_end_rows({"A": a, "B": b})
    cohort_truth = truth({"A": [Episode("avoidance", day(10), None)]}, ["A", "B"])
    return threshold_sweep(rows, scores, cohort_truth, thresholds(PolicyConfig(), 0.65))


def test_threshold_sweep_finds_the_thresholds_that_meet_both_targets():
    from models.evaluation.diagnostics import SWEEP_THRESHOLDS, thresholds_meeting_both
    from models.evaluation.run import CohortEvaluation
    from reports.card import _sweep_verdict

    # B's one-day score of 0.45 is a false alarm at 0.3 and 0.4 only; A's dip (0.9) is caught on onset.
    sweep = sweep_of(dip_score=0.9, false_alarm_score=0.45)
    assert [r["enter_score"] for r in sweep] == sorted(SWEEP_THRESHOLDS)  # 0.65, the policy's own, is in the list
    assert [r["enter_score"] for r in sweep if r["shipped"]] == [0.65]
    low, high = sweep[0], sweep[-1]
    assert (low["alert_precision"], low["recall_within_20"]) == (0.5, 1.0)  # B's false alarm
    assert (high["alert_precision"], high["recall_within_20"], high["median_lead_days"]) == (1.0, 1.0, 0.0)
    assert thresholds_meeting_both(sweep) == [0.5, 0.55, 0.6, 0.65, 0.7, 0.8]
    cohort = CohortEvaluation("c", {}, {}, {}, None, {}, {}, {}, threshold_sweep=sweep)  # type: ignore[arg-type]
    assert _sweep_verdict(cohort).startswith("Entry scores 0.50, 0.55, 0.60, 0.65, 0.70, 0.80 meet both")

    # A's dip scores 0.45, as high as B's false alarm: any threshold that catches the one raises the other.
    sweep = sweep_of(dip_score=0.45, false_alarm_score=0.45)
    assert [(r["alert_precision"], r["recall_within_20"]) for r in sweep[:2]] == [(0.5, 1.0)] * 2
    assert all(r["alerts"] == 0 and r["recall_within_20"] == 0.0 for r in sweep[2:])
    assert thresholds_meeting_both(sweep) == []
    verdict = _sweep_verdict(CohortEvaluation("c", {}, {}, {}, None, {}, {}, {},  # type: ignore[arg-type]
                                              threshold_sweep=sweep))
    assert verdict.startswith("No entry score in the sweep meets both")
    assert "the best alert precision is 0.50 (entry score 0.30)" in verdict  # ties: the lowest
    assert "no entry score reaches alert precision 0.70" in verdict


def test_register_demanded_a_concern_is_the_policys_own_tier_2():
    from models.evaluation.diagnostics import register_demanded, window_row
    from models.policy import PolicyConfig, register_tier

    config = PolicyConfig()
    assert not register_demanded(window(), config)  # 14 of 20, short spells: the score's call
    assert register_tier(config, window_row(window(), config)) == 1
    week_off = window(current_absence_run=10, attended_20=10, attended_10=0, longest_absence_run_40=10,
                      attended_40=28)  # a week of unexplained absence in a row
    assert window_row(week_off, config).unexplained_run == 10 and register_demanded(week_off, config)
    nine_off = window(current_absence_run=9, attended_20=11, attended_10=1, longest_absence_run_40=9, attended_40=29)
    assert not register_demanded(nine_off, config)  # a session short of a week, half the sessions attended
    assert register_demanded(window(attended_20=9), config)  # under half of the last 20 sessions
    ill_week = window(current_absence_run=10, current_run_explained=10, current_run_health=10, attended_20=10,
                      attended_10=0, longest_absence_run_40=10, attended_40=28)
    assert not register_demanded(ill_week, config)  # a week off ill is not unexplained


def test_concerns_outside_a_dip_window_by_what_the_register_showed():
    from models.evaluation.diagnostics import NO_EPISODE, ONE_OFF, outside_dip_concerns
    from models.explain import build_event
    from models.features import FEATURE_NAMES
    from models.policy import PolicyConfig, thresholds
    from schemas.events import InterventionKind

    def concern(pupil: str, at: int, score: float, stats, *, escalation: bool = False):
        return build_event(kind=InterventionKind.CONCERN, tier=2, escalation=escalation, score=score, pupil_id=pupil,
                           school_id="S", as_of=day(at), stats=stats, contributions=[0.1] * len(FEATURE_NAMES),
                           model_version="test")

    week_off = window(current_absence_run=10, attended_20=10, attended_10=0, longest_absence_run_40=10)
    cohort = truth({"A": [Episode("avoidance", day(10), None)], "C": [Episode("illness_block", day(5), day(10))]},
                   ["A", "B", "C", "D"])
    events = [
        concern("A", 12, 0.9, window()),  # inside A's dip window: right
        concern("B", 30, 0.4, week_off),  # no episode, a week off unexplained, below the entry score
        concern("B", 40, 0.9, week_off, escalation=True),  # an escalation is not an alert
        concern("C", 40, 0.7, window()),  # a one-off block's pupil in a modest dip: the score's call
        concern("C", 50, 0.8, window(attended_20=9)),  # under half of the last 20 sessions, in short spells
        concern("A", 4, 0.8, week_off),  # six school days before A's onset: outside (grace is five)
        # No episode, three Mondays off in four weeks, below the entry score: the weekday rule's.
        concern("D", 55, 0.3, window(same_weekday_days_off_40=3, same_weekday=1)),
    ]
    out = outside_dip_concerns(events, cohort, DAYS, thresholds(PolicyConfig(), 0.65))
    assert (out.concerns, out.in_dip, out.outside.concerns) == (6, 1, 5)
    assert (out.outside.register_tier_2, out.outside.below_entry, out.outside.pupils) == (3, 2, 4)
    assert out.outside.weekday_pattern == 1
    assert vars(out.by_group[NO_EPISODE]) == {"concerns": 2, "register_tier_2": 1, "unexplained_week": 1,
                                              "below_entry": 2, "weekday_pattern": 1, "pupils": 2}
    assert vars(out.by_group[ONE_OFF]) == {"concerns": 2, "register_tier_2": 1, "unexplained_week": 0,
                                           "below_entry": 0, "weekday_pattern": 0, "pupils": 1}
    assert out.by_group["dip"].unexplained_week == 1 and out.outside.unexplained_week == 2
    assert list(out.by_group) == [NO_EPISODE, ONE_OFF, "dip"]
    assert out.precision == score_alerts({"A": [day(12), day(4)], "B": [day(30)], "C": [day(40), day(50)],
                                          "D": [day(55)]}, cohort, DAYS).metrics()["alert_precision"] == 1 / 6
    assert out.precision_if_register_counted == 4 / 6
    assert json.loads(json.dumps(out.to_dict()))["outside"]["register_tier_2"] == 3


def test_dips_not_caught_within_20_days_by_what_stood_in_the_way():
    from models.evaluation.diagnostics import ALREADY, BELOW_ENTRY, DUE, HELD, TOO_EARLY, late_dips
    from models.explain import build_event
    from models.features import FEATURE_NAMES
    from models.policy import Hold, PolicyConfig, thresholds
    from schemas.events import InterventionKind

    def event(kind, pupil: str, at: int):
        return build_event(kind=kind, tier=1, escalation=False, score=0.9, pupil_id=pupil, school_id="S",
                           as_of=day(at), stats=window(), contributions=[0.1] * len(FEATURE_NAMES),
                           model_version="test")

    high, low = [0.9] * len(DAYS), [0.3] * len(DAYS)
    rows, scores = day_end_rows({"A": high, "B": low, "C": high, "D": high, "E": high, "F": high, "G": high})

    def mine(pupil: str, first: int = 0, last: int = len(DAYS) - 1) -> np.ndarray:
        positions = np.searchsorted([d.toordinal() for d in DAYS], rows.day)
        return (rows.pupil_id == pupil) & (positions >= first) & (positions <= last)

    rows.stats["attended_20"][mine("C")] = 19  # 95% of the last 20: nothing on the register yet
    rows.stats["possible_ytd"][mine("F")] = 30  # too few sessions this year for a concern
    # B's first 20 school days (day ends 10 to 30): six without a label, then five the label calls a dip, ten not.
    rows.y[mine("B", 10, 15)] = -1
    rows.y[mine("B", 16, 20)] = 1
    rows.y[mine("B", 21, 30)] = 0
    onset = {k: [Episode(k, day(10), None)] for k in DIP_KINDS}
    cohort = truth({"A": onset["avoidance"], "B": onset["avoidance"], "C": onset["monday_friday"],
                    "D": onset["young_carer"], "E": onset["family_crisis"], "F": onset["recurrent_illness"],
                    "G": [Episode("avoidance", day(35), None)]}, list("ABCDEFG"))
    events = [event(InterventionKind.CONCERN, "A", 12),  # caught on its third school day
              event(InterventionKind.CONCERN, "D", 2),  # flagged before D's dip, never `improving`
              # G: on the list from day 3 to the end of the cool-down after day 20's `improving` (before its
              # onset, day 35); due from its onset, but the concern came on day 57, 22 school days after it.
              event(InterventionKind.CONCERN, "G", 3), event(InterventionKind.IMPROVING, "G", 20),
              event(InterventionKind.CONCERN, "G", 57)]
    out = late_dips(events, rows, scores, cohort, thresholds(PolicyConfig(), 0.65))
    assert (out.dips, out.caught, out.late) == (7, 1, 6)
    assert out.reasons == {ALREADY: 1, DUE: 2, HELD: 1, TOO_EARLY: 1, BELOW_ENTRY: 1}
    assert out.by_kind["avoidance"] == {BELOW_ENTRY: 1, DUE: 1}  # B and G
    assert out.by_kind["young_carer"] == {ALREADY: 1} and out.by_kind["family_crisis"] == {DUE: 1}
    assert out.holds == {Hold.NOTHING_RECENT.value: 1} and out.highest_scores == [0.3]
    assert (out.labelled_days, out.label_dip_days) == (15, 5) and out.label_dip_share == pytest.approx(1 / 3)
    assert json.loads(json.dumps(out.to_dict()))["reasons"] == out.reasons


def test_the_training_sweep_says_it_is_not_the_shipped_models_measure():
    from models.policy import PolicyConfig, thresholds
    from reports.card import sweep_caveat

    policy = thresholds(PolicyConfig(), 0.775)
    sweep = [{"enter_score": 0.75, "alert_precision": 0.7, "recall_within_20": 0.7},
             {"enter_score": 0.775, "alert_precision": 0.792, "recall_within_20": 0.603}]
    text = sweep_caveat(sweep, policy)
    assert "at the chosen 0.775: alert precision 0.792, recall within 20 days 0.603" in text
    assert "refitted on every row" in text and "the evaluation on the two unseen cohorts above is" in text
    assert "at the chosen" not in sweep_caveat(sweep, thresholds(PolicyConfig(), 0.9))


def test_the_training_section_says_what_the_model_learnt_and_how_its_threshold_was_chosen():
    from models.policy import PolicyConfig, thresholds
    from models.training import (
        CHOSEN_AT_DAY_ENDS,
        CHOSEN_BY_ENGINE,
        TARGET_EPISODES,
        TARGET_LABEL,
        TARGET_LABEL_OR_EPISODES,
    )
    from reports.card import training_section

    policy = thresholds(PolicyConfig(), 0.925)
    sweep = [{"enter_score": e, "alerts_per_100_per_week": 0.3, "alert_precision": 0.7, "recall_within_20": 0.7,
              "objective": 0.7, "within_budget": True} for e in (0.9, 0.925, 0.95)]
    candidates = {"logistic": {"pr_auc": 0.79}, "boosted": {"pr_auc": 0.78}}
    by_engine = {"estimator": "CalibratedClassifierCV", "training": {"threshold_sweep": sweep},
                 "metrics": {"target": TARGET_EPISODES, "threshold_chosen_by": CHOSEN_BY_ENGINE,
                             "threshold_chosen_over": "a validation cohort (seed 10007)", "estimator": "boosted",
                             "candidates": candidates}}
    text = training_section(by_engine, policy)
    assert "whether the pupil is inside one of their dip episodes" in text
    assert "the engine replaying, with the model shipped, the marks of a validation cohort (seed 10007)" in text
    assert "| 0.925 |" in text  # the chosen row, though the table shows every other row
    assert "(named by `reconnect train --estimator`)" in text and "refitted on every row" not in text

    at_day_ends = {**by_engine, "metrics": {**by_engine["metrics"], "target": TARGET_LABEL, "estimator": "logistic",
                                            "threshold_chosen_by": CHOSEN_AT_DAY_ENDS,
                                            "threshold_chosen_over": "the held-out schools' whole year"}}
    text = training_section(at_day_ends, policy)
    assert "What it learns: the label" in text and "(higher PR-AUC)" in text
    assert "running the real policy over day-end scores of the held-out schools' whole year" in text
    assert "refitted on every row" in text

    either = {**by_engine, "metrics": {**by_engine["metrics"], "target": TARGET_LABEL_OR_EPISODES}}
    text = training_section(either, policy)
    assert "What it learns: the label (below), or a day end inside one of the pupil's dip episodes" in text
    assert ("the entry threshold is the lowest whose F1 of alert precision and recall within 20 days is within 0.01 "
            "of the best") in text


def test_early_evidence_counts_days_off_after_onset_and_close_days_off_without_a_dip():
    from models.evaluation.diagnostics import early_evidence

    present = ("/", "\\")

    def days_off(at: set[int], n: int = 50, off=("N", "N"), also: dict[int, tuple[str, str]] | None = None):
        return [(also or {}).get(i, off if i in at else present) for i in range(n)]

    register = register_of({
        "A1": days_off({26, 33}, also={28: ("N", "/")}),  # dip from day 25: third day off on day 33 (a morning counts)
        "B1": days_off({21, 30}),  # dip from day 20: two days off after onset, no third
        "C1": days_off({25, 30, 35}),  # no dip: three days off within 11 school days, after 25 full days
        "D1": days_off({25, 30, 36}),  # no dip: the same spread over 12 days
        "E1": days_off({2, 4, 6}),  # no dip: three close days off, but in the first weeks (no own level yet)
        "F1": days_off({25, 30, 35}, off=("C2", "C2")),  # no dip: a part-time timetable the school arranged
    })
    dates = [dt.date.fromordinal(int(d)) for d in register.days]
    cohort = truth({"A1": [Episode("avoidance", dates[25], None)], "B1": [Episode("young_carer", dates[20], None)]},
                   ["A1", "B1", "C1", "D1", "E1", "F1"])
    early = early_evidence(register, cohort)
    assert (early.dips, early.third_day_off, early.within, early.median_third_day_off) == (2, [8], 1, 8.0)
    assert (early.no_dip_pupils, early.no_dip_with_three_close) == (4, 1)
