"""Model loading in the running worker: a file is trusted before anything in it is built, a bad
file never replaces a good model, and a refused file is not tried again until it changes."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import pytest
import skops.io
from prometheus_client import CollectorRegistry

from streams.metrics import WorkerMetrics
from streams.runtime import Runtime
from streams.settings import Settings


class _RunsCodeWhenUnpickled:
    """A planted 'model': unpickling it runs a shell command that creates a file."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _runtime(path) -> Runtime:
    return Runtime(Settings(model_path=path), metrics=WorkerMetrics(CollectorRegistry()))


def _sample(runtime: Runtime, name: str, **labels: str) -> float:
    return runtime.metrics.registry.get_sample_value(name, labels or None) or 0.0


def test_reload_keeps_the_good_model_when_the_new_file_is_corrupt(tmp_path, model_path):
    path = tmp_path / "model.skops"
    shutil.copy(model_path, path)
    runtime = _runtime(path)
    assert runtime.load()
    good = runtime.model.version
    path.write_bytes(b"not a model at all")
    assert not runtime.load()
    assert runtime.model.version == good and "could not be read" in runtime.model_error
    assert _sample(runtime, "reconnect_model_loaded") == 1 and _sample(runtime, "reconnect_model_refused") == 1


def test_no_model_at_start_is_reported_not_raised(tmp_path):
    runtime = _runtime(tmp_path / "missing.skops")
    assert not runtime.load()
    assert runtime.engine is None and "make model" in runtime.model_error
    assert _sample(runtime, "reconnect_model_loaded") == 0


@pytest.mark.parametrize("planted", ["pickle", "skops_with_an_untrusted_type"])
def test_a_planted_model_file_is_refused_without_running_anything(tmp_path, model_path, planted):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.skops"
    if planted == "pickle":
        path.write_bytes(pickle.dumps(_RunsCodeWhenUnpickled(marker)))
    else:
        skops.io.dump({"artifact_format": 2, "pipeline": _RunsCodeWhenUnpickled(marker)}, path)
    runtime = _runtime(path)
    assert not runtime.load()
    assert not marker.exists()
    assert runtime.engine is None and runtime.model_error
    if planted != "pickle":
        assert "trusted" in runtime.model_error


def test_a_refused_file_is_not_tried_again_until_it_changes(tmp_path, model_path):
    path = tmp_path / "model.skops"
    path.write_bytes(b"garbage")
    runtime = _runtime(path)
    assert not runtime.load()
    for _ in range(5):
        assert not runtime.reload_if_changed()  # the timer's check: the same refused file is left alone
    assert _sample(runtime, "reconnect_model_reloads_total", result="refused") == 1
    shutil.copy(model_path, path)  # replaced with a good model: taken at the next check
    assert runtime.reload_if_changed()
    assert _sample(runtime, "reconnect_model_refused") == 0
    assert not runtime.reload_if_changed()  # and not loaded twice
    assert _sample(runtime, "reconnect_model_reloads_total", result="loaded") == 1


def test_a_model_from_another_scikit_learn_names_the_command_that_retrains_it(tmp_path, model_path, monkeypatch):
    import sklearn

    from models import artifact

    monkeypatch.setattr(sklearn, "__version__", "0.0.1")
    with pytest.raises(artifact.ModelCompatibilityError, match="make model"):
        artifact.load_model(model_path)


@pytest.mark.slow
def test_scoring_really_runs_on_one_thread():
    """threadpoolctl only limits libraries already loaded: the worker's pin must leave every
    OpenMP pool scikit-learn scores with at one thread, checked in a fresh interpreter."""
    probe = textwrap.dedent("""
        import json
        from streams.launch import pin_scoring_threads
        from threadpoolctl import threadpool_info
        pin_scoring_threads(1)
        import sklearn.ensemble  # noqa: F401
        print(json.dumps([(p["user_api"], p["num_threads"]) for p in threadpool_info()]))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # what a two-core machine would otherwise use
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
                            check=True)
    pools = [tuple(pool) for pool in __import__("json").loads(result.stdout.splitlines()[-1])]
    openmp = [threads for api, threads in pools if api == "openmp"]
    assert openmp and set(openmp) == {1}, pools
    unpinned = subprocess.run([sys.executable, "-c", probe.replace("pin_scoring_threads(1)", "")],
                              capture_output=True, text=True, env=env, timeout=120, check=True)
    assert "2]" in unpinned.stdout  # the probe can see a pool that is not pinned


def test_long_lived_objects_are_settled_out_of_the_collectors_way_and_a_replaced_model_can_still_go(tmp_path,
                                                                                                   model_path):
    import gc
    import weakref

    runtime = _runtime(model_path)
    assert runtime.load()
    runtime.engine.itself = runtime.engine  # a cycle: only the collector can free the engine once replaced
    old_engine = weakref.ref(runtime.engine)
    try:
        frozen = runtime.settle_long_lived_objects()
        assert frozen == gc.get_freeze_count() > 10_000
        assert _sample(runtime, "reconnect_worker_gc_frozen_objects") == frozen
        copy = tmp_path / "model.skops"
        shutil.copy(model_path, copy)
        runtime.settings = Settings(model_path=copy)
        assert runtime.reload_if_changed() and runtime.engine is not old_engine()
        gc.collect()
        assert old_engine() is not None  # frozen: no collection reaches it while it stays so
        runtime.settle_long_lived_objects()
        assert old_engine() is None  # unfrozen, collected, then what is alive frozen again
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
