"""The layers of ARCHITECTURE.md, checked on every import in the tree (lazy ones included).

An arrow that is not in ALLOWED fails this test; so does a third-party import a layer must not
make (Faust or Kafka in the pure logic, matplotlib outside rendering, ...).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from streams.settings import REPO_ROOT

OURS = {"schemas", "models", "reports", "streams", "caseload", "devtools", "ops", "tests"}

# package -> the packages of ours it may import (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "models": {"schemas"},
    "reports": {"models", "schemas"},
    "streams": {"models", "schemas", "reports", "ops"},
    "caseload": {"schemas"},
    "ops": set(),
    "devtools": {"schemas", "models", "reports", "streams", "caseload", "ops"},
}
# The one place production reaches the caseload: the `reconnect caseload` command group.
EXCEPTIONS = {("streams/cli.py", "caseload")}

# package -> third-party modules it must not import.
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "schemas": {"faust", "mode", "kafka", "aiokafka", "click", "matplotlib", "sklearn", "numpy", "sqlalchemy",
                "starlette", "prometheus_client"},
    "models": {"faust", "mode", "kafka", "aiokafka", "click", "matplotlib", "sqlalchemy", "starlette",
               "uvicorn", "prometheus_client"},
    "reports": {"faust", "mode", "kafka", "aiokafka", "click", "sqlalchemy", "starlette"},
    "caseload": {"faust", "mode", "matplotlib", "sklearn"},
}


def imports_of(source: str, module: str) -> list[tuple[str, int]]:
    """Every module a source imports (absolute names, relative ones resolved), with its line."""
    found = []
    package_parts = module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
    return found


def violations(relative_path: str, source: str) -> list[str]:
    package = relative_path.split("/")[0]
    module = relative_path.removesuffix(".py").replace("/", ".")
    problems = []
    for name, line in imports_of(source, module):
        top = name.split(".")[0]
        if top in OURS and top != package:
            if top not in ALLOWED.get(package, OURS) and (relative_path, top) not in EXCEPTIONS:
                problems.append(f"{relative_path}:{line} imports {name} ({package} may not import {top})")
        elif top in FORBIDDEN_THIRD_PARTY.get(package, set()):
            problems.append(f"{relative_path}:{line} imports {name} ({package} must not use {top})")
    return problems


def production_files() -> list[Path]:
    return sorted(path for package in ALLOWED for path in (REPO_ROOT / package).rglob("*.py")
                  if ".venv" not in path.parts)


def test_every_import_follows_the_layers():
    problems = []
    for path in production_files():
        relative = path.relative_to(REPO_ROOT).as_posix()
        problems += violations(relative, path.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path, source", [
    ("models/engine.py", "import faust\n"),
    ("models/features.py", "def f():\n    from streams.settings import Settings\n"),
    ("models/card.py", "import matplotlib.pyplot as plt\n"),
    ("schemas/marks.py", "from models.state import PupilState\n"),
    ("streams/agents.py", "from devtools.harness import wait_until\n"),
    ("caseload/app.py", "from streams.settings import Settings\n"),
    ("models/simulator/generate.py", "from .. import artifact\nfrom ...streams import app\n"),
])
def test_a_forbidden_import_is_caught(path, source):
    assert violations(path, source)


def test_allowed_imports_pass():
    assert not violations("models/engine.py", "import numpy as np\nfrom schemas.events import Tier\nfrom . import state\n")
    assert not violations("streams/cli.py", "from caseload.cli import caseload\n")
    assert not violations("devtools/demo.py", "from streams.app import create_app\nimport caseload\n")
