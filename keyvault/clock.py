"""The one source of "now" for the app, so tests can hold time still at a boundary."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
