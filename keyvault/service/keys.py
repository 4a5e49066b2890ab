"""Keys of a person, a service account or a service: the one ownership check, listing, create,
edit, roll and revoke. Owners other than a person are reached through their organisation's role
check first (service.service_accounts, service.services); everything here is the same for all,
but the limit (KEYVAULT_MAX_KEYS_PER_USER or _PER_SERVICE_ACCOUNT) and an organisation's policy
(scopes and lifetime of its keys on create and roll). `acting_user_id`: who acted, for the log."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import func, or_, select

from .. import clock, tokens
from ..extensions import db
from ..models import ApiKey, User
from . import confirmations
from .errors import (
    EmailNotConfirmed,
    InvalidInput,
    KeyLimitReached,
    KeyNotFound,
    KeyNotLive,
    ScopeNotAllowed,
)
from .events import Origin, page_events, record
from .key_addresses import changed_allowed_ips, clean_allowed_ips
from .key_expiry import changed_expiry
from .key_owners import (
    Owner,
    kind_in_words,
    lock_owner,
    log_user,
    owned_by,
    owner_columns,
    policy_of,
    refuse_outside_policy,
)
from .limit_terms import RateTerms, UsageTerms, clean_rate, clean_usage
from .limit_terms import apply as apply_limits
from .pagination import DEFAULT_LIMIT, Page, paginate
from .restrictions import KEEP, changed_restriction, clean_restriction
from .scopes import clean_scopes, is_narrowing
from .validation import (
    clean_description,
    clean_expiry,
    clean_grace_period,
    clean_label,
    is_public_id,
)


def pepper(app: Flask) -> bytes:
    """The key pepper as bytes (HMAC's key): from configuration, never from the database."""
    return _encoded(app.config["KEYVAULT_KEY_PEPPER"])


@functools.lru_cache(maxsize=8)
def _encoded(text: str) -> bytes:
    return text.encode("utf-8")


def _new_value() -> tuple[str, str]:
    """A fresh key value and its digest."""
    app = current_app._get_current_object()
    value = tokens.generate(app.config["KEYVAULT_KEY_PREFIX"])
    return value, tokens.digest_of(value, pepper(app))


# ---------------------------------------------------------------- reading


def get_key(owner: Owner, public_id: str) -> ApiKey:
    """The one ownership check: another owner's key is indistinguishable from a missing one."""
    if not is_public_id(public_id):
        raise KeyNotFound()
    key = db.session.scalar(
        select(ApiKey).where(ApiKey.public_id == str(public_id), owned_by(owner))
    )
    if key is None:
        raise KeyNotFound()
    return key


def list_keys(owner: Owner, include_revoked: bool = True) -> list[ApiKey]:
    stmt = select(ApiKey).where(owned_by(owner))
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return list(db.session.scalars(stmt.order_by(ApiKey.created_at.desc(), ApiKey.id.desc())))


def page_keys(owner: Owner, include_revoked: bool, limit: int, cursor: str | None) -> Page:
    stmt = select(ApiKey).where(owned_by(owner))
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return paginate(stmt, ApiKey, limit, cursor)


def events_for_key(owner: User, public_id: str, limit: int = DEFAULT_LIMIT,
                   cursor: str | None = None) -> Page:
    """One key's security-log events (those about it, and those it made through the API),
    newest first; KeyNotFound for a key that is not the owner's."""
    return page_events(owner, limit, cursor, key=get_key(owner, public_id))


def live_key_count(owner: Owner) -> int:
    now = clock.now()
    return db.session.scalar(
        select(func.count(ApiKey.id)).where(
            owned_by(owner),
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
        )
    )


def _refuse_outliving(expires_at: datetime | None, granting_ends_at: datetime | None,
                      refusal: str, field: str | None = None) -> None:
    """A presenting key that stops working at `granting_ends_at` cannot hand out a value that
    works longer (create and roll): InvalidInput when `expires_at` is later, or never."""
    if granting_ends_at is None or (expires_at is not None and expires_at <= granting_ends_at):
        return
    moment = granting_ends_at.isoformat().replace("+00:00", "Z")
    raise InvalidInput(f"The key making this request stops working at {moment}: {refusal}.",
                       field)


# ---------------------------------------------------------------- changing


def create_key(
    owner: Owner,
    *,
    label: Any,
    origin: Origin,
    description: Any = None,
    scopes: Any = None,
    expires_at: Any = None,
    granting_scopes: list[str] | None = None,
    granting_ends_at: datetime | None = None,
    acting_user_id: int | None = None,
    allowed_ips: Any = None,
    services: Any = None,
    organizations: Any = None,
    rate_limit: RateTerms | None = None,
    usage_limit: UsageTerms | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its plaintext value, which is returned here and nowhere else, ever.

    `granting_scopes` is the presenting key's scopes for API calls (None for a person). Scopes
    are always chosen, on every door: none given is InvalidInput naming the choices.
    `granting_ends_at` is when the presenting key stops working: a key it makes cannot outlive
    it (without an expires_at it gets that one), or an expiring key could mint a lasting one.
    """
    if isinstance(owner, User) and confirmations.required(owner):
        raise EmailNotConfirmed(
            f"Confirm your email address before creating keys: open the link we mailed to "
            f"{owner.email} (log in again to be sent a new one).")
    now = clock.now()
    label = clean_label(label)
    description = clean_description(description)
    scopes = clean_scopes(scopes, granting_scopes)
    allowed_ips = clean_allowed_ips(allowed_ips)
    rate_limit, usage_limit = clean_rate(rate_limit), clean_usage(usage_limit)
    policy = policy_of(owner)
    refuse_outside_policy(policy, scopes)
    restricted_to = clean_restriction(owner, services, organizations)
    if expires_at is None and granting_ends_at is not None:
        expires_at = granting_ends_at
    expires_at = clean_expiry(expires_at, now, policy.max_key_lifetime_days if policy else None)
    _refuse_outliving(expires_at, granting_ends_at, "the key it creates cannot outlive it",
                      "expires_at")
    person = isinstance(owner, User)  # a service's verify keys count as a service account's
    limit = current_app.config["KEYVAULT_MAX_KEYS_PER_USER" if person
                               else "KEYVAULT_MAX_KEYS_PER_SERVICE_ACCOUNT"]
    lock_owner(owner)
    if live_key_count(owner) >= limit:
        db.session.rollback()
        raise KeyLimitReached(
            f"You already have {limit} active keys, the most allowed. Revoke one to create another."
            if person else f"This {kind_in_words(owner)} already has {limit} active keys, the most "
            "allowed. Revoke one to create another.")
    value, digest = _new_value()
    key = ApiKey(public_id=tokens.new_public_id(), **owner_columns(owner), label=label,
                 description=description, mask=tokens.mask(value), digest=digest, scopes=scopes,
                 created_at=now, expires_at=expires_at, allowed_ips=allowed_ips,
                 restricted_to=restricted_to)
    db.session.add(key)
    db.session.flush()
    apply_limits(None, {"api_key_id": key.id}, rate_limit, usage_limit, now)
    record("key.created", log_user(owner, acting_user_id), origin, key, label=label, scopes=scopes,
           expires_at=expires_at.isoformat() if expires_at else None,
           **({"allowed_ips": allowed_ips} if allowed_ips else {}))
    db.session.commit()
    return key, value


def update_key(
    owner: Owner,
    public_id: str,
    *,
    origin: Origin,
    label: Any = None,
    description: Any = None,
    scopes: Any = None,
    expires_at: Any = None,
    granting_scopes: list[str] | None = None,
    may_widen: bool = False,
    acting_user_id: int | None = None,
    allowed_ips: Any = None,
    services: Any = KEEP,
    organizations: Any = KEEP,
) -> ApiKey:
    """Change label, description, scopes, expiry (NO_EXPIRY: none), allowed_ips ([]: any
    address) or where it works (`services`, `organizations`; None: everywhere); widening scopes,
    a later expiry, more addresses or more services needs `may_widen` (re-authentication)."""
    key = get_key(owner, public_id)
    if key.revoked_at is not None:
        raise KeyNotLive("A revoked key cannot be edited.")
    changes: dict[str, Any] = {}
    if expires_at is not None:
        policy = policy_of(owner)
        changes["expires_at"] = changed_expiry(
            key, expires_at, may_widen, policy.max_key_lifetime_days if policy else None)
    if label is not None:
        changes["label"] = clean_label(label)
    if description is not None:
        changes["description"] = clean_description(description)
    if scopes is not None:
        new_scopes = clean_scopes(scopes, granting_scopes)
        if not is_narrowing(key.scopes, new_scopes):
            if not may_widen:
                raise ScopeNotAllowed("Adding scopes to an existing key needs you to confirm "
                                      "your password.")
            refuse_outside_policy(policy_of(owner), new_scopes)
        changes["scopes"] = new_scopes
    if allowed_ips is not None:  # [] (or none in the form): from any address
        changes["allowed_ips"] = changed_allowed_ips(key, allowed_ips, may_widen)
    where = changed_restriction(owner, key.restricted_to, services, organizations, may_widen)
    if where is not KEEP:
        changes["restricted_to"] = where
    changed = {name: value for name, value in changes.items() if getattr(key, name) != value}
    if not changed:
        return key
    details: dict[str, Any] = {"fields": sorted(changed)}  # what changed, for the log in words
    if "label" in changed:
        details.update(label_from=key.label, label_to=changed["label"])
    if "scopes" in changed:
        details.update(scopes_added=[s for s in changed["scopes"] if s not in key.scopes],
                       scopes_removed=[s for s in key.scopes if s not in changed["scopes"]])
    if "allowed_ips" in changed:
        details.update(allowed_ips_from=key.allowed_ips, allowed_ips_to=changed["allowed_ips"])
    if "expires_at" in changed:
        details.update(expires_from=_iso(key.expires_at), expires_to=_iso(changed["expires_at"]))
    for name, value in changed.items():
        setattr(key, name, value)
    record("key.updated", log_user(owner, acting_user_id), origin, key, **details)
    db.session.commit()
    return key


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def roll_key(
    owner: Owner, public_id: str, *, origin: Origin, grace_period_seconds: Any = 0,
    granting_scopes: list[str] | None = None, granting_ends_at: datetime | None = None,
    acting_user_id: int | None = None,
) -> tuple[ApiKey, str]:
    """Give the key a new value; the old one works for the grace period, then never again.

    Rolling re-issues the key with its scopes, so a presenting key (`granting_scopes`, None for
    a person) must hold them all, as for create and update; and, as for create, it cannot
    re-issue a key that outlives it (`granting_ends_at`), or an expiring key could obtain a
    lasting value by rolling another key. A service account's key is re-issued under its
    organisation's policy as it is now: refused while it holds a scope the policy no longer
    allows, and its expiry brought within the policy's lifetime from now.
    """
    key = get_key(owner, public_id)
    if granting_scopes is not None:
        clean_scopes(key.scopes, granting_scopes)
    grace_period_seconds = clean_grace_period(grace_period_seconds)
    now = clock.now()
    status = key.status(now)
    if status != "active":
        state = {"user_inactive": "of a deactivated account"}.get(status, status)
        raise KeyNotLive(f"This key is {state} and cannot be rolled; create a new one.")
    _refuse_outliving(key.expires_at, granting_ends_at, "it cannot roll a key that outlives it")
    policy, details = policy_of(owner), {}
    if policy is not None:
        try:
            refuse_outside_policy(policy, key.scopes)
        except ScopeNotAllowed as refusal:
            raise ScopeNotAllowed(f"{refusal.detail} Narrow this key's scopes before rolling "
                                  "it.") from None
        days = policy.max_key_lifetime_days
        if days is not None and (key.expires_at is None
                                 or key.expires_at > now + timedelta(days=days)):
            key.expires_at = now + timedelta(days=days)
            details["expires_at"] = key.expires_at.isoformat()
    value, digest = _new_value()
    if grace_period_seconds:
        key.previous_digest = key.digest
        key.previous_expires_at = now + timedelta(seconds=grace_period_seconds)
    else:
        key.previous_digest = None
        key.previous_expires_at = None
    key.digest = digest
    key.mask = tokens.mask(value)
    key.last_rolled_at = now
    record("key.rolled", log_user(owner, acting_user_id), origin, key,
           grace_period_seconds=grace_period_seconds, **details)
    db.session.commit()
    return key, value


def revoke_key(owner: Owner, public_id: str, origin: Origin, *, by_admin: User | None = None,
               acting_user_id: int | None = None) -> ApiKey:
    """Revoke at once; the row stays so the log and verify can still say `revoked`."""
    key = get_key(owner, public_id)
    if key.revoked_at is None:
        details = {"by_admin": by_admin.email} if by_admin is not None else {}
        revoke(key, clock.now(), origin, acting_user_id=log_user(owner, acting_user_id),
               **details)
        db.session.commit()
    return key


def revoke(key: ApiKey, now: datetime, origin: Origin, *, event: str = "key.revoked",
           acting_user_id: int | None = None, **details: Any) -> None:
    """Mark a key revoked (its grace-period value too) and log it as `event`; the caller commits.

    The old value's digest stays, so a service that presents it hears `revoked`, as for the
    current value, rather than `not_found`; its grace period ends now. A revocation with a
    reason of its own is logged as that one event (`key.leaked`), not as two. The event is the
    owner's, or for a service account's key the acting person's (`acting_user_id`) and its
    organisation's.
    """
    key.revoked_at = now
    key.previous_expires_at = None
    record(event, key.user_id if key.user_id is not None else acting_user_id, origin, key,
           **details)
