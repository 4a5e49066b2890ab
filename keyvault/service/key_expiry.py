"""Changing a key's expiry after it was made: bringing it forward any time, pushing it back
only after re-authentication and within the lifetime caps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import clock
from ..models import ApiKey
from .errors import KeyNotLive, NeedsPassword
from .validation import clean_expiry

NO_EXPIRY = "never"  # update_key's expires_at for "no expiry" (the page offers it; the API cannot)


def extends_life(key: ApiKey, expires_at: Any) -> bool:
    """Would this new expiry (a moment, or NO_EXPIRY) let the key work longer than now?"""
    if key.expires_at is None or expires_at is None:
        return False
    return expires_at == NO_EXPIRY or (isinstance(expires_at, datetime)
                                       and expires_at > key.expires_at)


def changed_expiry(key: ApiKey, expires_at: Any, may_extend: bool,
                   policy_days: int | None = None) -> datetime | None:
    """The key's new expiry: shortening any time; a later one (or none) only with `may_extend`
    (re-authentication) and within KEYVAULT_MAX_KEY_LIFETIME_DAYS, and an organisation's policy
    (`policy_days`) for a service account's key, from now."""
    now = clock.now()
    if key.status(now) == "expired":
        raise KeyNotLive("This key has expired: its expiry can no longer be changed. Create a "
                         "new key instead.")
    new = clean_expiry(None if expires_at == NO_EXPIRY else expires_at, now, capped=False)
    if not extends_life(key, NO_EXPIRY if new is None else new):
        return new  # as long or shorter: never more power
    if not may_extend:
        raise NeedsPassword("Extending a key's life needs your password: change it on the key's "
                            "edit page. Through the API an expiry can only be brought forward.",
                            "expires_at")
    return clean_expiry(new, now, policy_days)
