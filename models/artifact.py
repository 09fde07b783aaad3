"""The saved model: a scikit-learn Pipeline plus everything needed to trust and explain it.

The artifact is a skops file, not a pickle: loading it builds only the types on an explicit
list (scikit-learn estimators, numpy arrays, plain data) and never runs code from the file, so
a planted or tampered file is refused instead of executed. It carries its version, a hash of
its training data, the library versions it was fitted with, its metrics and its alert
thresholds. A model saved with another scikit-learn version is refused rather than silently
mis-scored, with the one command that retrains it.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import sklearn
import skops
import skops.io
from sklearn.pipeline import Pipeline

from models.features import FEATURE_NAMES
from models.policy import PolicyConfig

ARTIFACT_FORMAT = 2  # 2: a skops file with the library versions recorded
RETRAIN_COMMAND = "make model"
# Types beyond skops' defaults (scikit-learn estimators, numpy, builtins) the artifact may hold:
# the fitted internals of the calibrated boosted model. Anything else in a file is refused.
TRUSTED_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)


class ModelCompatibilityError(RuntimeError):
    """The artifact cannot be used by this installation."""


@dataclass
class RiskModel:
    pipeline: Pipeline
    version: str
    policy: PolicyConfig
    feature_names: tuple[str, ...] = FEATURE_NAMES
    trained_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    training_data_sha256: str = ""
    sklearn_version: str = sklearn.__version__
    library_versions: dict[str, str] = field(default_factory=lambda: dict(library_versions()))
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    reference: np.ndarray | None = None  # typical feature values: the baseline for attributions

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Probability that each row's attendance is dipping; rows are feature vectors."""
        return self.pipeline.predict_proba(rows)[:, 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact_format": ARTIFACT_FORMAT, "version": self.version, "pipeline": self.pipeline,
            "policy": self.policy.model_dump(), "feature_names": list(self.feature_names),
            "trained_at": self.trained_at, "training_data_sha256": self.training_data_sha256,
            "sklearn_version": self.sklearn_version, "library_versions": self.library_versions,
            "metrics": self.metrics, "training": self.training, "reference": self.reference,
        }

    def describe(self) -> dict[str, Any]:
        """Everything but the fitted pipeline, for metrics, logs and the model card."""
        info = self.to_dict()
        info.pop("pipeline")
        info["reference"] = None if self.reference is None else [round(float(v), 4) for v in self.reference]
        info["estimator"] = type(self.pipeline[-1]).__name__
        return info


def library_versions() -> dict[str, str]:
    """The versions a fitted model depends on, recorded in the artifact."""
    return {"scikit-learn": sklearn.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "skops": skops.__version__}


def save_model(model: RiskModel, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    skops.io.dump(model.to_dict(), tmp, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    tmp.replace(path)  # atomic: a worker reloading never sees half a file
    return path


def load_model(path: Path) -> RiskModel:
    """Load an artifact, refusing (ModelCompatibilityError) anything not fit to score with."""
    path = Path(path)
    if not path.exists():
        raise ModelCompatibilityError(f"no model at {path}: run `{RETRAIN_COMMAND}` (or `reconnect train`) first")
    try:
        untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
        if untrusted:
            raise ModelCompatibilityError(
                f"{path} holds types outside the trusted list and was not loaded: {', '.join(untrusted[:5])}")
        payload = skops.io.load(path, trusted=list(TRUSTED_TYPES))
    except ModelCompatibilityError:
        raise
    except Exception as exc:  # noqa: BLE001 - a truncated, foreign or tampered file: refuse, say why
        raise ModelCompatibilityError(f"{path} could not be read as a model artifact: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("artifact_format") != ARTIFACT_FORMAT:
        raise ModelCompatibilityError(
            f"{path} is not a Reconnect model artifact (format {ARTIFACT_FORMAT}); run `{RETRAIN_COMMAND}`")
    if payload["sklearn_version"] != sklearn.__version__:
        raise ModelCompatibilityError(
            f"{path} was saved with scikit-learn {payload['sklearn_version']} but this is "
            f"{sklearn.__version__}; run `{RETRAIN_COMMAND}` to retrain it rather than risk wrong scores"
        )
    if tuple(payload["feature_names"]) != FEATURE_NAMES:
        raise ModelCompatibilityError(
            f"{path} expects features {payload['feature_names']}, this code computes {list(FEATURE_NAMES)}; "
            f"run `{RETRAIN_COMMAND}` to retrain it"
        )
    return RiskModel(
        pipeline=payload["pipeline"], version=payload["version"], policy=PolicyConfig(**payload["policy"]),
        feature_names=tuple(payload["feature_names"]), trained_at=payload["trained_at"],
        training_data_sha256=payload["training_data_sha256"], sklearn_version=payload["sklearn_version"],
        library_versions=dict(payload.get("library_versions", {})),
        metrics=payload["metrics"], training=payload["training"], reference=payload["reference"],
    )
