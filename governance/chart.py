"""A per-day bar chart of findings, drawn as SVG on the server: no script, no library."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from governance.findings import Day

BAR_WIDTH = 14
GAP = 4
HEIGHT = 80


@dataclass
class Bar:
    x: int
    y: int
    height: int
    day: Day


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar]
    highest: int
    first: date | None
    last: date | None


def chart(days: list[Day]) -> Chart:
    highest = max((day.total for day in days), default=0)
    bars = []
    for n, day in enumerate(days):
        # A day with findings gets at least 2 pixels, so that one finding among hundreds
        # still shows.
        height = 0 if not day.total else max(2, round(HEIGHT * day.total / highest))
        bars.append(Bar(x=n * (BAR_WIDTH + GAP), y=HEIGHT - height, height=height, day=day))
    return Chart(width=max(len(days) * (BAR_WIDTH + GAP) - GAP, 1), height=HEIGHT, bars=bars,
                 highest=highest, first=days[0].day if days else None,
                 last=days[-1].day if days else None)
