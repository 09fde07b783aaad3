"""Model loading in the running worker: a bad file never replaces a good model."""

from __future__ import annotations

import shutil

from prometheus_client import CollectorRegistry

from streams.metrics import WorkerMetrics
from streams.runtime import Runtime
from streams.settings import Settings


def test_reload_keeps_the_good_model_when_the_new_file_is_corrupt(tmp_path, model_path):
    path = tmp_path / "model.skops"
    shutil.copy(model_path, path)
    runtime = Runtime(Settings(model_path=path), metrics=WorkerMetrics(CollectorRegistry()))
    assert runtime.load()
    good = runtime.model.version
    path.write_bytes(b"not a model at all")
    assert not runtime.load()
    assert runtime.model.version == good and "could not be read" in runtime.model_error
    assert runtime.metrics.model_loaded._value.get() == 1


def test_no_model_at_start_is_reported_not_raised(tmp_path):
    runtime = Runtime(Settings(model_path=tmp_path / "missing.skops"), metrics=WorkerMetrics(CollectorRegistry()))
    assert not runtime.load()
    assert runtime.engine is None and "reconnect train" in runtime.model_error
    assert runtime.metrics.model_loaded._value.get() == 0
