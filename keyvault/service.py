"""What KeyVault does: accounts, keys and verification. Owns transactions and the ownership check.

Nothing here knows about HTTP: callers pass plain values and an Origin (address, user agent) and
get models, verdicts or a ServiceError back.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from . import clock, passwords, tokens
from .extensions import db
from .keystore import keystore
from .models import ApiKey, SecurityEvent, User

LABEL_MAX = 40
DESCRIPTION_MAX = 1000
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
GRACE_MAX_SECONDS = 7 * 24 * 3600
LAST_USED_RESOLUTION = timedelta(minutes=1)
FULL_ACCESS = "*"


# ---------------------------------------------------------------- errors and small value types


class ServiceError(Exception):
    """A refusal the caller can show as is: `status` is the HTTP status it maps to."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInput(ServiceError):
    title = "Invalid input"


class KeyNotFound(ServiceError):
    status = 404
    title = "Not found"

    def __init__(self, detail: str = "No such API key."):
        super().__init__(detail)


class UserNotFound(KeyNotFound):
    def __init__(self, detail: str = "No such user."):
        super().__init__(detail)


class TooManyFailures(ServiceError):
    status = 429
    title = "Too many failed attempts"


class KeyLimitReached(ServiceError):
    status = 409
    title = "Key limit reached"


class KeyNotLive(ServiceError):
    status = 409
    title = "Key is not active"


class ScopeNotAllowed(ServiceError):
    """A key tried to give a key scopes it does not hold itself."""

    status = 403
    title = "Insufficient scope"


class EmailTaken(ServiceError):
    status = 409
    title = "Email already registered"


@dataclass(frozen=True)
class Origin:
    """Where a change came from, for the security log."""

    ip_address: str | None = None
    user_agent: str | None = None

    @classmethod
    def system(cls) -> Origin:
        return cls(None, "keyvault-cli")


@dataclass
class Verdict:
    """The answer about one presented key: verify's body, and the API's authentication."""

    code: str
    key_id: int | None = None
    public_id: str | None = None
    label: str | None = None
    scopes: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    expires_at: datetime | None = None
    user_id: int | None = None
    user_email: str | None = None
    rolled: bool = False
    old_value_expires_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.code == "valid"

    @property
    def ends_at(self) -> datetime | None:
        """When the presented value stops working: the key's expiry, or sooner for an old value
        inside a roll's grace period."""
        ends = [t for t in (self.expires_at, self.old_value_expires_at if self.rolled else None)
                if t is not None]
        return min(ends, default=None)


# ---------------------------------------------------------------- small helpers


def _pepper() -> bytes:
    return _encoded(current_app.config["KEYVAULT_KEY_PEPPER"])


@functools.lru_cache(maxsize=8)
def _encoded(text: str) -> bytes:
    return text.encode("utf-8")


def _prefix() -> str:
    return current_app.config["KEYVAULT_KEY_PREFIX"]


def _hasher():
    hasher = current_app.extensions.get("keyvault.hasher")
    if hasher is None:
        hasher = passwords.make_hasher(**current_app.config["KEYVAULT_ARGON2"])
        current_app.extensions["keyvault.hasher"] = hasher
        current_app.extensions["keyvault.dummy_hash"] = passwords.hash_password(hasher, "x" * 16)
    return hasher


def _record(event: str, user_id: int | None, origin: Origin, key: ApiKey | None = None,
            *, key_id: int | None = None, **details: Any) -> None:
    """Add a security-log event to the current transaction; the caller commits."""
    event = SecurityEvent(
        user_id=user_id,
        key_id=key_id,
        event=event,
        created_at=clock.now(),
        ip_address=(origin.ip_address or None) and origin.ip_address[:45],
        user_agent=(origin.user_agent or None) and origin.user_agent[:255],
        details=details,
    )
    if key is not None:
        event.key = key
    db.session.add(event)


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def _has_control_characters(text: str, allowed: str = "") -> bool:
    """Control characters and lone surrogates mean nothing here (PostgreSQL refuses NUL)."""
    return any(char not in allowed and unicodedata.category(char) in ("Cc", "Cs") for char in text)


def _user_by_email(email: str) -> User | None:
    """The account for an email; None for one no account can have (PostgreSQL refuses NUL)."""
    email = normalise_email(email)
    if _has_control_characters(email):
        return None
    return db.session.scalar(select(User).where(User.email == email))


def _refuse_control_characters(text: str, name: str, allowed: str = "") -> None:
    if _has_control_characters(text, allowed):
        raise InvalidInput(f"{name} must not contain control characters.", name)


def clean_label(label: Any) -> str:
    if not isinstance(label, str):
        raise InvalidInput("label must be a string.", "label")
    _refuse_control_characters(label, "label")
    label = label.strip()
    if not label:
        raise InvalidInput("label must not be empty.", "label")
    if len(label) > LABEL_MAX:
        raise InvalidInput(f"label must be at most {LABEL_MAX} characters.", "label")
    return label


def clean_description(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        raise InvalidInput("description must be a string.", "description")
    _refuse_control_characters(description, "description", allowed="\t\n\r")
    description = description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise InvalidInput(
            f"description must be at most {DESCRIPTION_MAX} characters.", "description"
        )
    return description


# ---------------------------------------------------------------- scopes


def scope_catalogue() -> tuple[str, ...]:
    return current_app.config["KEYVAULT_SCOPES"]


def has_scope(granted: list[str] | tuple[str, ...], needed: str) -> bool:
    """`*` grants everything; `object:write` implies `object:read`."""
    if FULL_ACCESS in granted or needed in granted:
        return True
    obj, _, action = needed.partition(":")
    return action == "read" and f"{obj}:write" in granted


def clean_scopes(scopes: Any, granting: list[str] | None) -> list[str]:
    """Validate a requested scope list against the catalogue and the granting key's scopes.

    `granting` is None when a person (page, CLI) asks: people may grant anything in the catalogue.
    """
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidInput("scopes must be a list of strings.", "scopes")
    cleaned = list(dict.fromkeys(s.strip() for s in scopes))
    if not cleaned:
        raise InvalidInput("scopes must name at least one scope.", "scopes")
    catalogue = scope_catalogue()
    for scope in cleaned:
        if scope != FULL_ACCESS and scope not in catalogue:
            raise InvalidInput(f"Unknown scope: {scope!r}.", "scopes")
    if FULL_ACCESS in cleaned:
        cleaned = [FULL_ACCESS]
    if granting is not None:
        for scope in cleaned:
            allowed = FULL_ACCESS in granting if scope == FULL_ACCESS else has_scope(granting, scope)
            if not allowed:
                raise ScopeNotAllowed(
                    f"This key cannot grant the scope {scope!r}, which it does not hold."
                )
    return cleaned


def is_narrowing(old: list[str], new: list[str]) -> bool:
    """True when every scope in `new` is already granted by `old`."""
    return all((FULL_ACCESS in old) if s == FULL_ACCESS else has_scope(old, s) for s in new)


# ---------------------------------------------------------------- expiry


def clean_expiry(expires_at: Any, now: datetime) -> datetime | None:
    """Validate an expiry against now and KEYVAULT_MAX_KEY_LIFETIME_DAYS."""
    max_days = current_app.config["KEYVAULT_MAX_KEY_LIFETIME_DAYS"]
    if expires_at is None:
        if max_days is not None:
            raise InvalidInput(
                f"An expiry is required: keys may live at most {max_days} days.", "expires_at"
            )
        return None
    if isinstance(expires_at, str):
        try:
            expires_at = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                "expires_at must be an ISO 8601 date-time, e.g. 2030-01-31T00:00:00Z.", "expires_at"
            ) from None
    if not isinstance(expires_at, datetime):
        raise InvalidInput("expires_at must be an ISO 8601 date-time string.", "expires_at")
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    try:
        expires_at = expires_at.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("expires_at is out of range.", "expires_at") from None
    if expires_at <= now:
        raise InvalidInput("expires_at must be in the future.", "expires_at")
    if max_days is not None and expires_at > now + timedelta(days=max_days, minutes=1):
        raise InvalidInput(f"Keys may live at most {max_days} days.", "expires_at")
    if expires_at.year > 9998:
        raise InvalidInput("expires_at is too far in the future.", "expires_at")
    return expires_at


# ---------------------------------------------------------------- accounts


def sign_up(email: str, password: str, origin: Origin, *, is_admin: bool = False) -> User:
    email = normalise_email(email)
    if not email or "@" not in email or len(email) > 254 or _has_control_characters(email):
        raise InvalidInput("Enter a valid email address.", "email")
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidInput(
            f"Passwords must be {PASSWORD_MIN} to {PASSWORD_MAX} characters.", "password"
        )
    if _user_by_email(email) is not None:
        raise EmailTaken("An account with this email already exists.", "email")
    user = User(
        email=email,
        password_hash=passwords.hash_password(_hasher(), password),
        is_admin=is_admin,
        created_at=clock.now(),
    )
    db.session.add(user)
    try:
        db.session.flush()
        _record("user.created", user.id, origin)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise EmailTaken("An account with this email already exists.", "email") from None
    return user


FAILURE_WINDOW = timedelta(minutes=15)
_FAILURES = ("login.failed", "sudo.failed")


def _refuse_if_guessing(origin: Origin, user_id: int | None) -> None:
    """TooManyFailures when this address has failed KEYVAULT_LOGIN_MAX_FAILURES password checks
    (logins and sudo prompts) in the last 15 minutes; the refusal is logged too.

    Counted per address from the security log, so every instance behind a load balancer sees
    the same count, and an address is refused whichever account it tries next — the answer
    does not tell whether an account exists.
    """
    allowed = current_app.config["KEYVAULT_LOGIN_MAX_FAILURES"]
    if not allowed or not origin.ip_address:
        return
    def recent(*events: str):
        return select(func.count(SecurityEvent.id)).where(
            SecurityEvent.ip_address == origin.ip_address[:45],
            SecurityEvent.event.in_(events),
            SecurityEvent.created_at > clock.now() - FAILURE_WINDOW,
        )

    if db.session.scalar(recent(*_FAILURES)) >= allowed:
        # Logged once per window: refusals cost no argon2, so one row each would let an
        # address fill the security log as fast as it can send requests.
        if not db.session.scalar(recent("login.throttled")):
            _record("login.throttled", user_id, origin)
            db.session.commit()
        minutes = int(FAILURE_WINDOW.total_seconds() // 60)
        raise TooManyFailures(
            f"Too many failed password attempts from your address: try again in {minutes} "
            "minutes.")


def log_in(email: str, password: str, origin: Origin) -> User | None:
    """The user when email and password match an active account, else None; logs either way.

    An unknown email costs one argon2 verification too, so timing does not reveal accounts.
    TooManyFailures when this address has been guessing (see _refuse_if_guessing).
    """
    _refuse_if_guessing(origin, None)
    hasher = _hasher()
    user = _user_by_email(email)
    if user is None:
        passwords.verify_password(hasher, current_app.extensions["keyvault.dummy_hash"], password)
        _record("login.failed", None, origin, reason="unknown_email")
        db.session.commit()
        return None
    if not passwords.verify_password(hasher, user.password_hash, password):
        _record("login.failed", user.id, origin, reason="wrong_password")
        db.session.commit()
        return None
    if not user.is_active:
        _record("login.failed", user.id, origin, reason="inactive")
        db.session.commit()
        return None
    if passwords.needs_rehash(hasher, user.password_hash):
        user.password_hash = passwords.hash_password(hasher, password)
    user.last_login_at = clock.now()
    _record("login.succeeded", user.id, origin)
    db.session.commit()
    return user


def end_sessions(user: User, origin: Origin) -> None:
    """Log the user out of every browser session (their session cookies stop working)."""
    user.session_epoch += 1
    _record("logout", user.id, origin)
    db.session.commit()


def check_password(user: User, password: str, origin: Origin) -> bool:
    """Re-authentication for sensitive actions (sudo mode); a wrong password is logged, as a
    failed login is: someone holding the session may be guessing, and is stopped like one."""
    _refuse_if_guessing(origin, user.id)
    if passwords.verify_password(_hasher(), user.password_hash, password):
        return True
    _record("sudo.failed", user.id, origin)
    db.session.commit()
    return False


def get_user(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def find_user(email: str) -> User:
    user = _user_by_email(email)
    if user is None:
        raise UserNotFound(f"No user with the email {email!r}.")
    return user


def delete_account(user: User, origin: Origin) -> None:
    """Delete the account, its keys and its log: every key stops verifying at once."""
    db.session.execute(SecurityEvent.__table__.delete().where(SecurityEvent.user_id == user.id))
    db.session.execute(ApiKey.__table__.delete().where(ApiKey.user_id == user.id))
    db.session.delete(user)
    db.session.commit()


# ---------------------------------------------------------------- keys: reading


_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def get_key(owner: User, public_id: str) -> ApiKey:
    """The one ownership check: another user's key is indistinguishable from a missing one."""
    if not _PUBLIC_ID.fullmatch(str(public_id)):
        raise KeyNotFound()  # never an id we issued; PostgreSQL would refuse some (NUL) outright
    key = db.session.scalar(
        select(ApiKey).where(ApiKey.public_id == str(public_id), ApiKey.user_id == owner.id)
    )
    if key is None:
        raise KeyNotFound()
    return key


def list_keys(owner: User, include_revoked: bool = True) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.user_id == owner.id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return list(db.session.scalars(stmt.order_by(ApiKey.created_at.desc(), ApiKey.id.desc())))


def _lock_owner(owner: User) -> None:
    """Serialise this transaction with any other one that locks the same owner, so two
    concurrent creates cannot both pass the key limit.

    A write that changes nothing: on PostgreSQL it locks the owner's row (as SELECT … FOR UPDATE
    would), on SQLite it takes the database's write lock before the count is read — SQLite has
    no row locks and ignores FOR UPDATE, and a transaction that read first and wrote second
    would fail with "database is locked" when another writer got in between.
    """
    db.session.execute(update(User).where(User.id == owner.id).values(id=User.id))


def _refuse_outliving(expires_at: datetime | None, granting_ends_at: datetime | None,
                      refusal: str, field: str | None = None) -> None:
    """A presenting key that stops working at `granting_ends_at` cannot hand out a value that
    works longer (create and roll): InvalidInput when `expires_at` is later, or never."""
    if granting_ends_at is None or (expires_at is not None and expires_at <= granting_ends_at):
        return
    moment = granting_ends_at.isoformat().replace("+00:00", "Z")
    raise InvalidInput(f"The key making this request stops working at {moment}: {refusal}.",
                       field)


def live_key_count(owner: User) -> int:
    now = clock.now()
    return db.session.scalar(
        select(func.count(ApiKey.id)).where(
            ApiKey.user_id == owner.id,
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
        )
    )


# ---------------------------------------------------------------- pagination


@dataclass
class Page:
    results: list
    next_cursor: str | None
    previous_cursor: str | None


def _encode_cursor(created_at: datetime, row_id: int, direction: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id, direction], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id, direction = json.loads(base64.urlsafe_b64decode(padded.encode()))
        when = datetime.fromisoformat(created).astimezone(UTC)
        if (created[-6:] not in ("+00:00",) or not isinstance(row_id, int)
                or isinstance(row_id, bool) or not 0 < row_id < 2**63
                or direction not in ("n", "p") or not 1 < when.year < 9999):
            raise ValueError
        return when, row_id, direction
    except (ValueError, TypeError, OverflowError, RecursionError, binascii.Error, UnicodeError):
        raise InvalidInput("cursor is not a cursor this API issued.", "cursor") from None


def paginate(stmt, model, limit: int, cursor: str | None) -> Page:
    """Keyset pagination, newest first, on (created_at, id): stable under inserts and deletes."""
    created, ident = model.created_at, model.id
    direction = "n"
    if cursor:
        when, row_id, direction = _decode_cursor(cursor)
        if direction == "n":
            stmt = stmt.where(or_(created < when, and_(created == when, ident < row_id)))
        else:
            stmt = stmt.where(or_(created > when, and_(created == when, ident > row_id)))
    if direction == "n":
        stmt = stmt.order_by(created.desc(), ident.desc())
    else:
        stmt = stmt.order_by(created.asc(), ident.asc())
    rows = list(db.session.scalars(stmt.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    if direction == "p":
        rows.reverse()
    if not rows:
        return Page([], None, None)
    first, last = rows[0], rows[-1]
    has_next = more if direction == "n" else True
    has_previous = bool(cursor) if direction == "n" else more
    return Page(
        rows,
        _encode_cursor(last.created_at, last.id, "n") if has_next else None,
        _encode_cursor(first.created_at, first.id, "p") if has_previous else None,
    )


def page_keys(owner: User, include_revoked: bool, limit: int, cursor: str | None) -> Page:
    stmt = select(ApiKey).where(ApiKey.user_id == owner.id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return paginate(stmt, ApiKey, limit, cursor)


def page_events(owner: User, limit: int, cursor: str | None) -> Page:
    stmt = select(SecurityEvent).where(SecurityEvent.user_id == owner.id)
    return paginate(stmt, SecurityEvent, limit, cursor)


# ---------------------------------------------------------------- keys: changing


def create_key(
    owner: User,
    *,
    label: Any,
    origin: Origin,
    description: Any = None,
    scopes: Any = None,
    expires_at: Any = None,
    granting_scopes: list[str] | None = None,
    granting_ends_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its plaintext value, which is returned here and nowhere else, ever.

    `granting_scopes` is the presenting key's scopes for API calls (None for a person); without a
    scopes list a person's key gets `*` and an API-made key the presenting key's scopes.
    `granting_ends_at` is when the presenting key stops working: a key it makes cannot outlive
    it (without an expires_at it gets that one), or an expiring key could mint a lasting one.
    """
    now = clock.now()
    label = clean_label(label)
    description = clean_description(description)
    if scopes is None:
        scopes = [FULL_ACCESS] if granting_scopes is None else list(granting_scopes)
    scopes = clean_scopes(scopes, granting_scopes)
    if expires_at is None and granting_ends_at is not None:
        expires_at = granting_ends_at
    expires_at = clean_expiry(expires_at, now)
    _refuse_outliving(expires_at, granting_ends_at, "the key it creates cannot outlive it",
                      "expires_at")
    limit = current_app.config["KEYVAULT_MAX_KEYS_PER_USER"]
    _lock_owner(owner)
    if live_key_count(owner) >= limit:
        db.session.rollback()
        raise KeyLimitReached(
            f"You already have {limit} active keys, the most allowed. Revoke one to create another."
        )
    value = tokens.generate(_prefix())
    key = ApiKey(
        public_id=tokens.new_public_id(),
        user_id=owner.id,
        label=label,
        description=description,
        mask=tokens.mask(value),
        digest=tokens.digest_of(value, _pepper()),
        scopes=scopes,
        created_at=now,
        expires_at=expires_at,
    )
    db.session.add(key)
    db.session.flush()
    _record("key.created", owner.id, origin, key, label=label, scopes=scopes)
    db.session.commit()
    return key, value


def update_key(
    owner: User,
    public_id: str,
    *,
    origin: Origin,
    label: Any = None,
    description: Any = None,
    scopes: Any = None,
    granting_scopes: list[str] | None = None,
    may_widen: bool = False,
) -> ApiKey:
    """Change label, description or scopes; widening scopes needs `may_widen` (re-authentication)."""
    key = get_key(owner, public_id)
    if key.revoked_at is not None:
        raise KeyNotLive("A revoked key cannot be edited.")
    changes: dict[str, Any] = {}
    if label is not None:
        changes["label"] = clean_label(label)
    if description is not None:
        changes["description"] = clean_description(description)
    if scopes is not None:
        new_scopes = clean_scopes(scopes, granting_scopes)
        if not may_widen and not is_narrowing(key.scopes, new_scopes):
            raise ScopeNotAllowed(
                "Adding scopes to an existing key needs you to confirm your password."
            )
        changes["scopes"] = new_scopes
    changed = {name: value for name, value in changes.items() if getattr(key, name) != value}
    if not changed:
        return key
    for name, value in changed.items():
        setattr(key, name, value)
    _record("key.updated", owner.id, origin, key, fields=sorted(changed))
    db.session.commit()
    return key


def roll_key(
    owner: User, public_id: str, *, origin: Origin, grace_period_seconds: Any = 0,
    granting_scopes: list[str] | None = None, granting_ends_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Give the key a new value; the old one works for the grace period, then never again.

    Rolling re-issues the key with its scopes, so a presenting key (`granting_scopes`, None for
    a person) must hold them all, as for create and update; and, as for create, it cannot
    re-issue a key that outlives it (`granting_ends_at`), or an expiring key could obtain a
    lasting value by rolling another key.
    """
    key = get_key(owner, public_id)
    if granting_scopes is not None:
        clean_scopes(key.scopes, granting_scopes)
    if isinstance(grace_period_seconds, float) and grace_period_seconds.is_integer():
        grace_period_seconds = int(grace_period_seconds)  # JSON's 60.0 is the number 60
    if isinstance(grace_period_seconds, bool) or not isinstance(grace_period_seconds, int):
        raise InvalidInput("grace_period_seconds must be a whole number.", "grace_period_seconds")
    if not 0 <= grace_period_seconds <= GRACE_MAX_SECONDS:
        raise InvalidInput(
            f"grace_period_seconds must be between 0 and {GRACE_MAX_SECONDS}.",
            "grace_period_seconds",
        )
    now = clock.now()
    status = key.status(now)
    if status != "active":
        raise KeyNotLive(f"This key is {status} and cannot be rolled; create a new one.")
    _refuse_outliving(key.expires_at, granting_ends_at, "it cannot roll a key that outlives it")
    value = tokens.generate(_prefix())
    if grace_period_seconds:
        key.previous_digest = key.digest
        key.previous_expires_at = now + timedelta(seconds=grace_period_seconds)
    else:
        key.previous_digest = None
        key.previous_expires_at = None
    key.digest = tokens.digest_of(value, _pepper())
    key.mask = tokens.mask(value)
    key.last_rolled_at = now
    _record("key.rolled", owner.id, origin, key, grace_period_seconds=grace_period_seconds)
    db.session.commit()
    return key, value


def revoke_key(owner: User, public_id: str, origin: Origin, *, by_admin: User | None = None) -> ApiKey:
    """Revoke at once; the row stays so the log and verify can still say `revoked`."""
    key = get_key(owner, public_id)
    if key.revoked_at is None:
        details = {"by_admin": by_admin.email} if by_admin is not None else {}
        _revoke(key, clock.now(), origin, **details)
        db.session.commit()
    return key


def _revoke(key: ApiKey, now: datetime, origin: Origin, **details: Any) -> None:
    """Mark a key revoked (its grace-period value too) and log it; the caller commits.

    The old value's digest stays, so a service that presents it hears `revoked`, as for the
    current value, rather than `not_found`; its grace period ends now.
    """
    key.revoked_at = now
    key.previous_expires_at = None
    _record("key.revoked", key.user_id, origin, key, **details)


# ---------------------------------------------------------------- admin


def admin_list_keys(email: str | None = None, status: str | None = None) -> list[ApiKey]:
    now = clock.now()
    stmt = select(ApiKey).join(User)
    if email:
        user = _user_by_email(email)
        stmt = stmt.where(User.id == (user.id if user is not None else None))
    if status == "revoked":
        stmt = stmt.where(ApiKey.revoked_at.is_not(None))
    elif status == "expired":
        stmt = stmt.where(ApiKey.revoked_at.is_(None), User.is_active.is_(True),
                          ApiKey.expires_at <= now)
    elif status == "active":
        stmt = stmt.where(
            ApiKey.revoked_at.is_(None), User.is_active.is_(True),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
        )
    elif status == "user_inactive":
        stmt = stmt.where(ApiKey.revoked_at.is_(None), User.is_active.is_(False))
    return list(db.session.scalars(stmt.order_by(ApiKey.created_at.desc(), ApiKey.id.desc())))


def admin_revoke_key(admin: User, public_id: str, origin: Origin) -> ApiKey:
    return revoke_key_by_id(public_id, origin, by_admin=admin)


def set_user_active(admin: User, user_id: int, active: bool, origin: Origin) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise UserNotFound()
    if user.id == admin.id and not active:
        raise InvalidInput("You cannot deactivate your own account.")
    if user.is_active != active:
        user.is_active = active
        if not active:
            user.session_epoch += 1  # reactivation must not bring old browser sessions back
        _record("user.activated" if active else "user.deactivated", user.id, origin,
                by_admin=admin.email)
        db.session.commit()
    return user


def prune_unused_keys(unused_days: int, *, dry_run: bool, origin: Origin) -> list[ApiKey]:
    """Revoke live keys not used (or, never used, not created) in the last `unused_days` days."""
    cutoff = clock.now() - timedelta(days=unused_days)
    stale = list(
        db.session.scalars(
            select(ApiKey)
            .where(
                ApiKey.revoked_at.is_(None),
                func.coalesce(ApiKey.last_used_at, ApiKey.created_at) < cutoff,
            )
            .order_by(ApiKey.id)
        )
    )
    if dry_run:
        return stale
    now = clock.now()
    for key in stale:
        _revoke(key, now, origin, reason="unused", unused_days=unused_days)
    db.session.commit()
    return stale


# ---------------------------------------------------------------- verification (the hot path)

def _lookup(store, digests: list[str]) -> dict[str, tuple[Any, bool]]:
    """One round trip: digest -> (row, matched the grace-period value) for each known digest."""
    found: dict[str, tuple[Any, bool]] = {}
    for row in store.lookup(digests):
        found[row[-2]] = (row, False)
        if row[-1] is not None:
            found.setdefault(row[-1], (row, True))
    return found


def _judge(app, value: str, digest: str, found: dict, now: datetime, required: list[str],
           origin: Origin) -> Verdict:
    entry = found.get(digest)
    if entry is None:
        return Verdict("not_found")
    row, via_previous = entry
    # The database matched the digest with `=`; confirm it in constant time as DESIGN §1 says.
    if not hmac.compare_digest(row[-1] if via_previous else row[-2], digest):
        return Verdict("not_found")
    (key_id, public_id, label, scopes, created_at, expires_at, revoked_at, last_used_at,
     previous_expires_at, user_id, email, is_active) = row[:12]
    verdict = Verdict(
        "valid", key_id=key_id, public_id=public_id, label=label, scopes=list(scopes or []),
        created_at=created_at, expires_at=expires_at, user_id=user_id, user_email=email,
    )
    if revoked_at is not None:
        verdict.code = "revoked"
    elif not is_active:
        verdict.code = "user_inactive"
    elif (expires_at is not None and expires_at <= now) or (
            via_previous and (previous_expires_at is None or previous_expires_at <= now)):
        verdict.code = "expired"  # the key, or the old value after its roll's grace period
    elif not all(has_scope(verdict.scopes, s) for s in required):
        verdict.code = "insufficient_scope"
    if via_previous:
        verdict.rolled = True
        verdict.old_value_expires_at = previous_expires_at
    if verdict.active:
        _touch(app, key_id, last_used_at, now)
    elif verdict.code == "expired":
        _note_expired_use(app, key_id, user_id, origin)
    return verdict


def check_keys(values: list[str], required: list[list[str]], origin: Origin | None = None,
               app: Flask | None = None) -> list[Verdict]:
    """Judge several presented keys in one database round trip (verify: caller and subject).

    Malformed keys (bad length, alphabet or checksum) are answered without touching the database.
    `app` is for callers outside an app context (keyvault.api.fastlane): the common verdicts then
    need none, and the rare one that writes to the security log pushes its own.
    """
    if app is None:
        app = current_app._get_current_object()
    prefix, now = app.config["KEYVAULT_KEY_PREFIX"], clock.now()
    pepper = _encoded(app.config["KEYVAULT_KEY_PEPPER"])
    digests = [tokens.digest_of(v, pepper) if tokens.is_well_formed(v, prefix) else None
               for v in values]
    wanted = [d for d in digests if d is not None]
    found = _lookup(keystore(app), wanted) if wanted else {}
    return [
        Verdict("malformed") if d is None
        else _judge(app, v, d, found, now, req, origin or Origin())
        for v, d, req in zip(values, digests, required, strict=True)
    ]


def verify_key(value: str, required_scopes: list[str] | None = None,
               origin: Origin | None = None) -> Verdict:
    return check_keys([value], [required_scopes or []], origin)[0]


def _touch(app, key_id: int, last_used_at: datetime | None, now: datetime) -> None:
    """Record use at most once a minute per key: no write at all on most requests."""
    if last_used_at is not None and now - last_used_at < LAST_USED_RESOLUTION:
        return
    keystore(app).touch(key_id, now, now - LAST_USED_RESOLUTION)


def _note_expired_use(app, key_id: int, user_id: int, origin: Origin) -> None:
    """Log a use of an expired key, at most once an hour per key so it cannot flood the log."""
    if not has_app_context():
        with app.app_context():
            return _note_expired_use(app, key_id, user_id, origin)
    since = clock.now() - timedelta(hours=1)
    recent = db.session.scalar(
        select(SecurityEvent.id).where(
            SecurityEvent.key_id == key_id,
            SecurityEvent.event == "key.expired_use",
            SecurityEvent.created_at > since,
        ).limit(1)
    )
    if recent is None:
        _record("key.expired_use", user_id, origin, key_id=key_id)
        db.session.commit()
    return None


def admin_list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.email)))


def revoke_key_by_id(public_id: str, origin: Origin, *, by_admin: User | None = None) -> ApiKey:
    """Revoke any user's key by its id (command line and admin); lands in the owner's log."""
    if not _PUBLIC_ID.fullmatch(str(public_id)):
        raise KeyNotFound()
    key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == str(public_id)))
    if key is None:
        raise KeyNotFound()
    return revoke_key(key.user, public_id, origin, by_admin=by_admin)
