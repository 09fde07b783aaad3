"""The caseload web app as a child process: start on a free port, wait for /healthz, manage, stop.

For the tests, the demo and anyone trying the caseload by hand. Local defaults suit
http://127.0.0.1 (cookies not marked Secure), and the database and session secret live in the
given work directory unless the environment says otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devtools.broker import free_port
from streams.settings import REPO_ROOT as REPO


@dataclass
class CaseloadProcess:
    env: dict[str, str]  # e.g. devtools.harness.isolated_env(...) plus any RECONNECT_CASELOAD_* settings
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def child_env(self) -> dict[str, str]:
        local = {
            "RECONNECT_CASELOAD_BIND": "127.0.0.1",
            "RECONNECT_CASELOAD_PORT": str(self.port),
            "RECONNECT_CASELOAD_DATABASE_URL": f"sqlite:///{self.workdir / 'caseload.db'}",
            "RECONNECT_CASELOAD_SESSION_SECRET_FILE": str(self.workdir / "caseload-session.key"),
            "RECONNECT_CASELOAD_COOKIE_SECURE": "false",
        }
        return {**os.environ, **local, **self.env}

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "caseload", *args]

    def start(self) -> CaseloadProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"caseload-{self.port}.log"
        self.process = subprocess.Popen(
            self._command(), cwd=REPO, env=self.child_env, stdout=open(self.log_path, "wb"),
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        return self

    def run(self, *args: str, input_text: str | None = None) -> str:
        """Run a `caseload` subcommand against the same database; returns its output, fails loudly."""
        done = subprocess.run(self._command(*args), cwd=REPO, env=self.child_env, input=input_text, text=True,
                              capture_output=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"caseload {args[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout

    def add_user(self, username: str, password: str, role: str, schools: list[str]) -> str:
        secret = self.workdir / f".password-{username}"
        descriptor = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(password + "\n")
        try:
            school_args = [arg for school in schools for arg in ("--school", school)]
            return self.run("add-user", username, "--role", role, *school_args, "--password-file", str(secret))
        finally:
            secret.unlink()

    def import_names(self, path: Path) -> str:
        return self.run("import-names", str(path))

    def health(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def wait_ready(self, timeout: float = 90, consuming: bool = True) -> dict:
        """Wait for /healthz to answer 200 (and, by default, the consumer to be running)."""
        deadline = time.monotonic() + timeout
        last: dict = {}
        while time.monotonic() < deadline:
            assert self.process and self.process.poll() is None, f"caseload exited:\n{self.log_tail()}"
            try:
                status, last = self.health()
                if status == 200 and (not consuming or last.get("consumer") == "running"):
                    return last
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"caseload not ready in {timeout}s (last health {last}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return "(no log)"

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
