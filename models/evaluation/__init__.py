"""Evaluation: how good the alerts are, measured on cohorts the model never saw.

  truth      ground truth of a simulated cohort and the roster's groups (`Truth`, `Roster`)
  scoring    alerts scored against episodes (`score_alerts`, the definitions of every figure)
  baselines  the two reactive rules schools already have (year to date / last four weeks < 90%)
  ranking    ROC-AUC, PR-AUC and Brier of day-end scores (shared with training)
  policy_sim the real policy over day-end scores (training's threshold choice, the sweep below)
  fairness   flagged shares by SEN and FSM group, and which behaviour drives a gap
  targets    what issue 13 asks for, and how each figure is shown
  diagnostics why targets are missed: an entry-threshold sweep (for understanding, never a choice)
              what the register showed at concerns outside a dip window, and what stood in the way
              of each dip not caught within 20 school days
  run        one cohort replayed through the real engine and scored (`evaluate`)
  cohorts    the held-out and the shifted cohort (`evaluate_cohorts`)
Rendering (the model card, tables, plots) lives in the `reports` package.
"""

from models.evaluation.baselines import LAST4, YTD, baseline_alerts
from models.evaluation.run import (
           MODEL,
           CohortEvaluation,
           EvaluationReport,
           ObservedEngine,
           evaluate,
)
from models.evaluation.scoring import AlertScore, score_alerts
from models.evaluation.truth import Episode, Truth

__all__ = ["LAST4", "YTD", "MODEL", "AlertScore", "CohortEvaluation", "Episode", "EvaluationReport",
           "ObservedEngine", "Truth", "baseline_alerts", "evaluate", "score_alerts"]
