"""The outcome loop: an open support plan holds back repeat alerts for the same pattern; recovery
still says `improving`; outcomes arrive over HTTP on the worker and through their topic."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import numpy as np
import pytest

from models.engine import DecisionEngine
from models.explain import build_event
from models.features import FEATURE_NAMES, summarise
from models.policy import DecisionKind, PolicyState, decide
from schemas.events import InterventionKind
from tests.stack import WorkerProcess, create_topics, isolated_env, metric_sum, produce_raw
from tests.test_features_policy import CONFIG, state_from


def test_an_open_plan_counts_as_flagged_so_no_new_concern_is_raised():
    state = PolicyState()
    state.start_plan()
    decision = decide(state, CONFIG, 0.6, day=800_000, possible_sessions=100, recent_rate=0.6, short_rate=0.6)
    assert decision is None and state.flagged and state.plan_open


def test_recovery_under_an_open_plan_still_says_improving():
    state = PolicyState()
    state.start_plan()
    kinds = [decide(state, CONFIG, 0.05, day=800_000 + d, possible_sessions=100, recent_rate=0.95, short_rate=1.0)
             for d in range(3)]
    assert [k.kind for k in kinds if k] == [DecisionKind.IMPROVING]
    state.close_plan()
    assert not state.plan_open


def _concern(stats, weights):
    return build_event(kind=InterventionKind.CONCERN, tier=2, escalation=True, score=0.8, pupil_id="P1",
                       school_id="SCH1", as_of=dt.date(2025, 10, 1), stats=stats, contributions=weights,
                       model_version="t")


def test_same_pattern_is_held_back_while_a_plan_is_open_but_a_new_pattern_is_not():
    stats = summarise(state_from([("/", "\\")] * 30 + [("L", "\\"), ("N", "N"), ("N", "N"), ("/", "N"), ("I", "I")] * 2))
    drop, late = np.zeros(len(FEATURE_NAMES)), np.zeros(len(FEATURE_NAMES))
    drop[FEATURE_NAMES.index("drop_vs_baseline")] = 1.0
    late[FEATURE_NAMES.index("late_rate_20")] = 1.0
    policy = PolicyState()
    assert not DecisionEngine._suppressed_by_plan(policy, _concern(stats, drop))  # first alert: remembered
    policy.start_plan()
    assert DecisionEngine._suppressed_by_plan(policy, _concern(stats, drop))  # same pattern, plan open
    assert not DecisionEngine._suppressed_by_plan(policy, _concern(stats, late))  # a new pattern goes out
    policy.close_plan()
    assert not DecisionEngine._suppressed_by_plan(policy, _concern(stats, late))


@pytest.mark.broker
@pytest.mark.slow
def test_outcomes_and_model_reloads_reach_the_running_worker(broker, model_path, tmp_path, wait_until):
    env = isolated_env(broker.bootstrap, f"out{uuid.uuid4().hex[:6]}")
    settings = create_topics(env)
    worker = WorkerProcess(env, tmp_path).start()
    try:
        worker.wait_ready()
        mark = {"school_id": "SCH1", "pupil_id": "P-OUT-1", "date": "2025-10-01", "session": "AM", "code": "/",
                "recorded_at": "2025-10-01T08:50:00Z"}
        produce_raw(broker.bootstrap, settings.topic_marks, [(b"P-OUT-1", json.dumps(mark).encode())])

        def post(body: dict) -> tuple[int, dict]:
            status, text = worker.post("/outcomes", json.dumps(body).encode())
            return status, json.loads(text)

        wait_until(lambda: worker.state()["pupils"] >= 1, what="the pupil's first mark")
        plan = {"pupil_id": "P-OUT-1", "school_id": "SCH1", "action": "support_plan_started",
                "recorded_at": "2025-10-02T10:00:00Z", "recorded_by_role": "head_of_year"}
        status, body = post(plan)
        assert status == 202 and body["outcome_id"]
        assert post({**plan, "action": "fine_issued"})[0] == 422  # the vocabulary cannot express it
        assert post({**plan, "note": "spoke to jane.smith@example.org"})[0] == 422  # no identifiers in notes
        wait_until(lambda: worker.state()["support_plans_open"] == 1, what="the plan to be applied")
        status, _ = post({**plan, "action": "support_plan_closed", "recorded_at": "2025-11-02T10:00:00Z"})
        assert status == 202
        wait_until(lambda: worker.state()["support_plans_open"] == 0, what="the plan to be closed")
        values = worker.metrics()
        assert metric_sum(values, 'reconnect_outcomes_total{action="support_plan_started",result="applied"}') == 1

        # A new model is taken without a restart (POST /model loads the artifact now).
        version = json.loads(worker.get("/model")[1])["version"]
        status, body = worker.post("/model", b"{}")
        assert status == 200 and json.loads(body)["version"] == version
        values = worker.metrics()
        assert metric_sum(values, 'reconnect_model_reloads_total{result="loaded"}') == 2
        info = [key for key, value in values.items() if key.startswith("reconnect_model_info{") and value == 1]
        assert len(info) == 1 and f'version="{version}"' in info[0]
    finally:
        worker.stop()
