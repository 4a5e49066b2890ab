"""A key's rate and usage quota on the create and edit forms (http.forms.LimitFields) and on
its page: the form's fields as the service's terms, a key's limits back into the fields, and
the limits in words ("842 of 1,000 left, refills on 1 Jan")."""

from __future__ import annotations

from datetime import datetime

from ..limit_models import KeyLimits
from ..service.limit_terms import KEEP, RateTerms, UsageTerms

WINDOW_WORDS = {1: "a second", 60: "a minute", 3600: "an hour", 86400: "a day"}


def terms_from(form, current: KeyLimits | None = None) -> dict:
    """`rate_limit` and `usage_limit` for service.create_key / update_key_and_limits: an empty
    field is no limit; on the edit form, a limit left as it was is KEEP (its count goes on)."""
    rate = usage = None
    if form.rate_limit.data is not None:
        rate = RateTerms(form.rate_limit.data, form.rate_window.data or 60)
    if form.quota.data is not None:
        interval = form.refill.data or None
        usage = UsageTerms(form.quota.data) if interval is None else UsageTerms(
            form.quota.data, form.quota.data, interval,
            (form.refill_day.data or 1) if interval == "monthly" else None)
    if current is None:
        return {"rate_limit": rate, "usage_limit": usage}
    was_rate, was_usage = shown_terms(current)
    return {"rate_limit": KEEP if rate == was_rate else rate,
            "usage_limit": KEEP if usage == was_usage else usage}


def shown_terms(limits: KeyLimits | None) -> tuple[RateTerms | None, UsageTerms | None]:
    """The terms a key's limits were set with, as the form shows them."""
    if limits is None:
        return None, None
    rate = (RateTerms(limits.rate_limit, limits.rate_window) if limits.rate_limit is not None
            else None)
    usage = None
    if limits.remaining is not None:
        usage = (UsageTerms(limits.quota) if limits.refill_interval is None else UsageTerms(
            limits.refill_amount, limits.refill_amount, limits.refill_interval,
            limits.refill_day))
    return rate, usage


def fill(form, limits: KeyLimits | None) -> None:
    """Put a key's limits into the edit form's fields (a GET)."""
    rate, usage = shown_terms(limits)
    if rate is not None:
        form.rate_limit.data, form.rate_window.data = rate
    if usage is not None:
        form.quota.data, form.refill.data = usage.remaining, usage.interval or ""
        form.refill_day.data = usage.day_of_month or 1


def rate_words(limits: KeyLimits | None) -> str | None:
    """"100 requests a minute", or None without a rate."""
    if limits is None or limits.rate_limit is None:
        return None
    window = limits.rate_window
    per = WINDOW_WORDS.get(window, f"every {window:,} seconds")
    return f"{limits.rate_limit:,} {'request' if limits.rate_limit == 1 else 'requests'} {per}"


def usage_words(limits: KeyLimits | None, now: datetime) -> str | None:
    """"842 of 1,000 left, refills on 1 Jan", or None without a quota."""
    if limits is None or limits.remaining is None:
        return None
    terms = limits.terms()
    left, refills = terms.live_remaining(now), terms.refills_at(now)
    words = f"{left:,} of {(limits.refill_amount or limits.quota or 0):,} left"
    if refills is None:
        return words + ", never refilled"
    return words + f", refills on {refills.day} {refills:%b}" + (
        f" {refills.year}" if refills.year != now.year else "")
