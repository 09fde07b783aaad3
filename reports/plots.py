"""Figures, drawn with matplotlib (Agg: no display needed), saved as PNG files or returned as SVG text
for a self-contained HTML page."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from models.evaluation.run import LABELS, SYSTEMS  # noqa: E402
from models.evaluation.scoring import EARLY_GRACE_DAYS, WITHIN_DAYS  # noqa: E402

plt.rcParams["svg.hashsalt"] = "reconnect"  # stable ids: the same figure gives the same SVG


def save_png(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def svg(fig: Figure) -> str:
    """The figure as inline SVG text (fonts as paths: no external files)."""
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def calibration(curves: dict[str, tuple[Sequence[float], Sequence[float]]]) -> Figure:
    """Observed share of dipping rows against predicted probability, one curve per cohort."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for name, (predicted, observed) in curves.items():
        ax.plot(predicted, observed, marker="o", label=name)
    ax.set_xlabel("predicted probability of a dip (decile bins)")
    ax.set_ylabel("observed share of rows labelled dipping")
    ax.set_title("Calibration (day-end rows)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    return fig


def lead_times(leads: dict[str, Sequence[int]], title: str) -> Figure:
    """Histogram of school days from dip onset to the first alert in the dip, per system."""
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = list(range(-EARLY_GRACE_DAYS, 101, 5))
    for system in SYSTEMS:
        values = [min(v, 100) for v in leads.get(system, [])]
        ax.hist(values, bins=bins, histtype="step", linewidth=2, label=f"{LABELS[system]} (n={len(values)})")
    ax.axvline(WITHIN_DAYS, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("school days from dip onset to first alert in the dip (capped at 100)")
    ax.set_ylabel("dips")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def weekly_concerns(weeks: Sequence, series: dict[str, Sequence[float | None]], budget: float | None) -> Figure:
    """Concerns (and baseline firings) per 100 pupils, week by week."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for name, values in series.items():
        ax.plot(weeks, [v if v is not None else float("nan") for v in values], marker=".", label=LABELS.get(name, name))
    if budget is not None:
        ax.axhline(budget, color="grey", linestyle="--", linewidth=1, label=f"workload budget ({budget:g})")
    ax.set_ylabel("per 100 pupils")
    ax.set_title("Alerts per 100 pupils, week by week")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return fig


def lead_over_baseline(leads: Sequence[int]) -> Figure:
    """How many school days before the year-to-date rule the model raised each dip both caught."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.hist([max(min(v, 100), -50) for v in leads], bins=list(range(-50, 101, 5)), color="tab:blue")
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("school days the model's concern came before the year-to-date rule (capped)")
    ax.set_ylabel("dips caught by both")
    ax.set_title("Lead time over 'year to date < 90%'")
    return fig


def per_school(schools: Sequence[str], values: dict[str, Sequence[float | None]], ylabel: str, title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(schools) + 2), 3.6))
    width = 0.8 / max(len(values), 1)
    for k, (name, series) in enumerate(values.items()):
        xs = [i + k * width for i in range(len(schools))]
        ax.bar(xs, [v or 0.0 for v in series], width=width, label=LABELS.get(name, name))
    ax.set_xticks([i + width * (len(values) - 1) / 2 for i in range(len(schools))])
    ax.set_xticklabels(schools, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig
