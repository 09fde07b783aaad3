"""Running the real pieces side by side: worker processes, isolated topics, metrics scrapes.

Used by the tests, the benchmarks and anyone checking a deployment by hand; dev tooling,
not part of the worker itself."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from devtools.broker import free_port
from streams.settings import REPO_ROOT as REPO
from streams.settings import Settings
from streams.topic_admin import ensure_topics


def wait_until(predicate, *, timeout: float = 60.0, interval: float = 0.1, what: str = "the condition"):
    """Poll `predicate` until it returns something truthy, and return that; fail after `timeout`.

    The one way tests and tools wait for another process: never a fixed sleep before an assertion.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def isolated_env(bootstrap: str, tag: str, **extra: str) -> dict[str, str]:
    """Environment for one test's own app id and topics, so tests never see each other's data."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RECONNECT_APP_ID": f"reconnect-{tag}",
        "RECONNECT_TOPIC_MARKS": f"{tag}.marks",
        "RECONNECT_TOPIC_INTERVENTIONS": f"{tag}.interventions",
        "RECONNECT_TOPIC_DEAD_LETTER": f"{tag}.dead-letter",
        "RECONNECT_TOPIC_OUTCOMES": f"{tag}.outcomes",
        "RECONNECT_TOPIC_WEBHOOK_DEAD_LETTER": f"{tag}.webhook-dead-letter",
    }
    env.update(extra)
    return env


def settings_for(env: dict[str, str]) -> Settings:
    """The settings a child process started with `env` would build (the parent's environment untouched)."""
    fields = {}
    for name, value in env.items():
        if name == "KAFKA_BOOTSTRAP_SERVERS":
            fields["kafka_bootstrap_servers"] = value
        elif name.startswith("RECONNECT_"):
            fields[name.removeprefix("RECONNECT_").lower()] = value
    return Settings(**fields)


def create_topics(env: dict[str, str]) -> Settings:
    settings = settings_for(env)
    ensure_topics(settings)
    return settings


def metric_values(text: str) -> dict[str, float]:
    """Samples as 'name{label="v",...}' -> value (labels sorted), from Prometheus text."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def metric_sum(values: dict[str, float], name: str) -> float:
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


def reconnect_command(*args: str) -> list[str]:
    """The `reconnect` command line run with this interpreter (a test's venv, a fresh clone's)."""
    return [sys.executable, "-m", "streams.cli", *args]


def run_command(command: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO, timeout: float = 300,
                input_text: str | None = None) -> subprocess.CompletedProcess:
    """Run a one-shot command (ingest, add-user, ...) to completion, its output captured."""
    return subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, input=input_text, text=True,
                          capture_output=True, timeout=timeout)


class ChildProcess:
    """A long-running process of ours (a worker, the caseload): its own session, its output in a
    log file, stopped with its whole process group. The one way tools, tests and the demo run them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def spawn(self, command: list[str], *, env: dict[str, str], cwd: Path, log_name: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / log_name
        # Unbuffered, so the log is complete up to the moment a test reads it (or kills the process).
        self.process = subprocess.Popen(command, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                                        stdout=open(self.log_path, "wb"),
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_until_answering(self, probe, timeout: float, what: str):
        """Poll `probe` (connection errors count as "not yet") until it returns something truthy."""

        def answered():
            assert self.alive(), f"{what}: the process exited:\n{self.log_tail()}"
            try:
                return probe()
            except OSError:
                return None

        try:
            return wait_until(answered, timeout=timeout, interval=0.3, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return "(no log)"

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()


class WorkerProcess(ChildProcess):
    """A real `reconnect worker` on the embedded-broker profile, with its own web port and a fresh API
    token that `get`/`post` send."""

    def __init__(self, env: dict[str, str], workdir: Path, *, cwd: Path = REPO, data_dir: Path | None = None,
                 web_port: int | None = None, loglevel: str = "warning") -> None:
        super().__init__(workdir)
        self.env, self.cwd, self.data_dir, self.loglevel = env, cwd, data_dir, loglevel
        self.web_port = web_port or free_port()
        self.api_token = secrets.token_urlsafe(24)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> WorkerProcess:
        env = {"RECONNECT_BROKER_PROFILE": "embedded", **self.env,
               "RECONNECT_WEB_PORT": str(self.web_port), "RECONNECT_API_TOKEN": self.api_token,
               "RECONNECT_DATA_DIR": str(self.data_dir or self.workdir / f"faust-{self.web_port}"),
               "RECONNECT_METRICS_INTERVAL_S": "1"}
        self.spawn(reconnect_command("worker", "--loglevel", self.loglevel), env=env, cwd=self.cwd,
                   log_name=f"worker-{self.web_port}.log")
        return self

    def request(self, method: str, path: str, body: bytes | None = None, *, token: str | None = "",
                content_type: str | None = "application/json") -> tuple[int, str]:
        """An HTTP request to the worker; `token` "" means this worker's own, None means none."""
        headers = {}
        token = self.api_token if token == "" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None and content_type is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def get(self, path: str, *, token: str | None = "") -> tuple[int, str]:
        return self.request("GET", path, token=token)

    def post(self, path: str, body: bytes, *, token: str | None = "",
             content_type: str | None = "application/json") -> tuple[int, str]:
        return self.request("POST", path, body, token=token, content_type=content_type)

    def wait_ready(self, timeout: float = 120) -> None:
        self.wait_until_answering(lambda: self.get("/readyz")[0] == 200, timeout, "the worker to be ready")

    def metrics(self) -> dict[str, float]:
        return metric_values(self.get("/metrics")[1])

    def state(self) -> dict:
        return json.loads(self.get("/state")[1])

    def diagnosis(self, log_lines: int = 60) -> str:
        """What a failed wait needs to be understood afterwards: the worker's own account of its
        partitions, marks and state, and the end of its log."""
        try:
            values = self.metrics()
            counts = {name: metric_sum(values, name) for name in (
                "reconnect_partitions_assigned", "reconnect_rebalances_total", "reconnect_marks_consumed_total",
                "reconnect_marks_applied_total", "reconnect_marks_dead_lettered_total")}
            status, ready = self.get("/readyz")
            account = f"metrics {counts}; state {self.state()}; readyz {status} {ready}"
        except OSError as error:
            account = f"not answering: {error!r}"
        return f"worker on port {self.web_port} ({'alive' if self.alive() else 'exited'}): {account}\n" \
               f"{self.log_tail(log_lines)}"

    def wait_consumed(self, count: int, timeout: float = 180) -> dict[str, float]:
        """Wait until the worker has read `count` marks (each batch is counted once it is handled)."""
        return self.wait_until_answering(
            lambda: (lambda values: values if metric_sum(values, "reconnect_marks_consumed_total") >= count else None)(
                self.metrics()), timeout, f"the worker to read {count} marks")


def marks_messages(path: Path) -> list[tuple[bytes, bytes]]:
    """The valid marks of an interchange CSV as marks-topic messages (key = pupil id)."""
    from schemas.interchange import read_marks

    return [(row.mark.pupil_id.encode(), row.mark.to_wire()) for row in read_marks(path) if row.mark]


def consume_all(bootstrap: str, topic: str, *, expected: int | None = None, idle_s: float = 4.0,
                timeout: float = 60.0) -> list:
    """Every record on a topic, from the beginning; stops at `expected` or after `idle_s` of quiet."""
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=500)
    partitions = consumer.partitions_for_topic(topic) or set()
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    consumer.seek_to_beginning()
    records = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            fresh = [record for part in batch.values() for record in part]
            if fresh:
                records.extend(fresh)
                quiet_since = time.monotonic()
            if expected is not None and len(records) >= expected:
                break
            if expected is None and time.monotonic() - quiet_since > idle_s:
                break
    finally:
        consumer.close()
    return records


def produce_raw(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=[bootstrap], max_request_size=8 * 1024 * 1024)
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value).get(timeout=30)
    finally:
        producer.close()
