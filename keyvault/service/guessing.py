"""The guessing limit, for passwords (logins, sudo prompts) and for the login's second step's
codes (service.second_factor), counted exactly; each `kind` has its own count.

Three buckets, each KEYVAULT_LOGIN_MAX_FAILURES failed checks per 15 minutes:
- a **known device** (a browser that logged in to this account before: web.device_cookie) counts
  only its own failures, so nobody elsewhere can lock the owner out of their own browser;
- any other attempt counts against its **address** (whatever account it tries, so the answer
  does not tell whether an account exists) and against the **account** it names (so guesses
  spread over many addresses still stop).

An attempt is written, as failed, before its password is checked, and the count and the write
happen under one lock (the database's write lock on SQLite, an advisory lock on PostgreSQL): 30
parallel guesses let exactly the limit through, however many workers and instances serve them.
A check that succeeds marks its attempt as not failed.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import NamedTuple

from flask import current_app
from sqlalchemy import delete, func, or_, select, text, update

from .. import clock, metrics
from ..extensions import db
from ..models import PasswordAttempt, SecurityEvent
from .errors import TooManyFailures
from .events import Origin, record
from .validation import normalise_email

WINDOW = timedelta(minutes=15)
_LOCK_ID = 0x6B765F70  # PostgreSQL advisory lock: "kv_p"


class Device(NamedTuple):
    """A browser that logged in before: whose it is, and its own id (from its signed cookie)."""

    user_id: int
    id: str


def account_key(email: str) -> str:
    """The account an attempt names, as a keyed digest of the normalised email: unknown emails
    are counted too, and no email is stored in plain text."""
    pepper = current_app.config["KEYVAULT_KEY_PEPPER"].encode()
    return hmac.new(pepper, normalise_email(email).encode(), hashlib.sha256).hexdigest()


def _lock() -> None:
    """Serialise attempts from here to the commit (see the module's docstring).

    A read transaction still open would make SQLite refuse the write outright (its snapshot may
    be older than another writer's commit), so it is ended first.
    """
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    # On SQLite the DELETE below is a write: it takes the write lock before anything is counted.
    db.session.execute(delete(PasswordAttempt).where(
        PasswordAttempt.created_at < clock.now() - 2 * WINDOW))


# What each kind of guess is, in the refusal's words, and its metric and log names.
_KINDS = {
    "password": ("wrong passwords", "password", "login.throttled"),
    "code": ("wrong two-factor codes", "two_factor", "2fa.throttled"),
}


def begin(email: str | None, origin: Origin, user_id: int | None,
          device: Device | None, kind: str = "password") -> PasswordAttempt | None:
    """Count a password (or, `kind="code"`, a second-factor code) check before it is made;
    TooManyFailures when a bucket is full.

    `user_id` is the account's id when it exists (for the log only); a `device` counts as known
    only for the account it logged in to. None when the limit is switched off. Without an
    `email` (a passkey login names no account until it is checked) only the address counts.
    """
    words, metric, event = _KINDS[kind]
    allowed = current_app.config["KEYVAULT_LOGIN_MAX_FAILURES"]
    if not allowed:
        return None
    account = account_key(email) if email is not None else ""
    known = device if device is not None and user_id is not None \
        and device.user_id == user_id else None
    _lock()
    now = clock.now()
    recent = select(func.count(PasswordAttempt.id)).where(
        PasswordAttempt.failed, PasswordAttempt.kind == kind,
        PasswordAttempt.created_at > now - WINDOW)
    if known is not None:
        full = db.session.scalar(recent.where(PasswordAttempt.device == known.id)) >= allowed
        whose = "this browser"
    else:
        unknown = PasswordAttempt.device.is_(None)
        by_address = db.session.scalar(recent.where(
            PasswordAttempt.ip_address == (origin.ip_address or "")[:45], unknown))
        by_account = db.session.scalar(recent.where(PasswordAttempt.account == account, unknown)) \
            if email is not None else 0
        full = by_address >= allowed or by_account >= allowed
        whose = "your address or for this account" if email is not None else "your address"
    if full:
        metrics.record_rate_limited(metric)
        _note_throttled(event, user_id, origin, now)
        db.session.commit()
        minutes = int(WINDOW.total_seconds() // 60)
        raise TooManyFailures(
            f"Too many {words} from {whose}: try again in {minutes} minutes. "
            "A browser you have logged in with before is not held up by this.")
    attempt = PasswordAttempt(created_at=now, ip_address=(origin.ip_address or "")[:45],
                              account=account, device=known.id if known else None, failed=True,
                              kind=kind)
    db.session.add(attempt)
    db.session.commit()
    return attempt


def succeeded(attempt: PasswordAttempt | None) -> None:
    """The check passed: the attempt stops counting (committed with the caller's work)."""
    if attempt is not None:
        db.session.execute(update(PasswordAttempt).where(PasswordAttempt.id == attempt.id)
                           .values(failed=False))


def _note_throttled(event: str, user_id: int | None, origin: Origin, now) -> None:
    """`login.throttled` (or `2fa.throttled`) in the security log, once per window per address:
    refusals cost no argon2, so a row each would let an address fill the log as fast as it can
    send."""
    seen = db.session.scalar(select(func.count(SecurityEvent.id)).where(
        SecurityEvent.event == event,
        or_(SecurityEvent.ip_address == origin.ip_address, SecurityEvent.user_id == user_id)
        if user_id is not None else SecurityEvent.ip_address == origin.ip_address,
        SecurityEvent.created_at > now - WINDOW))
    if not seen:
        record(event, user_id, origin)
