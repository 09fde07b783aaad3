"""The academic year in England runs from 1 August to 31 July; year-to-date counts restart then."""

from __future__ import annotations

import datetime as dt

YEAR_START_MONTH = 8


def academic_year(ordinal: int) -> int:
    """The academic year a day (a proleptic ordinal) belongs to, named by its first calendar year."""
    day = dt.date.fromordinal(ordinal)
    return day.year if day.month >= YEAR_START_MONTH else day.year - 1


def year_start_ordinal(year: int) -> int:
    return dt.date(year, YEAR_START_MONTH, 1).toordinal()
