"""The key page's usage chart, laid out here and drawn as inline SVG by the template.

Server-side, so it needs no script and passes the Content-Security-Policy: the template writes
only geometry attributes and classes (app.css colours them), never a `style` attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ..service.usage import OUTCOMES, KeyUsage

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 24  # room for the axis labels
OUTCOME_WORDS = {
    "valid": "Valid",
    "insufficient_scope": "Missing a scope",
    "expired": "Expired",
    "revoked": "Revoked",
    "user_inactive": "Owner deactivated",
    "ip_not_allowed": "Address not allowed",
    "wrong_service": "Wrong service",
    "rate_limited": "Over its rate",
    "usage_exceeded": "Quota used up",
}


@dataclass(frozen=True)
class Segment:
    outcome: str
    count: int
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    """One day: its slot, its stacked segments (none on a day without use) and its words."""

    day: date
    x: float
    width: float
    total: int
    segments: list[Segment]
    title: str


@dataclass(frozen=True)
class Tick:
    value: int
    y: float


@dataclass(frozen=True)
class DayLabel:
    text: str
    x: float


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    baseline: float
    right_edge: float
    bars: list[Bar]
    ticks: list[Tick]
    day_labels: list[DayLabel]
    outcomes: list[str]
    summary: str


def _nice_top(most: int) -> int:
    """The axis' top: 1, 2 or 5 times a power of ten, at least `most` (and at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= most:
                return step * factor
        step *= 10


def _day_words(day: date) -> str:
    return f"{day:%b} {day.day}"


def words(outcome: str) -> str:
    return OUTCOME_WORDS.get(outcome, outcome.replace("_", " ").capitalize())


def _title(day: date, counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return f"{_day_words(day)}: not used"
    parts = ", ".join(f"{counts[o]} {words(o).lower()}" for o in OUTCOMES if counts.get(o))
    return f"{_day_words(day)}: {total} {'use' if total == 1 else 'uses'} ({parts})"


def usage_chart(usage: KeyUsage) -> Chart:
    days = usage.days
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_height
    slot = plot_width / len(days)
    top = _nice_top(max((d.total for d in days), default=0))
    bars = []
    for index, usage_day in enumerate(days):
        y, segments = float(baseline), []
        for outcome in OUTCOMES:
            number = usage_day.counts.get(outcome, 0)
            if number:
                height = number / top * plot_height
                y -= height
                segments.append(Segment(outcome, number, round(y, 2), round(height, 2)))
        bars.append(Bar(usage_day.day, round(LEFT + index * slot + slot * 0.15, 2),
                        round(slot * 0.7, 2), usage_day.total, segments,
                        _title(usage_day.day, usage_day.counts)))
    ticks = [Tick(value, round(baseline - value / top * plot_height, 2))
             for value in sorted({0, top // 2, top})]
    labels = [DayLabel(_day_words(days[i].day), round(LEFT + i * slot + slot / 2, 2))
              for i in range(len(days) - 1, -1, -7)]
    totals = ", ".join(f"{usage.total(o)} {words(o).lower()}" for o in usage.outcomes)
    summary = (f"{usage.total()} uses from {_day_words(days[0].day)} to "
               f"{_day_words(days[-1].day)}" + (f": {totals}." if totals else "."))
    return Chart(WIDTH, HEIGHT, LEFT, baseline, WIDTH - RIGHT, bars, ticks, labels,
                 usage.outcomes, summary)
