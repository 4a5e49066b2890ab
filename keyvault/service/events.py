"""The security log: who did what to which key, when, from where."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask, has_app_context
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from .. import clock
from ..extensions import db
from ..models import ApiKey, SecurityEvent, User
from .pagination import Page, paginate

EXPIRED_USE_EVERY = timedelta(hours=1)
log = logging.getLogger("keyvault")


@dataclass(frozen=True)
class Origin:
    """Where a change came from, for the security log."""

    ip_address: str | None = None
    user_agent: str | None = None

    @classmethod
    def system(cls) -> Origin:
        return cls(None, "keyvault-cli")


def record(event: str, user_id: int | None, origin: Origin, key: ApiKey | None = None,
           *, key_id: int | None = None, **details: Any) -> None:
    """Add a security-log event to the current transaction; the caller commits."""
    row = SecurityEvent(
        user_id=user_id,
        key_id=key_id,
        event=event,
        created_at=clock.now(),
        ip_address=(origin.ip_address or None) and origin.ip_address[:45],
        user_agent=(origin.user_agent or None) and origin.user_agent[:255],
        details=details,
    )
    if key is not None:
        row.key = key
    db.session.add(row)


def page_events(owner: User, limit: int, cursor: str | None) -> Page:
    stmt = select(SecurityEvent).where(SecurityEvent.user_id == owner.id)
    return paginate(stmt, SecurityEvent, limit, cursor)


def key_events(owner: User, key: ApiKey, limit: int) -> list[SecurityEvent]:
    """A key's own events, newest first (the key is the owner's: keys.get_key checked it)."""
    return list(db.session.scalars(
        select(SecurityEvent)
        .where(SecurityEvent.user_id == owner.id, SecurityEvent.key_id == key.id)
        .order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc())
        .limit(limit)))


def note_expired_use(app: Flask, key_id: int, user_id: int, origin: Origin) -> None:
    """Log a use of an expired key, at most once an hour per key so it cannot flood the log.

    Callable outside an app context (the verify fast path): it pushes one of its own.
    """
    if not has_app_context():
        with app.app_context():
            return note_expired_use(app, key_id, user_id, origin)
    since = clock.now() - EXPIRED_USE_EVERY
    recent = db.session.scalar(
        select(SecurityEvent.id).where(
            SecurityEvent.key_id == key_id,
            SecurityEvent.event == "key.expired_use",
            SecurityEvent.created_at > since,
        ).limit(1)
    )
    if recent is None:
        record("key.expired_use", user_id, origin, key_id=key_id)
        try:
            db.session.commit()
        except OperationalError:  # a writer holds the lock: the verdict must not wait for it
            db.session.rollback()
            log.warning("security log: key.expired_use for key %s not written (database busy)",
                        key_id)
    return None
