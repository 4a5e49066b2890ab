"""Setting the limits on a key (issue 25) after it was made: by whoever may edit it (the one
ownership check, keys.get_key), logged as an edit; raising one needs the password in the browser
(`may_raise`), as a later expiry does. An edit of a key's other fields and of its limits is one
transaction (`update_key_and_limits`): all of it is written, or none."""

from __future__ import annotations

from typing import Any

from .. import clock
from ..extensions import db
from ..models import ApiKey
from .errors import NeedsPassword
from .events import Origin, record
from .key_owners import Owner, log_user
from .keys import KeyNotLive, get_key, update_key
from .limit_terms import KEEP, RateTerms, UsageTerms, apply, clean_rate, clean_usage, raises


def set_key_limits(owner: Owner, public_id: str, *, origin: Origin,
                   rate_limit: RateTerms | None = KEEP, usage_limit: UsageTerms | None = KEEP,
                   may_raise: bool = True, acting_user_id: int | None = None) -> ApiKey:
    """Replace the key's rate or usage quota (None removes it; KEEP leaves it)."""
    key = _stage(owner, public_id, origin, rate_limit, usage_limit, may_raise, acting_user_id)
    db.session.commit()
    db.session.refresh(key)
    return key


def update_key_and_limits(owner: Owner, public_id: str, *, origin: Origin,
                          rate_limit: RateTerms | None = KEEP,
                          usage_limit: UsageTerms | None = KEEP, may_raise: bool = True,
                          acting_user_id: int | None = None, **fields: Any) -> ApiKey:
    """keys.update_key's edit (`fields`: label, description, scopes, expires_at, may_widen, ...)
    and the limits' in one transaction: a refusal of either writes nothing."""
    try:
        _stage(owner, public_id, origin, rate_limit, usage_limit, may_raise, acting_user_id)
        key = update_key(owner, public_id, origin=origin, acting_user_id=acting_user_id,
                         **fields)  # commits both when it changes a field
        db.session.commit()  # the limits alone, when it did not
    except Exception:
        db.session.rollback()
        raise
    db.session.refresh(key)
    return key


def would_raise(key: ApiKey, rate_limit: RateTerms | None = KEEP,
                usage_limit: UsageTerms | None = KEEP) -> bool:
    """Would these terms let the key do more than now (the browser asks for the password
    first)? Terms that break a rule raise InvalidInput, as the edit itself would."""
    return raises(key.limits, clean_rate(rate_limit), clean_usage(usage_limit))


def _stage(owner: Owner, public_id: str, origin: Origin, rate_limit, usage_limit,
           may_raise: bool, acting_user_id: int | None) -> ApiKey:
    """Check and write the new limits in the session, with their log event; no commit."""
    key = get_key(owner, public_id)
    if key.revoked_at is not None:
        raise KeyNotLive("A revoked key cannot be edited.")
    rate_limit, usage_limit = clean_rate(rate_limit), clean_usage(usage_limit)
    held = key.limits
    if rate_limit is None and (held is None or held.rate_limit is None):
        rate_limit = KEEP  # removing a rate the key does not have changes nothing
    if usage_limit is None and (held is None or held.remaining is None):
        usage_limit = KEEP
    if rate_limit is KEEP and usage_limit is KEEP:
        return key
    if not may_raise and raises(key.limits, rate_limit, usage_limit):
        raise NeedsPassword("Raising or removing a key's limits needs you to confirm your "
                            "password.")
    apply(key.limits, {"api_key_id": key.id}, rate_limit, usage_limit, clock.now())
    fields = [name for name, terms in (("rate_limit", rate_limit), ("usage_limit", usage_limit))
              if terms is not KEEP]
    record("key.updated", log_user(owner, acting_user_id), origin, key, fields=fields)
    return key
