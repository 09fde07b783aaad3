"""What the running worker holds besides its table: the loaded model and the metrics.

The model can be replaced without a restart: the artifact file is watched, and a new one is
loaded, checked (streams.artifact's trusted types, versions, features) and swapped in between
micro-batches. A file that fails is refused once, reported on /model and in a metric, and not
tried again until it changes; the model already loaded keeps scoring.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from models.artifact import ModelCompatibilityError, RiskModel, load_model
from models.engine import DecisionEngine
from streams.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)

FileStamp = tuple[int, int, int]  # (inode, size, mtime in ns): changes whenever the file is replaced


def file_stamp(path: Path) -> FileStamp | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


@dataclass
class Runtime:
    settings: Settings
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    engine: DecisionEngine | None = None
    loaded_stamp: FileStamp | None = None
    refused_stamp: FileStamp | None = None
    model_error: str | None = None  # why the file on disk was refused (None: it is the loaded model)

    @property
    def model(self) -> RiskModel | None:
        return self.engine.model if self.engine else None

    def load(self, path: Path | None = None) -> bool:
        """Load (or reload) the model; True when a new model is now in use."""
        path = Path(path or self.settings.model_path)
        stamp = file_stamp(path)
        try:
            model = load_model(path)  # says how to get a model when there is none
        except ModelCompatibilityError as exc:
            self._refuse(path, stamp, str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, the worker goes on
            self._refuse(path, stamp, f"{path} could not be read as a model artifact ({type(exc).__name__})")
            return False
        self.engine = DecisionEngine(model, window_days=self.settings.state_window_days)
        self.loaded_stamp, self.refused_stamp, self.model_error = stamp, None, None
        self.metrics.model_info.info({"version": model.version, "sklearn_version": model.sklearn_version,
                                      "estimator": type(model.pipeline[-1]).__name__})
        self.metrics.model_loaded.set(1)
        self.metrics.model_refused.set(0)
        self.metrics.model_loaded_timestamp.set(time.time())
        self.metrics.model_reloads.labels(result="loaded").inc()
        log.info("Model %s loaded from %s", model.version, path)
        return True

    def _refuse(self, path: Path, stamp: FileStamp | None, reason: str) -> None:
        self.refused_stamp, self.model_error = stamp, reason
        self.metrics.model_reloads.labels(result="refused").inc()
        self.metrics.model_refused.set(1)
        if self.engine is None:
            self.metrics.model_loaded.set(0)
        log.error("Model file %s refused: %s", path, reason)

    def settle_long_lived_objects(self) -> int:
        """Collect once, then move every object alive into the collector's permanent generation
        (`gc.freeze`); returns how many are there. Once the model is loaded, what is alive (the
        modules, the model's trees, Faust's and aiokafka's machinery) lives as long as the worker,
        yet each full collection walked all of it: the event loop stood still for 100-145 ms, six
        times in a two-minute burst run, and the marks waiting behind those pauses were the
        latency's tail. Done again after a reload, after unfreezing, so the replaced model can
        still be collected."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        frozen = gc.get_freeze_count()
        self.metrics.gc_frozen_objects.set(frozen)
        return frozen

    def reload_if_changed(self) -> bool:
        """Load the model file if it is neither the loaded one nor one already refused."""
        stamp = file_stamp(Path(self.settings.model_path))
        if stamp is None or stamp in (self.loaded_stamp, self.refused_stamp):
            return False
        return self.load()
