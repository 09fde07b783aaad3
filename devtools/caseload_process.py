"""The caseload web app as a child process: start on a free port, wait for /healthz, manage, stop.

For the tests, the demo and anyone trying the caseload by hand. Local defaults suit
http://127.0.0.1 (cookies not marked Secure), and the database and session secret live in the
given work directory unless the environment says otherwise.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from devtools.broker import free_port
from devtools.harness import ChildProcess, reconnect_command, run_command
from streams.settings import REPO_ROOT as REPO


class CaseloadProcess(ChildProcess):
    """`reconnect caseload` on a free port with its database and session secret in `workdir`."""

    def __init__(self, env: dict[str, str], workdir: Path, *, port: int | None = None) -> None:
        super().__init__(workdir)
        self.env = env  # e.g. devtools.harness.isolated_env(...) plus any RECONNECT_CASELOAD_* settings
        self.port = port or free_port()

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
        return {**local, **self.env}

    def start(self) -> CaseloadProcess:
        self.spawn(reconnect_command("caseload"), env=self.child_env, cwd=REPO, log_name=f"caseload-{self.port}.log")
        return self

    def run(self, *args: str, input_text: str | None = None) -> str:
        """Run a `caseload` subcommand against the same database; returns its output, fails loudly."""
        done = run_command(reconnect_command("caseload", *args), env=self.child_env, input_text=input_text,
                           timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"caseload {args[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout

    def add_user(self, username: str, password: str, role: str, schools: list[str]) -> str:
        secret = self.workdir / f".password-{username}"
        self.workdir.mkdir(parents=True, exist_ok=True)
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

        def healthy():
            status, health = self.health()
            return health if status == 200 and (not consuming or health.get("consumer") == "running") else None

        return self.wait_until_answering(healthy, timeout, "the caseload to be ready")
