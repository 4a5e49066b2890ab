"""Where a key works: at chosen services, or (a person's key) at the services of chosen
organisations, including services those organisations add later.

A restriction is kept on the key's row (`api_keys.restricted_to`: `{"services": [public ids],
"organizations": [public ids]}`, null for everywhere) so verify's one lookup reads it with the
key; public ids are never reused, so a deleted service's id matches no later one. The judge is
`judges.RightService`; this module cleans what people and programs ask for, and says whether a
change widens a key (which needs the password in the browser, and is refused to the API).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..extensions import db
from ..models import User
from ..org_models import Organization, Service
from .errors import InvalidInput, ScopeNotAllowed
from .validation import is_public_id

KEEP = object()  # an edit that leaves the restriction as it is
MAX_CHOICES = 100


def restricted_to_service(where: dict | None, service_id: str, organization_id: str) -> bool:
    """Is the key restricted to this service, or to its organisation? (A service then may hear
    whose key it is: the owner chose it.)"""
    return where is not None and (service_id in where.get("services", ())
                                  or organization_id in where.get("organizations", ()))


def may_manage(where: dict | None, org_id: str | None) -> bool:
    """May a key with this restriction act in organisation `org_id` through KeyVault's API? A key
    restricted to organisations manages only those (item 6 of the services issue)."""
    return org_id is None or not where or not where.get("organizations") \
        or org_id in where["organizations"]


def _ids(value: Any, field: str, model) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"“{field}” must be a list of ids, or null for all services.", field)
    ids = list(dict.fromkeys(value))
    if not ids or len(ids) > MAX_CHOICES:
        raise InvalidInput(f"Choose 1 to {MAX_CHOICES} {field}, or leave “{field}” out (or null) "
                           "for all services.", field)
    known = set(db.session.scalars(select(model.public_id).where(
        model.public_id.in_([i for i in ids if is_public_id(i)]))))
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InvalidInput(f"There is no {field[:-1].replace('_', ' ')} with the id "
                           f"“{unknown[0]}”.", field)
    return ids


def clean_restriction(owner: Any, services: Any, organizations: Any) -> dict | None:
    """The restriction asked for, checked: None (both omitted or null) means everywhere.
    Organisations restrict a person's keys only; a service's own keys are never restricted."""
    if services is None and organizations is None:
        return None
    if not isinstance(owner, User) and organizations is not None:
        raise InvalidInput("Only a person's key can be restricted to organisations; restrict a "
                           "service account's key to services.", "organizations")
    if isinstance(owner, Service):
        raise InvalidInput("A service's verify key works only for it already.", "services")
    return {"services": [] if services is None else _ids(services, "services", Service),
            "organizations": [] if organizations is None
            else _ids(organizations, "organizations", Organization)}


def widens(old: dict | None, new: dict | None) -> bool:
    """Does `new` let the key work somewhere `old` did not?"""
    if old is None:
        return False
    if new is None:
        return True
    old_orgs = set(old.get("organizations", ()))
    if not old_orgs.issuperset(new.get("organizations", ())):
        return True
    added = set(new.get("services", ())) - set(old.get("services", ()))
    if not added:
        return False
    return bool(added - set(db.session.scalars(select(Service.public_id).join(
        Organization).where(Service.public_id.in_(added), Organization.public_id.in_(old_orgs)))))


def widens_services(owner: Any, old: dict | None, services: list[str] | None) -> bool:
    """Would restricting the key to `services` (None: all; its organisations kept) let it work
    somewhere it did not? (The key's edit page then asks for the password.)"""
    organizations = (old or {}).get("organizations") or None
    return widens(old, clean_restriction(owner, services, organizations))


def changed_restriction(owner: Any, old: dict | None, services: Any, organizations: Any,
                        may_widen: bool) -> Any:
    """An edit's new restriction (KEEP when neither field was sent); widening needs `may_widen`
    (the password in the browser; the API cannot widen, as for scopes)."""
    if services is KEEP and organizations is KEEP:
        return KEEP
    services = (old or {}).get("services") or None if services is KEEP else services
    organizations = ((old or {}).get("organizations") or None if organizations is KEEP
                     else organizations)
    new = clean_restriction(owner, services, organizations)
    if not may_widen and widens(old, new):
        raise ScopeNotAllowed("Letting a key work at more services needs you to confirm your "
                              "password.")
    return new


def names_of(where: dict | None) -> list[str]:
    """Where a key works, in words for its page and list row: the services' names and the
    organisations' (`… (all services)`); empty for everywhere."""
    if where is None:
        return []
    services = dict(db.session.execute(select(Service.public_id, Service.name).where(
        Service.public_id.in_(where.get("services", ())))).all())
    orgs = dict(db.session.execute(select(Organization.public_id, Organization.name).where(
        Organization.public_id.in_(where.get("organizations", ())))).all())
    return ([services[i] for i in where.get("services", ()) if i in services]
            + [f"{orgs[i]} (all its services)" for i in where.get("organizations", ())
               if i in orgs])


def where_in_words(where: dict | None) -> str:
    """"All services", or the names: "billing, search"; "no service" when every service it
    named is gone."""
    if where is None:
        return "All services"
    return ", ".join(names_of(where)) or "No service (those it named were deleted)"
