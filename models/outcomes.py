"""`reconnect outcomes`: attendance in the four weeks after each kind of pastoral action, against
the four weeks before.

For each outcome event the pupil's own school days are found in the register marks (a school
day is a date with at least one *possible* session for that pupil). The "before" window is the
last `days` (20: four weeks) school days strictly before the action's date; the "after" window
is the first `days` school days strictly after it; the action's own day is in neither (it is
unknown whether the action came before or after that day's registers). Attendance is pooled
over sessions: attended possible sessions / possible sessions (DfE definitions, from
`schemas.codes`). An outcome counts only when both windows are complete, so recent actions show
as *pending* until four weeks of marks have arrived, and actions early in a pupil's record as
*short history*.

This is a description, not a causal estimate: pupils are flagged because their attendance dipped,
so some recovery is expected whatever is done (regression to the mean), and the actions are not
assigned at random. Compare action types with care, and read the counts beside the rates.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from schemas.codes import CODES
from schemas.marks import RegisterMark
from schemas.outcomes import OUTCOME_ACTION_TEXT, OutcomeAction, OutcomeEvent
from schemas.recording import recording_stamp, supersedes

DEFAULT_WINDOW_DAYS = 20  # four school weeks
SCHOOL_TZ = ZoneInfo("Europe/London")
CAVEAT = ("Descriptive, not causal: flagged pupils tend to recover somewhat whatever is done (regression to "
          "the mean), and actions are not assigned at random.")


@dataclass(frozen=True)
class WindowCounts:
    school_days: int
    possible: int
    attended: int

    @property
    def rate(self) -> float | None:
        return self.attended / self.possible if self.possible else None


@dataclass(frozen=True)
class OutcomeWindows:
    """One outcome, with the pupil's attendance before and after it."""

    outcome_id: str
    action: OutcomeAction
    pupil_id: str
    action_date: dt.date
    before: WindowCounts
    after: WindowCounts
    days: int

    @property
    def status(self) -> str:
        if self.after.school_days < self.days:
            return "pending"
        if self.before.school_days < self.days:
            return "short_history"
        return "included"


@dataclass
class ActionSummary:
    action: OutcomeAction
    outcomes: int = 0  # distinct outcome events of this action
    included: int = 0  # with both windows complete
    pending: int = 0  # after-window not yet complete
    short_history: int = 0  # before-window not complete (but after-window is)
    pupil_ids: set[str] = field(default_factory=set, repr=False)
    possible_before: int = 0
    attended_before: int = 0
    possible_after: int = 0
    attended_after: int = 0
    improved: int = 0  # included outcomes whose pupil's rate went up
    worsened: int = 0
    unchanged: int = 0

    @property
    def pupils(self) -> int:
        return len(self.pupil_ids)

    @property
    def rate_before(self) -> float | None:
        return self.attended_before / self.possible_before if self.possible_before else None

    @property
    def rate_after(self) -> float | None:
        return self.attended_after / self.possible_after if self.possible_after else None

    @property
    def change_points(self) -> float | None:
        """Percentage points, after minus before (pooled rates)."""
        if self.rate_before is None or self.rate_after is None:
            return None
        return 100 * (self.rate_after - self.rate_before)

    def as_dict(self) -> dict:
        def rounded(value: float | None, places: int) -> float | None:
            return None if value is None else round(value, places)

        return {
            "action": self.action.value, "outcomes": self.outcomes, "included": self.included,
            "pending": self.pending, "short_history": self.short_history, "pupils": self.pupils,
            "possible_before": self.possible_before, "attended_before": self.attended_before,
            "possible_after": self.possible_after, "attended_after": self.attended_after,
            "rate_before": rounded(self.rate_before, 4), "rate_after": rounded(self.rate_after, 4),
            "change_points": rounded(self.change_points, 2),
            "improved": self.improved, "worsened": self.worsened, "unchanged": self.unchanged,
        }


@dataclass
class OutcomesReport:
    days: int
    actions: list[ActionSummary]
    duplicates: int = 0  # outcome events seen more than once (same outcome_id), counted once
    no_marks: int = 0  # outcomes for pupils with no marks at all
    windows: list[OutcomeWindows] = field(default_factory=list, repr=False)

    def by_action(self) -> dict[OutcomeAction, ActionSummary]:
        return {summary.action: summary for summary in self.actions}

    def as_dict(self) -> dict:
        return {"window_school_days": self.days, "duplicates": self.duplicates, "no_marks": self.no_marks,
                "caveat": CAVEAT, "actions": [summary.as_dict() for summary in self.actions]}


class _PupilDays:
    """One pupil's school days in order, with possible and attended sessions per day."""

    def __init__(self, sessions: dict[tuple[dt.date, str], RegisterMark]) -> None:
        per_day: dict[dt.date, list[int]] = {}
        for (day, _session), mark in sessions.items():
            code = CODES[mark.code]
            if not code.possible_session:
                continue
            counts = per_day.setdefault(day, [0, 0])
            counts[0] += 1
            counts[1] += int(code.attending)
        self.dates = sorted(per_day)
        self.counts = [per_day[day] for day in self.dates]

    def window(self, first: int, last: int) -> WindowCounts:
        first, last = max(first, 0), min(last, len(self.dates))
        chosen = self.counts[first:last]
        return WindowCounts(school_days=len(chosen), possible=sum(c[0] for c in chosen),
                            attended=sum(c[1] for c in chosen))

    def around(self, day: dt.date, days: int) -> tuple[WindowCounts, WindowCounts]:
        before_end = bisect.bisect_left(self.dates, day)  # days strictly before
        after_start = bisect.bisect_right(self.dates, day)  # days strictly after
        return self.window(before_end - days, before_end), self.window(after_start, after_start + days)


def action_date(outcome: OutcomeEvent, tz: dt.tzinfo = SCHOOL_TZ) -> dt.date:
    """The school-local date of an outcome (recorded_at is UTC)."""
    return outcome.recorded_at.astimezone(tz).date()


def outcome_windows(outcomes: Iterable[OutcomeEvent], marks: Iterable[RegisterMark], *,
                    days: int = DEFAULT_WINDOW_DAYS, tz: dt.tzinfo = SCHOOL_TZ) -> tuple[list[OutcomeWindows], int]:
    """Each distinct outcome (by outcome_id) with its before/after windows; also the duplicate count.

    Marks are reduced as the stream does: for a (pupil, date, session), the latest recording wins
    (schemas.recording).
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    unique: dict[str, OutcomeEvent] = {}
    duplicates = 0
    for outcome in outcomes:
        if outcome.outcome_id in unique:
            duplicates += 1
        else:
            unique[outcome.outcome_id] = outcome
    wanted = {outcome.pupil_id for outcome in unique.values()}
    latest: dict[str, dict[tuple[dt.date, str], RegisterMark]] = {}
    for mark in marks:
        if mark.pupil_id not in wanted:
            continue
        sessions = latest.setdefault(mark.pupil_id, {})
        key = (mark.date, mark.session.value)
        held = sessions.get(key)
        if held is None or supersedes(recording_stamp(mark.recorded_at), CODES[mark.code].index,
                                      recording_stamp(held.recorded_at), CODES[held.code].index):
            sessions[key] = mark
    pupils = {pupil: _PupilDays(sessions) for pupil, sessions in latest.items()}
    empty = _PupilDays({})
    result = []
    for outcome in unique.values():
        day = action_date(outcome, tz)
        before, after = pupils.get(outcome.pupil_id, empty).around(day, days)
        result.append(OutcomeWindows(outcome_id=outcome.outcome_id, action=outcome.action, pupil_id=outcome.pupil_id,
                                     action_date=day, before=before, after=after, days=days))
    return result, duplicates


def outcomes_report(outcomes: Iterable[OutcomeEvent], marks: Iterable[RegisterMark], *,
                    days: int = DEFAULT_WINDOW_DAYS, tz: dt.tzinfo = SCHOOL_TZ) -> OutcomesReport:
    """Per action type: pooled attendance over `days` school days after the action against before."""
    windows, duplicates = outcome_windows(outcomes, marks, days=days, tz=tz)
    summaries = {action: ActionSummary(action) for action in OutcomeAction}
    no_marks = 0
    for window in windows:
        summary = summaries[window.action]
        summary.outcomes += 1
        if window.before.school_days == 0 and window.after.school_days == 0:
            no_marks += 1
        status = window.status
        if status == "pending":
            summary.pending += 1
            continue
        if status == "short_history":
            summary.short_history += 1
            continue
        summary.included += 1
        summary.pupil_ids.add(window.pupil_id)
        summary.possible_before += window.before.possible
        summary.attended_before += window.before.attended
        summary.possible_after += window.after.possible
        summary.attended_after += window.after.attended
        before, after = window.before.rate, window.after.rate
        if before is None or after is None or abs(after - before) < 1e-9:
            summary.unchanged += 1
        elif after > before:
            summary.improved += 1
        else:
            summary.worsened += 1
    return OutcomesReport(days=days, actions=list(summaries.values()), duplicates=duplicates, no_marks=no_marks,
                          windows=windows)


def load_outcomes(path: Path) -> list[OutcomeEvent]:
    """Outcome events from a JSON-lines file (one event a line; blank lines skipped)."""
    outcomes = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                outcomes.append(OutcomeEvent.model_validate(json.loads(line)))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not an outcome event: {exc}") from None
    return outcomes


def report_from_files(outcomes_path: Path, marks_csv: Path, *, days: int = DEFAULT_WINDOW_DAYS) -> OutcomesReport:
    from schemas.interchange import read_marks

    outcomes = load_outcomes(outcomes_path)
    marks = (row.mark for row in read_marks(marks_csv) if row.mark is not None)
    return outcomes_report(outcomes, marks, days=days)


def format_report(report: OutcomesReport) -> str:
    def pct(value: float | None) -> str:
        return "   -  " if value is None else f"{100 * value:5.1f}%"

    lines = [f"Attendance in the {report.days} school days after each action, against the {report.days} before",
             f"{'action':<22}{'outcomes':>9}{'included':>9}{'pupils':>7}{'before':>9}{'after':>9}{'change':>9}"
             f"{'better':>7}{'worse':>6}{'pending':>8}"]
    for s in report.actions:
        change = "     -  " if s.change_points is None else f"{s.change_points:+6.1f}pt"
        lines.append(f"{s.action.value:<22}{s.outcomes:>9}{s.included:>9}{s.pupils:>7}{pct(s.rate_before):>9}"
                     f"{pct(s.rate_after):>9}{change:>9}{s.improved:>7}{s.worsened:>6}{s.pending:>8}")
    extras = []
    if report.duplicates:
        extras.append(f"{report.duplicates} duplicate outcome events counted once")
    if report.no_marks:
        extras.append(f"{report.no_marks} outcomes for pupils with no marks")
    short = sum(s.short_history for s in report.actions)
    if short:
        extras.append(f"{short} outcomes with under {report.days} school days of history before them")
    if extras:
        lines.append("; ".join(extras) + ".")
    lines.append(CAVEAT)
    lines.append("Actions: " + "; ".join(f"{a.value} = {OUTCOME_ACTION_TEXT[a]}" for a in OutcomeAction))
    return "\n".join(lines)
