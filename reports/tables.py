"""Tables, as Markdown (for the card and reports) or aligned plain text (for the console)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.evaluation.baselines import LAST4, YTD
from models.evaluation.diagnostics import BEHAVIOURS
from models.evaluation.fairness import MAX_RATIO, Comparison, FairnessAudit
from models.evaluation.run import MODEL, EvaluationReport
from models.evaluation.targets import METRICS, TARGETS

SYSTEM_SHORT = {MODEL: "Model", YTD: "YTD < 90%", LAST4: "Last 4 wks < 90%"}


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plain(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(out)


def _verdict(value: bool | None) -> str:
    return "" if value is None else ("met" if value else "MISSED")


def evaluation_rows(report: EvaluationReport) -> tuple[list[str], list[list[str]]]:
    """Every figure, for every cohort: the model, both baselines, and whether the model meets the target."""
    header = ["Measure", "Target"]
    for cohort in report.cohorts:
        header += [f"{cohort.name}: {SYSTEM_SHORT[MODEL]}", SYSTEM_SHORT[YTD], SYSTEM_SHORT[LAST4], "Target met"]
    rows = []
    for metric in METRICS:
        row = [metric.title, metric.goal]
        for cohort in report.cohorts:
            row += [metric.show(cohort.metrics[system].get(metric.key)) for system in (MODEL, YTD, LAST4)]
            row.append(_verdict(cohort.passes(metric.key)))
        rows.append(row)
    return header, rows


def evaluation_markdown(report: EvaluationReport) -> str:
    return markdown(*evaluation_rows(report))


def evaluation_plain(report: EvaluationReport) -> str:
    return plain(*evaluation_rows(report))


def targets_summary(report: EvaluationReport) -> list[str]:
    """One line per cohort: targets met and missed."""
    lines = []
    for cohort in report.cohorts:
        missed = [t.title for t in TARGETS if cohort.passes(t.key) is False]
        met = len(TARGETS) - len(missed)
        lines.append(f"{cohort.name}: {met} of {len(TARGETS)} targets met"
                     + (f"; missed: {'; '.join(missed)}" if missed else "") + ".")
    return lines


def fairness_rows(audit: FairnessAudit) -> tuple[list[str], list[list[str]]]:
    header = ["Group", "Pupils", "Dips", "Flagged share", "Concerns /100/wk", "Dip recall", "Recall <= 20 d",
              "Flagged without a dip"]
    rows = [[f"{r['attribute']} = {r['group']}", str(r["pupils"]), str(r["dips"]), fmt(r["flagged_share"]),
             fmt(r["alerts_per_100_per_week"]), fmt(r["recall"]), fmt(r["recall_within_20"]),
             fmt(r["flagged_share_without_dip"])] for r in audit.rows]
    return header, rows


def ratio_interval_text(c: Comparison) -> str:
    interval = c.ratio_interval
    return "n/a" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}"


def comparison_rows(audit: FairnessAudit) -> tuple[list[str], list[list[str]]]:
    header = ["Group vs comparison", "Flagged without a dip", "Ratio", "95% interval", f"Within {MAX_RATIO:g}x",
              "Ratio at equal attendance", "... and equal long unexplained runs",
              "Long unexplained run (no dip)", "Mean attendance (no dip)"]
    rows = []
    for c in audit.comparisons:
        rows.append([f"{c.attribute} = {c.group} vs {c.versus}",
                     f"{c.group_flagged} of {c.group_pupils} ({fmt(c.group_share)}) vs {c.versus_flagged} of "
                     f"{c.versus_pupils} ({fmt(c.versus_share)})",
                     fmt(c.ratio, 2), ratio_interval_text(c), {True: "yes", False: "no", None: "n/a"}[c.within],
                     fmt(c.adjusted_ratio, 2), fmt(c.run_adjusted_ratio, 2),
                     f"{fmt(c.group_long_run_share)} vs {fmt(c.versus_long_run_share)}",
                     f"{fmt(c.group_mean_attendance)} vs {fmt(c.versus_mean_attendance)}"])
    return header, rows


def fairness_markdown(audit: FairnessAudit) -> str:
    return markdown(*fairness_rows(audit)) + "\n\n" + markdown(*comparison_rows(audit))


def fairness_plain(audit: FairnessAudit) -> str:
    return plain(*fairness_rows(audit)) + "\n\n" + plain(*comparison_rows(audit))


def gap_sentences(audit: FairnessAudit) -> list[str]:
    """A sentence per comparison: the gap, what explains it, how sure, and what lay behind it."""
    lines = []
    for c in audit.comparisons:
        who = f"{c.attribute} = {c.group}"
        if c.within:
            lines.append(f"{who}: flagged without a dip {fmt(c.group_share)} against {fmt(c.versus_share)} for "
                         f"{c.versus}, {fmt(c.ratio, 2)}x: within {MAX_RATIO:g}x.")
        elif c.ratio is None:
            lines.append(f"{who}: no comparison group pupil was flagged without a dip; no ratio.")
        else:
            because = (f"at equal attendance the ratio is {fmt(c.adjusted_ratio, 2)}x: the gap comes from attendance "
                       f"(mean attendance of these pupils without a dip {fmt(c.group_mean_attendance)} against "
                       f"{fmt(c.versus_mean_attendance)}), which the model sees, not from the group itself"
                       if c.explained_by_attendance else
                       f"at equal attendance it is still {fmt(c.adjusted_ratio, 2)}x: not explained by attendance "
                       f"alone; {_long_runs(c)}")
            lines.append(f"{who}: flagged without a dip {fmt(c.group_share)} against {fmt(c.versus_share)}, "
                         f"{fmt(c.ratio, 2)}x, over {MAX_RATIO:g}x; {because}. {_how_sure(c)}{_behind(c)}")
    return lines


def _long_runs(c: Comparison) -> str:
    """The second standardisation: attendance and long unexplained runs (models.evaluation.fairness)."""
    had = (f"{fmt(c.group_long_run_share)} of these pupils without a dip had an unexplained run of "
           f"{c.long_run_sessions} sessions or more this year, against {fmt(c.versus_long_run_share)}")
    if c.explained_by_long_runs:
        return (f"at equal attendance and equal long unexplained runs the ratio is {fmt(c.run_adjusted_ratio, 2)}x: "
                f"the gap comes from those runs ({had}), which are answered with a concern in every group alike")
    return f"with equal long unexplained runs as well it is {fmt(c.run_adjusted_ratio, 2)}x ({had}). {_split(c)}"


def _split(c: Comparison) -> str:
    """The flagged counts of both groups' pupils without a dip, with a long unexplained run and without."""
    def counts(flagged: int, pupils: int) -> str:
        return f"{flagged} of {pupils}" + (f" ({fmt(flagged / pupils)})" if pupils else "")

    return (f"Of those with such a run, {counts(c.group_run_flagged, c.group_run_pupils)} were flagged, against "
            f"{counts(c.versus_run_flagged, c.versus_run_pupils)} in the comparison group; of those without one, "
            f"{counts(c.group_flagged - c.group_run_flagged, c.group_pupils - c.group_run_pupils)} against "
            f"{counts(c.versus_flagged - c.versus_run_flagged, c.versus_pupils - c.versus_run_pupils)}")


def _behind(c: Comparison) -> str:
    """What the register showed at the first concern of the flagged pupils without a dip, both groups."""
    if not c.group_behaviour:
        return ""
    parts = [f"{name} for {c.group_behaviour.get(name, 0)} of {c.group_flagged} (comparison group "
             f"{c.versus_behaviour.get(name, 0)} of {c.versus_flagged})" for name in BEHAVIOURS
             if c.group_behaviour.get(name) or c.versus_behaviour.get(name)]
    return " At their first concern the register showed " + "; ".join(parts) + "."


def _how_sure(c: Comparison) -> str:
    counts = f"{c.group_flagged} of {c.group_pupils} pupils against {c.versus_flagged} of {c.versus_pupils}"
    if c.ratio_interval is None:
        return f"With {counts}, no interval can be given."
    if c.clearly_over:
        return (f"With {counts}, the 95% interval of the ratio is {ratio_interval_text(c)}x, all of it "
                f"over {MAX_RATIO:g}x: a gap these numbers show clearly.")
    return (f"With {counts}, the 95% interval of the ratio is {ratio_interval_text(c)}x, which reaches "
            f"down to {MAX_RATIO:g}x or below: so few pupils cannot tell this gap from chance.")
