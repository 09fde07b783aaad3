"""The broker misbehaving: not there at start, or frozen mid-stream for longer than a session."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from devtools.broker import EmbeddedBroker, free_port
from devtools.harness import (
    WorkerProcess,
    create_topics,
    isolated_env,
    marks_messages,
    metric_sum,
    produce_raw,
    reconnect_command,
    run_command,
)
from schemas.interchange import read_marks

pytestmark = [pytest.mark.broker, pytest.mark.slow]
SESSION_TIMEOUT_S = 6


def test_unreachable_broker_gives_a_clear_message_and_retries_not_a_traceback(tmp_path):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
           "RECONNECT_BROKER_CONNECT_RETRY_S": "4", "RECONNECT_WEB_PORT": str(free_port()),
           "RECONNECT_DATA_DIR": str(tmp_path / "faust")}
    run = run_command(reconnect_command("worker"), env=env, timeout=120)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Traceback" not in output
    assert output.count("not reachable yet") >= 2, output
    assert "was not reachable after" in output and "KAFKA_BOOTSTRAP_SERVERS" in output


def test_worker_started_before_the_broker_waits_for_it(tmp_path, model_path, wait_until):
    port = free_port()
    env = isolated_env(f"127.0.0.1:{port}", f"late{uuid.uuid4().hex[:6]}", RECONNECT_BROKER_CONNECT_RETRY_S="120")
    worker = WorkerProcess(env, tmp_path).start()
    try:
        wait_until(lambda: worker.log_tail(200).count("not reachable yet") >= 2, timeout=60,
                   what="the worker to report retrying")
        assert worker.process.poll() is None, worker.log_tail()
        with EmbeddedBroker(port=port):
            create_topics(env)
            worker.wait_ready(timeout=120)
            worker.stop()  # before the broker goes
    finally:
        worker.stop()


def test_a_worker_starts_from_any_directory_with_a_data_directory_not_yet_made(broker, model_path, tmp_path):
    env = isolated_env(broker.bootstrap, f"fresh{uuid.uuid4().hex[:6]}")
    create_topics(env)
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    worker = WorkerProcess(env, tmp_path, cwd=elsewhere, data_dir=tmp_path / "var" / "not" / "yet" / "faust")
    try:
        worker.start().wait_ready(timeout=120)
        assert (tmp_path / "var" / "not" / "yet" / "faust").is_dir()
    finally:
        worker.stop()


def test_broker_frozen_longer_than_the_session_timeout_then_resumed_loses_nothing(tmp_path, model_path, crafted_csv,
                                                                                   wait_until):
    marks_csv = crafted_csv()
    messages = marks_messages(marks_csv)
    expected = {row.mark.key for row in read_marks(marks_csv) if row.mark}
    # A broker of its own: freezing the shared one would stall every other test's clients.
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        env = isolated_env(broker.bootstrap, f"pause{uuid.uuid4().hex[:6]}")
        settings = create_topics(env)
        worker = WorkerProcess(env, tmp_path).start()
        try:
            worker.wait_ready()
            half = len(messages) // 2
            produce_raw(broker.bootstrap, settings.topic_marks, messages[:half])
            wait_until(lambda: metric_sum(worker.metrics(), "reconnect_marks_applied_total") >= half // 2,
                       timeout=120, what="a quarter of the marks to be applied")
            broker.pause()  # SIGSTOP: in memory, so a pause (not a restart) is the honest fault
            time.sleep(SESSION_TIMEOUT_S * 2)
            broker.resume()
            produce_raw(broker.bootstrap, settings.topic_marks, messages[half:])
            wait_until(lambda: worker.state()["sessions_held"] >= len(expected), timeout=240,
                       what="every session after the freeze")
            assert worker.state()["sessions_held"] == len(expected), worker.log_tail()
            assert worker.process.poll() is None
            assert worker.get("/readyz")[0] == 200
        finally:
            worker.stop()
