"""What administrators and the command line do across accounts: list, revoke, (de)activate, prune
(by the operator's rule, and by each organisation's policy for its service accounts' keys)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, func, not_, select
from sqlalchemy.orm import contains_eager

from .. import clock
from ..extensions import db
from ..models import ApiKey, User
from ..org_models import Organization, ServiceAccount
from . import notifications
from .accounts import user_by_email
from .errors import InvalidInput, KeyNotFound, KeyNotLive, UserNotFound
from .events import Origin, record
from .keys import revoke, revoke_key
from .pagination import DEFAULT_LIMIT, Page, paginate
from .validation import is_public_id, is_row_id


def _status_is(status: str, now):
    """models.key_status's order of precedence as SQL, so a page of keys can be filtered in the
    database (tests hold the two together)."""
    live, user_active = ApiKey.revoked_at.is_(None), User.is_active.is_(True)
    ended = and_(ApiKey.expires_at.is_not(None), ApiKey.expires_at <= now)
    return {
        "revoked": ApiKey.revoked_at.is_not(None),
        "user_inactive": and_(live, User.is_active.is_(False)),
        "expired": and_(live, user_active, ended),
        "active": and_(live, user_active, not_(ended)),
    }[status]


def admin_list_keys(email: str | None = None, status: str | None = None, *,
                    limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page:
    """Every key, newest first, a page at a time; only one user's, or only those in one status
    (models.key_status, as SQL), when asked."""
    stmt = select(ApiKey).join(ApiKey.user).options(contains_eager(ApiKey.user))
    if email:
        user = user_by_email(email)
        stmt = stmt.where(User.id == (user.id if user is not None else None))
    if status is not None:
        stmt = stmt.where(_status_is(status, clock.now()))
    return paginate(stmt, ApiKey, limit, cursor)


def admin_list_users(search: str = "", *, limit: int = DEFAULT_LIMIT,
                     cursor: str | None = None) -> Page:
    """Every account, newest first, a page at a time; only those whose email contains `search`."""
    stmt = select(User)
    if search:
        stmt = stmt.where(func.lower(User.email).contains(search.lower(), autoescape=True))
    return paginate(stmt, User, limit, cursor)


def mailbox_doubles() -> list[list[User]]:
    """Accounts that share a mailbox (keyvault.mailbox), oldest first in each group: made before
    sign-up compared mailboxes. Listed for an operator to settle, never merged here."""
    shared = (select(User.mailbox_key).where(User.mailbox_key != "")
              .group_by(User.mailbox_key).having(func.count() > 1))
    groups: dict[str, list[User]] = {}
    for user in db.session.scalars(select(User).where(User.mailbox_key.in_(shared))
                                   .order_by(User.id)):
        groups.setdefault(user.mailbox_key, []).append(user)
    return sorted(groups.values(), key=lambda group: group[0].id)


def admin_revoke_key(admin: User, public_id: str, origin: Origin) -> ApiKey:
    return revoke_key_by_id(public_id, origin, by_admin=admin)


def revoke_key_by_id(public_id: str, origin: Origin, *, by_admin: User | None = None,
                     refuse_revoked: bool = False) -> ApiKey:
    """Revoke any user's key by its id (command line and admin); lands in the owner's log.

    With `refuse_revoked` (the command line), a key that is already revoked is KeyNotLive, so a
    script hears that nothing changed; otherwise revoking twice is quietly the same as once.
    """
    if not is_public_id(public_id):
        raise KeyNotFound()
    key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == str(public_id)))
    if key is None:
        raise KeyNotFound()
    if refuse_revoked and key.revoked_at is not None:
        when = key.revoked_at.strftime("%Y-%m-%d %H:%M UTC")
        raise KeyNotLive(f"Key {key.public_id} ({key.label}, {key.mask}) was already revoked on "
                         f"{when}; nothing changed.")
    owner = key.user if key.user is not None else key.service_account
    return revoke_key(owner, public_id, origin, by_admin=by_admin)


def set_user_active(admin: User | None, user_id: int, active: bool, origin: Origin) -> User:
    """(De)activate an account (nothing happens when it already is so). `admin` is the administrator who
    asks on the admin page, None on the command line.

    A deactivated user cannot log in, their sessions end, and their keys verify as
    `user_inactive` (models.key_status) until they are activated again.
    """
    user = db.session.get(User, user_id) if is_row_id(user_id) else None
    if user is None:
        raise UserNotFound()
    if admin is not None and user.id == admin.id and not active:
        raise InvalidInput("You cannot deactivate your own account.")
    if user.is_active == active:
        return user
    user.is_active = active
    if not active:
        user.session_epoch += 1  # reactivation must not bring old browser sessions back
    details = {"by_admin": admin.email} if admin is not None else {}
    record("user.activated" if active else "user.deactivated", user.id, origin, **details)
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
        revoke(key, now, origin, reason="unused", unused_days=unused_days)
    db.session.commit()
    return stale


UNUSED_WARNING = timedelta(days=7)


def prune_by_policy(*, dry_run: bool, origin: Origin) -> list[tuple[ApiKey, int]]:
    """Each organisation's `revoke_unused_after_days`: revoke its service accounts' live keys
    not presented (or, never presented, not created) for that long, and mail its owners 7 days
    before (once per key and date; not on a dry run). Returns (key, the policy's days) for each
    key revoked, or that would be."""
    now = clock.now()
    rows = db.session.execute(
        select(ApiKey, Organization).join(ServiceAccount, ApiKey.service_account_id
                                          == ServiceAccount.id)
        .join(Organization, ServiceAccount.organization_id == Organization.id)
        .where(ApiKey.revoked_at.is_(None), Organization.revoke_unused_after_days.is_not(None))
        .order_by(ApiKey.id)).all()
    stale = []
    for key, organization in rows:
        days = organization.revoke_unused_after_days
        revoke_at = (key.last_used_at or key.created_at) + timedelta(days=days)
        if revoke_at <= now:
            stale.append((key, days))
        elif revoke_at - UNUSED_WARNING <= now and not dry_run:
            notifications.warn_unused(key, organization, revoke_at, now)
    if dry_run or not stale:
        return stale
    for key, days in stale:
        revoke(key, now, origin, reason="unused", unused_days=days, policy=True)
    db.session.commit()
    return stale
