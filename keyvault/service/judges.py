"""Each restriction on a presented key is a small judge (STYLE habit 16, after PyPI's token caveats).

A judge looks at one `Case` (the key as the keystore read it, and the terms of the request that
presents it) and answers `None` when the key passes, or its own refusal code. The pipeline
(`service.verify`) walks `JUDGES` in order and stops at the first refusal; it knows none of them by
name. Adding a restriction is one more frozen dataclass here and one line in `JUDGES`: the others
and the pipeline stay as they are, and verify's list of codes (`CODES`) follows.

The order is the contract's precedence (DESIGN §5): what the key *is* first (revoked, its owner
inactive, expired), then *where* it may work, then *what* the caller asks of it (scopes), then
what it *costs*. A judge that spends something (a quota) must come after every judge that can
refuse for free, so a refused request never costs the key anything.

Spending judges (the owner's rate and quota, issue 25) have a second step. `judge` stays free of
side effects, as for every judge (`check_keys` walks it for keys whose request may yet be
refused: a verify's subject before its caller is admitted); `spend` counts and takes, and is
called only where the request is accepted (`service.verify.settle`, from the gate, after every
other judge and the caller's own admission), once per request. The quota's decision and its
spend are one conditional UPDATE there (keyvault.meter), so two racing uses cannot both take
the last unit, and a refusal before that point never costs anything. `look` says where a key
stands without counting, for an answer about a key refused before the spend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from flask import Flask

from ..addresses import allows, client_address
from ..keystore import KeyRow
from ..limit_models import WARN_BELOW, Limits
from ..meter import meter
from ..ratelimit import Outcome, Quota, limiter
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
    cost: int = 1  # what this use takes from a quota (verify's `cost`, X-KeyVault-Cost)

    @property
    def limited(self) -> bool:
        return self.row.limits is not None or self.row.pool is not None


@dataclass
class Standing:
    """Where a key with limits stands after (or without) this use: verify's `ratelimit` and
    `usage`, the RateLimit-* headers, and the notices a spend crossed (below 10%, used up)."""

    rate: Outcome | None = None  # the stricter of the key's and the pool's
    # The key has a rate, but its store could not count it (ratelimit: the use passes): the
    # smallest such limit, so the answer still says the key is limited, and how much.
    uncounted: int | None = None
    usage: int | None = None  # the smaller remaining of the key's and the pool's quota
    refills_at: datetime | None = None
    notices: list[tuple[Limits, str]] = field(default_factory=list)
    # The key's rates already counted with its door's (http.gate: one round trip to Redis),
    # in `rates` order up to the first refused; None: WithinRate counts them itself.
    counted: list[Outcome | None] | None = None


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


def rates(case: Case) -> list[tuple[Quota, str]]:
    """The rates on this key: its own, then its service account's pool's, each counted under
    its public id (never a row id: SQLite hands a deleted row's id to the next one made, which
    would inherit the window)."""
    row = case.row
    return [(Quota(name, held.rate_limit, held.rate_window), who)
            for name, held, who in (("key", row.limits, row.public_id),
                                    ("pool", row.pool, row.service_account_public_id))
            if held is not None and held.rate_limit is not None]


def _stricter(outcomes: list[Outcome]) -> Outcome | None:
    refused = [o for o in outcomes if not o.allowed]
    return (refused or sorted(outcomes, key=lambda o: o.remaining) or [None])[0]


@dataclass(frozen=True)
class WithinRate:
    """The rate an owner set on the key and on its service account's pool (limit N requests a
    window of S seconds, counted where the instance limits count: ratelimit). Counting is
    spending, so `judge` passes every key; `spend` counts the key's, then the pool's."""

    code: str = "rate_limited"

    def judge(self, case: Case) -> str | None:
        return None

    def spend(self, case: Case, app: Flask, standing: Standing) -> str | None:
        held = rates(case)
        outcomes = (standing.counted if standing.counted is not None
                    else limiter(app).count_all(held))
        # None: the store failed; let through (logged there)
        _stand(standing, held, outcomes)
        return self.code if standing.rate is not None and not standing.rate.allowed else None

    def look(self, case: Case, app: Flask, standing: Standing) -> None:
        held = rates(case)
        _stand(standing, held, [limiter(app).count(quota, who, counting=False)
                                for quota, who in held])


def _stand(standing: Standing, held: list[tuple[Quota, str]],
           outcomes: list[Outcome | None]) -> None:
    """The stricter counted outcome; when the store counted none, the limit all the same."""
    standing.rate = _stricter([o for o in outcomes if o is not None])
    if standing.rate is None and held:
        standing.uncounted = min(quota.amount for quota, _ in held)


def _quotas(case: Case) -> list[Limits]:
    return [held for held in (case.row.limits, case.row.pool)
            if held is not None and held.has_quota]


@dataclass(frozen=True)
class WithinQuota:
    """The usage quota of the key and of its pool: `cost` is taken from both, or from neither
    (keyvault.meter). `judge` refuses for free what the row read already shows used up."""

    code: str = "usage_exceeded"

    def judge(self, case: Case) -> str | None:
        left = [q.live_remaining(case.now) for q in _quotas(case)]
        return self.code if any(n < case.cost for n in left) else None

    def spend(self, case: Case, app: Flask, standing: Standing) -> str | None:
        quotas = _quotas(case)
        if not quotas:
            return None
        if case.cost == 0:  # asks without spending: no write
            self.look(case, app, standing)
            return None
        left = meter(app).spend(quotas, case.cost, case.now)
        if left is None:
            self.look(case, app, standing)
            standing.usage = 0 if standing.usage is None else standing.usage
            return self.code
        for quota, after in zip(quotas, left, strict=True):
            total = quota.refill_amount or quota.quota or 0
            if after == 0:
                standing.notices.append((quota, "used_up"))
            elif after < WARN_BELOW * total and not quota.warned(case.now):
                # crossing 10% now, or already below it when first used this period (a quota
                # set low, a small refill): told once a period either way (notifications)
                standing.notices.append((quota, "low"))
        self._stand(quotas, left, case.now, standing)
        return None

    def look(self, case: Case, app: Flask, standing: Standing) -> None:
        quotas = _quotas(case)
        self._stand(quotas, [q.live_remaining(case.now) for q in quotas], case.now, standing)

    @staticmethod
    def _stand(quotas: list[Limits], left: list[int], now: datetime, standing: Standing) -> None:
        if quotas:
            index = min(range(len(left)), key=left.__getitem__)
            standing.usage, standing.refills_at = left[index], quotas[index].refills_at(now)


JUDGES: tuple[Judge, ...] = (
    NotRevoked(),
    OwnerActive(),
    NotExpired(),
    RightService(),
    AddressAllowed(),
    ScopesOfTheService(),
    HasScopes(),
    WithinRate(),  # a rate-limited request takes nothing from a quota
    WithinQuota(),
)


def first_refusal(case: Case, judges: tuple[Judge, ...] = JUDGES) -> str | None:
    """The first judge's refusal in order, or None: the key passes every restriction."""
    for judge in judges:
        refusal = judge.judge(case)
        if refusal is not None:
            return refusal
    return None


def spend(case: Case, app: Flask, standing: Standing,
          judges: tuple[Judge, ...] = JUDGES) -> str | None:
    """At the point the request is accepted: each spending judge's second step in order, up to
    the first refusal; the ones after it only say where the key stands (nothing spent)."""
    refusal = None
    for judge in judges:
        if refusal is not None:
            if hasattr(judge, "look"):
                judge.look(case, app, standing)
        elif hasattr(judge, "spend"):
            refusal = judge.spend(case, app, standing)
    return refusal


def look(case: Case, app: Flask, standing: Standing, judges: tuple[Judge, ...] = JUDGES) -> None:
    """Where a key refused before the spend stands, without counting anything."""
    for judge in judges:
        step = getattr(judge, "look", None)
        if step is not None:
            step(case, app, standing)
