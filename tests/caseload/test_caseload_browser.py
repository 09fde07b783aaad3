"""End to end in a real browser: marks -> worker -> caseload -> staff -> outcome -> worker.

The embedded broker, a real worker (the shipped model), and the caseload as a subprocess, driven
by Debian's Chromium through Selenium: sign in, see the case the worker raised from simulated
marks, open the pupil page (grid and chart checked against the marks), record a support plan,
and see the worker hold back the repeat alert for that pupil while a pupil with the very same
register and no plan gets it. A second account, of another school, gets 404 for the case and
the pupil page.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from devtools.caseload_process import CaseloadProcess
from devtools.harness import WorkerProcess, consume_all, create_topics, isolated_env, metric_sum, produce_raw
from schemas.events import InterventionEvent, InterventionKind
from schemas.marks import RegisterMark

SCHOOL, OTHER_SCHOOL = "SCHE2E", "SCHOTHER"
PLANNED, CONTROL = "SCHE2E-P001", "SCHE2E-P002"  # the same register; only PLANNED gets a support plan
# A Monday fourteen weeks back, so the whole register (66 school days) lies in the past: a recording
# later than now is refused, whatever the time of day the test runs.
START = dt.date.today() - dt.timedelta(weeks=14, days=dt.date.today().weekday())
PRESENT, ABSENT = ("/", "\\"), ("N", "N")
# Six weeks at school, then one day in four: a dip the worker raises, then raises again at a higher tier
# for the same reason (the attendance drop) once the register shows four weeks under half.
REGISTER = [PRESENT] * 30 + [PRESENT, ABSENT, ABSENT, ABSENT] * 9
PASSWORD, OTHER_PASSWORD = "head of year e2e password", "another school e2e password"
NAMES = "pseudonym,name,year_group,tutor_group\nSCHE2E-P001,Testina Placeholder,9,9Q\nSCHE2E-P002,Fictio Example,9,9Q\n"


def _marks(pupil: str, marks_for) -> list[RegisterMark]:
    return marks_for(pupil, START, REGISTER, school=SCHOOL)


def _oracle(model_path, marks: list[RegisterMark]) -> tuple[dt.date, dt.date, str]:
    """What the worker's own engine raises for this register without a plan: the first concern's day, the
    day of the first later concern with the same main reason (the repeat a plan holds back), and that reason."""
    from models.artifact import load_model
    from models.engine import DecisionEngine
    from streams.settings import Settings

    engine = DecisionEngine(load_model(model_path), window_days=Settings().state_window_days)
    events = engine.process(marks, {}).events
    concerns = [event for event in events if event.kind is InterventionKind.CONCERN]
    if not concerns:
        pytest.fail("the shipped model raises no concern for the test register; choose a clearer dip")
    first = concerns[0]
    pattern = first.reasons[0].code
    repeats = [event for event in concerns[1:] if event.reasons[0].code == pattern]
    if not repeats:
        pytest.fail(f"the shipped model raises no repeat concern ({pattern.value}) for the test register; "
                    f"choose a register that does")
    return first.as_of, repeats[0].as_of, pattern.value


def _produce(bootstrap: str, topic: str, marks: list[RegisterMark]) -> None:
    produce_raw(bootstrap, topic, [(mark.pupil_id.encode(), mark.to_wire()) for mark in marks])


def _events(bootstrap: str, topic: str) -> list[InterventionEvent]:
    return [InterventionEvent.model_validate_json(record.value) for record in consume_all(bootstrap, topic, idle_s=2)]


def _expected_rolling(marks: list[RegisterMark]) -> dict[str, str]:
    """Attendance over the last 20 sessions at the end of each day (all sessions here are possible), blank
    until there are 10 sessions to go on."""
    attended: list[bool] = []
    expected = {}
    for mark in sorted(marks, key=lambda m: (m.date, m.session.value)):
        attended.append(mark.code in ("/", "\\"))
        if mark.session.value == "PM":
            window = attended[-20:]
            expected[mark.date.isoformat()] = f"{sum(window) / len(window):.4f}" if len(attended) >= 10 else ""
    return expected


def _sign_in(driver, base: str, username: str, password: str, wait_until) -> None:
    driver.get(base + "/signin")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "signin-button").click()
    wait_until(lambda: driver.current_url.rstrip("/") == base, timeout=20, what="the caseload page after sign-in")


def _case_row(driver, base: str, pupil: str):
    driver.get(base + "/")
    rows = driver.find_elements(By.CSS_SELECTOR, f'tr.case[data-pupil-id="{pupil}"]')
    return rows[0] if rows else None


@pytest.mark.broker
@pytest.mark.slow
def test_staff_see_the_case_record_a_plan_and_the_worker_holds_back_the_repeat(
        broker, model_path, tmp_path, chromium, caseload_http, marks_for, wait_until):
    tag = f"e2e{uuid.uuid4().hex[:6]}"
    env = isolated_env(broker.bootstrap, tag, RECONNECT_BROKER_PROFILE="embedded")
    settings = create_topics(env)
    planned, control = _marks(PLANNED, marks_for), _marks(CONTROL, marks_for)
    first_day, repeat_day, pattern = _oracle(model_path, control)
    phase1 = [m for m in planned + control if m.date <= first_day]
    phase2 = [m for m in planned + control if first_day < m.date <= repeat_day]

    worker = WorkerProcess(env, tmp_path).start()
    caseload = CaseloadProcess({**env, "RECONNECT_CASELOAD_CONSUMER_GROUP": f"{tag}-caseload"},
                               tmp_path / "caseload").start()
    try:
        caseload.add_user("hoy.e2e", PASSWORD, "head_of_year", [SCHOOL])
        caseload.add_user("hoy.other", OTHER_PASSWORD, "head_of_year", [OTHER_SCHOOL])
        names = tmp_path / "names.csv"
        names.write_text(NAMES, encoding="utf-8")
        assert "Imported 2 names" in caseload.import_names(names)
        worker.wait_ready()
        caseload.wait_ready()

        # The worker raises a concern for both pupils from their marks; it lands in the caseload.
        _produce(broker.bootstrap, settings.topic_marks, phase1)
        driver = chromium
        base = caseload.url
        _sign_in(driver, base, "hoy.e2e", PASSWORD, wait_until)
        wait_until(lambda: _case_row(driver, base, PLANNED) and _case_row(driver, base, CONTROL), timeout=120,
                   what="both cases on the caseload page")
        row = _case_row(driver, base, PLANNED)
        assert "Testina Placeholder" in row.text and "Year 9" in row.text and "new" in row.text
        case_id = row.get_attribute("data-case-id")

        # The pupil page: the alert's own words, the grid and the chart, checked against the marks sent.
        row.find_element(By.TAG_NAME, "a").click()
        wait_until(lambda: driver.find_elements(By.ID, "session-grid"), timeout=20, what="the pupil page")
        assert driver.find_element(By.ID, "pupil-heading").text == "Testina Placeholder"
        (event,) = [e for e in _events(broker.bootstrap, settings.topic_interventions) if e.pupil_id == PLANNED]
        page_text = driver.find_element(By.TAG_NAME, "body").text
        assert all(reason.text in page_text for reason in event.reasons)
        assert all(text in page_text for text in event.suggested_actions_text)
        cells = {(c.get_attribute("data-date"), c.get_attribute("data-session")): c
                 for c in driver.find_elements(By.CSS_SELECTOR, "#session-grid td.cell")}
        shown = [m for m in planned if m.date <= first_day]
        for mark in shown:
            cell = cells[(mark.date.isoformat(), mark.session.value)]
            assert cell.get_attribute("data-code") == mark.code
            assert ("attended" if mark.code in ("/", "\\") else "unauthorised") in cell.get_attribute("class").split()
        assert len(cells) == 10 * len({m.date - dt.timedelta(days=m.date.weekday()) for m in shown})
        figures = {tr.get_attribute("data-date"): tr.get_attribute("data-rolling")
                   for tr in driver.find_elements(By.CSS_SELECTOR, "#chart-figures tbody tr")}
        assert figures == _expected_rolling(shown)
        polyline = driver.find_element(By.CSS_SELECTOR, 'svg.chart polyline[data-series="rolling"]')
        assert len(polyline.get_attribute("points").split()) == sum(1 for value in figures.values() if value)
        assert driver.find_elements(By.CSS_SELECTOR, 'svg.chart line[data-series="target"]')

        # Record a support plan through the form.
        form = driver.find_element(By.ID, f"case-{case_id}-record")
        form.find_element(By.CSS_SELECTOR, 'input[value="support_plan_started"]').click()
        Select(form.find_element(By.NAME, "role")).select_by_value("pastoral_lead")
        form.find_element(By.NAME, "note").send_keys("plan agreed, review in 3 weeks")
        form.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
        wait_until(lambda: driver.find_elements(By.ID, "flash"), timeout=20, what="the confirmation")
        assert "support plan was agreed and started" in driver.find_element(By.ID, "flash").text
        assert driver.find_element(By.ID, f"case-{case_id}-status").text == "in support"
        wait_until(lambda: metric_sum(worker.metrics(),
                                      'reconnect_outcomes_total{action="support_plan_started",result="applied"}') == 1,
                   timeout=60, what="the worker to apply the support plan")
        (outcome,) = [json.loads(r.value) for r in consume_all(broker.bootstrap, settings.topic_outcomes, expected=1)]
        assert (outcome["pupil_id"], outcome["recorded_by_role"]) == (PLANNED, "pastoral_lead")

        # More of the same register for both pupils: the control pupil is alerted again, the planned one is not.
        _produce(broker.bootstrap, settings.topic_marks, phase2)
        total = len(phase1) + len(phase2)
        wait_until(lambda: metric_sum(worker.metrics(), "reconnect_marks_applied_total") >= total, timeout=120,
                   what="the worker to apply every mark")
        events = _events(broker.bootstrap, settings.topic_interventions)
        later = {pupil: [e for e in events if e.pupil_id == pupil and e.as_of > first_day
                         and e.kind is InterventionKind.CONCERN and e.reasons[0].code.value == pattern]
                 for pupil in (PLANNED, CONTROL)}
        assert [e.as_of for e in later[CONTROL]] == [repeat_day]
        assert later[PLANNED] == [], "the support plan should hold back the repeat alert"
        wait_until(lambda: (_case_row(driver, base, CONTROL) or None) and "escalated" in _case_row(
            driver, base, CONTROL).text, timeout=60, what="the control pupil's case to be escalated")
        assert "escalated" not in _case_row(driver, base, PLANNED).text

        # Another school's head of year can neither see nor open the case or the pupil page.
        driver.find_element(By.ID, "signout").click()
        _sign_in(driver, base, "hoy.other", OTHER_PASSWORD, wait_until)
        assert _case_row(driver, base, PLANNED) is None
        driver.get(f"{base}/pupils/{PLANNED}")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Not found"
        assert "Testina" not in driver.page_source
        other = caseload_http(base, "hoy.other", OTHER_PASSWORD)
        assert other.get(f"/cases/{case_id}").status_code == 404
        assert other.get(f"/pupils/{PLANNED}").status_code == 404
        own = caseload_http(base, "hoy.e2e", PASSWORD)
        assert own.get(f"/cases/{case_id}").status_code == 303
        assert re.search(r"Testina Placeholder", own.get(f"/pupils/{PLANNED}").text)
    finally:
        caseload.stop()
        worker.stop()
