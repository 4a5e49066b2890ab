"""Services: what an organisation runs behind KeyVault. Each has an audience (unique on the
instance), the scopes it defines (each name belonging to it alone) and its own verify keys.

Every call goes through organizations.authorize first: members see services, owners and admins
manage them (`manage_service_accounts`, the same right as for service accounts). A service's
verify keys are made, rolled and revoked by service.keys with the service as their owner,
always with the one scope `key:verify`. When one of them calls verify, KeyVault knows which
service asks (service.verify: `aud`, its scopes only, the restriction judge).

Removing a scope that keys carry (an edit that drops it, or deleting the service) is refused
with the list of those keys, unless `narrow` is asked: then each loses the scope, and the log
says so on each key.
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app
from sqlalchemy import String, cast, func, or_, select

from .. import clock, tokens
from ..extensions import db
from ..models import ApiKey
from ..org_models import Organization, Service, ServiceScope
from .errors import InvalidInput, NameTaken, ScopeInUse, ServiceNotFound
from .events import Origin, record
from .keys import create_key, get_key, page_keys, revoke_key, roll_key
from .organizations import Access, Actor, authorize, find_organization
from .pagination import Page, paginate
from .scopes import BUILT_IN, VERIFY
from .validation import clean_description, clean_name, is_public_id

MANAGE = "manage_service_accounts"
AUDIENCE_MAX = 255
SCOPE_NAME = re.compile(r"[a-z0-9_.-]{1,60}:[a-z0-9_.-]{1,38}")
MAX_SCOPES = 100
SCOPE_DESCRIPTION_MAX = 200  # as for KEYVAULT_SCOPES' descriptions (config)


def clean_audience(audience: Any) -> str:
    """`billing`, or a URL such as `https://billing.example.com`: printable, no spaces."""
    if not isinstance(audience, str) or not audience.strip():
        raise InvalidInput("Give the service an audience: a short name such as “billing”, or "
                           "its URL.", "audience")
    audience = audience.strip()
    if len(audience) > AUDIENCE_MAX or not all(33 <= ord(c) < 127 for c in audience):
        raise InvalidInput(f"The audience is up to {AUDIENCE_MAX} printable ASCII characters "
                           "without spaces.", "audience")
    return audience


def clean_service_scopes(scopes: Any) -> dict[str, str]:
    """[{"name": "invoice:read", "description": "..."}] as {name: description}."""
    if scopes is None:
        return {}
    if not isinstance(scopes, list) or len(scopes) > MAX_SCOPES or not all(
            isinstance(s, dict) and set(s) <= {"name", "description"} for s in scopes):
        raise InvalidInput(f'“scopes” is a list of up to {MAX_SCOPES} {{"name", "description"}} '
                           "objects.", "scopes")
    cleaned: dict[str, str] = {}
    for scope in scopes:
        name, text = scope.get("name"), scope.get("description")
        if not isinstance(name, str) or not SCOPE_NAME.fullmatch(name):
            raise InvalidInput(f"A scope's name is object:action in lower case letters, digits, "
                               f"“_”, “.” or “-”: {name!r} is not.", "scopes")
        if not isinstance(text, str) or not text.strip() or len(text) > SCOPE_DESCRIPTION_MAX \
                or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise InvalidInput(f"Describe the scope “{name}” in 1 to {SCOPE_DESCRIPTION_MAX} "
                               "printable characters.", "scopes")
        if name in cleaned:
            raise InvalidInput(f"The scope “{name}” is listed twice.", "scopes")
        cleaned[name] = " ".join(text.split())
    return cleaned


def _refuse_taken(service: Service | None, name: str | None, audience: str | None,
                  scopes: dict[str, str]) -> None:
    """Names, audiences and scope names are the instance's: say which one is taken."""
    others = select(Service).where(Service.id != (service.id if service else -1))
    if name is not None and db.session.scalar(others.where(
            func.lower(Service.name) == name.lower())):
        raise NameTaken(f"A service called “{name}” exists already.", "name")
    if audience is not None and db.session.scalar(others.where(Service.audience == audience)):
        raise NameTaken(f"Another service has the audience “{audience}”.", "audience")
    from_config = [s for s in scopes if s in BUILT_IN or s in _instance_wide()]
    taken = from_config or list(db.session.scalars(select(ServiceScope.name).where(
        ServiceScope.name.in_(list(scopes)),
        ServiceScope.service_id != (service.id if service else -1))))
    if taken:
        raise NameTaken(f"The scope “{taken[0]}” belongs to KeyVault or another service.",
                        "scopes")


def _instance_wide() -> tuple[str, ...]:
    return current_app.config["KEYVAULT_SCOPES"]


def _in(organization: Organization, public_id: Any) -> Service:
    service = db.session.scalar(select(Service).where(
        Service.organization_id == organization.id, Service.public_id == str(public_id))
    ) if is_public_id(public_id) else None
    if service is None:
        raise ServiceNotFound()
    return service


def get_service(actor: Actor, org_id: Any, service_id: Any,
                action: str = "view") -> tuple[Access, Service]:
    access = authorize(actor, org_id, action)
    return access, _in(access.organization, service_id)


def page_services(actor: Actor, org_id: Any, limit: int, cursor: str | None) -> Page:
    access = authorize(actor, org_id, "view")
    return paginate(select(Service).where(Service.organization_id == access.organization.id),
                    Service, limit, cursor)


def all_services() -> list[Service]:
    """Every service on the instance, by name: a key may be restricted to any of them."""
    return list(db.session.scalars(select(Service).order_by(Service.name)))


def list_services(organization: Organization) -> list[Service]:
    return list(db.session.scalars(select(Service).where(
        Service.organization_id == organization.id).order_by(Service.name)))


def _create(organization: Organization, user_id: int | None, origin: Origin, *, name: Any,
            audience: Any, description: Any = None, scopes: Any = None) -> Service:
    name, audience = clean_name(name), clean_audience(audience)
    defined = clean_service_scopes(scopes)
    _refuse_taken(None, name, audience, defined)
    service = Service(public_id=tokens.new_public_id(), organization_id=organization.id,
                      name=name, audience=audience, description=clean_description(description),
                      scopes=sorted(defined), created_at=clock.now())
    service.defined = [ServiceScope(name=n, description=t) for n, t in sorted(defined.items())]
    db.session.add(service)
    record("service.created", user_id, origin, organization_id=organization.id, name=name,
           audience=audience, service=service.public_id, scopes=sorted(defined))
    db.session.commit()
    return service


def create_service(actor: Actor, org_id: Any, origin: Origin, **fields: Any) -> Service:
    """A new service of the organisation: name, audience, description, scopes."""
    access = authorize(actor, org_id, MANAGE)
    return _create(access.organization, access.user_id, origin, **fields)


def carriers(scopes: list[str]) -> list[ApiKey]:
    """The live keys that carry any of these scopes by name (not through `*`)."""
    if not scopes:
        return []
    text = cast(ApiKey.scopes, String)
    maybe = db.session.scalars(select(ApiKey).where(
        ApiKey.revoked_at.is_(None), or_(*[text.like(f'%"{s}"%') for s in scopes])))
    return [key for key in maybe if set(key.scopes) & set(scopes)]


def _take_away(scopes: list[str], narrow: bool, access: Access, origin: Origin) -> None:
    """Refuse, naming the keys that carry them, or narrow those keys (`narrow`), each logged."""
    keys = carriers(scopes)
    if keys and not narrow:
        # Named: the acting person's own keys and the organisation's service accounts' keys;
        # other people's keys are counted, never shown (whose they are is theirs).
        shown = [key for key in keys if key.user_id == access.user_id or (
            key.service_account is not None
            and key.service_account.organization_id == access.organization.id)]
        named = ", ".join(f"“{key.label}” ({key.public_id})" for key in shown[:20])
        others = len(keys) - len(shown)
        raise ScopeInUse(
            f"{len(keys)} key(s) carry {', '.join(scopes)}"
            + (f": {named}" if named else "")
            + (f"{' and' if named else ':'} {others} of other people" if others else "")
            + ". Narrow them first, or ask to narrow them (narrow: true).", "scopes")
    for key in keys:
        removed = [s for s in key.scopes if s in scopes]
        key.scopes = [s for s in key.scopes if s not in scopes]
        record("key.updated", key.user_id if key.user_id is not None else access.user_id,
               origin, key, fields=["scopes"], scopes_added=[], scopes_removed=removed,
               narrowed_by_service=True)


def update_service(actor: Actor, org_id: Any, service_id: Any, origin: Origin, *,
                   name: Any = None, audience: Any = None, description: Any = None,
                   scopes: Any = None, narrow: bool = False) -> Service:
    """Change what was given (None leaves a field). `scopes` replaces the list: a scope left
    out is removed (see _take_away); descriptions may change freely."""
    access, service = get_service(actor, org_id, service_id, MANAGE)
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = clean_name(name)
    if audience is not None:
        changes["audience"] = clean_audience(audience)
    if description is not None:
        changes["description"] = clean_description(description)
    defined = clean_service_scopes(scopes) if scopes is not None else None
    _refuse_taken(service, changes.get("name"), changes.get("audience"), defined or {})
    details: dict[str, Any] = {"fields": sorted(k for k, v in changes.items()
                                                if getattr(service, k) != v)}
    if defined is not None:
        old = {s.name: s for s in service.defined}
        removed = sorted(set(old) - set(defined))
        _take_away(removed, narrow, access, origin)
        for gone in removed:
            service.defined.remove(old[gone])
        db.session.flush()
        for scope_name, text in defined.items():
            if scope_name in old:
                old[scope_name].description = text
            else:
                service.defined.append(ServiceScope(name=scope_name, description=text))
        if sorted(defined) != service.scopes:
            details["fields"].append("scopes")
            details.update(scopes_added=sorted(set(defined) - set(old)), scopes_removed=removed)
        service.scopes = sorted(defined)
    for field, value in changes.items():
        setattr(service, field, value)
    if details["fields"]:
        record("service.updated", access.user_id, origin, organization_id=service.organization_id,
               service=service.public_id, name=service.name, **details)
    db.session.commit()
    return service


def delete_service(actor: Actor, org_id: Any, service_id: Any, origin: Origin,
                   narrow: bool = False) -> None:
    """Delete it, its scopes and its verify keys (they answer `not_found` at once). Keys
    restricted to it stay restricted: they work nowhere it was (public ids are never reused)."""
    access, service = get_service(actor, org_id, service_id, MANAGE)
    _take_away(list(service.scopes), narrow, access, origin)
    record("service.deleted", access.user_id, origin, organization_id=service.organization_id,
           name=service.name, service=service.public_id)
    db.session.flush()
    db.session.execute(Service.__table__.delete().where(Service.id == service.id))
    db.session.commit()
    db.session.expunge_all()


def restricted_counts(service: Service) -> tuple[int, int]:
    """How many live keys are restricted to this service by name, and to its organisation (so
    working here too): counts, never whose keys they are."""
    text = cast(ApiKey.restricted_to, String)
    live = (ApiKey.revoked_at.is_(None), ApiKey.restricted_to.is_not(None))
    named = db.session.scalar(select(func.count(ApiKey.id)).where(
        *live, text.like(f'%"{service.public_id}"%')))
    via_org = db.session.scalar(select(func.count(ApiKey.id)).where(
        *live, text.like(f'%"{service.organization.public_id}"%')))
    return named, via_org


# ---------------------------------------------------------------- its verify keys


def page_service_keys(actor: Actor, org_id: Any, service_id: Any, include_revoked: bool,
                      limit: int, cursor: str | None) -> Page:
    _, service = get_service(actor, org_id, service_id)
    return page_keys(service, include_revoked, limit, cursor)


def create_service_key(actor: Actor, org_id: Any, service_id: Any, origin: Origin, *,
                       label: Any, expires_at: Any = None,
                       granting_ends_at: Any = None) -> tuple[Any, str]:
    """A verify key of the service: always and only `key:verify`; its value shown this once."""
    access, service = get_service(actor, org_id, service_id, MANAGE)
    return create_key(service, label=label, scopes=[VERIFY], expires_at=expires_at,
                      origin=origin, acting_user_id=access.user_id,
                      granting_ends_at=granting_ends_at)


def roll_service_key(actor: Actor, org_id: Any, service_id: Any, key_id: Any, origin: Origin,
                     grace_period_seconds: Any = 0) -> tuple[Any, str]:
    access, service = get_service(actor, org_id, service_id, MANAGE)
    return roll_key(service, key_id, origin=origin, acting_user_id=access.user_id,
                    grace_period_seconds=grace_period_seconds)


def revoke_service_key(actor: Actor, org_id: Any, service_id: Any, key_id: Any,
                       origin: Origin) -> Any:
    access, service = get_service(actor, org_id, service_id, MANAGE)
    return revoke_key(service, key_id, origin, acting_user_id=access.user_id)


def get_service_key(actor: Actor, org_id: Any, service_id: Any, key_id: Any) -> Any:
    _, service = get_service(actor, org_id, service_id)
    return get_key(service, key_id)


# ---------------------------------------------------------------- the operator's (command line)


def create_for_operator(org_id: Any, origin: Origin, **fields: Any) -> Service:
    """`keyvault services create`: no role check; the operator is at the server."""
    return _create(find_organization(org_id), None, origin, **fields)


def list_for_operator(org_id: Any) -> list[Service]:
    return list_services(find_organization(org_id))
