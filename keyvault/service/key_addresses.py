"""A key's address restriction (`allowed_ips`): validated and spelled canonically on create and
edit; narrowing any time, widening (more ranges, or none: anywhere) only after re-authentication."""

from __future__ import annotations

from typing import Any

from .. import addresses
from ..models import ApiKey
from .errors import InvalidInput, NeedsPassword

FIELD = "allowed_ips"
EXAMPLES = "such as 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32"


def clean_allowed_ips(value: Any) -> list[str] | None:
    """At most MAX_RANGES addresses or CIDR ranges, IPv4 or IPv6, canonical and without
    duplicates; None (or an empty list): the key works from any address."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput(f"The allowed addresses must be a list of addresses or ranges, "
                           f"{EXAMPLES}.", FIELD)
    if len(value) > addresses.MAX_RANGES:
        raise InvalidInput(f"A key takes at most {addresses.MAX_RANGES} address ranges; "
                           f"{len(value)} were given. Use wider ranges.", FIELD)
    try:
        ranges = addresses.canonical(value)
    except addresses.BadRange as error:
        shown = str(error.entry)[:60]
        raise InvalidInput(f"“{shown}” is not an IP address or a CIDR range ({EXAMPLES}).",
                           FIELD) from None
    return ranges or None


def widens(key: ApiKey, ranges: list[str] | None) -> bool:
    """Would these ranges (cleaned) let the key work from an address it cannot now?"""
    return not addresses.is_narrowing(key.allowed_ips, ranges)


def changed_allowed_ips(key: ApiKey, value: Any, may_widen: bool) -> list[str] | None:
    """The key's new ranges: fewer or narrower any time; more, wider or none (anywhere) only
    with `may_widen` (re-authentication in the browser; the API is refused)."""
    ranges = clean_allowed_ips(value)
    if not may_widen and widens(key, ranges):
        raise NeedsPassword("Letting a key work from more addresses needs your password: change "
                            "it on the key's edit page. Through the API its address ranges can "
                            "only be narrowed.", FIELD)
    return ranges
