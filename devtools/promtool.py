"""Running Prometheus's `promtool` (tests use it through the `promtool` fixture in tests/conftest.py).

promtool comes from the Debian package `prometheus` (`apt-get install -y prometheus`) or from a
Prometheus release; set PROMTOOL to use a binary that is not on PATH. When it is missing, tests
that need it fail under CI (env CI set) and are skipped elsewhere, so a CI machine without it can
never pass silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from streams.settings import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "ops" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "rules.yml"
CONFIG_FILE = PROMETHEUS_DIR / "prometheus.yml"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"

INSTALL_HINT = "install it with `apt-get install -y prometheus` (Debian), or set PROMTOOL=/path/to/promtool"


def find_promtool() -> str | None:
    """Path of the promtool binary, or None."""
    explicit = os.environ.get("PROMTOOL")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("promtool")


def run_promtool(*args: str, stdin: str | None = None, timeout: float = 300) -> tuple[int, str]:
    """Run promtool with args; return (exit code, stdout and stderr together)."""
    path = find_promtool()
    if path is None:
        raise FileNotFoundError(f"promtool not found: {INSTALL_HINT}")
    proc = subprocess.run(
        [path, *args], input=stdin, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )
    return proc.returncode, proc.stdout + proc.stderr


def promtool_check_rules(path: Path | str = RULES_FILE) -> tuple[int, str]:
    return run_promtool("check", "rules", str(path))


def promtool_check_config(path: Path | str = CONFIG_FILE) -> tuple[int, str]:
    return run_promtool("check", "config", str(path))


def promtool_run_rule_tests(*paths: Path | str) -> tuple[int, str]:
    """`promtool test rules` on unit-test files (default: every ops/prometheus/tests/*.yml)."""
    files = [str(p) for p in paths] or [str(p) for p in sorted(RULE_TESTS_DIR.glob("*.yml"))]
    return run_promtool("test", "rules", *files)


def promtool_check_metrics(text: str) -> tuple[int, str]:
    """Lint a Prometheus text exposition (e.g. a worker's /metrics body) with
    `promtool check metrics`: naming conventions, HELP text, suffixes. rc 0 means clean."""
    return run_promtool("check", "metrics", stdin=text)
