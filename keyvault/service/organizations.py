"""Organisations: create, rename, delete; members and their roles; policy; the organisation's log.

Who may do what is one table (RIGHTS) and one check (`authorize`), which every other
organisation call (service_accounts, invitations, the pages, the API) goes through first:

- owners manage everything, roles and owners included, the policy, and deleting it;
- admins manage service accounts, their keys, invitations and members other than owners;
- members see the organisation, its members, service accounts, keys (never values) and log;
- a service account's key may act only in its own organisation, only as its scopes say and
  only while the policy allows the scope: read it, and manage service accounts and their keys.

Somebody outside an organisation hears 404 for it, as for one that does not exist. The last
owner can be neither removed nor demoted nor leave (a lock on the organisation's row makes two
owners demoting each other at once leave one). Every check reads the database: a removed member
loses their rights on their very next request, in every worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from .. import clock, tokens
from ..extensions import db
from ..models import User
from ..org_models import ROLES, Membership, Organization, ServiceAccount
from .errors import (
    AlreadyMember,
    InvalidInput,
    LastOwner,
    MemberNotFound,
    NotAllowed,
    OrganizationInactive,
    OrganizationNotFound,
)
from .events import Origin, page_organization_events, record
from .pagination import Page, paginate
from .scopes import READ_ORGS, WRITE_ORGS, clean_scopes, has_scope
from .validation import clean_days, clean_name, is_public_id, is_row_id

Actor = User | ServiceAccount

RIGHTS = {
    "view": ("owner", "admin", "member"),
    "manage_service_accounts": ("owner", "admin"),
    "manage_invitations": ("owner", "admin"),
    "manage_members": ("owner", "admin"),
    "manage_webhooks": ("owner", "admin"),
    "manage_owners": ("owner",),
    "change_policy": ("owner",),
    "rename": ("owner",),
    "delete": ("owner",),
}
# What a service account's key may do in its own organisation, and the scope each needs.
SERVICE_ACCOUNT_RIGHTS = {"view": READ_ORGS, "manage_service_accounts": WRITE_ORGS}
_IN_WORDS = {"view": "see this organisation",
             "manage_service_accounts": "manage its service accounts and their keys",
             "manage_invitations": "invite people or revoke invitations",
             "manage_members": "change its members",
             "manage_webhooks": "manage its webhooks", "manage_owners": "change its owners",
             "change_policy": "change its policy", "rename": "rename it", "delete": "delete it"}


@dataclass(frozen=True)
class Access:
    """Who is acting in which organisation, with which role (`service_account` for a key of
    one of its service accounts)."""

    organization: Organization
    role: str
    actor: Actor

    @property
    def user_id(self) -> int | None:
        """The acting person (the security log's user), None for a service account."""
        return self.actor.id if isinstance(self.actor, User) else None


def _find(public_id: Any) -> Organization:
    if not is_public_id(public_id):
        raise OrganizationNotFound()
    organization = db.session.scalar(select(Organization)
                                     .where(Organization.public_id == str(public_id)))
    if organization is None:
        raise OrganizationNotFound()
    return organization


def membership(organization: Organization, user: User) -> Membership | None:
    return db.session.scalar(select(Membership).where(
        Membership.organization_id == organization.id, Membership.user_id == user.id))


def policy_allows(organization: Organization, scope: str) -> bool:
    """May this organisation's service accounts' keys carry `scope`?"""
    return organization.allowed_scopes is None or has_scope(organization.allowed_scopes, scope)


def authorize(actor: Actor, public_id: Any, action: str) -> Access:
    """The one check: may `actor` do `action` in the organisation `public_id`? OrganizationNotFound
    (404) for one they are no part of; NotAllowed (403) when their role does not reach;
    OrganizationInactive (409) for a change in one the instance's administrator deactivated."""
    organization = _find(public_id)
    if isinstance(actor, User):
        member = membership(organization, actor)
        if member is None:
            raise OrganizationNotFound()
        role, allowed = member.role, member.role in RIGHTS[action]
    else:
        if actor.organization_id != organization.id:
            raise OrganizationNotFound()
        scope = SERVICE_ACCOUNT_RIGHTS.get(action)
        role, allowed = "service_account", scope is not None and policy_allows(organization, scope)
    if not allowed:
        who = "A service account's key" if role == "service_account" else f"An {role}" \
            if role[0] in "aeiou" else f"A {role}"
        raise NotAllowed(f"{who} cannot {_IN_WORDS[action]}.")
    if action != "view" and not organization.is_active:
        raise OrganizationInactive("This organisation was deactivated by the administrator: "
                                   "nothing in it can change.")
    return Access(organization, role, actor)


def _lock(organization: Organization) -> None:
    """Serialise changes of owners (and key limits) in one organisation: a write that changes
    nothing locks its row on PostgreSQL and takes SQLite's write lock (key_owners.lock_owner)."""
    db.session.execute(update(Organization).where(Organization.id == organization.id)
                       .values(id=Organization.id))


def clean_role(role: Any) -> str:
    if role not in ROLES:
        raise InvalidInput(f"The role must be one of: {', '.join(ROLES)}.", "role")
    return role


# ---------------------------------------------------------------- organisations


def create_organization(user: User, name: Any, origin: Origin) -> Membership:
    """A new organisation with `user` as its first owner."""
    organization = Organization(public_id=tokens.new_public_id(), name=clean_name(name),
                                created_at=clock.now())
    db.session.add(organization)
    db.session.flush()
    owner = Membership(organization=organization, user_id=user.id, role="owner",
                       created_at=organization.created_at)
    db.session.add(owner)
    record("org.created", user.id, origin, organization_id=organization.id,
           name=organization.name)
    db.session.commit()
    return owner


def page_memberships(user: User, limit: int, cursor: str | None) -> Page:
    """The organisations `user` belongs to (their memberships, with the organisation), newest
    first."""
    stmt = select(Membership).where(Membership.user_id == user.id).options(
        selectinload(Membership.organization))
    return paginate(stmt, Membership, limit, cursor)


def delete_organization(actor: Actor, public_id: Any, origin: Origin) -> None:
    """Delete it with its memberships, invitations, service accounts and their keys (the
    database cascades): those keys answer `not_found` at the next verify. The owner's own log
    keeps the event; the organisation's log goes with it."""
    access = authorize(actor, public_id, "delete")
    organization = access.organization
    record("org.deleted", access.user_id, origin, name=organization.name,
           organization=organization.public_id)
    db.session.flush()
    db.session.execute(Organization.__table__.delete().where(
        Organization.id == organization.id))
    db.session.commit()
    db.session.expunge_all()


POLICY = ("max_key_lifetime_days", "allowed_scopes", "revoke_unused_after_days")


def update_organization(actor: Actor, public_id: Any, origin: Origin, **changes: Any) -> Access:
    """Owners rename it (`name`) or change its policy: max_key_lifetime_days, allowed_scopes
    (None: the whole catalogue), revoke_unused_after_days (None: no rule). Fields left out stay
    as they are; all are checked before any is changed. A policy change never widens a key
    already issued, and a tightened lifetime shortens none (keys that exceed it say so:
    service_accounts.exceeds_policy); rolls and new keys follow it."""
    access = authorize(actor, public_id, "change_policy" if set(changes) & set(POLICY)
                       else "rename")
    organization = access.organization
    cleaned: dict[str, Any] = {}
    if "name" in changes:
        cleaned["name"] = clean_name(changes["name"])
    for name in ("max_key_lifetime_days", "revoke_unused_after_days"):
        if name in changes:
            cleaned[name] = clean_days(changes[name], name)
    if "allowed_scopes" in changes:
        scopes = changes["allowed_scopes"]
        cleaned["allowed_scopes"] = None if scopes is None else clean_scopes(scopes, None,
                                                                             "allowed_scopes")
    changed = {name: value for name, value in cleaned.items()
               if getattr(organization, name) != value}
    if "name" in changed:
        record("org.renamed", access.user_id, origin, organization_id=organization.id,
               name_from=organization.name, name_to=changed["name"])
    policy = {name: {"from": getattr(organization, name), "to": value}
              for name, value in changed.items() if name in POLICY}
    if policy:
        record("org.policy_changed", access.user_id, origin, organization_id=organization.id,
               **policy)
    for name, value in changed.items():
        setattr(organization, name, value)
    db.session.commit()
    return access


def page_log(actor: Actor, public_id: Any, limit: int, cursor: str | None) -> Page:
    access = authorize(actor, public_id, "view")
    return page_organization_events(access.organization.id, limit, cursor)


# ---------------------------------------------------------------- members


def page_members(actor: Actor, public_id: Any, limit: int, cursor: str | None) -> Page:
    access = authorize(actor, public_id, "view")
    stmt = select(Membership).where(Membership.organization_id == access.organization.id)
    return paginate(stmt.options(selectinload(Membership.user)), Membership, limit, cursor)


def _member(organization: Organization, user_id: Any) -> Membership:
    found = db.session.scalar(select(Membership).where(
        Membership.organization_id == organization.id, Membership.user_id == user_id)
    ) if is_row_id(user_id) else None
    if found is None:
        raise MemberNotFound()
    return found


def _owners(organization: Organization) -> int:
    return db.session.scalar(select(func.count(Membership.id)).where(
        Membership.organization_id == organization.id, Membership.role == "owner"))


def add_member(organization: Organization, user: User, role: Any, origin: Origin,
               by_user_id: int | None = None, **details: Any) -> Membership:
    """Make `user` a member with `role` (an invitation accepted, or the operator's shortcut);
    AlreadyMember when they are one. The caller has checked the right to; this commits."""
    role = clean_role(role)
    if membership(organization, user) is not None:
        raise AlreadyMember(f"{user.email} is already a member of {organization.name}.")
    member = Membership(organization_id=organization.id, user_id=user.id, role=role,
                        created_at=clock.now())
    db.session.add(member)
    record("org.member_added", by_user_id if by_user_id is not None else user.id, origin,
           organization_id=organization.id, email=user.email, role=role, **details)
    db.session.commit()
    return member


def change_role(actor: Actor, public_id: Any, user_id: Any, role: Any,
                origin: Origin) -> Membership:
    """Owners change any role; admins those of admins and members, never to or from owner."""
    access = authorize(actor, public_id, "manage_members")
    role = clean_role(role)
    _lock(access.organization)
    member = _member(access.organization, user_id)
    if "owner" in (role, member.role):
        access = authorize(actor, public_id, "manage_owners")
    if member.role == role:
        return member
    if member.role == "owner" and _owners(access.organization) == 1:
        db.session.rollback()
        raise LastOwner("This is the organisation's last owner: make someone else an owner "
                        "first.")
    record("org.role_changed", access.user_id, origin, organization_id=access.organization.id,
           email=member.user.email, role_from=member.role, role_to=role)
    member.role = role
    db.session.commit()
    return member


def remove_member(actor: Actor, public_id: Any, user_id: Any, origin: Origin) -> None:
    """Remove a member, or leave (a person removing themselves: any role may). Their rights end
    at once; their personal keys and the service accounts' keys are untouched."""
    leaving = isinstance(actor, User) and actor.id == user_id
    access = authorize(actor, public_id, "view" if leaving else "manage_members")
    _lock(access.organization)
    member = _member(access.organization, user_id)
    if member.role == "owner" and not leaving:
        access = authorize(actor, public_id, "manage_owners")
    if member.role == "owner" and _owners(access.organization) == 1:
        db.session.rollback()
        raise LastOwner("The organisation's last owner cannot leave or be removed: make "
                        "someone else an owner first, or delete the organisation.")
    record("org.member_left" if leaving else "org.member_removed", access.user_id, origin,
           organization_id=access.organization.id, email=member.user.email, role=member.role)
    db.session.delete(member)
    db.session.commit()


# ---------------------------------------------------------------- the operator's


def find_organization(public_id: Any) -> Organization:
    """An organisation by its id, for the command line and the administrator (no role check)."""
    return _find(public_id)


def remove_member_as_operator(public_id: Any, user: User, origin: Origin) -> None:
    """`keyvault orgs remove-member`: no role check, the last-owner rule all the same."""
    organization = _find(public_id)
    _lock(organization)
    member = _member(organization, user.id)
    if member.role == "owner" and _owners(organization) == 1:
        db.session.rollback()
        raise LastOwner("This is the organisation's last owner: make someone else an owner "
                        "first, or delete the organisation.")
    record("org.member_removed", None, origin, organization_id=organization.id,
           email=user.email, role=member.role)
    db.session.delete(member)
    db.session.commit()


def all_organizations() -> list[Organization]:
    return list(db.session.scalars(select(Organization).order_by(Organization.created_at.desc(),
                                                                 Organization.id.desc())))


def set_organization_active(admin: User | None, public_id: Any, active: bool,
                            origin: Origin) -> Organization:
    """The instance administrator's switch: a deactivated organisation's keys verify as
    `user_inactive` (their owner is inactive) at once, until it is activated again."""
    organization = _find(public_id)
    if organization.is_active != active:
        organization.is_active = active
        details = {"by_admin": admin.email} if admin is not None else {}
        record("org.activated" if active else "org.deactivated",
               admin.id if admin is not None else None, origin,
               organization_id=organization.id, **details)
        db.session.commit()
    return organization
