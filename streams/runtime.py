"""What the running worker holds besides its tables: the loaded model and the metrics.

The model can be replaced without a restart: the artifact file is watched, and a new one
is loaded, checked and swapped in between micro-batches. A bad file keeps the old model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from models.artifact import ModelCompatibilityError, RiskModel, load_model
from models.engine import DecisionEngine
from streams.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    engine: DecisionEngine | None = None
    model_mtime: float = 0.0
    model_error: str | None = None

    @property
    def model(self) -> RiskModel | None:
        return self.engine.model if self.engine else None

    def load(self, path: Path | None = None) -> bool:
        """Load (or reload) the model; True when a new model is now in use."""
        path = Path(path or self.settings.model_path)
        try:
            model = load_model(path)  # says how to get a model when there is none
            mtime = path.stat().st_mtime
        except Exception as exc:  # noqa: BLE001 - a half-copied or foreign file must not stop the worker
            if not isinstance(exc, (OSError, ModelCompatibilityError)):
                exc = ModelCompatibilityError(f"{path} could not be read as a model artifact: {exc!r}")
            self.model_error = str(exc)
            self.metrics.model_reloads.labels(result="failed").inc()
            log.error("Model not loaded from %s: %s", path, exc)
            if self.engine is None:
                self.metrics.model_loaded.set(0)
            return False
        self.engine = DecisionEngine(model, window_days=self.settings.state_window_days)
        self.model_mtime, self.model_error = mtime, None
        self.metrics.model_info.info({"version": model.version, "sklearn_version": model.sklearn_version,
                                      "estimator": type(model.pipeline[-1]).__name__})
        self.metrics.model_loaded.set(1)
        self.metrics.model_loaded_timestamp.set(time.time())
        self.metrics.model_reloads.labels(result="loaded").inc()
        log.info("Model %s loaded from %s", model.version, path)
        return True

    def reload_if_changed(self) -> bool:
        try:
            mtime = Path(self.settings.model_path).stat().st_mtime
        except OSError:
            return False
        return mtime != self.model_mtime and self.load()
