"""Reproducible installs: every dependency is bounded, the lock pins each one exactly, and the
lock's libraries are the ones the shipped model was fitted with (a model from another
scikit-learn is refused at load, so a lock that drifted from it would ship a worker that cannot
score)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from models.artifact import load_model

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = REPO / "models" / "artifacts" / "risk_model.skops"


def declared() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if match:
            pins[normalise(match[1])] = match[2]
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def name_of(requirement: str) -> str:
    return normalise(re.match(r"^[A-Za-z0-9_.\-]+", requirement)[0])


def test_every_runtime_dependency_has_an_upper_bound():
    unbounded = [r for r in declared() if "<" not in r and "==" not in r]
    assert not unbounded, f"no upper bound: {unbounded}"


def test_the_lock_pins_every_declared_dependency_exactly():
    pins = locked()
    missing = [name_of(r) for r in declared() if name_of(r) not in pins]
    assert not missing, f"declared but not pinned in requirements.lock (run `make lock`): {missing}"


def test_the_lock_holds_the_libraries_the_shipped_model_was_fitted_with():
    pins, model = locked(), load_model(SHIPPED_MODEL)
    assert model.library_versions, "the shipped model records the versions it needs"
    for library, version in model.library_versions.items():
        assert pins.get(normalise(library)) == version, (
            f"the shipped model was fitted with {library} {version}; requirements.lock pins "
            f"{pins.get(normalise(library))}")
