"""`reconnect backtest`: its figures against a small history worked out by hand, and the report it writes.

Three pupils over 50 consecutive school days from Monday 8 September 2025:
  P001 (SCH1)  present every day
  P002 (SCH1)  present 25 days, then 15 days of N (unexplained), then present 10 days
  P003 (SCH2)  present 20 days, a week of illness (I), then present 25 days
The model is a constant 0.55 (over the entry threshold 0.5), so its concerns are the policy's
and the register's doing. By hand (day = 0-based school-day index):

Labels (models.labels). P002: the first day with an own level (20 earlier sessions) is day 19,
and from there the next 20 days hold at least three days of the N spell (30 sessions, longer than
a short block) until day 36. Day 37: six absences in 24 sessions (83.3%) against an earlier level
of (50 + 9.3) / (56 + 10) = 0.898, less than 10 points below it: no dip. One episode, days 19-36
(its window for scoring: days 14-47). P003's week of illness is one block: no dip; P001 none.

Model: P002's spell is one young block (held) for ten sessions; the eleventh (day 30, AM) is a
concern, at tier 2 (ten unexplained sessions in a row); a week later, at 21 sessions, an
escalation to tier 3. P003 is held while ill (health) and after (back at the usual level).

Year to date < 90%: P002 on day 27 (50 of 56), P003 on day 22 (40 of 46). Last four weeks < 90%:
the same days (6 absences in the last 40 sessions).
"""

from __future__ import annotations

import csv
import datetime as dt

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from devtools.registers import MONDAY, pupil_marks
from models.artifact import RiskModel, save_model
from models.backtest import backtest
from models.evaluation.baselines import LAST4, YTD
from models.evaluation.run import MODEL
from models.features import FEATURE_NAMES
from models.policy import PolicyConfig

PRESENT, N, ILL = ("/", "\\"), ("N", "N"), ("I", "I")
HISTORY = {
    ("SCH1", "SCH1-P001"): [PRESENT] * 50,
    ("SCH1", "SCH1-P002"): [PRESENT] * 25 + [N] * 15 + [PRESENT] * 10,
    ("SCH2", "SCH2-P003"): [PRESENT] * 20 + [ILL] * 5 + [PRESENT] * 25,
}
ROSTER = [("SCH1", "SCH1-P001", "none", "false"), ("SCH1", "SCH1-P002", "sen_support", "true"),
          ("SCH2", "SCH2-P003", "none", "true")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backtest")
    marks, roster = folder / "marks.csv", folder / "roster.csv"
    with marks.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["school_id", "pupil_id", "date", "session", "code", "recorded_at"])
        rows = [m for (school, pupil), days in HISTORY.items() for m in pupil_marks(pupil, MONDAY, days, school=school)]
        for m in sorted(rows, key=lambda m: (m.date, m.session.value, m.pupil_id)):  # register order
            writer.writerow([m.school_id, m.pupil_id, m.date.isoformat(), m.session.value, m.code,
                             m.recorded_at.isoformat()])
    with roster.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["school_id", "pupil_id", "phase", "year_group", "sen", "fsm"])
        writer.writerows((school, pupil, "secondary", "9", sen, fsm) for school, pupil, sen, fsm in ROSTER)
    n = 100
    pipeline = Pipeline([("classify", DummyClassifier(strategy="prior"))]).fit(
        np.zeros((n, len(FEATURE_NAMES))), (np.arange(n) < 55).astype(int))
    model = RiskModel(pipeline=pipeline, version="constant-0.55", reference=np.zeros(len(FEATURE_NAMES)),
                      policy=PolicyConfig(enter_score=0.5, exit_score=0.25, tier2_score=0.7, tier3_score=0.85))
    return {"marks": marks, "roster": roster, "model": model, "model_path": save_model(model, folder / "m.skops")}


def school_day(i: int) -> dt.date:
    return pupil_marks("X1", MONDAY, [PRESENT] * (i + 1))[-1].date


@pytest.fixture(scope="module")
def report(files):
    return backtest(files["model"], files["marks"], roster_csv=files["roster"])


def test_counts_and_label_episodes(report):
    assert (report.marks_read, report.pupils, report.schools, report.school_days) == (300, 3, 2, 50)
    assert report.episodes == 1
    assert report.positive_days == 36 - 19 + 1


def test_model_and_rules_against_the_labels(report):
    model, ytd, last4 = report.metrics[MODEL], report.metrics[YTD], report.metrics[LAST4]
    assert report.lead_days[MODEL] == [30 - 19] and report.lead_days[YTD] == [27 - 19]
    assert report.lead_days[LAST4] == [27 - 19]
    assert (model["recall_within_20"], model["alert_precision"], model["no_dip_flagged_share"]) == (1.0, 1.0, 0.0)
    assert (ytd["alerts"], ytd["alert_precision"], ytd["no_dip_flagged_share"]) == (2, 0.5, 0.5)
    assert (last4["alerts"], last4["alert_precision"]) == (2, 0.5)
    assert model["alerts_per_100_per_week"] == pytest.approx(100 * 1 / 3 / 10)
    assert report.lead_over_ytd == [27 - 30] and (report.model_only, report.ytd_only) == (0, 0)
    assert report.events == {"concern": 1, "escalation": 1, "improving": 0, "health_needs": 0}


def test_weeks_and_schools(report):
    week = {w.week: w for w in report.weeks}
    concern_week = school_day(30) - dt.timedelta(days=school_day(30).weekday())
    assert week[concern_week].alerts[MODEL] == 1 and week[concern_week].per_100(MODEL) == pytest.approx(100 / 3)
    assert sum(w.alerts[MODEL] for w in report.weeks) == 1 and all(w.pupils == 3 for w in report.weeks)
    first, second = report.by_school
    assert (first["school_id"], first["pupils"], first["dips"]) == ("SCH1", 2, 1)
    assert first[f"{MODEL}:alert_precision"] == 1.0 and first[f"{MODEL}:alerts_per_100_per_week"] == pytest.approx(5.0)
    assert (second["school_id"], second["dips"], second[f"{YTD}:alert_precision"]) == ("SCH2", 0, 0.0)


def test_fairness_needs_the_roster(report, files):
    groups = {(r["attribute"], r["group"]): r for r in report.fairness.rows}
    assert groups[("sen", "sen_support")]["dips"] == 1 and groups[("fsm", "true")]["pupils"] == 2
    assert backtest(files["model"], files["marks"]).fairness is None


@pytest.mark.slow
def test_the_command_writes_a_self_contained_report(files, tmp_path):
    from streams.commands.modelling import backtest as command

    out = tmp_path / "report"
    result = CliRunner().invoke(command, [str(files["marks"]), "--roster", str(files["roster"]), "--out", str(out),
                                          "--model", str(files["model_path"]), "--no-progress"])
    assert result.exit_code == 0, result.output
    page = (out / "backtest.html").read_text()
    assert page.count("<svg") == 3 and "<script" not in page and "<link" not in page and "src=" not in page
    assert "Fairness" in page and "SCH2" in page
    # FSM: P003 (no dip, not flagged) against P001 (no dip, not flagged): no ratio, and it says so.
    assert "fsm = true: no comparison group pupil was flagged without a dip; no ratio." in page
    text = (out / "backtest.md").read_text()
    assert "caught within 20 school days of onset | 1.000 | 1.000 | 1.000 |" in text
    assert (out / "backtest_weekly.png").stat().st_size > 1000
    assert "300 rows" in result.output


@pytest.mark.slow
def test_the_report_opens_in_a_real_browser(files, tmp_path, chromium):
    """Done when (issue 13): the report opens in a browser. Headless Chromium loads the page from
    disk with nothing else to fetch, draws its three plots, and shows the hand-computed figures."""
    from selenium.webdriver.common.by import By

    from streams.commands.modelling import backtest as command

    out = tmp_path / "report"
    result = CliRunner().invoke(command, [str(files["marks"]), "--roster", str(files["roster"]), "--out", str(out),
                                          "--model", str(files["model_path"]), "--no-progress"])
    assert result.exit_code == 0, result.output
    chromium.get((out / "backtest.html").as_uri())
    assert "backtest" in chromium.title.lower()
    plots = chromium.find_elements(By.TAG_NAME, "svg")
    assert len(plots) == 3 and all(p.size["width"] > 200 and p.size["height"] > 100 for p in plots)
    cells = [[c.text for c in row.find_elements(By.TAG_NAME, "td")] for row in chromium.find_elements(By.TAG_NAME, "tr")]
    rows = {row[0]: row[1:4] for row in cells if len(row) >= 4}
    assert rows["Dips (from the labels) caught within 20 school days of onset"] == ["1.000", "1.000", "1.000"], rows
    assert rows["Pupil precision (flagged pupils with a concern in a dip)"] == ["1.000", "0.500", "0.500"]
    assert any(row and row[0] == "SCH2" for row in cells)
    assert chromium.execute_script("return performance.getEntriesByType('resource').length") == 0
