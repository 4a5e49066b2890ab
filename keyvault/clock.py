"""The one source of "now" for the app, so tests can hold time still at a boundary; and how a
moment reads to people."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def format_datetime(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def relative(value, now) -> str:
    """'in 30 days', '2 hours ago': how far a moment is from now, in its largest unit.

    A future moment is rounded to the nearest whole unit (a key made for 30 days "expires in 30
    days" a second after it was made, not 29), a past one down ("2 hours ago" until it is 3).
    """
    seconds = (value - now).total_seconds()
    future = seconds > 0
    seconds = abs(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds / size + 0.5) if future else int(seconds // size)
            text = f"{count} {unit}{'s' if count != 1 else ''}"
            break
    else:
        text = "less than a minute"
    return f"in {text}" if future else f"{text} ago"
