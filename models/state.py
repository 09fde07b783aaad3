"""Per-pupil attendance state, updated idempotently mark by mark.

Recent sessions are kept mark by mark in a sliding window of calendar days, keyed by
(date, session). A duplicate, a redelivery or an amended mark (N re-coded to I at noon)
replaces the slot rather than adding to it: of all recordings of one session the latest
`recorded_at` wins (schemas.recording), so the result is the same in any order.
Sessions that slide out of the window are folded into year-to-date totals (possible,
attended, and missed through illness, which the 15-day health-needs rule counts all year).

Memory matters (tens of thousands of pupils per worker): one byte of code and four bytes of
recording time per session slot, no per-mark Python objects.
"""

from __future__ import annotations

import datetime as dt
import struct
from array import array
from enum import StrEnum

from models.policy import PolicyState
from models.school_year import academic_year, year_start_ordinal
from schemas.codes import BY_INDEX, CODES
from schemas.marks import RegisterMark, Session
from schemas.recording import recording_stamp, supersedes

# 2: policy state holds the support-plan flag and the alert's pattern.
# 3: year-to-date illness sessions folded out of the window; the policy remembers a health-needs event.
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
# version, window_days, origin, year, folded possible, folded attended, [v3: folded health], len(school)
_HEADERS = {2: struct.Struct("<BHiiIIH"), 3: struct.Struct("<BHiiIIIH")}

# Per code index, how the session counts; index 0 means "no mark yet".
POSSIBLE = bytes(int(bool(c and c.possible_session)) for c in BY_INDEX)
ATTENDED = bytes(int(bool(c and c.possible_session and c.attending)) for c in BY_INDEX)
UNAUTHORISED = bytes(int(bool(c and c.unauthorised)) for c in BY_INDEX)
HEALTH = bytes(int(bool(c and c.health)) for c in BY_INDEX)
LATE = bytes(int(bool(c and c.late)) for c in BY_INDEX)
HOLIDAY = bytes(int(bool(c and c.holiday)) for c in BY_INDEX)
# Absence the school authorised for a reason other than health (a bereavement, a suspension, a
# part-time timetable, an interview...): the school knows why.
LEAVE = bytes(int(bool(c and c.absence and c.authorised and not c.health and not c.holiday)) for c in BY_INDEX)
# Of those, what the school itself arranged: a part-time timetable (C2) or a suspension (E).
ARRANGED_CODES = frozenset({"C2", "E"})
ARRANGED = bytes(int(bool(c and c.code in ARRANGED_CODES)) for c in BY_INDEX)


class ApplyOutcome(StrEnum):
    NEW = "new"  # first mark for this session
    AMENDED = "amended"  # a later recording changed the code
    DUPLICATE = "duplicate"  # same code as held: redelivery or re-export
    SUPERSEDED = "superseded"  # an older recording than the one held: ignored


class OutsideWindowError(ValueError):
    """A mark for a session older than the state window can no longer be applied exactly."""


class PupilState:
    """One pupil's sessions in a sliding window of `window_days` calendar days, plus year totals."""

    __slots__ = ("school_id", "window_days", "origin", "year", "folded_possible", "folded_attended",
                 "folded_health", "codes", "stamps", "policy")

    def __init__(self, school_id: str, window_days: int, latest: dt.date) -> None:
        self.school_id = school_id
        self.window_days = window_days
        self.origin = latest.toordinal() - window_days + 1
        self.year = academic_year(latest.toordinal())
        self.folded_possible = 0
        self.folded_attended = 0
        self.folded_health = 0  # sessions missed through illness (I, M) this year, older than the window
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
        return year_start_ordinal(self.year)

    def _advance(self, new_latest: int) -> None:
        shift = new_latest - self.latest_ordinal
        new_year = academic_year(new_latest)
        if new_year != self.year:
            self.year = new_year
            self.folded_possible = self.folded_attended = self.folded_health = 0
        year_start = self.year_start_ordinal
        slots = min(shift, self.window_days) * 2
        codes = self.codes
        for i in range(slots):
            code = codes[i]
            if code and POSSIBLE[code] and self.origin + (i >> 1) >= year_start:
                self.folded_possible += 1
                self.folded_attended += ATTENDED[code]
                self.folded_health += HEALTH[code]
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
            _HEADERS[FORMAT_VERSION].pack(FORMAT_VERSION, self.window_days, self.origin, self.year,
                                          self.folded_possible, self.folded_attended, self.folded_health,
                                          len(school)),
            school, self.policy.to_bytes(), bytes(self.codes), self.stamps.tobytes(),
        ))

    @classmethod
    def from_bytes(cls, data: bytes) -> PupilState:
        """Decode a changelog record of this format or an older readable one.

        A version-2 record has no folded illness count: its illness older than the window is
        taken as none (the 15-day count restarts from what the window holds), and its policy
        state as never having sent a health-needs event.
        """
        version = data[0] if data else None
        if version not in READABLE_VERSIONS:
            raise ValueError(f"pupil state format {version} is not supported (expected one of {READABLE_VERSIONS})")
        header = _HEADERS[version]
        if version == 2:
            _, window_days, origin, year, folded_possible, folded_attended, school_len = header.unpack_from(data)
            folded_health = 0
        else:
            (_, window_days, origin, year, folded_possible, folded_attended, folded_health,
             school_len) = header.unpack_from(data)
        state = cls.__new__(cls)
        offset = header.size
        state.school_id = data[offset:offset + school_len].decode()
        offset += school_len
        state.policy, offset = PolicyState.from_bytes(data, offset, version=version)
        state.window_days, state.origin, state.year = window_days, origin, year
        state.folded_possible, state.folded_attended = folded_possible, folded_attended
        state.folded_health = folded_health
        state.codes = bytearray(data[offset:offset + 2 * window_days])
        offset += 2 * window_days
        state.stamps = array("I")
        state.stamps.frombytes(data[offset:offset + 8 * window_days])
        if len(state.codes) != 2 * window_days or len(state.stamps) != 2 * window_days:
            raise ValueError("pupil state record is truncated")
        return state
