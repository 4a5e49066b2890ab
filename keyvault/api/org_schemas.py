"""The organisations API's response models (keyvault.api.organizations): organisations, members,
invitations, service accounts and their keys; like keyvault.api.schemas, they shape what goes
out and generate the OpenAPI document's components."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .. import clock, service
from ..org_models import ROLES
from .inputs import (
    AcceptInvitation,
    ChangeRole,
    CreateOrganization,
    CreateServiceAccount,
    Invite,
    UpdateOrganization,
    UpdateServiceAccount,
)
from .limits import RateLimitShown, UsageLimitShown, shown
from .schemas import _NEXT, _PREVIOUS, ApiKey, SecurityEvent, _Response


def _page_links():
    return (Field(description=_NEXT, json_schema_extra={"format": "uri-reference"}),
            Field(description=_PREVIOUS, json_schema_extra={"format": "uri-reference"}))


class Policy(_Response):
    """Set by owners; null means no rule of the organisation's."""

    max_key_lifetime_days: int | None = Field(description=(
        "The longest its service accounts' keys may live, in days."))
    allowed_scopes: list[str] | None = Field(description=(
        "The scopes its service accounts' keys may carry; null for the whole catalogue."))
    revoke_unused_after_days: int | None = Field(description=(
        "A service account's key unused this long is revoked by `keyvault keys prune`."))


class Organization(_Response):
    id: str = Field(description="Public id, random.")
    name: str
    role: Literal[(*ROLES, "service_account")] = Field(description=(
        "The caller's role in it (`service_account` for a key of one of its service accounts)."))
    is_active: bool = Field(description="False once the instance's administrator deactivated it.")
    created_at: datetime
    policy: Policy

    @classmethod
    def of(cls, organization, role: str) -> Organization:
        return cls(id=organization.public_id, name=organization.name, role=role,
                   is_active=organization.is_active, created_at=organization.created_at,
                   policy=Policy(max_key_lifetime_days=organization.max_key_lifetime_days,
                                 allowed_scopes=organization.allowed_scopes,
                                 revoke_unused_after_days=organization.revoke_unused_after_days))


class OrganizationPage(_Response):
    next: str | None = _page_links()[0]
    previous: str | None = _page_links()[1]
    results: list[Organization] = Field(description="Newest membership first.")


class Person(_Response):
    id: int
    email: str


class Member(_Response):
    user: Person
    role: Literal[ROLES]
    created_at: datetime = Field(description="When they joined.")

    @classmethod
    def of(cls, member) -> Member:
        return cls(user=Person(id=member.user.id, email=member.user.email), role=member.role,
                   created_at=member.created_at)


class MemberPage(_Response):
    next: str | None = _page_links()[0]
    previous: str | None = _page_links()[1]
    results: list[Member] = Field(description="Newest first.")


class Invitation(_Response):
    """A pending invitation (its link is never shown again: only the invited address gets it)."""

    id: str
    email: str
    role: Literal[ROLES]
    created_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, invitation) -> Invitation:
        return cls(id=invitation.public_id, email=invitation.email, role=invitation.role,
                   created_at=invitation.created_at, expires_at=invitation.expires_at)


class InvitationPage(_Response):
    next: str | None = _page_links()[0]
    previous: str | None = _page_links()[1]
    results: list[Invitation] = Field(description="Newest first.")


class ServiceAccount(_Response):
    id: str = Field(description="Public id, random; `sa_` and this id is verify's `sub`.")
    name: str
    description: str
    created_at: datetime
    created_by: Person | None = Field(description=(
        "Who created it; null when made on the command line or that account is gone."))
    rate_limit: RateLimitShown | None = Field(None, description=(
        "The pool's rate, shared by all of its keys."))
    usage_limit: UsageLimitShown | None = Field(None, description=(
        "The pool's usage quota, shared by all of its keys, with what is left now."))

    @classmethod
    def of(cls, account) -> ServiceAccount:
        creator = account.created_by
        rate, usage = shown(account.pool.terms() if account.pool is not None else None,
                            clock.now())
        return cls(id=account.public_id, name=account.name, description=account.description or "",
                   created_at=account.created_at, rate_limit=rate, usage_limit=usage,
                   created_by=Person(id=creator.id, email=creator.email) if creator else None)


class ServiceAccountPage(_Response):
    next: str | None = _page_links()[0]
    previous: str | None = _page_links()[1]
    results: list[ServiceAccount] = Field(description="Newest first.")


class ServiceAccountKey(ApiKey):
    """A service account's key, without its value."""

    exceeds_policy: list[Literal["lifetime", "scopes"]] = Field(description=(
        "What the organisation's policy, tightened since the key was issued, no longer allows "
        "about it: its `lifetime` or its `scopes`. Nothing already issued is shortened."))

    @classmethod
    def of(cls, key) -> ServiceAccountKey:
        return cls(**cls.fields_of(key), exceeds_policy=service.service_accounts.exceeds_policy(key))


class ServiceAccountKeyWithValue(ServiceAccountKey):
    """A service account's key as returned by create and roll, the only answers with its value."""

    value: str = Field(description=(
        "The key itself. Shown in this response only; KeyVault keeps just a keyed digest of it."))

    @classmethod
    def of(cls, key, value: str) -> ServiceAccountKeyWithValue:  # type: ignore[override]
        return cls(**cls.fields_of(key), exceeds_policy=service.service_accounts.exceeds_policy(key),
                   value=value)


class ServiceAccountKeyPage(_Response):
    next: str | None = _page_links()[0]
    previous: str | None = _page_links()[1]
    results: list[ServiceAccountKey] = Field(description="Newest first.")


class OrganizationEvent(SecurityEvent):
    """An event of the organisation's log: who acted (a person, or the key in `actor_key`)."""

    user: Person | None = Field(description=(
        "The person who acted; null for a service account's key or the command line."))

    @classmethod
    def of(cls, event) -> OrganizationEvent:  # type: ignore[override]
        person = event.user
        return cls(**SecurityEvent.of(event).model_dump(),
                   user=Person(id=person.id, email=person.email) if person else None)


class OrganizationEventPage(_Response):
    next: str | None = _page_links()[0]
    previous: str | None = _page_links()[1]
    results: list[OrganizationEvent] = Field(description="Newest first.")


REQUEST_MODELS = (CreateOrganization, UpdateOrganization, ChangeRole, Invite, AcceptInvitation,
                  CreateServiceAccount, UpdateServiceAccount)
RESPONSE_MODELS = (Policy, Organization, OrganizationPage, Person, Member, MemberPage,
                   Invitation, InvitationPage, ServiceAccount, ServiceAccountPage,
                   ServiceAccountKey, ServiceAccountKeyWithValue, ServiceAccountKeyPage,
                   OrganizationEvent, OrganizationEventPage)
