"""The revocation stream's source of truth: a key_changes row for every change that can turn a
key's valid verdict into a refusal or narrow it (or turn a refusal into a valid verdict: scopes
added, an owner activated again), written in the transaction of the change, so
every worker of every instance reads the same events (GET /api/verify/events).

Changes people make arrive through the security log: events.record hands each event to
`after_record`, which knows which kinds matter (one place, as for the mail). Deleting an account
logs nothing (its log goes with it), so accounts calls `owner_deleted` itself. Expiry writes
nothing when it happens, so `Watcher.step` sweeps for keys whose expiry or roll grace has just
passed; each such row is written once however many workers find it (the `once` column).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from .. import clock
from ..change_models import KeyChange
from ..extensions import db
from ..models import ApiKey, SecurityEvent
from ..org_models import Organization, Service, ServiceAccount

# What a verifier hears, as the `event` of {"key_id", "event", "at"}.
EVENTS = ("revoked", "expired", "rolled", "grace_ended", "scopes_narrowed", "expiry_changed",
          "restrictions_changed", "owner_deactivated", "owner_deleted", "scopes_widened",
          "owner_activated")
# The last two can turn a refusal into a valid verdict: a verifier that caches refusals asks
# again (a refusal names no key, so keyvault-client drops every refusal it holds on any event).
# A key's fields that can refuse a verdict that was valid: where it may be used (addresses,
# services, organisations) and how much (a rate, a usage quota; a service account's pool).
# Any change to them is told: a verifier that cached the verdict asks again.
RESTRICTING = frozenset({"allowed_ips", "restricted_to", "rate_limit", "usage_limit"})
# Rows are kept this long, so a verifier resumes with Last-Event-ID after an outage this long
# (the promise is 10 minutes; the margin covers a slow prune).
RETENTION = timedelta(minutes=15)
# An id missing below the newest one read may be a transaction that took its id and has not
# committed yet (PostgreSQL hands ids out before commit): it is looked for again this long.
GAP_SECONDS = 10.0
LARGEST_ID = 2**31 - 1  # KeyChange.id is an `integer` on PostgreSQL
MAX_GAPS = 10_000


class Change(NamedTuple):
    id: int
    key_id: str
    event: str
    at: datetime


def note(event: str, key_ids: Iterable[str], at: datetime | None = None) -> None:
    """Add one change per key to the current transaction; the caller commits."""
    at = at or clock.now()
    db.session.add_all(KeyChange(key_id=key_id, event=event, at=at) for key_id in key_ids)


def after_record(row: SecurityEvent) -> None:
    """The stream's events that a security-log event implies, in its transaction."""
    kind, details = row.event, row.details or {}
    if kind in ("key.revoked", "key.leaked", "key.rolled", "key.updated") and row.key is None:
        return
    if kind in ("key.revoked", "key.leaked"):
        note("revoked", [row.key.public_id], row.created_at)
    elif kind == "key.rolled":  # with no grace the old value stops now; else its end is swept
        note("rolled", [row.key.public_id], row.created_at)
    elif kind == "key.updated":
        if details.get("scopes_removed"):
            note("scopes_narrowed", [row.key.public_id], row.created_at)
        if details.get("scopes_added"):
            note("scopes_widened", [row.key.public_id], row.created_at)
        if "expires_at" in details.get("fields", ()):
            note("expiry_changed", [row.key.public_id], row.created_at)
        if RESTRICTING.intersection(details.get("fields", ())):
            note("restrictions_changed", [row.key.public_id], row.created_at)
    elif kind == "service_account.updated" and RESTRICTING.intersection(details.get("fields", ())):
        note("restrictions_changed", _organization_keys(kind, row, details), row.created_at)
    elif kind == "user.deactivated":
        note("owner_deactivated", _live_keys(ApiKey.user_id == row.user_id), row.created_at)
    elif kind == "user.activated":
        note("owner_activated", _live_keys(ApiKey.user_id == row.user_id), row.created_at)
    elif kind == "org.activated":
        note("owner_activated", _organization_keys(kind, row, details), row.created_at)
    elif kind in ("org.deactivated", "org.deleted", "service_account.deleted",
                  "service.deleted"):
        event = "owner_deactivated" if kind == "org.deactivated" else "owner_deleted"
        note(event, _organization_keys(kind, row, details), row.created_at)


def owner_deleted(user_id: int) -> None:
    """A person's account is being deleted, with its keys: one event per live key."""
    note("owner_deleted", _live_keys(ApiKey.user_id == user_id))


def _organization_keys(kind: str, row: SecurityEvent, details: dict) -> list[str]:
    """The live keys an organisation's event is about: one service account's, one service's
    own verify keys, or (org.*) every key the organisation owns, its services' included."""
    if kind in ("service_account.deleted", "service_account.updated"):
        return _live_keys(ApiKey.service_account_id.in_(select(ServiceAccount.id).where(
            ServiceAccount.public_id == details.get("service_account")).scalar_subquery()))
    if kind == "service.deleted":
        return _live_keys(ApiKey.service_id.in_(select(Service.id).where(
            Service.public_id == details.get("service")).scalar_subquery()))
    if kind == "org.deleted":  # its log is going too, so the event names it by public id
        organization = select(Organization.id).where(
            Organization.public_id == details.get("organization")).scalar_subquery()
    else:
        organization = row.organization_id
    return _live_keys(
        ApiKey.service_account_id.in_(select(ServiceAccount.id).where(
            ServiceAccount.organization_id == organization).scalar_subquery())
        | ApiKey.service_id.in_(select(Service.id).where(
            Service.organization_id == organization).scalar_subquery()))


def _live_keys(owned) -> list[str]:
    return list(db.session.scalars(select(ApiKey.public_id).where(
        owned, ApiKey.revoked_at.is_(None))))


# ---------------------------------------------------------------- reading


def latest_id() -> int:
    """The newest event's id (0 when there is none): where a stream without Last-Event-ID starts."""
    return db.session.scalar(select(func.max(KeyChange.id))) or 0


def read_after(after: int, limit: int = 1000) -> list[Change]:
    """Events with an id above `after`, oldest first. An `after` past the largest id the
    column holds (a Last-Event-ID from elsewhere) finds none, on PostgreSQL too, whose
    `integer` would refuse the comparison instead."""
    rows = db.session.execute(
        select(KeyChange.id, KeyChange.key_id, KeyChange.event, KeyChange.at)
        .where(KeyChange.id > min(after, LARGEST_ID)).order_by(KeyChange.id).limit(limit)).all()
    db.session.commit()  # end the read: the next one sees what committed since
    return [Change(*row) for row in rows]


def sweep_expiries(since: datetime, now: datetime) -> int:
    """Write `expired` for keys whose expiry passed in (since, now], and `grace_ended` for old
    values whose roll grace did; once each, whichever worker finds them first."""
    found = []
    for column, event in ((ApiKey.expires_at, "expired"),
                          (ApiKey.previous_expires_at, "grace_ended")):
        found += [{"key_id": key_id, "event": event, "at": at,
                   "once": f"{event}:{key_id}:{at.isoformat()}"[:80]}
                  for key_id, at in db.session.execute(
                      select(ApiKey.public_id, column).where(
                          column > since, column <= now, ApiKey.revoked_at.is_(None))
                      .order_by(column))]
    if found:
        dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
        db.session.execute(dialect.insert(KeyChange).values(found)
                           .on_conflict_do_nothing(index_elements=["once"]))
    db.session.commit()
    return len(found)


def prune(now: datetime) -> int:
    """Forget events older than RETENTION."""
    gone = db.session.execute(delete(KeyChange).where(KeyChange.at < now - RETENTION)).rowcount
    db.session.commit()
    return gone


class Watcher:
    """One reader of the events, from a position on: a worker's stream task keeps one for all
    its subscribers. `step` (in an app context) sweeps for expiries now and then, prunes now and
    then, and returns the events new since the last step, including those that committed late
    with a lower id than one already read (GAP_SECONDS)."""

    def __init__(self, after: int, *, sweep_seconds: float = 1.0, prune_seconds: float = 60.0):
        self.after = after
        self.gaps: dict[int, float] = {}  # id not seen yet -> when it was first missed
        self.sweep_seconds, self.prune_seconds = sweep_seconds, prune_seconds
        self.swept_until = clock.now() - RETENTION  # expiries while no worker looked, too
        self.next_sweep = self.next_prune = 0.0

    def step(self) -> list[Change]:
        moment = time.monotonic()
        if moment >= self.next_sweep:
            now = clock.now()
            sweep_expiries(self.swept_until, now)
            self.swept_until, self.next_sweep = now, moment + self.sweep_seconds
        if self.prune_seconds and moment >= self.next_prune:
            prune(clock.now())
            self.next_prune = moment + self.prune_seconds
        return self._read(moment)

    def _read(self, moment: float) -> list[Change]:
        floor = min(self.gaps, default=self.after + 1) - 1
        rows = read_after(floor)
        fresh = [row for row in rows if row.id > self.after or row.id in self.gaps]
        for row in fresh:
            self.gaps.pop(row.id, None)
        top = rows[-1].id if rows else self.after
        if top > self.after:
            seen = {row.id for row in rows}
            if top - self.after <= MAX_GAPS:
                self.gaps.update((missing, moment) for missing in range(self.after + 1, top)
                                 if missing not in seen)
            self.after = top
        for missing, since in list(self.gaps.items()):
            if moment - since > GAP_SECONDS:
                del self.gaps[missing]
        return fresh
