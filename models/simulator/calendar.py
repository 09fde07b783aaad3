"""The school year the simulator walks through: terms, breaks and the days pupils attend.

The year is data (a small TOML file), so another year or a local authority's own dates can be
dropped in without touching code. Only pupil days are "school days": weekends, half-terms,
the Christmas/Easter/summer breaks, bank holidays and INSET days are not.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

DEFAULT_CALENDAR_PATH = Path(__file__).with_name("calendar_2025_26.toml")
# A gap between consecutive school days longer than a weekend (plus a bank holiday) is a break.
_BREAK_GAP_DAYS = 4


@dataclass(frozen=True, slots=True)
class Term:
    name: str
    start: dt.date
    end: dt.date
    half_term_start: dt.date
    half_term_end: dt.date

    def contains(self, day: dt.date) -> bool:
        return self.start <= day <= self.end

    def in_half_term(self, day: dt.date) -> bool:
        return self.half_term_start <= day <= self.half_term_end


class CalendarError(ValueError):
    pass


class SchoolCalendar:
    """One school year: its terms and the sorted list of pupil days."""

    def __init__(
        self,
        name: str,
        terms: list[Term],
        bank_holidays: frozenset[dt.date] = frozenset(),
        inset_days: frozenset[dt.date] = frozenset(),
        timezone: str = "Europe/London",
    ) -> None:
        if not terms:
            raise CalendarError("a school calendar needs at least one term")
        terms = sorted(terms, key=lambda term: term.start)
        for earlier, later in zip(terms, terms[1:]):
            if later.start <= earlier.end:
                raise CalendarError(f"terms {earlier.name!r} and {later.name!r} overlap")
        for term in terms:
            if not (term.start <= term.half_term_start <= term.half_term_end <= term.end):
                raise CalendarError(f"half-term of {term.name!r} is not inside the term")
        self.name = name
        self.terms: tuple[Term, ...] = tuple(terms)
        self.bank_holidays = bank_holidays
        self.inset_days = inset_days
        self.timezone = ZoneInfo(timezone)
        self.school_days: list[dt.date] = _pupil_days(self.terms, bank_holidays | inset_days)
        if not self.school_days:
            raise CalendarError("the calendar has no pupil days")
        self._index = {day: position for position, day in enumerate(self.school_days)}

    @classmethod
    def from_toml(cls, path: str | Path) -> SchoolCalendar:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        try:
            terms = [
                Term(
                    name=str(term["name"]),
                    start=_as_date(term["start"]),
                    end=_as_date(term["end"]),
                    half_term_start=_as_date(term["half_term"]["start"]),
                    half_term_end=_as_date(term["half_term"]["end"]),
                )
                for term in data["terms"]
            ]
        except (KeyError, TypeError) as error:
            raise CalendarError(f"{path}: malformed term table ({error})") from None
        return cls(
            name=str(data.get("name", Path(path).stem)),
            terms=terms,
            bank_holidays=frozenset(_as_date(day) for day in data.get("bank_holidays", [])),
            inset_days=frozenset(_as_date(day) for day in data.get("inset_days", [])),
            timezone=str(data.get("timezone", "Europe/London")),
        )

    @classmethod
    def default(cls) -> SchoolCalendar:
        return cls.from_toml(DEFAULT_CALENDAR_PATH)

    # --- queries -------------------------------------------------------------------------

    @property
    def first_day(self) -> dt.date:
        return self.school_days[0]

    @property
    def last_day(self) -> dt.date:
        return self.school_days[-1]

    @property
    def n_sessions(self) -> int:
        return 2 * len(self.school_days)

    def is_school_day(self, day: dt.date) -> bool:
        return day in self._index

    def day_index(self, day: dt.date) -> int:
        """Position of a pupil day in the year (0-based); KeyError if not a pupil day."""
        return self._index[day]

    def term_of(self, day: dt.date) -> str | None:
        """Name of the term a date falls in (half-terms included), or None in a break."""
        for term in self.terms:
            if term.contains(day):
                return term.name
        return None

    def days_between(self, start: dt.date | None, end: dt.date | None) -> list[dt.date]:
        """Pupil days in [start, end], either bound optional."""
        low = 0 if start is None else bisect_left(self.school_days, start)
        high = len(self.school_days) if end is None else bisect_right(self.school_days, end)
        return self.school_days[low:high]

    @cached_property
    def break_starts_after(self) -> frozenset[int]:
        """Day indices that are the last pupil day before a break (half-term or holiday)."""
        return frozenset(
            index
            for index, (day, following) in enumerate(zip(self.school_days, self.school_days[1:]))
            if (following - day).days > _BREAK_GAP_DAYS
        ) | {len(self.school_days) - 1}

    @cached_property
    def days_to_break(self) -> list[int]:
        """For each pupil day, pupil days left before the next break (0 on the last day)."""
        remaining = [0] * len(self.school_days)
        countdown = 0
        for index in range(len(self.school_days) - 1, -1, -1):
            countdown = 0 if index in self.break_starts_after else countdown + 1
            remaining[index] = countdown
        return remaining

    @cached_property
    def days_since_break(self) -> list[int]:
        """For each pupil day, pupil days since the last break ended (0 on the first day back)."""
        since = [0] * len(self.school_days)
        count = 0
        for index in range(len(self.school_days)):
            count = 0 if index == 0 or (index - 1) in self.break_starts_after else count + 1
            since[index] = count
        return since

    def weeks_to_break(self, day: dt.date) -> int:
        """Whole school weeks left before the next break (0 in the last week before it)."""
        return self.days_to_break[self.day_index(day)] // 5

    def utc_offset(self, day: dt.date) -> str:
        """The local UTC offset on a date as `+HH:MM`, for register timestamps."""
        offset = dt.datetime(day.year, day.month, day.day, 12, tzinfo=self.timezone).utcoffset()
        assert offset is not None
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    def __repr__(self) -> str:
        return f"SchoolCalendar({self.name!r}, {len(self.school_days)} days, {self.first_day}..{self.last_day})"


def _as_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    raise CalendarError(f"not a date: {value!r}")


def _pupil_days(terms: tuple[Term, ...], closed: frozenset[dt.date]) -> list[dt.date]:
    days: list[dt.date] = []
    for term in terms:
        day = term.start
        while day <= term.end:
            if day.weekday() < 5 and day not in closed and not term.in_half_term(day):
                days.append(day)
            day += dt.timedelta(days=1)
    return days


def default() -> SchoolCalendar:
    return SchoolCalendar.default()
