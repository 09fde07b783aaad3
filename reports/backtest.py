"""The backtest report: `backtest.md` (with PNG figures beside it) and `backtest.html`, one
self-contained page (inline CSS and SVG plots: it opens from a USB stick, with no network).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from models.backtest import HEADLINE, SYSTEMS, BacktestReport
from models.evaluation.run import LABELS, MODEL
from models.evaluation.targets import BY_KEY
from models.labels import DEFINITION
from reports import plots
from reports.tables import comparison_rows, fairness_rows, fmt, gap_sentences, markdown

TITLE = "Reconnect backtest: what the alerts would have been over this register"
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       color: #1b1b1b; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f3f5f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: 0.9rem; } figure { margin: 1rem 0; } svg { max-width: 100%; height: auto; }
"""


def _headline_rows(report: BacktestReport) -> tuple[list[str], list[list[str]]]:
    header = ["Measure", *(LABELS[s] for s in SYSTEMS)]
    rows = []
    for key in HEADLINE:
        metric = BY_KEY[key]
        rows.append([metric.title.replace("real dip", "dip").replace("Dips", "Dips (from the labels)"),
                     *(metric.show(report.metrics[s].get(key)) for s in SYSTEMS)])
    rows.append(["Pupils flagged", *(str(report.metrics[s].get("flagged")) for s in SYSTEMS)])
    rows.append(["Alerts raised", *(str(report.metrics[s].get("alerts")) for s in SYSTEMS)])
    return header, rows


def _school_rows(report: BacktestReport) -> tuple[list[str], list[list[str]]]:
    header = ["School", "Pupils", "Dips"]
    for system in SYSTEMS:
        short = "Model" if system == MODEL else LABELS[system].replace("Baseline: ", "")
        header += [f"{short}: caught <= 20 d", "precision", "/100/wk"]
    rows = []
    for row in report.by_school:
        cells = [row["school_id"], str(row["pupils"]), str(row["dips"])]
        for system in SYSTEMS:
            cells += [fmt(row[f"{system}:recall_within_20"]), fmt(row[f"{system}:alert_precision"]),
                      fmt(row[f"{system}:alerts_per_100_per_week"])]
        rows.append(cells)
    return header, rows


def _week_rows(report: BacktestReport) -> tuple[list[str], list[list[str]]]:
    header = ["Week of", "Pupils", *(f"{LABELS[s]} /100" for s in SYSTEMS)]
    rows = [[w.week.isoformat(), str(w.pupils), *(fmt(w.per_100(s), 2) for s in SYSTEMS)] for w in report.weeks]
    return header, rows


def _summary_lines(report: BacktestReport) -> list[str]:
    model = report.metrics[MODEL]
    lead = report.median_lead_over_ytd
    return [
        f"Source `{report.source}`: {report.marks_read:,} register rows read, {report.marks_applied:,} applied, "
        f"{report.dead_lettered:,} dead-lettered (with a reason); {report.pupils:,} pupils in {report.schools} "
        f"schools over {report.school_days} register days ({report.first_day} to {report.last_day}).",
        f"{report.labelled_days:,} pupil-days labelled from what followed ({report.positive_days:,} dipping); "
        f"{report.episodes:,} dip episodes.",
        f"The model raised {report.events.get('concern', 0):,} concerns for {model.get('flagged')} pupils "
        f"({fmt(model.get('alerts_per_100_per_week'), 2)} per 100 pupils per week), {report.events.get('escalation', 0):,} "
        f"escalations, {report.events.get('improving', 0):,} `improving` and {report.events.get('health_needs', 0):,} "
        "`health_needs` events.",
        f"Of the dips both caught, the model's concern came a median of {fmt(lead, 1)} school days before the "
        f"year-to-date rule ({len(report.lead_over_ytd)} dips); {report.model_only} dips were caught only by the "
        f"model, {report.ytd_only} only by the year-to-date rule.",
        f"Replay and scoring took {report.timing.get('total_seconds')} s "
        f"({report.timing.get('marks_per_second'):,} rows/s).",
    ]


READING = [
    "A trust has no ground truth, only its registers. Each pupil-day is labelled from what actually followed, by "
    "the project's one label definition (below); runs of dipping days are dip episodes. The model's concerns "
    "(the real decision engine, replayed over the file in order) and the two reactive rules are then scored "
    "against those episodes with the same functions as the model card.",
    "A concern counts as right when it falls inside an episode, from five school days before its first dipping "
    "day to ten after its last. The rules flag a pupil once; the model can raise a pupil again after recovery.",
]


def write_markdown(report: BacktestReport, out_dir: Path, figures: dict[str, Path]) -> Path:
    lines = [f"# {TITLE}", "", *[f"- {line}" for line in _summary_lines(report)], "", "## How to read this", "",
             *READING, "", "## The model against the rules schools use", "", markdown(*_headline_rows(report)), "",
             f"![lead time over the year-to-date rule]({figures['lead'].name})", "",
             "## Alerts per 100 pupils, week by week", "", f"![weekly]({figures['weekly'].name})", "",
             markdown(*_week_rows(report)), "", "## By school", "", f"![by school]({figures['schools'].name})", "",
             markdown(*_school_rows(report))]
    if report.fairness is not None:
        lines += ["", "## Fairness (roster groups; never a model input)", "", markdown(*fairness_rows(report.fairness)),
                  "", markdown(*comparison_rows(report.fairness)), "",
                  *[f"- {line}" for line in gap_sentences(report.fairness)]]
    lines += ["", "## Label", "", DEFINITION, ""]
    path = out_dir / "backtest.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(value: str, tag: str) -> str:
        numeric = tag == "td" and value.replace(".", "", 1).replace("-", "", 1).replace(",", "").isdigit()
        return f"<{tag}{' class=num' if numeric else ''}>{html.escape(value)}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(str(c), "td") for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inline(text: str) -> str:
    """Markdown's `code` spans as HTML, the rest escaped."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def write_html(report: BacktestReport, out_dir: Path, svgs: dict[str, str]) -> Path:
    sections = [
        f"<h1>{html.escape(TITLE)}</h1>",
        "<ul>" + "".join(f"<li>{_inline(line)}</li>" for line in _summary_lines(report)) + "</ul>",
        "<h2>How to read this</h2>", *[f"<p class=note>{_inline(p)}</p>" for p in READING],
        "<h2>The model against the rules schools use</h2>", _html_table(*_headline_rows(report)),
        f"<figure>{svgs['lead']}</figure>",
        "<h2>Alerts per 100 pupils, week by week</h2>", f"<figure>{svgs['weekly']}</figure>",
        "<details><summary>Week by week</summary>" + _html_table(*_week_rows(report)) + "</details>",
        "<h2>By school</h2>", f"<figure>{svgs['schools']}</figure>", _html_table(*_school_rows(report)),
    ]
    if report.fairness is not None:
        sections += ["<h2>Fairness (roster groups; never a model input)</h2>",
                     _html_table(*fairness_rows(report.fairness)), _html_table(*comparison_rows(report.fairness)),
                     "<ul>" + "".join(f"<li>{_inline(line)}</li>" for line in gap_sentences(report.fairness)) + "</ul>"]
    sections += ["<h2>Label</h2>", f"<p class=note>{_inline(DEFINITION)}</p>"]
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{html.escape(TITLE)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n")
    path = out_dir / "backtest.html"
    path.write_text(page, encoding="utf-8")
    return path


def _figures(report: BacktestReport, budget: float | None):
    weeks = [w.week for w in report.weeks]
    schools = [row["school_id"] for row in report.by_school]
    return {
        "weekly": lambda: plots.weekly_concerns(weeks, {s: [w.per_100(s) for w in report.weeks] for s in SYSTEMS},
                                                budget),
        "lead": lambda: plots.lead_over_baseline(report.lead_over_ytd),
        "schools": lambda: plots.per_school(schools, {s: [row[f"{s}:alerts_per_100_per_week"] for row in report.by_school]
                                                      for s in SYSTEMS}, "alerts per 100 pupils per week",
                                            "Alert rate by school"),
    }


def write_report(report: BacktestReport, out_dir: Path) -> dict[str, Path]:
    """Write backtest.md (+ PNGs) and backtest.html into `out_dir`; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = report.model.get("training", {}).get("alert_budget_per_100_pupils_per_week")
    makers = _figures(report, budget)
    pngs = {name: plots.save_png(make(), out_dir / f"backtest_{name}.png") for name, make in makers.items()}
    svgs = {name: plots.svg(make()) for name, make in makers.items()}
    return {"markdown": write_markdown(report, out_dir, pngs), "html": write_html(report, out_dir, svgs), **pngs}

