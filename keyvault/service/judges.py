"""Each restriction on a presented key is a small judge (STYLE habit 16, after PyPI's token caveats).

A judge looks at one `Case` (the key as the keystore read it, and the terms of the request that
presents it) and answers `None` when the key passes, or its own refusal code. The pipeline
(`service.verify`) walks `JUDGES` in order and stops at the first refusal; it knows none of them by
name. Adding a restriction is one more frozen dataclass here and one line in `JUDGES`: the others
and the pipeline stay as they are, and verify's list of codes (`CODES`) follows.

The order is the contract's precedence (DESIGN §5): what the key *is* first (revoked, its owner
inactive, expired), then *where* it may work (which service), then *what* the caller asks of it
(scopes), then what it *costs*. A judge that spends something (a quota) must come after every
judge that can refuse for free, so a refused request never costs the key anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..addresses import allows, client_address
from ..keystore import KeyRow
from .scopes import has_scope


@dataclass(frozen=True)
class CallingService:
    """The service a key is presented to: verify's caller when it is a service's own key, or the
    service a gateway authenticates as (forward_auth's X-KeyVault-Service)."""

    public_id: str
    organization_id: str  # the organisation's public id
    audience: str
    sees: frozenset[str]  # the scopes it may hear of: the instance-wide ones and its own …
    catalogue: tuple[str, ...] = ()  # … in order, for spelling `*` out


@dataclass(frozen=True)
class Case:
    """One presented key and what the request asks of it."""

    row: KeyRow
    via_previous: bool  # the value matched is the old one of a roll, inside or after its grace
    now: datetime
    required: tuple[str, ...] = ()  # scopes the caller requires of the key
    client_ip: str | None = None  # where the key is used from (None: not known)
    # Presented to a service (verify's subject, forward_auth), not to KeyVault's own API, and
    # which one: None with at_service is a caller that is no service (a plain key:verify key).
    at_service: bool = False
    service: CallingService | None = None


class Judge(Protocol):
    code: str  # the refusal this judge answers; verify's CODES lists them in order

    def judge(self, case: Case) -> str | None:
        """None when the key passes this restriction, else the refusal code."""


@dataclass(frozen=True)
class NotRevoked:
    code: str = "revoked"

    def judge(self, case: Case) -> str | None:
        return self.code if case.row.revoked_at is not None else None


@dataclass(frozen=True)
class OwnerActive:
    """The person's account, or the service account's organisation, is active."""

    code: str = "user_inactive"

    def judge(self, case: Case) -> str | None:
        return None if case.row.owner_is_active else self.code


@dataclass(frozen=True)
class NotExpired:
    """The key's own expiry, and for the old value of a roll the end of its grace period."""

    code: str = "expired"

    def judge(self, case: Case) -> str | None:
        row, now = case.row, case.now
        if row.expires_at is not None and row.expires_at <= now:
            return self.code
        if case.via_previous and (row.previous_expires_at is None
                                  or row.previous_expires_at <= now):
            return self.code
        return None


@dataclass(frozen=True)
class RightService:
    """A key restricted to services (or to organisations' services) works only at those: not at
    another service, nor for a caller that is no service. KeyVault's own API is not a service."""

    code: str = "wrong_service"

    def judge(self, case: Case) -> str | None:
        where, service = case.row.restricted_to, case.service
        if where is None or not case.at_service:
            return None
        if service is not None and (service.public_id in where.get("services", ())
                                    or service.organization_id in where.get("organizations", ())):
            return None
        return self.code


@dataclass(frozen=True)
class ScopesOfTheService:
    """A service may require only scopes it sees (the instance-wide ones and its own): another
    service's scope is refused like a missing one, so the answer hints nothing about it."""

    code: str = "insufficient_scope"

    def judge(self, case: Case) -> str | None:
        service = case.service
        if service is None or all(needed in service.sees for needed in case.required):
            return None
        return self.code


@dataclass(frozen=True)
class AddressAllowed:
    """A key restricted to address ranges is used from inside one (an IPv4-mapped IPv6
    address counts as its IPv4 one). Fail closed: with no usable client address, refused."""

    code: str = "ip_not_allowed"

    def judge(self, case: Case) -> str | None:
        networks = case.row.allowed_networks
        if networks is None:
            return None
        address = client_address(case.client_ip)
        return None if address is not None and allows(networks, address) else self.code


@dataclass(frozen=True)
class HasScopes:
    """Every scope the caller requires is held (`*` and `object:*` hold what they name)."""

    code: str = "insufficient_scope"

    def judge(self, case: Case) -> str | None:
        held = case.row.scopes or []
        return None if all(has_scope(held, needed) for needed in case.required) else self.code


JUDGES: tuple[Judge, ...] = (
    NotRevoked(),
    OwnerActive(),
    NotExpired(),
    RightService(),
    AddressAllowed(),
    ScopesOfTheService(),
    HasScopes(),
)


def first_refusal(case: Case, judges: tuple[Judge, ...] = JUDGES) -> str | None:
    """The first judge's refusal in order, or None: the key passes every restriction."""
    for judge in judges:
        refusal = judge.judge(case)
        if refusal is not None:
            return refusal
    return None
