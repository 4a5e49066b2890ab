"""The scope catalogue and the rules for holding and granting scopes.

A scope is `object:action` or `*`. `*` grants everything and `object:write` implies
`object:read`. KeyVault's own API needs the nine scopes below; KEYVAULT_SCOPES adds the
instance-wide ones, and registered services (service.services) define their own, each name
belonging to one service. A key can only carry scopes from the catalogue: all of these.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..org_models import Service, ServiceScope
from .errors import InvalidInput, ScopeNotAllowed

FULL_ACCESS = "*"
READ_KEYS = "personal_api_key:read"
WRITE_KEYS = "personal_api_key:write"
READ_USER = "user:read"
VERIFY = "key:verify"
READ_METRICS = "metrics:read"  # GET /metrics (keyvault.metrics), for administrators' keys
READ_ORGS = "organization:read"
WRITE_ORGS = "organization:write"
READ_WEBHOOKS = "webhook:read"
WRITE_WEBHOOKS = "webhook:write"
BUILT_IN = (READ_KEYS, WRITE_KEYS, READ_USER, VERIFY, READ_METRICS, READ_ORGS, WRITE_ORGS,
            READ_WEBHOOKS, WRITE_WEBHOOKS)
DESCRIPTIONS = {
    FULL_ACCESS: "Full access: everything you can do through the API, including making more keys",
    READ_KEYS: "See your API keys: names, scopes and dates, never their values",
    WRITE_KEYS: "Create, edit, roll and revoke your API keys (and see them)",
    READ_USER: "See your account's email address and id",
    VERIFY: "Ask KeyVault whether a key a service was handed is valid (for services)",
    READ_METRICS: "Read KeyVault's Prometheus metrics at /metrics (administrators' keys only)",
    READ_ORGS: "See your organisations: members, service accounts, their keys (never values) "
               "and the log",
    WRITE_ORGS: "Manage your organisations as your role allows: members, invitations, service "
                "accounts and their keys (and see them)",
    READ_WEBHOOKS: "See your webhooks (and your organisations' ones you manage) and their "
                   "deliveries, never their secrets",
    WRITE_WEBHOOKS: "Add, change, remove and test webhooks, roll their secrets, redeliver "
                    "events (and see them)",
}


def catalogue() -> tuple[str, ...]:
    """The scopes a key of this instance may carry (besides `*`): the instance-wide ones, then
    those the services registered."""
    registered = db.session.scalars(select(ServiceScope.name).order_by(ServiceScope.name))
    return (*current_app.config["KEYVAULT_SCOPES"], *registered)


def by_service() -> list[tuple[str | None, list[str]]]:
    """The catalogue grouped for the key forms and the API: (None, the instance-wide scopes),
    then (a service's name, its scopes) for each service that defines some."""
    groups: list[tuple[str | None, list[str]]] = [(None, list(current_app.config[
        "KEYVAULT_SCOPES"]))]
    for service in db.session.scalars(select(Service).order_by(Service.name)):
        if service.scopes:
            groups.append((service.name, sorted(service.scopes)))
    return groups


def valid_scopes() -> list[str]:
    """Every scope a key may be given: `*` (full access), then the catalogue."""
    return [FULL_ACCESS, *catalogue()]


def read_only() -> list[str]:
    """The "Read only" preset: every scope of the catalogue that only reads, but an operator's
    (reading /metrics is no part of a person's "read only")."""
    return [scope for scope in catalogue() if scope.endswith(":read") and scope != READ_METRICS]


def presets() -> dict[str, list[str]]:
    """The choices the key page offers, by name, and the scopes each grants."""
    return {"read only": read_only(), "verify keys for a service": [VERIFY],
            "full access": [FULL_ACCESS]}


def scopes_required() -> str:
    """Why a key cannot be made without scopes, naming the choices (the API's 400)."""
    offered = "; ".join(f"{name}: {json_list(granted)}" for name, granted in presets().items())
    return (f"Choose what the key may do: send “scopes”, a list. The key page's choices are "
            f"{offered}; or any of {', '.join(valid_scopes())}.")


def json_list(scopes: list[str]) -> str:
    return "[" + ", ".join(f'"{scope}"' for scope in scopes) + "]"


def describe(scope: str) -> str:
    """What a scope lets a key do, in words: the operator's description from KEYVAULT_SCOPES,
    else KeyVault's own, else a plain reading of the name."""
    given = current_app.config.get("KEYVAULT_SCOPE_DESCRIPTIONS", {})
    if scope in given:
        return given[scope]
    if scope in DESCRIPTIONS:
        return DESCRIPTIONS[scope]
    registered = db.session.scalar(select(ServiceScope.description)
                                   .where(ServiceScope.name == scope))
    if registered is not None:
        return registered
    obj, _, action = scope.partition(":")
    thing = obj.replace("_", " ")
    return {"read": f"Read {thing}", "write": f"Change {thing} (and read it)"}.get(
        action, f"{action.replace('_', ' ').capitalize()} {thing}")


def has_scope(granted: list[str] | tuple[str, ...], needed: str) -> bool:
    """`*` grants everything; `object:write` implies `object:read`."""
    if FULL_ACCESS in granted or needed in granted:
        return True
    obj, _, action = needed.partition(":")
    return action == "read" and f"{obj}:write" in granted


def effective(granted: list[str], known: tuple[str, ...]) -> list[str]:
    """Every scope `granted` holds, spelled out (see _effective)."""
    return list(_effective(tuple(granted), known))


@functools.lru_cache(maxsize=1024)
def _effective(granted: tuple[str, ...], known: tuple[str, ...]) -> tuple[str, ...]:
    """Every scope `granted` holds, spelled out: `*` and `object:write` expanded over the
    catalogue `known` (and `object:read` for a write scope the catalogue lacks), then the
    scopes as granted. A service that checks scope names literally (RFC 7662's `scope`) then
    agrees with has_scope."""
    implied = [scope for scope in known if has_scope(granted, scope)]
    implied += [f"{scope.partition(':')[0]}:read" for scope in granted
                if scope.endswith(":write")]
    return tuple(dict.fromkeys([*implied, *granted]))


def clean_scopes(scopes: Any, granting: list[str] | None, field: str = "scopes") -> list[str]:
    """Validate a requested scope list against the catalogue and the granting key's scopes.

    `granting` is None when a person (page, CLI) asks: people may grant anything in the catalogue.
    """
    if scopes is None:
        raise InvalidInput(scopes_required(), "scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidInput("Scopes must be a list of scope names.", field)
    cleaned = list(dict.fromkeys(s.strip() for s in scopes))
    if not cleaned:
        raise InvalidInput("Choose at least one scope, or * for full access.", field)
    known = catalogue()
    unknown = [scope for scope in cleaned if scope != FULL_ACCESS and scope not in known]
    if unknown:
        raise InvalidInput(f"There is no scope called “{unknown[0]}”. The scopes are: "
                           f"{', '.join(valid_scopes())}.", field)
    if FULL_ACCESS in cleaned:
        cleaned = [FULL_ACCESS]
    if granting is not None:
        for scope in cleaned:
            if not _may_grant(granting, scope):
                raise ScopeNotAllowed(
                    f"This key cannot grant the scope “{scope}”, which it does not hold itself."
                )
    return cleaned


def is_narrowing(old: list[str], new: list[str]) -> bool:
    """True when every scope in `new` is already granted by `old`."""
    return all(_may_grant(old, scope) for scope in new)


def _may_grant(granted: list[str], scope: str) -> bool:
    """Only `*` grants `*`; anything else is granted as `has_scope` says."""
    return FULL_ACCESS in granted if scope == FULL_ACCESS else has_scope(granted, scope)
