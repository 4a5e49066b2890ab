"""Who owns a key: a person or a service account. Which keys are theirs, the lock that makes the
key limit exact, the organisation's policy that caps a service account's keys, and whom the
security log names for a change."""

from __future__ import annotations

from sqlalchemy import update

from ..extensions import db
from ..models import ApiKey, User
from ..org_models import Organization, ServiceAccount
from .errors import ScopeNotAllowed
from .scopes import is_narrowing

Owner = User | ServiceAccount


def owned_by(owner: Owner):
    """The keys of this person, or of this service account."""
    if isinstance(owner, ServiceAccount):
        return ApiKey.service_account_id == owner.id
    return ApiKey.user_id == owner.id


def lock_owner(owner: Owner) -> None:
    """Serialise this transaction with any other one that locks the same owner, so two
    concurrent creates cannot both pass the key limit.

    A write that changes nothing: on PostgreSQL it locks the owner's row (as SELECT … FOR UPDATE
    would), on SQLite it takes the database's write lock before the count is read — SQLite has
    no row locks and ignores FOR UPDATE, and a transaction that read first and wrote second
    would fail with "database is locked" when another writer got in between.
    """
    table = ServiceAccount if isinstance(owner, ServiceAccount) else User  # owner may be a proxy
    db.session.execute(update(table).where(table.id == owner.id).values(id=table.id))


def policy_of(owner: Owner) -> Organization | None:
    """The organisation whose policy caps this owner's keys (None for a person)."""
    return owner.organization if isinstance(owner, ServiceAccount) else None


def refuse_outside_policy(policy: Organization | None, scopes: list[str]) -> None:
    if policy is not None and policy.allowed_scopes is not None and not is_narrowing(
            policy.allowed_scopes, scopes):
        raise ScopeNotAllowed(
            "The organisation's policy allows its service accounts' keys only these scopes: "
            f"{', '.join(policy.allowed_scopes)}.")


def log_user(owner: Owner, acting_user_id: int | None) -> int | None:
    return owner.id if isinstance(owner, User) else acting_user_id
