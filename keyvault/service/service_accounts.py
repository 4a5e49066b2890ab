"""Service accounts: an organisation's non-human identities, and their keys.

Every call names the acting person (or service account, for one of its keys) and the
organisation, and goes through organizations.authorize first: members see service accounts
and their keys, owners and admins manage them. The keys themselves are made, edited, rolled and
revoked by service.keys, exactly as a person's are (shown once, scopes, expiry, grace roll,
log), with the service account as their owner: a person leaving, deactivated or deleted
changes nothing for them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from .. import clock, tokens
from ..extensions import db
from ..models import ApiKey
from ..org_models import Organization, ServiceAccount
from .errors import NotAllowed, ServiceAccountNotFound
from .events import Origin, page_events_of_key, record
from .key_limits import update_key_and_limits
from .keys import create_key, get_key, page_keys, revoke_key, roll_key
from .limit_terms import KEEP, RateTerms, UsageTerms, apply, clean_rate, clean_usage
from .organizations import Access, Actor, authorize, find_organization
from .pagination import DEFAULT_LIMIT, Page, paginate
from .scopes import is_narrowing
from .validation import clean_description, clean_name, is_public_id

MANAGE = "manage_service_accounts"


def _in(organization: Organization, public_id: Any) -> ServiceAccount:
    account = db.session.scalar(select(ServiceAccount).where(
        ServiceAccount.organization_id == organization.id,
        ServiceAccount.public_id == str(public_id))) if is_public_id(public_id) else None
    if account is None:
        raise ServiceAccountNotFound()
    return account


def get_service_account(actor: Actor, org_id: Any, account_id: Any,
                        action: str = "view") -> tuple[Access, ServiceAccount]:
    """The service account `account_id` of organisation `org_id`, when `actor` may do `action`
    there; another organisation's service account is not found (404)."""
    access = authorize(actor, org_id, action)
    return access, _in(access.organization, account_id)


def page_service_accounts(actor: Actor, org_id: Any, limit: int, cursor: str | None) -> Page:
    access = authorize(actor, org_id, "view")
    stmt = select(ServiceAccount).where(ServiceAccount.organization_id == access.organization.id)
    return paginate(stmt, ServiceAccount, limit, cursor)


def _create(organization: Organization, user_id: int | None, origin: Origin, name: Any,
            description: Any) -> ServiceAccount:
    account = ServiceAccount(public_id=tokens.new_public_id(), organization_id=organization.id,
                             name=clean_name(name), description=clean_description(description),
                             created_at=clock.now(), created_by_id=user_id)
    db.session.add(account)
    record("service_account.created", user_id, origin, organization_id=organization.id,
           name=account.name, service_account=account.public_id)
    db.session.commit()
    return account


def create_service_account(actor: Actor, org_id: Any, origin: Origin, *, name: Any,
                           description: Any = None) -> ServiceAccount:
    access = authorize(actor, org_id, MANAGE)
    return _create(access.organization, access.user_id, origin, name, description)


def update_service_account(actor: Actor, org_id: Any, account_id: Any, origin: Origin, *,
                           name: Any = None, description: Any = None,
                           rate_limit: RateTerms | None = KEEP,
                           usage_limit: UsageTerms | None = KEEP) -> ServiceAccount:
    """Rename it, change its description (None leaves a field as it is), or set the pool's
    rate and quota that all its keys share (KEEP leaves one, None removes it): one
    transaction. Only an owner or admin sets the pool, never one of the account's own keys."""
    access, account = get_service_account(actor, org_id, account_id, MANAGE)
    if access.role == "service_account" and (rate_limit is not KEEP or usage_limit is not KEEP):
        raise NotAllowed("A service account's key cannot set its account's pool: an owner or "
                         "admin of the organisation does.")
    return _update(access.organization, account, access.user_id, origin, name, description,
                   rate_limit, usage_limit)


def set_pool_for_operator(org_id: Any, account_id: Any, origin: Origin, *,
                          rate_limit: RateTerms | None = KEEP,
                          usage_limit: UsageTerms | None = KEEP) -> ServiceAccount:
    """`keyvault service-accounts set-pool`: no role check; the operator is at the server."""
    organization = find_organization(org_id)
    return _update(organization, _in(organization, account_id), None, origin, None, None,
                   rate_limit, usage_limit)


def _update(organization: Organization, account: ServiceAccount, user_id: int | None,
            origin: Origin, name: Any, description: Any, rate_limit, usage_limit
            ) -> ServiceAccount:
    changes = {}
    if name is not None:
        changes["name"] = clean_name(name)
    if description is not None:
        changes["description"] = clean_description(description)
    changed = {k: v for k, v in changes.items() if getattr(account, k) != v}
    rate_limit, usage_limit = clean_rate(rate_limit), clean_usage(usage_limit)
    pool = [field for field, terms in (("rate_limit", rate_limit), ("usage_limit", usage_limit))
            if terms is not KEEP]
    if pool:
        apply(account.pool, {"service_account_id": account.id}, rate_limit, usage_limit,
              clock.now())
    if changed or pool:
        record("service_account.updated", user_id, origin,
               organization_id=organization.id, service_account=account.public_id,
               name=changed.get("name", account.name), fields=sorted([*changed, *pool]),
               **({"name_from": account.name} if "name" in changed else {}))
        for field, value in changed.items():
            setattr(account, field, value)
        db.session.commit()
        db.session.refresh(account)
    return account


def delete_service_account(actor: Actor, org_id: Any, account_id: Any, origin: Origin) -> None:
    """Delete it and its keys (the database cascades): they answer `not_found` at the next
    verify, in every worker."""
    access, account = get_service_account(actor, org_id, account_id, MANAGE)
    record("service_account.deleted", access.user_id, origin,
           organization_id=access.organization.id, name=account.name,
           service_account=account.public_id)
    db.session.flush()
    db.session.execute(ServiceAccount.__table__.delete().where(ServiceAccount.id == account.id))
    db.session.commit()
    db.session.expunge_all()


# ---------------------------------------------------------------- their keys


def page_account_keys(actor: Actor, org_id: Any, account_id: Any, include_revoked: bool,
                      limit: int, cursor: str | None) -> Page:
    _, account = get_service_account(actor, org_id, account_id)
    return page_keys(account, include_revoked, limit, cursor)


def get_account_key(actor: Actor, org_id: Any, account_id: Any, key_id: Any) -> ApiKey:
    _, account = get_service_account(actor, org_id, account_id)
    return get_key(account, key_id)


def account_key_events(actor: Actor, org_id: Any, account_id: Any, key_id: Any,
                       limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page:
    """One key's events (about it, or made by it through the API), newest first."""
    return page_events_of_key(get_account_key(actor, org_id, account_id, key_id), limit, cursor)


def create_account_key(actor: Actor, org_id: Any, account_id: Any, origin: Origin,
                       **fields: Any) -> tuple[ApiKey, str]:
    """A new key of the service account and its value, shown this once (keys.create_key's
    fields: label, description, scopes, expires_at, granting_scopes, granting_ends_at)."""
    access, account = get_service_account(actor, org_id, account_id, MANAGE)
    return create_key(account, origin=origin, acting_user_id=access.user_id, **fields)


def update_account_key(actor: Actor, org_id: Any, account_id: Any, key_id: Any, origin: Origin,
                       **fields: Any) -> ApiKey:
    """keys.update_key's fields and the key's own rate_limit / usage_limit, in one transaction."""
    access, account = get_service_account(actor, org_id, account_id, MANAGE)
    return update_key_and_limits(account, key_id, origin=origin, acting_user_id=access.user_id,
                                 **fields)


def roll_account_key(actor: Actor, org_id: Any, account_id: Any, key_id: Any, origin: Origin,
                     **fields: Any) -> tuple[ApiKey, str]:
    access, account = get_service_account(actor, org_id, account_id, MANAGE)
    return roll_key(account, key_id, origin=origin, acting_user_id=access.user_id, **fields)


def revoke_account_key(actor: Actor, org_id: Any, account_id: Any, key_id: Any,
                       origin: Origin) -> ApiKey:
    access, account = get_service_account(actor, org_id, account_id, MANAGE)
    return revoke_key(account, key_id, origin, acting_user_id=access.user_id)


def exceeds_policy(key: ApiKey) -> list[str]:
    """What about a service account's key its organisation's policy no longer allows, as it is
    now (`lifetime`, `scopes`): a tightened policy shortens and narrows nothing already issued,
    but says so on each key. Empty for a person's key."""
    if key.service_account is None:
        return []
    policy, found = key.service_account.organization, []
    days, issued = policy.max_key_lifetime_days, key.last_rolled_at or key.created_at
    if days is not None and (key.expires_at is None
                             or key.expires_at - issued > timedelta(days=days, minutes=1)):
        found.append("lifetime")
    if policy.allowed_scopes is not None and not is_narrowing(policy.allowed_scopes, key.scopes):
        found.append("scopes")
    return found


# ---------------------------------------------------------------- the operator's (command line)


def create_for_operator(org_id: Any, name: Any, origin: Origin,
                        description: Any = None) -> ServiceAccount:
    """`keyvault service-accounts create`: no role check; the operator is at the server."""
    return _create(find_organization(org_id), None, origin, name, description)


def list_for_operator(org_id: Any) -> list[ServiceAccount]:
    organization = find_organization(org_id)
    return list(db.session.scalars(select(ServiceAccount).where(
        ServiceAccount.organization_id == organization.id)
        .order_by(ServiceAccount.created_at.desc(), ServiceAccount.id.desc())))


def find_service_account(public_id: Any) -> ServiceAccount:
    account = db.session.scalar(select(ServiceAccount).where(
        ServiceAccount.public_id == str(public_id))) if is_public_id(public_id) else None
    if account is None:
        raise ServiceAccountNotFound("No service account with this id.")
    return account
