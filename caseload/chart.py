"""The attendance chart as inline SVG, rendered on the server: no JavaScript, nothing fetched.

Rolling attendance (last 20 possible sessions) and the year to date, against the 90% line and
the pupil's own earlier level (as the alert stated it), with a mark where each event was raised.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from html import escape

from caseload.register import ROLLING_SESSIONS, TARGET_RATE, RatePoint

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 36
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True, slots=True)
class EventMark:
    day: dt.date
    label: str  # e.g. "concern, tier 2"


def _x(day: dt.date, first: dt.date, span_days: int) -> float:
    return LEFT + PLOT_W * ((day - first).days / span_days if span_days else 0.5)


def _y(rate: float) -> float:
    return TOP + PLOT_H * (1 - rate)


def _points(series: list[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in series)


SHORT_SPAN_DAYS = 120  # up to about a term: a tick every other Monday; longer: every month


def _ticks(first: dt.date, last: dt.date) -> list[tuple[dt.date, str]]:
    if (last - first).days <= SHORT_SPAN_DAYS:
        monday = first + dt.timedelta(days=(7 - first.weekday()) % 7)
        ticks = []
        while monday <= last:
            ticks.append((monday, f"{monday.day} {monday:%b}"))
            monday += dt.timedelta(days=14)
        return ticks
    ticks = []
    month = dt.date(first.year, first.month, 1)
    while month <= last:
        if month >= first:
            ticks.append((month, f"{month:%b %Y}"))
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return ticks


def attendance_chart(points: list[RatePoint], *, earlier_level: float | None, events: list[EventMark]) -> str:
    """SVG markup (a string safe to insert as is: every text in it is escaped here)."""
    if not points:
        return ('<p class="empty">No register marks have been received for this pupil this year, '
                "so there is nothing to chart yet.</p>")
    first, last = points[0].day, points[-1].day
    span = max((last - first).days, 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
        '<title id="chart-title">Attendance over the year</title>',
        f'<desc id="chart-desc">Attendance over the last {ROLLING_SESSIONS} possible sessions and over the year '
        f"to date, from {escape(first.isoformat())} to {escape(last.isoformat())}, against the 90% line"
        + (f" and the pupil's earlier level of {round(earlier_level * 100)}%" if earlier_level is not None else "")
        + ".</desc>",
    ]
    for level in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _y(level)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{round(level * 100)}%</text>")
    for tick, label in _ticks(first, last):
        x = _x(tick, first, span)
        parts.append(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + PLOT_H}" y2="{TOP + PLOT_H + 5}"/>')
        parts.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 12}" text-anchor="middle">{escape(label)}</text>')
    target_y = _y(TARGET_RATE)
    parts.append(f'<line class="target" data-series="target" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                 f'y1="{target_y:.1f}" y2="{target_y:.1f}"><title>90%: below this a pupil is persistently absent'
                 "</title></line>")
    if earlier_level is not None:
        y = _y(earlier_level)
        parts.append(f'<line class="earlier" data-series="earlier" data-rate="{earlier_level:.4f}" x1="{LEFT}" '
                     f'x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"><title>Earlier this year: '
                     f"{round(earlier_level * 100)}%</title></line>")
    for event in events:
        if first <= event.day <= last:
            x = _x(event.day, first, span)
            parts.append(f'<line class="event" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + PLOT_H}">'
                         f"<title>{escape(event.day.isoformat())}: {escape(event.label)}</title></line>")
    ytd = [(_x(p.day, first, span), _y(p.year_to_date)) for p in points]
    parts.append(f'<polyline class="ytd" data-series="year-to-date" points="{_points(ytd)}"/>')
    rolling = [(_x(p.day, first, span), _y(p.rolling)) for p in points if p.rolling is not None]
    if rolling:
        parts.append(f'<polyline class="rolling" data-series="rolling" points="{_points(rolling)}"/>')
    parts.append("</svg>")
    return "".join(parts)
