"""The security log: who did what to which key, when, from where."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Flask, has_app_context
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import selectinload

from .. import clock
from ..extensions import db
from ..models import ApiKey, SecurityEvent, User
from . import key_changes, notifications, webhook_delivery
from .errors import InvalidInput
from .event_text import CLI_AGENT, event_kinds
from .pagination import Page, paginate

REFUSED_USE_EVERY = timedelta(hours=1)
# The verdicts whose keys are logged (and their owners mailed) when still presented.
REFUSED_USE_EVENTS = {"expired": "key.expired_use", "revoked": "key.revoked_use",
                      "ip_not_allowed": "key.ip_refused",
                      "wrong_service": "key.wrong_service_use"}
# Of those, the ones whose owner is mailed (a dead key still in use); the others are logged only.
MAILED_REFUSALS = ("expired", "revoked")
log = logging.getLogger("keyvault")




@dataclass(frozen=True)
class Origin:
    """Where a change came from, for the security log: the address and user agent, and for an
    API call the key that made it (its id, and its label and mask at the time)."""

    ip_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None  # the X-Request-Id the request was answered with
    actor_key_id: int | None = None
    actor_label: str | None = None
    actor_mask: str | None = None

    @classmethod
    def system(cls) -> Origin:
        """The command line (an operator at the server)."""
        return cls(None, CLI_AGENT)

    def acting_as(self, key: ApiKey) -> Origin:
        """This origin, with `key` as the API key that made the change."""
        return replace(self, actor_key_id=key.id, actor_label=key.label, actor_mask=key.mask)


def record(event: str, user_id: int | None, origin: Origin, key: ApiKey | None = None,
           *, key_id: int | None = None, organization_id: int | None = None,
           **details: Any) -> None:
    """Add a security-log event to the current transaction; the caller commits.

    `user_id` is the person the event is about or who acted (None for a service account's key
    acting, or an unknown one). An event about a service account's key lands in its
    organisation's log without being told; `organization_id` puts any other there.

    The event keeps the key's label and mask as they are now, so the log still tells what
    happened after the key is renamed or rolled. An event that mails someone queues the mail in
    the same transaction (service.notifications), and so does one that calls webhooks
    (service.webhook_delivery) or one a verifier must hear of (service.key_changes).
    """
    row = SecurityEvent(
        user_id=user_id,
        key_id=key_id,
        event=event,
        created_at=clock.now(),
        ip_address=(origin.ip_address or None) and origin.ip_address[:45],
        user_agent=(origin.user_agent or None) and origin.user_agent[:255],
        request_id=origin.request_id,
        details=details,
        actor_key_id=origin.actor_key_id,
        actor_label=origin.actor_label,
        actor_mask=origin.actor_mask,
        organization_id=organization_id,
    )
    if key is None and key_id is not None:
        key = db.session.get(ApiKey, key_id)
    if key is not None:
        row.key = key
        row.key_label, row.key_mask = key.label, key.mask
        if key.service_account is not None:
            row.organization_id = key.service_account.organization_id
    db.session.add(row)
    notifications.after_record(row)
    webhook_delivery.after_record(row)
    key_changes.after_record(row)  # what verifiers hear of it (GET /api/verify/events)


def finish_login(user: User, origin: Origin, **details) -> None:
    """A login: the person proved who they are (password, and second factor when they have one): note
    the login in the transaction; the caller commits."""
    user.last_login_at = clock.now()
    record("login.succeeded", user.id, origin, **details)


@dataclass(frozen=True)
class LogFilter:
    """Which events of the log to show: one kind, and days (UTC) from and to, both included."""

    kind: str | None = None
    since: date | None = None
    until: date | None = None

    @classmethod
    def parse(cls, kind: str | None, since: str | None, until: str | None) -> LogFilter:
        """From the log page's query parameters (empty means any); InvalidInput names the bad one."""
        if kind and kind not in dict(event_kinds()):
            raise InvalidInput("Choose a kind of event from the list.", "kind")
        found = cls(kind or None, _day(since, "since"), _day(until, "until"))
        if found.since and found.until and found.since > found.until:
            raise InvalidInput("The first day comes after the last: swap them.", "since")
        return found

    def as_params(self) -> dict[str, str]:
        """The filter as query parameters, for the page's links (its pager keeps the filter)."""
        return {name: str(value) for name, value in
                (("kind", self.kind), ("since", self.since), ("until", self.until)) if value}


def _day(text: str | None, field: str) -> date | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidInput("Enter days as dates, such as 2031-01-31.", field) from None
    if day.year > 9998:
        raise InvalidInput("Enter a day before the year 9999.", field)
    return day


def page_events(owner: User, limit: int, cursor: str | None, key: ApiKey | None = None,
                only: LogFilter = LogFilter()) -> Page:
    """The owner's log, newest first; only the events about `key` or made by it, when given,
    and only those `only` lets through."""
    # The keys each event names, in one query per page rather than one per event.
    stmt = select(SecurityEvent).where(SecurityEvent.user_id == owner.id).options(
        selectinload(SecurityEvent.key), selectinload(SecurityEvent.actor_key))
    if key is not None:
        stmt = stmt.where(or_(SecurityEvent.key_id == key.id, SecurityEvent.actor_key_id == key.id))
    if only.kind:
        stmt = stmt.where(SecurityEvent.event == only.kind)
    if only.since:
        stmt = stmt.where(SecurityEvent.created_at >= datetime.combine(only.since, time.min, UTC))
    if only.until:
        stmt = stmt.where(SecurityEvent.created_at < datetime.combine(only.until, time.min, UTC)
                          + timedelta(days=1))
    return paginate(stmt, SecurityEvent, limit, cursor)


def page_events_of_key(key: ApiKey, limit: int, cursor: str | None) -> Page:
    """The events about `key` or made by it, newest first, whoever's log they are in."""
    stmt = select(SecurityEvent).where(
        or_(SecurityEvent.key_id == key.id, SecurityEvent.actor_key_id == key.id)).options(
        selectinload(SecurityEvent.key), selectinload(SecurityEvent.actor_key))
    return paginate(stmt, SecurityEvent, limit, cursor)


def page_organization_events(organization_id: int, limit: int, cursor: str | None) -> Page:
    """An organisation's log, newest first: what its people and keys did there."""
    stmt = select(SecurityEvent).where(SecurityEvent.organization_id == organization_id).options(
        selectinload(SecurityEvent.key), selectinload(SecurityEvent.actor_key),
        selectinload(SecurityEvent.user))
    return paginate(stmt, SecurityEvent, limit, cursor)


NOTED = "keyvault.refused_use_noted"
NOTED_MAX = 10_000


def _noted(app: Flask) -> dict:
    """(key id, verdict) -> the time of its latest refused-use event, as this process knows it."""
    noted = app.extensions.setdefault(NOTED, {})
    if len(noted) >= NOTED_MAX:
        noted.clear()
    return noted


def refused_use_due(app: Flask, key_id: int, code: str, now) -> bool:
    """May a use of this dead key be due for the security log? Not when this process saw its
    event within the hour: then the check (an app context and a query) is skipped, so a client
    that keeps presenting a revoked key costs a verify no more than a valid one does."""
    seen = app.extensions.get(NOTED, {}).get((key_id, code))
    return seen is None or now - seen >= REFUSED_USE_EVERY


def note_refused_use(app: Flask, key_id: int, user_id: int | None, origin: Origin,
                     code: str = "expired", client_ip: str | None = None,
                     service: str | None = None) -> None:
    """Log a use of an expired or revoked key, of a key from outside its addresses
    (`client_ip`), or of a key at a service it is not restricted to (`service`: that service's
    audience), at most once an hour per key and code so it cannot flood the log, and for a dead
    key mail the owner at most once a day (notifications).

    Callable outside an app context (the verify fast path): it pushes one of its own. It never
    fails or holds up the verdict: with the database busy, the event is dropped (and logged).
    """
    if not has_app_context():
        with app.app_context():
            return note_refused_use(app, key_id, user_id, origin, code, client_ip, service)
    event = REFUSED_USE_EVENTS[code]
    now = clock.now()
    recent = db.session.scalar(
        select(SecurityEvent.created_at).where(
            SecurityEvent.key_id == key_id,
            SecurityEvent.event == event,
            SecurityEvent.created_at > now - REFUSED_USE_EVERY,
        ).order_by(SecurityEvent.created_at.desc()).limit(1)
    )
    _noted(app)[key_id, code] = recent or now
    if recent is not None:
        return None
    try:
        details = {"client_ip": client_ip} if code == "ip_not_allowed" else {}
        if service:
            details["service"] = service
        record(event, user_id, origin, key_id=key_id, **details)
        mailed = (code in MAILED_REFUSALS
                  and notifications.key_presented(key_id, code, origin.ip_address))
        try:
            db.session.commit()
        except IntegrityError:  # another worker mailed about this key today: log the event only
            if not mailed:
                raise
            db.session.rollback()
            record(event, user_id, origin, key_id=key_id, **details)
            db.session.commit()
    except OperationalError:  # a writer holds the lock: the verdict must not wait for it
        db.session.rollback()
        _noted(app).pop((key_id, code), None)  # try again at the next use
        log.warning("security log: %s for key %s not written (database busy)", event, key_id)
    return None
