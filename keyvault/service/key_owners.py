"""Who owns a key: a person, a service account, or a service (its own verify keys). Which keys
are theirs, the lock that makes the key limit exact, the organisation's policy that caps a
service account's keys, and whom the security log names for a change."""

from __future__ import annotations

from sqlalchemy import update

from ..extensions import db
from ..models import ApiKey, User
from ..org_models import Organization, Service, ServiceAccount
from .errors import ScopeNotAllowed
from .scopes import is_narrowing

Owner = User | ServiceAccount | Service
# The column that names each kind of owner: the one ownership rule.
_COLUMN = {User: "user_id", ServiceAccount: "service_account_id", Service: "service_id"}


def _kind(owner: Owner) -> type:
    return next(kind for kind in _COLUMN if isinstance(owner, kind))  # owner may be a proxy


def owned_by(owner: Owner):
    """The keys of this person, service account or service."""
    return getattr(ApiKey, _COLUMN[_kind(owner)]) == owner.id


def kind_in_words(owner: Owner) -> str:
    return {User: "account", ServiceAccount: "service account", Service: "service"}[_kind(owner)]


def owner_columns(owner: Owner) -> dict[str, int | None]:
    """The owner columns of a new key: this owner's set, the others null."""
    mine = _COLUMN[_kind(owner)]
    return {column: owner.id if column == mine else None for column in _COLUMN.values()}


def lock_owner(owner: Owner) -> None:
    """Serialise this transaction with any other one that locks the same owner, so two
    concurrent creates cannot both pass the key limit.

    A write that changes nothing: on PostgreSQL it locks the owner's row (as SELECT … FOR UPDATE
    would), on SQLite it takes the database's write lock before the count is read — SQLite has
    no row locks and ignores FOR UPDATE, and a transaction that read first and wrote second
    would fail with "database is locked" when another writer got in between.
    """
    table = _kind(owner)
    db.session.execute(update(table).where(table.id == owner.id).values(id=table.id))


def policy_of(owner: Owner) -> Organization | None:
    """The organisation whose policy caps this owner's keys (None for a person, and for a
    service, whose keys carry only key:verify)."""
    return owner.organization if isinstance(owner, ServiceAccount) else None


def refuse_outside_policy(policy: Organization | None, scopes: list[str]) -> None:
    if policy is not None and policy.allowed_scopes is not None and not is_narrowing(
            policy.allowed_scopes, scopes):
        raise ScopeNotAllowed(
            "The organisation's policy allows its service accounts' keys only these scopes: "
            f"{', '.join(policy.allowed_scopes)}.")


def log_user(owner: Owner, acting_user_id: int | None) -> int | None:
    return owner.id if isinstance(owner, User) else acting_user_id
