"""Nobody in: the worker's web port attacked as an outsider would, on a running worker."""

from __future__ import annotations

import json
import pickle
import shutil
import socket
import uuid

import pytest

from devtools.harness import WorkerProcess, create_topics, isolated_env
from streams.views import _guard

OPEN = ["/metrics", "/livez", "/readyz"]
PROTECTED = [("GET", "/model"), ("POST", "/model"), ("GET", "/state"), ("POST", "/outcomes")]
FAUST_PAGES = ["/table/pupil-state/P-EXPOSED-1/", "/table/", "/router/", "/graph/", "/stats/", "/performance/"]
OUTCOME = {"pupil_id": "P-EXPOSED-1", "school_id": "SCH1", "action": "support_plan_started",
           "recorded_at": "2025-10-02T10:00:00Z", "recorded_by_role": "head_of_year"}


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the LISTEN sockets on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":
                if width == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    words = [bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8)]
                    found.add(socket.inet_ntop(socket.AF_INET6, b"".join(words)))
    return found


@pytest.fixture(scope="module")
def exposed_worker(broker, model_path, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("exposure")
    model_copy = workdir / "model.skops"
    shutil.copy(model_path, model_copy)
    env = isolated_env(broker.bootstrap, f"exp{uuid.uuid4().hex[:6]}", RECONNECT_MODEL_PATH=str(model_copy),
                       RECONNECT_MODEL_RELOAD_INTERVAL_S="0.5")
    create_topics(env)
    worker = WorkerProcess(env, workdir).start()
    try:
        worker.wait_ready()
        yield worker, model_copy
    finally:
        worker.stop()


@pytest.mark.broker
@pytest.mark.slow
def test_the_worker_listens_on_loopback_only_by_default(exposed_worker):
    worker, _ = exposed_worker
    assert _listening_addresses(worker.web_port) == {"127.0.0.1"}


@pytest.mark.broker
@pytest.mark.slow
def test_each_endpoint_without_a_token_with_a_wrong_one_and_with_the_right_one(exposed_worker):
    worker, _ = exposed_worker
    for path in OPEN:
        assert worker.get(path, token=None)[0] in (200, 503), path  # readyz may say "not ready", never 401
        assert worker.get(path, token=None)[0] != 401
    body = json.dumps(OUTCOME).encode()
    for method, path in PROTECTED:
        payload = body if path == "/outcomes" else (b"{}" if method == "POST" else None)
        none = worker.request(method, path, payload, token=None)
        wrong = worker.request(method, path, payload, token="not-the-token")
        almost = worker.request(method, path, payload, token=worker.api_token[:-1])
        right = worker.request(method, path, payload)
        assert none[0] == wrong[0] == almost[0] == 401, (method, path, none, wrong)
        assert "P-EXPOSED-1" not in none[1] + wrong[1]
        assert right[0] in (200, 202), (method, path, right)


@pytest.mark.broker
@pytest.mark.slow
def test_a_cross_site_post_is_refused_even_with_the_token(exposed_worker):
    worker, _ = exposed_worker
    body = json.dumps(OUTCOME).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None):
        assert worker.post("/outcomes", body, token=None, content_type=content_type)[0] == 401
        status = worker.post("/outcomes", body, content_type=content_type)[0]
        assert status == 415, (content_type, status)


@pytest.mark.broker
@pytest.mark.slow
def test_faust_table_and_router_pages_are_not_served(exposed_worker):
    worker, _ = exposed_worker
    for path in FAUST_PAGES:
        for token in (None, ""):
            status, text = worker.get(path, token=token)
            assert status == 404, (path, status)
            assert "P-EXPOSED-1" not in text


@pytest.mark.broker
@pytest.mark.slow
def test_a_planted_model_file_is_refused_on_the_running_worker(exposed_worker, tmp_path, wait_until):
    worker, model_copy = exposed_worker
    marker = tmp_path / "pwned"
    good = model_copy.read_bytes()

    class Planted:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    try:
        model_copy.write_bytes(pickle.dumps(Planted()))
        status, body = worker.post("/model", b"{}")
        assert status == 409 and json.loads(body)["error"]
        wait_until(lambda: worker.metrics().get("reconnect_model_refused") == 1, what="the refusal metric")
        described = json.loads(worker.get("/model")[1])
        assert described["loaded"] and described["refused_file"]  # the old model keeps scoring
        assert not marker.exists()
        assert worker.get("/readyz")[0] == 200
    finally:
        model_copy.write_bytes(good)
    wait_until(lambda: worker.metrics().get("reconnect_model_refused") == 0, what="the good file to be taken")


class _Request:
    def __init__(self, headers: dict[str, str], content_type: str = "application/json") -> None:
        self.headers, self.content_type = headers, content_type


class _View:
    def json(self, body, status=200, headers=None):
        return status


def test_without_a_configured_token_the_endpoints_are_off_not_open():
    check = _guard(_View(), None, changes_state=True)
    assert check(_Request({})) == 503
    assert check(_Request({"Authorization": "Bearer "})) == 503
    assert check(_Request({"Authorization": "Bearer anything"})) == 503
    with_token = _guard(_View(), "s3cret", changes_state=True)
    assert with_token(_Request({"Authorization": "Bearer s3cret"})) is None
    assert with_token(_Request({"Authorization": "Basic s3cret"})) == 401
    assert with_token(_Request({"Authorization": "Bearer s3cret"}, content_type="text/plain")) == 415
