"""The limits an owner sets (issue 25): a rate and a usage quota that refills by the calendar, on
one key or on a service account's pool that all its keys share; and what a row means in time.

A key without limits has no row here: the keystore's one SELECT finds none through its outer
join, and the key pays nothing more. `remaining` is the quota's durable count; it belongs to the
refill period named by `period` ('' without a refill). A use in a later period first refills
(`remaining` becomes `refill_amount`), in the same conditional UPDATE that spends (keyvault.meter),
so a period refills exactly once however many uses race across it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, backref, mapped_column, relationship

from .extensions import db
from .models import ApiKey
from .org_models import ServiceAccount

INTERVALS = ("daily", "monthly")
RATE_MAX, WINDOW_MAX, QUOTA_MAX, COST_MAX = 10**9, 86400, 10**12, 1000
WARN_BELOW = 0.10  # the owner hears once a period when the quota falls below this share


class KeyLimits(db.Model):
    __tablename__ = "key_limits"
    __table_args__ = (
        CheckConstraint("(api_key_id IS NULL) <> (service_account_id IS NULL)", name="one_holder"),
        CheckConstraint("remaining IS NULL OR remaining >= 0", name="remaining_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    api_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), unique=True)
    service_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("service_accounts.id", ondelete="CASCADE"), unique=True)
    rate_limit: Mapped[int | None] = mapped_column(Integer)  # requests per window, or no rate
    rate_window: Mapped[int | None] = mapped_column(Integer)  # seconds
    remaining: Mapped[int | None] = mapped_column(BigInteger)  # None: no quota
    quota: Mapped[int | None] = mapped_column(BigInteger)  # as set: "842 of 1,000"
    refill_amount: Mapped[int | None] = mapped_column(BigInteger)
    refill_interval: Mapped[str | None] = mapped_column(String(8))
    refill_day: Mapped[int | None] = mapped_column(Integer)  # monthly: day of month, 1-28
    period: Mapped[str] = mapped_column(String(10), default="")  # the period `remaining` is of
    warned_period: Mapped[str | None] = mapped_column(String(10))  # below 10% mailed for ...
    used_up_period: Mapped[str | None] = mapped_column(String(10))  # used up mailed for ...

    api_key: Mapped[ApiKey | None] = relationship(
        backref=backref("limits", uselist=False, passive_deletes=True))
    service_account: Mapped[ServiceAccount | None] = relationship(
        backref=backref("pool", uselist=False, passive_deletes=True))

    def terms(self) -> Limits:
        return Limits(self.id, self.rate_limit, self.rate_window, self.remaining, self.quota,
                      self.refill_amount, self.refill_interval, self.refill_day, self.period,
                      self.warned_period)


class Limits(NamedTuple):
    """One row of key_limits as the verify hot path reads it (keystore)."""

    id: int
    rate_limit: int | None
    rate_window: int | None
    remaining: int | None
    quota: int | None
    refill_amount: int | None
    refill_interval: str | None
    refill_day: int | None
    period: str
    warned_period: str | None = None  # the period "below 10%" was mailed for, if any

    def warned(self, now: datetime) -> bool:
        """Has the owner heard "below 10%" for the period `now` falls in?"""
        return self.warned_period == self.current_period(now)

    @property
    def has_quota(self) -> bool:
        return self.remaining is not None

    def current_period(self, now: datetime) -> str:
        """The refill period `now` falls in ('' without a refill): its first day."""
        start = period_start(self.refill_interval, self.refill_day, now)
        return start.isoformat() if start is not None else ""

    def live_remaining(self, now: datetime) -> int | None:
        """What is left now: a period past the stored one has refilled (lazily, at next use)."""
        if self.remaining is None:
            return None
        if self.refill_interval is not None and self.period != self.current_period(now):
            return self.refill_amount
        return self.remaining

    def refills_at(self, now: datetime) -> datetime | None:
        """When the next refill comes (midnight UTC); None without a refill."""
        start = period_start(self.refill_interval, self.refill_day, now)
        if start is None:
            return None
        if self.refill_interval == "daily":
            nxt = start + timedelta(days=1)
        else:
            month = start.month % 12 + 1
            nxt = start.replace(year=start.year + (start.month == 12), month=month)
        return datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC)


def period_start(interval: str | None, day: int | None, now: datetime) -> date | None:
    """The first day of the refill period that `now` (UTC) falls in: today for a daily refill,
    the last `day` of a month on or before today for a monthly one."""
    today = now.astimezone(UTC).date()
    if interval == "daily":
        return today
    if interval == "monthly":
        day = day or 1
        if today.day >= day:
            return today.replace(day=day)
        year, month = (today.year - 1, 12) if today.month == 1 else (today.year, today.month - 1)
        return date(year, month, day)
    return None
