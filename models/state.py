"""Per-pupil attendance state, updated idempotently mark by mark.

Recent sessions are kept mark by mark in a sliding window of calendar days, keyed by
(date, session). A duplicate, a redelivery or an amended mark (N re-coded to I at noon)
replaces the slot rather than adding to it: of all recordings of one session the latest
`recorded_at` wins (schemas.recording), so the result is the same in any order.
Sessions that slide out of the window are folded into year-to-date totals (possible,
attended, and missed through illness, which the 15-day health-needs rule counts all year).

Memory matters (tens of thousands of pupils per worker, each held as its changelog record):
per session slot one byte of code and two bytes of recording time, no per-mark Python objects.
The recording time is kept exactly, as seconds after the start (00:00 UTC) of the session's own
day: a register is taken and amended on its day, so that fits 16 bits. A recording made on
another day (a correction a week later, leave entered ahead) is kept whole in a short overflow
list, so every amendment is still judged by `schemas.recording.supersedes` on exact times. A
full 18-week window is about 800 bytes (format 3 was 1,300).
"""

from __future__ import annotations

import datetime as dt
import struct
from array import array
from enum import StrEnum
from functools import lru_cache

from models.policy import PolicyState
from models.school_year import academic_year, year_start_ordinal
from schemas.codes import BY_INDEX, CODES
from schemas.marks import RegisterMark, Session
from schemas.recording import RECORDING_EPOCH, recording_stamp, supersedes

# 2: policy state holds the support-plan flag and the alert's pattern.
# 3: year-to-date illness sessions folded out of the window; the policy remembers a health-needs event.
# 4: recording times as 16-bit offsets into the session's own day, with an overflow list (exact);
#    year and folded totals in 16 bits; the policy state's length, so it is decoded only when read.
FORMAT_VERSION = 4
READABLE_VERSIONS = (2, 3, 4)
# version, window_days, origin, year, folded possible, folded attended, [v3+: folded health], len(school)
# [, v4: len(policy)]
_HEADERS = {2: struct.Struct("<BHiiIIH"), 3: struct.Struct("<BHiiIIIH"), 4: struct.Struct("<BHiHHHHBB")}
# A pupil never alerted has this policy state: most pupils, whose record need not decode it.
_FRESH_POLICY = PolicyState().to_bytes()
_OVERFLOW_COUNT = struct.Struct("<H")
_OVERFLOW_ENTRY = struct.Struct("<HI")  # slot, whole recording stamp

# A slot's recording time: seconds after 00:00 UTC of its day, or OVERFLOW (the stamp is kept whole).
OVERFLOW = 0xFFFF
SECONDS_PER_DAY = 86_400
EPOCH_ORDINAL = RECORDING_EPOCH.date().toordinal()

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

# Register days repeat endlessly: each day's academic year and each year's first day, once.
cached_academic_year = lru_cache(maxsize=8192)(academic_year)
cached_year_start = lru_cache(maxsize=256)(year_start_ordinal)


class ApplyOutcome(StrEnum):
    NEW = "new"  # first mark for this session
    AMENDED = "amended"  # a later recording changed the code
    DUPLICATE = "duplicate"  # same code as held: redelivery or re-export
    SUPERSEDED = "superseded"  # an older recording than the one held: ignored


class OutsideWindowError(ValueError):
    """A mark for a session older than the state window can no longer be applied exactly."""


def outside_window(ordinal: int, window_days: int, latest_ordinal: int) -> OutsideWindowError:
    """The refusal of a mark for a session older than the window (one wording everywhere)."""
    return OutsideWindowError(
        f"session {dt.date.fromordinal(ordinal).isoformat()} is older than the "
        f"{window_days}-day window ending {dt.date.fromordinal(latest_ordinal).isoformat()}")


def day_stamp(ordinal: int) -> int:
    """The recording stamp of 00:00 UTC on a day (schemas.recording's epoch and unit)."""
    return (ordinal - EPOCH_ORDINAL) * SECONDS_PER_DAY


class PupilState:
    """One pupil's sessions in a sliding window of `window_days` calendar days, plus year totals."""

    __slots__ = ("school_id", "window_days", "origin", "year", "folded_possible", "folded_attended",
                 "folded_health", "codes", "times", "overflow", "_policy", "_policy_bytes")

    def __init__(self, school_id: str, window_days: int, latest: dt.date) -> None:
        self.school_id = school_id
        self.window_days = window_days
        self.origin = latest.toordinal() - window_days + 1
        self.year = cached_academic_year(latest.toordinal())
        self.folded_possible = 0
        self.folded_attended = 0
        self.folded_health = 0  # sessions missed through illness (I, M) this year, older than the window
        self.codes = bytearray(2 * window_days)
        # Per slot, the held recording's seconds into its day (see the module docstring).
        self.times = array("H", bytes(4 * window_days))
        self.overflow: dict[int, int] = {}  # slot -> whole stamp, where times[slot] is OVERFLOW
        self._policy: PolicyState | None = None
        self._policy_bytes = _FRESH_POLICY  # the encoded policy state until it is first read

    # -- the alert policy's state, decoded when first read ------------------------------------
    @property
    def policy(self) -> PolicyState:
        if self._policy is None:
            self._policy, _ = PolicyState.from_bytes(self._policy_bytes, 0, version=FORMAT_VERSION)
        return self._policy

    @policy.setter
    def policy(self, policy: PolicyState) -> None:
        self._policy = policy

    @property
    def flagged(self) -> bool:
        """Whether the policy has this pupil flagged (a never-alerted pupil's state is not decoded)."""
        if self._policy is None and self._policy_bytes == _FRESH_POLICY:
            return False
        return self.policy.flagged

    def _policy_record(self) -> bytes:
        return self._policy_bytes if self._policy is None else self._policy.to_bytes()

    # -- geometry -------------------------------------------------------------------------
    @property
    def latest_ordinal(self) -> int:
        return self.origin + self.window_days - 1

    @property
    def latest_date(self) -> dt.date:
        return dt.date.fromordinal(self.latest_ordinal)

    @property
    def year_start_ordinal(self) -> int:
        return cached_year_start(self.year)

    def _advance(self, new_latest: int) -> None:
        shift = new_latest - self.latest_ordinal
        new_year = cached_academic_year(new_latest)
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
        del self.times[:slots]
        self.times.extend(array("H", bytes(2 * slots)))
        if self.overflow:
            self.overflow = {slot - slots: stamp for slot, stamp in self.overflow.items() if slot >= slots}
        self.origin = new_latest - self.window_days + 1

    # -- recording times --------------------------------------------------------------------
    def stamp_at(self, slot: int) -> int:
        """The held recording's stamp (schemas.recording) for a slot; 0 when the slot is empty."""
        if not self.codes[slot]:
            return 0
        offset = self.times[slot]
        if offset == OVERFLOW:
            return self.overflow[slot]
        return day_stamp(self.origin + (slot >> 1)) + offset

    def _hold(self, slot: int, code: int, stamp: int) -> None:
        self.codes[slot] = code
        offset = stamp - day_stamp(self.origin + (slot >> 1))
        if 0 <= offset < OVERFLOW:
            self.times[slot] = offset
            if self.overflow:
                self.overflow.pop(slot, None)
        else:
            self.times[slot] = OVERFLOW
            self.overflow[slot] = stamp

    @property
    def stamps(self) -> array:
        """Every slot's held stamp, as format 3 stored them (for inspection and old-format tools)."""
        return array("I", (self.stamp_at(slot) for slot in range(len(self.codes))))

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
            raise outside_window(ordinal, self.window_days, self.latest_ordinal)
        slot = ((ordinal - self.origin) << 1) | pm
        held = self.codes[slot]
        if held == 0:
            self._hold(slot, code, stamp)
            return ApplyOutcome.NEW
        if not supersedes(stamp, code, self.stamp_at(slot), held):
            return ApplyOutcome.DUPLICATE if code == held else ApplyOutcome.SUPERSEDED
        self._hold(slot, code, stamp)
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
        policy = self._policy_record()
        overflow = self.overflow
        tail = _OVERFLOW_COUNT.pack(len(overflow))
        if overflow:
            tail += b"".join(_OVERFLOW_ENTRY.pack(slot, stamp) for slot, stamp in sorted(overflow.items()))
        return b"".join((
            _HEADERS[4].pack(4, self.window_days, self.origin, self.year, self.folded_possible,
                             self.folded_attended, self.folded_health, len(school), len(policy)),
            school, policy, self.codes, self.times.tobytes(), tail,
        ))

    @classmethod
    def from_bytes(cls, data: bytes) -> PupilState:
        """Decode a changelog record of this format or an older readable one.

        A version-2 record has no folded illness count: its illness older than the window is
        taken as none (the 15-day count restarts from what the window holds), and its policy
        state as never having sent a health-needs event. Versions 2 and 3 kept each slot's stamp
        whole; they are converted to this format's exact offsets on load.
        """
        version = data[0] if data else None
        if version == 4:
            return cls._from_v4(data)
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
        state._policy_bytes = b""
        state.window_days, state.origin, state.year = window_days, origin, year
        state.folded_possible, state.folded_attended = folded_possible, folded_attended
        state.folded_health = folded_health
        codes = bytearray(data[offset:offset + 2 * window_days])
        offset += 2 * window_days
        stamps = array("I")
        stamps.frombytes(data[offset:offset + 8 * window_days])
        if len(codes) != 2 * window_days or len(stamps) != 2 * window_days:
            raise ValueError("pupil state record is truncated")
        state.codes = bytearray(2 * window_days)
        state.times = array("H", bytes(4 * window_days))
        state.overflow = {}
        for slot, code in enumerate(codes):
            if code:
                state._hold(slot, code, stamps[slot])
        return state

    @classmethod
    def _from_v4(cls, data: bytes) -> PupilState:
        header = _HEADERS[4]
        try:
            (_, window_days, origin, year, folded_possible, folded_attended, folded_health,
             school_len, policy_len) = header.unpack_from(data)
            state = cls.__new__(cls)
            offset = header.size
            state.school_id = data[offset:offset + school_len].decode()
            offset += school_len
            state._policy, state._policy_bytes = None, data[offset:offset + policy_len]
            offset += policy_len
            slots = 2 * window_days
            state.codes = bytearray(data[offset:offset + slots])
            offset += slots
            state.times = times = array("H")
            times.frombytes(data[offset:offset + 2 * slots])
            offset += 2 * slots
            (count,) = _OVERFLOW_COUNT.unpack_from(data, offset)
            offset += _OVERFLOW_COUNT.size
            state.overflow = {}
            for _ in range(count):
                slot, stamp = _OVERFLOW_ENTRY.unpack_from(data, offset)
                state.overflow[slot] = stamp
                offset += _OVERFLOW_ENTRY.size
        except struct.error:
            raise ValueError("pupil state record is truncated") from None
        if len(state.codes) != slots or len(times) != slots or offset != len(data):
            raise ValueError("pupil state record is truncated")
        state.window_days, state.origin, state.year = window_days, origin, year
        state.folded_possible, state.folded_attended, state.folded_health = (
            folded_possible, folded_attended, folded_health)
        return state
