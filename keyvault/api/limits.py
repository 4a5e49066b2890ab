"""The limits an owner sets on a key (issue 25), as the API reads and writes them: the request
models of `rate_limit` and `usage_limit` (create, edit, service-account pools), and the shapes
verify and a key's JSON answer with. The rules' numbers live with the table (limit_models)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

from .. import service
from ..limit_models import COST_MAX, INTERVALS, QUOTA_MAX, RATE_MAX, WINDOW_MAX, Limits
from ..service.limit_terms import KEEP, RateTerms, UsageTerms

_FORBID = ConfigDict(extra="forbid")
RATE_STANDING = ("A key with a rate (its own or its service account's pool's, the stricter): "
                 "where it stands after this check. Absent for a key without one.")
USAGE_STANDING = ("A key with a usage quota (its own or its pool's, the smaller): what is "
                  "left after this check and when it refills. Absent for a key without one.")


def _whole(value: Any) -> Any:
    """JSON's 30.0 is the number 30 (JSON Schema's `integer` says so too); 30.5 is refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Whole = BeforeValidator(_whole)


class RateLimit(BaseModel):
    """At most `limit` requests in each window of `window_seconds` (fixed windows, aligned to
    the clock). Counted exactly across every worker and instance; past it: `rate_limited`."""

    model_config = ConfigDict(strict=True, extra="forbid")

    limit: Annotated[int, Whole] = Field(ge=1, le=RATE_MAX)
    window_seconds: Annotated[int, Whole] = Field(ge=1, le=WINDOW_MAX)


class Refill(BaseModel):
    """Sets `remaining` back to `amount` at midnight UTC: every day, or each month on
    `day_of_month` (1-28, so that every month has it)."""

    # A daily refill has no day: the document says so, so no client is surprised by the 400.
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={
        "if": {"properties": {"interval": {"const": "daily"}}, "required": ["interval"]},
        "then": {"properties": {"day_of_month": {"type": "null"}}}})

    amount: Annotated[int, Whole] = Field(ge=1, le=QUOTA_MAX)
    interval: Literal[INTERVALS]
    day_of_month: Annotated[int | None, Whole] = Field(None, ge=1, le=28, description=(
        "Monthly refills only; 1 when omitted."))

    @model_validator(mode="after")
    def _day_only_monthly(self) -> Refill:
        if self.interval == "daily" and self.day_of_month is not None:
            raise ValueError("day_of_month is for a monthly refill only")
        return self


class UsageLimit(BaseModel):
    """A number of uses: each verify of the key, forward_auth or API call with it takes its
    cost (1, or verify's `cost`); at 0 it answers `usage_exceeded` until a refill, if any."""

    model_config = ConfigDict(strict=True, extra="forbid")

    remaining: Annotated[int, Whole] = Field(ge=0, le=QUOTA_MAX)
    refill: Refill | None = None


Cost = Annotated[int, Field(ge=0, le=COST_MAX, description=(
    "What this check takes from the key's usage quota (and its pool's), all or nothing; 0 "
    "checks without spending. Keys without a quota ignore it.")), Whole]


class RateStanding(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]

    limit: int
    remaining: Annotated[int | None, Field(description=(
        "null: the rate's store could not be reached, so this use was let through uncounted "
        "(README: Limits on a key)."))]
    reset: Annotated[int | None, Field(description="Seconds until the window ends; null as "
                                                   "`remaining`.")]


class UsageStanding(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]

    remaining: int
    refills_at: Annotated[datetime | None, Field(description="Null without a refill.")]


class RateLimitShown(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]

    limit: int
    window_seconds: int


class RefillShown(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]

    amount: int
    interval: Literal[INTERVALS]
    day_of_month: NotRequired[int]


class UsageLimitShown(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]

    remaining: Annotated[int, Field(description="What is left now (a due refill counted).")]
    refill: RefillShown | None
    refills_at: datetime | None


def standing_of(standing) -> dict:
    """verify's `ratelimit` and `usage` members for a key with limits (service.judges.Standing)."""
    found = {}
    if standing is None:
        return found
    if standing.rate is not None:
        rate = standing.rate
        found["ratelimit"] = {"limit": rate.quota.amount, "remaining": rate.remaining,
                              "reset": rate.reset}
    elif standing.uncounted is not None:  # the store is unreachable: limited, not counted
        found["ratelimit"] = {"limit": standing.uncounted, "remaining": None, "reset": None}
    if standing.usage is not None:
        found["usage"] = {"remaining": standing.usage, "refills_at": standing.refills_at}
    return found


def shown(limits: Limits | None, now: datetime) -> tuple[dict | None, dict | None]:
    """A key's (or a pool's) `rate_limit` and `usage_limit`, with the live remaining."""
    if limits is None:
        return None, None
    rate = ({"limit": limits.rate_limit, "window_seconds": limits.rate_window}
            if limits.rate_limit is not None else None)
    if limits.remaining is None:
        return rate, None
    refill = None
    if limits.refill_interval is not None:
        refill = {"amount": limits.refill_amount, "interval": limits.refill_interval}
        if limits.refill_interval == "monthly":
            refill["day_of_month"] = limits.refill_day
    return rate, {"remaining": limits.live_remaining(now), "refill": refill,
                  "refills_at": limits.refills_at(now)}


def limit_terms(body: BaseModel) -> dict:
    """A request's `rate_limit` and `usage_limit` as the service's terms: absent from the body,
    KEEP (as they are); null, None (removed)."""
    terms = {}
    for name, convert in (("rate_limit", _rate), ("usage_limit", _usage)):
        if name in body.model_fields_set:
            value = getattr(body, name)
            terms[name] = None if value is None else convert(value)
        else:
            terms[name] = KEEP
    return terms


def _rate(rate: RateLimit) -> RateTerms:
    return RateTerms(rate.limit, rate.window_seconds)


def _usage(usage: UsageLimit) -> UsageTerms:
    refill = usage.refill
    if refill is None:
        return UsageTerms(usage.remaining)
    return UsageTerms(usage.remaining, refill.amount, refill.interval,
                      refill.day_of_month or (1 if refill.interval == "monthly" else None))


def header_cost(text: str | None) -> int:
    """forward_auth's X-KeyVault-Cost: a whole number from 0 to COST_MAX; 1 when absent."""
    if text is None:
        return 1
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > COST_MAX:
        raise service.InvalidInput(f"X-KeyVault-Cost must be a whole number from 0 to "
                                   f"{COST_MAX}.", "X-KeyVault-Cost")
    return int(text)
