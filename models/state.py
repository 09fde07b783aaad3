"""Per-pupil attendance state, updated idempotently mark by mark.

Recent sessions are kept mark by mark in a sliding window of calendar days, keyed by
(date, session). A duplicate, a redelivery or an amended mark (N re-coded to I at noon)
replaces the slot rather than adding to it: of all recordings of one session the latest
`recorded_at` wins (schemas.recording), so the result is the same in any order.
Sessions that slide out of the window are folded into year-to-date totals.

Memory matters (tens of thousands of pupils per worker): one byte of code and four bytes of
recording time per session slot, no per-mark Python objects.
"""

from __future__ import annotations

import datetime as dt
import struct
from array import array
from enum import StrEnum

from models.policy import PolicyState
from schemas.codes import BY_INDEX, CODES
from schemas.marks import RegisterMark, Session
from schemas.recording import recording_stamp, supersedes

FORMAT_VERSION = 2  # 2: policy state holds the support-plan flag and the alert's pattern
_HEADER = struct.Struct("<BHiiIIH")  # version, window_days, origin, year, folded possible, folded attended, len(school)

# Per code index, how the session counts; index 0 means "no mark yet".
POSSIBLE = bytes(int(bool(c and c.possible_session)) for c in BY_INDEX)
ATTENDED = bytes(int(bool(c and c.possible_session and c.attending)) for c in BY_INDEX)
UNAUTHORISED = bytes(int(bool(c and c.unauthorised)) for c in BY_INDEX)
HEALTH = bytes(int(bool(c and c.health)) for c in BY_INDEX)
LATE = bytes(int(bool(c and c.late)) for c in BY_INDEX)
HOLIDAY = bytes(int(bool(c and c.holiday)) for c in BY_INDEX)


class ApplyOutcome(StrEnum):
    NEW = "new"  # first mark for this session
    AMENDED = "amended"  # a later recording changed the code
    DUPLICATE = "duplicate"  # same code as held: redelivery or re-export
    SUPERSEDED = "superseded"  # an older recording than the one held: ignored


class OutsideWindowError(ValueError):
    """A mark for a session older than the state window can no longer be applied exactly."""


def academic_year(ordinal: int) -> int:
    """The academic year (1 August to 31 July) a day belongs to, named by its first calendar year."""
    day = dt.date.fromordinal(ordinal)
    return day.year if day.month >= 8 else day.year - 1


class PupilState:
    """One pupil's sessions in a sliding window of `window_days` calendar days, plus year totals."""

    __slots__ = ("school_id", "window_days", "origin", "year", "folded_possible", "folded_attended",
                 "codes", "stamps", "policy")

    def __init__(self, school_id: str, window_days: int, latest: dt.date) -> None:
        self.school_id = school_id
        self.window_days = window_days
        self.origin = latest.toordinal() - window_days + 1
        self.year = academic_year(latest.toordinal())
        self.folded_possible = 0
        self.folded_attended = 0
        self.codes = bytearray(2 * window_days)
        self.stamps = array("I", bytes(8 * window_days))
        self.policy = PolicyState()

    # -- geometry -------------------------------------------------------------------------
    @property
    def latest_ordinal(self) -> int:
        return self.origin + self.window_days - 1

    @property
    def latest_date(self) -> dt.date:
        return dt.date.fromordinal(self.latest_ordinal)

    @property
    def year_start_ordinal(self) -> int:
        return dt.date(self.year, 8, 1).toordinal()

    def _advance(self, new_latest: int) -> None:
        shift = new_latest - self.latest_ordinal
        new_year = academic_year(new_latest)
        if new_year != self.year:
            self.year = new_year
            self.folded_possible = self.folded_attended = 0
        year_start = self.year_start_ordinal
        slots = min(shift, self.window_days) * 2
        codes = self.codes
        for i in range(slots):
            code = codes[i]
            if code and POSSIBLE[code] and self.origin + (i >> 1) >= year_start:
                self.folded_possible += 1
                self.folded_attended += ATTENDED[code]
        del codes[:slots]
        codes.extend(bytes(slots))
        del self.stamps[:slots]
        self.stamps.extend(array("I", bytes(4 * slots)))
        self.origin = new_latest - self.window_days + 1

    # -- updates --------------------------------------------------------------------------
    def apply(self, mark: RegisterMark) -> ApplyOutcome:
        return self.apply_raw(
            mark.date.toordinal(), mark.session is Session.PM, CODES[mark.code].index,
            recording_stamp(mark.recorded_at), mark.school_id,
        )

    def apply_raw(self, ordinal: int, pm: bool, code: int, stamp: int, school_id: str) -> ApplyOutcome:
        if ordinal > self.latest_ordinal:
            self._advance(ordinal)
            self.school_id = school_id
        elif ordinal < self.origin:
            raise OutsideWindowError(
                f"session {dt.date.fromordinal(ordinal).isoformat()} is older than the "
                f"{self.window_days}-day window ending {self.latest_date.isoformat()}"
            )
        slot = ((ordinal - self.origin) << 1) | pm
        held, held_stamp = self.codes[slot], self.stamps[slot]
        if held == 0:
            self.codes[slot], self.stamps[slot] = code, stamp
            return ApplyOutcome.NEW
        if not supersedes(stamp, code, held_stamp, held):
            return ApplyOutcome.DUPLICATE if code == held else ApplyOutcome.SUPERSEDED
        self.codes[slot], self.stamps[slot] = code, stamp
        return ApplyOutcome.DUPLICATE if code == held else ApplyOutcome.AMENDED

    # -- reading --------------------------------------------------------------------------
    def code_at(self, day: dt.date, session: Session) -> str | None:
        slot = ((day.toordinal() - self.origin) << 1) | (session is Session.PM)
        if not 0 <= slot < len(self.codes) or not self.codes[slot]:
            return None
        entry = BY_INDEX[self.codes[slot]]
        return entry.code if entry else None

    def sessions(self) -> list[tuple[dt.date, Session, str]]:
        """Every held mark in date order (for inspection and tests, not the hot path)."""
        held = []
        for slot, code in enumerate(self.codes):
            if code:
                entry = BY_INDEX[code]
                assert entry is not None
                day = dt.date.fromordinal(self.origin + (slot >> 1))
                held.append((day, Session.PM if slot & 1 else Session.AM, entry.code))
        return held

    def counted_marks(self) -> int:
        """Distinct sessions held in the window (each (date, session) once, however often marked)."""
        return len(self.codes) - self.codes.count(0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PupilState) and self.to_bytes() == other.to_bytes()

    def __repr__(self) -> str:
        return (f"PupilState(school_id={self.school_id!r}, latest={self.latest_date}, "
                f"marks={self.counted_marks()}, folded={self.folded_possible})")

    # -- changelog encoding ---------------------------------------------------------------
    def to_bytes(self) -> bytes:
        school = self.school_id.encode()
        return b"".join((
            _HEADER.pack(FORMAT_VERSION, self.window_days, self.origin, self.year,
                         self.folded_possible, self.folded_attended, len(school)),
            school, self.policy.to_bytes(), bytes(self.codes), self.stamps.tobytes(),
        ))

    @classmethod
    def from_bytes(cls, data: bytes) -> PupilState:
        version, window_days, origin, year, folded_possible, folded_attended, school_len = _HEADER.unpack_from(data)
        if version != FORMAT_VERSION:
            raise ValueError(f"pupil state format {version} is not supported (expected {FORMAT_VERSION})")
        state = cls.__new__(cls)
        offset = _HEADER.size
        state.school_id = data[offset:offset + school_len].decode()
        offset += school_len
        state.policy, offset = PolicyState.from_bytes(data, offset)
        state.window_days, state.origin, state.year = window_days, origin, year
        state.folded_possible, state.folded_attended = folded_possible, folded_attended
        state.codes = bytearray(data[offset:offset + 2 * window_days])
        offset += 2 * window_days
        state.stamps = array("I")
        state.stamps.frombytes(data[offset:offset + 8 * window_days])
        if len(state.codes) != 2 * window_days or len(state.stamps) != 2 * window_days:
            raise ValueError("pupil state record is truncated")
        return state
