"""What the model must reach (issue 13), and every figure the evaluation reports, with how to show it.

Each target is measured on two unseen simulated cohorts (the held-out cohort of the training
profile and a cohort of a deliberately shifted profile) and must hold on both.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binomtest

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    fmt: str = "{:.3f}"
    op: str | None = None  # ">=" or "<=" when there is a target
    target: float | None = None
    stretch: float | None = None

    def passes(self, value: float | None) -> bool | None:
        if self.target is None or value is None:
            return None
        return value >= self.target if self.op == ">=" else value <= self.target

    def reaches_stretch(self, value: float | None) -> bool | None:
        if self.stretch is None or value is None:
            return None
        return value >= self.stretch if self.op == ">=" else value <= self.stretch

    def show(self, value: float | None) -> str:
        return "n/a" if value is None else self.fmt.format(value)

    @property
    def goal(self) -> str:
        if self.target is None:
            return ""
        text = f"{self.op} {self.target:g}"
        return text + (f" (stretch {self.stretch:g})" if self.stretch is not None else "")


METRICS: tuple[Metric, ...] = (
    Metric("recall_within_20", "Dips caught within 20 school days of onset", op=">=", target=0.85),
    Metric("alert_precision", "Alert precision (concerns inside a real dip)", op=">=", target=0.70),
    Metric("one_off_flagged_share", "One-off block only (illness, holiday, bereavement): given a concern",
           op="<=", target=0.05),
    Metric("no_dip_flagged_share", "No dip at all: given a concern at some point", op="<=", target=0.08),
    Metric("median_lead_days", "Median school days, onset to first concern", "{:.1f}", "<=", 10, 8),
    Metric("alerts_per_100_per_week", "Concerns per 100 pupils per week", op="<=", target=1.0),
    Metric("recall", "Dips caught at any time in the dip"),
    Metric("pupil_precision", "Pupil precision (flagged pupils with a concern in a dip)"),
    Metric("low_steady_flagged_share", "Low-but-steady attenders given a concern"),
    Metric("long_illness_concern_share", "Long illness: given a concern while ill"),
    Metric("roc_auc", "ROC-AUC (day-end rows vs label)"),
    Metric("pr_auc", "PR-AUC (day-end rows vs label)"),
    Metric("brier", "Brier score (day-end rows vs label)", "{:.4f}"),
)
BY_KEY = {metric.key: metric for metric in METRICS}
TARGETS = tuple(metric for metric in METRICS if metric.target is not None)


def share_interval(part: int, whole: int) -> tuple[float, float] | None:
    """95% interval of the share part/whole (Wilson's score interval, which stays inside 0-1 and
    holds up for the few dozen dips of a cohort); None when there is nothing to share."""
    if whole <= 0:
        return None
    interval = binomtest(part, whole).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)
