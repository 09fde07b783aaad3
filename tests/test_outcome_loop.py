"""The outcome loop on a running worker: outcomes arrive over HTTP and through their topic, and a
new model is taken without a restart. (What an open plan does to the policy is tested with the
policy, in tests/test_features_policy.py.)"""

from __future__ import annotations

import json
import uuid

import pytest

from devtools.harness import (
    WorkerProcess,
    create_topics,
    isolated_env,
    metric_sum,
    produce_raw,
)


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
