"""A key list as its reader asks for it (search, filter, sort), a person's or a service
account's, and revoking several of a person's keys at once: the keys pages' list controls and
the bulk revoke."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from .. import clock
from ..extensions import db
from ..models import ApiKey, User
from .errors import InvalidInput
from .events import Origin
from .key_owners import Owner, owned_by
from .keys import get_key, revoke
from .scopes import catalogue, has_scope
from .validation import LABEL_MAX

# A person's own keys: their account is active while they look, so never `user_inactive`.
STATUSES = {"active": "Active", "expired": "Expired", "revoked": "Revoked"}
SORTS = {"newest": "Newest first", "oldest": "Oldest first", "label": "Name (A to Z)",
         "last_used": "Last used", "expires": "Expires soonest"}
BULK_MAX = 100  # more keys than anyone may hold live at once (KEYVAULT_MAX_KEYS_PER_USER)


@dataclass(frozen=True)
class KeyQuery:
    """What the keys page lists: labels containing `search`, in `status`, granting `scope`
    (`*` and write-implies-read count), in `sort` order. Empty means any."""

    search: str = ""
    status: str = ""
    scope: str = ""
    sort: str = "newest"

    @classmethod
    def parse(cls, search: str | None, status: str | None, scope: str | None,
              sort: str | None) -> KeyQuery:
        """From the page's query parameters; InvalidInput names the one that cannot be used."""
        search = (search or "").strip()
        if len(search) > LABEL_MAX:
            raise InvalidInput(f"Labels have at most {LABEL_MAX} characters: search for fewer.",
                               "q")
        if status and status not in STATUSES:
            raise InvalidInput(f"Choose a status from the list: {', '.join(STATUSES)}.", "status")
        if scope and scope not in ("*", *catalogue()):
            raise InvalidInput("Choose a scope from the list.", "scope")
        if sort and sort not in SORTS:
            raise InvalidInput(f"Choose an order from the list: {', '.join(SORTS)}.", "sort")
        return cls(search, status or "", scope or "", sort or "newest")

    @property
    def narrowed(self) -> bool:
        return bool(self.search or self.status or self.scope)

    def as_params(self) -> dict[str, str]:
        """The query as the page's query parameters (defaults left out), for links that keep it."""
        params = {"q": self.search, "status": self.status, "scope": self.scope,
                  "sort": "" if self.sort == "newest" else self.sort}
        return {name: value for name, value in params.items() if value}


def _sort_key(sort: str, now: datetime):
    never = datetime.max.replace(tzinfo=now.tzinfo)
    if sort == "label":
        return lambda key: (key.label.casefold(), -key.id)
    if sort == "last_used":  # most recently used first; never used last
        return lambda key: (key.last_used_at is None, -(key.last_used_at or now).timestamp(),
                            -key.id)
    if sort == "expires":  # soonest first; no expiry last
        return lambda key: (key.expires_at or never, -key.id)
    if sort == "oldest":
        return lambda key: (key.created_at, key.id)
    return lambda key: (-key.created_at.timestamp(), -key.id)


def find_keys(owner: Owner, query: KeyQuery, now: datetime | None = None) -> list[ApiKey]:
    """The owner's keys (revoked ones too) that match `query`, in its order.

    The label search runs in SQL; status and scope are asked of each key (ApiKey.status,
    scopes.has_scope), so the list never disagrees with verify about a key.
    """
    now = now or clock.now()
    stmt = select(ApiKey).where(owned_by(owner))
    if query.search:
        stmt = stmt.where(func.lower(ApiKey.label).contains(query.search.lower(),
                                                            autoescape=True))
    keys = [key for key in db.session.scalars(stmt)
            if (not query.status or key.status(now) == query.status)
            and (not query.scope or has_scope(key.scopes, query.scope))]
    return sorted(keys, key=_sort_key(query.sort, now))


def keys_named(owner: User, public_ids: list[str]) -> list[ApiKey]:
    """The owner's keys with these ids, in the order given, each once; KeyNotFound when one is
    not the owner's, InvalidInput when there are none or too many."""
    unique = list(dict.fromkeys(public_ids))
    if not unique:
        raise InvalidInput("Tick the keys to revoke first.", "key")
    if len(unique) > BULK_MAX:
        raise InvalidInput(f"Revoke at most {BULK_MAX} keys at once.", "key")
    return [get_key(owner, public_id) for public_id in unique]


def revoke_keys(owner: User, public_ids: list[str], origin: Origin) -> list[ApiKey]:
    """Revoke several of the owner's keys in one transaction (all or none: an id that is not
    theirs is KeyNotFound and nothing changes); already-revoked ones stay as they were."""
    keys = keys_named(owner, public_ids)
    now = clock.now()
    for key in keys:
        if key.revoked_at is None:
            revoke(key, now, origin)
    db.session.commit()
    return keys
