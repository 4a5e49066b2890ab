"""The limits an owner sets on a key or a service account's pool (issue 25), as plain terms:
checked here with messages that name the rule (the API's models check the same numbers), and
written onto the holder's key_limits row in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from ..extensions import db
from ..limit_models import INTERVALS, QUOTA_MAX, RATE_MAX, WINDOW_MAX, KeyLimits, period_start
from .errors import InvalidInput

KEEP: Any = object()  # an update that leaves this limit as it is


class RateTerms(NamedTuple):
    limit: int
    window_seconds: int


class UsageTerms(NamedTuple):
    remaining: int
    refill_amount: int | None = None
    interval: str | None = None  # daily | monthly
    day_of_month: int | None = None


def _whole(value: Any, low: int, high: int, field: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{what} must be a whole number from {low:,} to {high:,}.", field)
    return value


def clean_rate(rate: RateTerms | None) -> RateTerms | None:
    if rate is None or rate is KEEP:
        return rate
    return RateTerms(_whole(rate.limit, 1, RATE_MAX, "rate_limit", "A rate's limit"),
                     _whole(rate.window_seconds, 1, WINDOW_MAX, "rate_limit",
                            "A rate's window (seconds)"))


def clean_usage(usage: UsageTerms | None) -> UsageTerms | None:
    if usage is None or usage is KEEP:
        return usage
    remaining = _whole(usage.remaining, 0, QUOTA_MAX, "usage_limit", "The remaining uses")
    if usage.interval is None:
        if usage.refill_amount is not None or usage.day_of_month is not None:
            raise InvalidInput("A refill needs its interval: daily or monthly.", "usage_limit")
        return UsageTerms(remaining)
    if usage.interval not in INTERVALS:
        raise InvalidInput("A refill's interval is daily or monthly.", "usage_limit")
    amount = _whole(usage.refill_amount, 1, QUOTA_MAX, "usage_limit", "A refill's amount")
    if usage.interval == "daily":
        if usage.day_of_month is not None:
            raise InvalidInput("day_of_month is for a monthly refill only.", "usage_limit")
        return UsageTerms(remaining, amount, "daily")
    day = 1 if usage.day_of_month is None else _whole(
        usage.day_of_month, 1, 28, "usage_limit", "A monthly refill's day of the month")
    return UsageTerms(remaining, amount, "monthly", day)


def raises(row: KeyLimits | None, rate: RateTerms | None, usage: UsageTerms | None) -> bool:
    """Would these terms allow more than the row does now (a higher or a removed limit)? The
    browser asks for the password again first (sudo)."""
    if row is None:
        return False
    higher_rate = rate is not KEEP and row.rate_limit is not None and (
        rate is None or rate.limit / rate.window_seconds > row.rate_limit / row.rate_window)
    more_usage = usage is not KEEP and row.remaining is not None and (
        usage is None or usage.remaining > row.remaining
        or (usage.refill_amount or 0) > (row.refill_amount or 0))
    return higher_rate or more_usage


def apply(row: KeyLimits | None, make: dict, rate: RateTerms | None, usage: UsageTerms | None,
          now: datetime) -> KeyLimits | None:
    """Write checked terms (KEEP: as they are) on `row`, or on a new one made with `make`
    (api_key_id=..., or service_account_id=...); a row left without limits is deleted."""
    if rate is KEEP and usage is KEEP:
        return row
    if row is None:
        if rate in (KEEP, None) and usage in (KEEP, None):
            return None
        row = KeyLimits(**make, period="")
        db.session.add(row)
    if rate is not KEEP:
        row.rate_limit, row.rate_window = (rate.limit, rate.window_seconds) if rate else (None,
                                                                                         None)
    if usage is not KEEP:
        usage = usage or UsageTerms(None)
        start = period_start(usage.interval, usage.day_of_month, now)
        row.remaining = usage.remaining
        row.quota = usage.refill_amount or usage.remaining
        row.refill_amount, row.refill_interval = usage.refill_amount, usage.interval
        row.refill_day = usage.day_of_month
        row.period = start.isoformat() if start is not None else ""
        row.warned_period = row.used_up_period = None
    if row.rate_limit is None and row.remaining is None:
        db.session.delete(row)
        return None
    return row
