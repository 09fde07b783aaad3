"""A pupil's register for one academic year, and the pictures of it staff look at. Pure code.

The record is compact: for each session of the year (1 August to 31 July), one byte of code
(the code table's stable index, 0 for "no mark") and four bytes of recording stamp. Marks
apply with the one rule every reader of marks shares (`schemas.recording.supersedes`): the
latest recording of a session wins, whatever order recordings arrive in, so the grid agrees
with the worker's state session for session (a test holds the two equal).

From the record come the session grid (a row per week, AM and PM cells) and the series the
chart draws: rolling attendance over the last 20 possible sessions and the year to date.
"""

from __future__ import annotations

import datetime as dt
from array import array
from dataclasses import dataclass
from enum import StrEnum

from schemas.codes import BY_INDEX, CODES, AttendanceCode, Category
from schemas.marks import RegisterMark, Session
from schemas.recording import recording_stamp, supersedes

YEAR_DAYS = 366  # slots for the longest academic year
YEAR_SLOTS = 2 * YEAR_DAYS
ROLLING_SESSIONS = 20  # as the worker's "last 20 sessions"
CHART_MIN_SESSIONS = 10  # fewer possible sessions than this say too little to plot a rate
TARGET_RATE = 0.9  # below 90% attendance a pupil is persistently absent
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri")


def academic_year(day: dt.date) -> int:
    """The academic year (1 August to 31 July) a day belongs to, named by its first calendar year."""
    return day.year if day.month >= 8 else day.year - 1


def year_start(year: int) -> dt.date:
    return dt.date(year, 8, 1)


def slot_of(day: dt.date, session: Session) -> int:
    return 2 * (day - year_start(academic_year(day))).days + (session is Session.PM)


class ApplyResult(StrEnum):
    NEW = "new"
    AMENDED = "amended"
    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"


class PupilYearRecord:
    """One pupil's sessions in one academic year, mutable, with its stored (bytes) form."""

    __slots__ = ("year", "codes", "stamps")

    def __init__(self, year: int, codes: bytes | None = None, stamps: bytes | None = None) -> None:
        self.year = year
        self.codes = bytearray(codes if codes is not None else bytes(YEAR_SLOTS))
        self.stamps = array("I")
        self.stamps.frombytes(stamps if stamps is not None else bytes(4 * YEAR_SLOTS))
        if len(self.codes) != YEAR_SLOTS or len(self.stamps) != YEAR_SLOTS:
            raise ValueError("pupil year record has the wrong size")

    def stamps_bytes(self) -> bytes:
        return self.stamps.tobytes()

    def apply(self, mark: RegisterMark) -> ApplyResult:
        """Apply one mark of this year: the latest recording of the session wins."""
        if academic_year(mark.date) != self.year:
            raise ValueError(f"a mark of {mark.date} does not belong to academic year {self.year}")
        slot = slot_of(mark.date, mark.session)
        code, stamp = CODES[mark.code].index, recording_stamp(mark.recorded_at)
        held, held_stamp = self.codes[slot], self.stamps[slot]
        if held == 0:
            self.codes[slot], self.stamps[slot] = code, stamp
            return ApplyResult.NEW
        if not supersedes(stamp, code, held_stamp, held):
            return ApplyResult.DUPLICATE if code == held else ApplyResult.SUPERSEDED
        self.codes[slot], self.stamps[slot] = code, stamp
        return ApplyResult.DUPLICATE if code == held else ApplyResult.AMENDED

    def code_at(self, day: dt.date, session: Session) -> str | None:
        if academic_year(day) != self.year:
            return None
        entry = BY_INDEX[self.codes[slot_of(day, session)]]
        return entry.code if entry else None

    def sessions(self) -> list[tuple[dt.date, Session, AttendanceCode]]:
        """Every marked session in date order."""
        start = year_start(self.year)
        held = []
        for slot, index in enumerate(self.codes):
            entry = BY_INDEX[index] if index else None
            if entry is not None:
                held.append((start + dt.timedelta(days=slot >> 1), Session.PM if slot & 1 else Session.AM, entry))
        return held


# -- the session grid ---------------------------------------------------------------------------

class CellClass(StrEnum):
    """How a session counts, for colour and legend. Approved activities count as attended."""

    ATTENDED = "attended"
    AUTHORISED = "authorised"
    UNAUTHORISED = "unauthorised"
    NOT_POSSIBLE = "not-possible"
    NO_MARK = "no-mark"


CELL_TEXT = {
    CellClass.ATTENDED: "attended (present, late before the register closed, or an approved activity)",
    CellClass.AUTHORISED: "authorised absence (illness, appointment, agreed leave)",
    CellClass.UNAUTHORISED: "unauthorised absence (no reason agreed yet, or late after the register closed)",
    CellClass.NOT_POSSIBLE: "not a possible session (school closed, not required to attend)",
    CellClass.NO_MARK: "no mark received",
}


def cell_class(code: AttendanceCode | None) -> CellClass:
    if code is None:
        return CellClass.NO_MARK
    if not code.possible_session:
        return CellClass.NOT_POSSIBLE
    if code.attending:
        return CellClass.ATTENDED
    if code.category is Category.UNAUTHORISED_ABSENCE:
        return CellClass.UNAUTHORISED
    return CellClass.AUTHORISED


@dataclass(frozen=True, slots=True)
class GridCell:
    day: dt.date
    session: Session
    code: str | None
    css: CellClass
    title: str


@dataclass(frozen=True, slots=True)
class GridWeek:
    monday: dt.date
    cells: tuple[GridCell, ...]  # Mon AM, Mon PM, ..., Fri PM


def session_grid(record: PupilYearRecord) -> list[GridWeek]:
    """A row per week from the first marked week to the last, ten cells (Mon to Fri, AM and PM)."""
    marked = record.sessions()
    if not marked:
        return []
    first = marked[0][0] - dt.timedelta(days=marked[0][0].weekday())
    last = marked[-1][0]
    weeks = []
    monday = first
    while monday <= last:
        cells = []
        for offset in range(5):
            day = monday + dt.timedelta(days=offset)
            for session in (Session.AM, Session.PM):
                code = _code_entry(record, day, session)
                css = cell_class(code)
                label = f"{WEEKDAYS[offset]} {day.day} {day:%b} {session.value}"
                title = f"{label}: {code.code} - {code.meaning}" if code else f"{label}: no mark"
                cells.append(GridCell(day, session, code.code if code else None, css, title))
        weeks.append(GridWeek(monday, tuple(cells)))
        monday += dt.timedelta(days=7)
    return weeks


def _code_entry(record: PupilYearRecord, day: dt.date, session: Session) -> AttendanceCode | None:
    if academic_year(day) != record.year:
        return None
    index = record.codes[slot_of(day, session)]
    return BY_INDEX[index] if index else None


def code_breakdown(record: PupilYearRecord) -> list[tuple[str, str, int]]:
    """(code, meaning, sessions) for every code used this year, most used first."""
    counts: dict[str, tuple[str, int]] = {}
    for _, _, code in record.sessions():
        meaning, count = counts.get(code.code, (code.meaning, 0))
        counts[code.code] = (meaning, count + 1)
    return sorted(((code, meaning, count) for code, (meaning, count) in counts.items()), key=lambda r: (-r[2], r[0]))


# -- the series the chart draws ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RatePoint:
    day: dt.date
    rolling: float | None  # attendance over the last ROLLING_SESSIONS possible sessions
    year_to_date: float
    possible_ytd: int


def attendance_series(record: PupilYearRecord) -> list[RatePoint]:
    """Per school day with a possible session: rolling and year-to-date attendance up to its end.

    Rolling needs CHART_MIN_SESSIONS possible sessions before it says anything (None until then).
    """
    recent: list[bool] = []  # attended, per possible session, oldest first
    attended_ytd = possible_ytd = 0
    points = []
    by_day: dict[dt.date, list[AttendanceCode]] = {}
    for day, _, code in record.sessions():
        by_day.setdefault(day, []).append(code)
    for day, codes in by_day.items():
        possible_today = [code for code in codes if code.possible_session]
        if not possible_today:
            continue
        for code in possible_today:
            recent.append(code.attending)
            possible_ytd += 1
            attended_ytd += code.attending
        window = recent[-ROLLING_SESSIONS:]
        rolling = sum(window) / len(window) if len(recent) >= CHART_MIN_SESSIONS else None
        points.append(RatePoint(day, rolling, attended_ytd / possible_ytd, possible_ytd))
    return points
