"""Ranking and calibration metrics of day-end scores against the dip label: one definition and
one rounding (4 decimals) for training's model choice and for evaluation."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

DIGITS = 4


def ranking_metrics(scores: np.ndarray, y: np.ndarray, *, probabilities: bool = True) -> dict[str, float | None]:
    """ROC-AUC, PR-AUC and (for probabilities) the Brier score over rows with a known label (y >= 0)."""
    scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y)
    known = y >= 0
    scores, y = scores[known], y[known]
    if len(np.unique(y)) < 2:
        return {"roc_auc": None, "pr_auc": None, "brier": None}
    return {
        "roc_auc": round(float(roc_auc_score(y, scores)), DIGITS),
        "pr_auc": round(float(average_precision_score(y, scores)), DIGITS),
        "brier": round(float(brier_score_loss(y, scores)), DIGITS) if probabilities else None,
    }
