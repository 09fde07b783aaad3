"""One school day of register marks, and how it is written: interchange CSV or mark records.

A day's marks are held as parallel numpy arrays in register order and turned into text in one
vectorised pass (object-array concatenation of pre-built fragments, then one join), which is
what makes a 3.8-million-row year fast to write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from models.simulator.calendar import SchoolCalendar
from models.simulator.codes import CODE_LIST, N_CODES
from models.simulator.cohort import Cohort

MARKS_HEADER = "school_id,pupil_id,date,session,code,recorded_at\n"
SESSION_NAMES: tuple[str, str] = ("AM", "PM")
MAX_RECORD_DELAY_DAYS = 4  # an amendment on the next weekday is at most 3 days later
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class DayBatch:
    """Every mark of one school day across all schools, in register order: AM registers
    school by school, then PM registers school by school, each school's same-day amendments
    right after its PM register."""

    date: dt.date
    day_index: int
    pupil: np.ndarray  # int32 index into the cohort
    session: np.ndarray  # int8: 0 AM, 1 PM (for an amendment, the session it corrects)
    code: np.ndarray  # int8 index into CODE_LIST
    record_delay_days: np.ndarray  # int8: 0 same day, else days until the amendment was entered
    record_second: np.ndarray  # int32: local time of entry, seconds after midnight
    amendment: np.ndarray  # bool
    formatter: MarkFormatter | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.pupil.shape[0])

    def csv_text(self) -> str:
        """The day's rows of marks.csv (no header), newline-terminated."""
        return self._formatter().csv_text(self)

    def records(self) -> Iterator[dict[str, object]]:
        """The day's marks as the messages of the marks topic, in register order."""
        return self._formatter().records(self)

    def _formatter(self) -> MarkFormatter:
        if self.formatter is None:
            raise ValueError("this DayBatch was built without a formatter (it has no cohort to name pupils)")
        return self.formatter


class MarkFormatter:
    """Renders DayBatches as CSV text or as mark dictionaries."""

    def __init__(self, cohort: Cohort, calendar: SchoolCalendar) -> None:
        self.cohort = cohort
        self.calendar = calendar
        schools = np.array(cohort.school_ids, dtype=object)[cohort.school]
        self._school = schools
        self._prefix = schools + "," + cohort.pupil_ids + ","
        self._hms = np.array(
            [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)], dtype=object
        )

    def _recorded_dates(self, day: dt.date) -> list[dt.date]:
        return [day + dt.timedelta(days=k) for k in range(MAX_RECORD_DELAY_DAYS)]

    def csv_text(self, batch: DayBatch) -> str:
        day_iso = batch.date.isoformat()
        dates = self._recorded_dates(batch.date)
        # Fragment for (session, code, delay): "date,session,code,recorded-dateT".
        middle = np.array(
            [
                f"{day_iso},{session},{code},{recorded.isoformat()}T"
                for session in SESSION_NAMES
                for code in CODE_LIST
                for recorded in dates
            ],
            dtype=object,
        )
        tails = np.array([f"{self.calendar.utc_offset(d)}\n" for d in dates], dtype=object)
        key = (batch.session.astype(np.int64) * N_CODES + batch.code) * MAX_RECORD_DELAY_DAYS + batch.record_delay_days
        rows = self._prefix[batch.pupil] + middle[key] + self._hms[batch.record_second] + tails[batch.record_delay_days]
        return "".join(rows.tolist())

    def records(self, batch: DayBatch) -> Iterator[dict[str, object]]:
        """Marks as the dictionaries published on the marks topic, in register order."""
        day_iso = batch.date.isoformat()
        dates = self._recorded_dates(batch.date)
        offsets = [self.calendar.utc_offset(d) for d in dates]
        for pupil, session, code, delay, second in zip(
            batch.pupil.tolist(), batch.session.tolist(), batch.code.tolist(),
            batch.record_delay_days.tolist(), batch.record_second.tolist(),
        ):
            yield {
                "schema_version": SCHEMA_VERSION,
                "school_id": self._school[pupil],
                "pupil_id": self.cohort.pupil_ids[pupil],
                "date": day_iso,
                "session": SESSION_NAMES[session],
                "code": CODE_LIST[code],
                "recorded_at": f"{dates[delay].isoformat()}T{self._hms[second]}{offsets[delay]}",
            }
