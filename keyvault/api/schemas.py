"""The API's response models: they shape what goes out and generate the OpenAPI document's
response components (keyvault.api.openapi); the request models are keyvault.api.inputs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

from .. import clock, service
from ..models import KEY_STATUSES
from ..service.verify import CODES
from .inputs import CreateKey, FormCredential, RollKey, UpdateKey, VerifyForm, VerifyRequest
from .limits import (
    RATE_STANDING,
    USAGE_STANDING,
    RateLimitShown,
    RateStanding,
    UsageLimitShown,
    UsageStanding,
    shown,
    standing_of,
)

# ---------------------------------------------------------------- responses


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class User(_Response):
    id: int
    email: str
    is_admin: bool
    created_at: datetime
    last_login_at: datetime | None = Field(description="Last login in the browser.")

    @classmethod
    def of(cls, user) -> User:
        return cls(id=user.id, email=user.email, is_admin=user.is_admin,
                   created_at=user.created_at, last_login_at=user.last_login_at)


class ApiKey(_Response):
    """A personal API key, without its value."""

    id: str = Field(description="Public id, random; not derived from the key.")
    label: str
    description: str
    mask_value: str = Field(description="Display form, e.g. `kv_…x9Qa`.")
    scopes: list[str]
    status: Literal[KEY_STATUSES]
    created_at: datetime
    last_used_at: datetime | None = Field(description="Last authenticated use, to the minute.")
    expires_at: datetime | None = Field(description="When the key stops working; null for never.")
    revoked_at: datetime | None = Field(description="When the key was revoked; null while it is not.")
    last_rolled_at: datetime | None = Field(description="When the key last got a new value.")
    old_value_expires_at: datetime | None = Field(description="After a roll with a grace "
                                                  "period: when the old value stops working.")
    allowed_ips: list[str] | None = Field(description=(
        "The address ranges the key works from (canonical CIDRs); null: from any address."))
    services: list[str] | None = Field(None, description=(
        "The ids of the services it works at; null: all services (unless `organizations`)."))
    organizations: list[str] | None = Field(None, description=(
        "A person's key: the organisations at whose services it works; null: no such rule."))
    rate_limit: RateLimitShown | None = Field(None, description="The rate its owner set.")
    usage_limit: UsageLimitShown | None = Field(None, description="Its quota, what is left now.")

    @classmethod
    def fields_of(cls, key) -> dict:
        where = key.restricted_to
        rate, usage = shown(key.limits and key.limits.terms(), clock.now())
        return dict(
            rate_limit=rate, usage_limit=usage, id=key.public_id, label=key.label,
            description=key.description or "", mask_value=key.mask, scopes=list(key.scopes),
            status=key.status(),
            created_at=key.created_at, last_used_at=key.last_used_at, expires_at=key.expires_at,
            revoked_at=key.revoked_at, last_rolled_at=key.last_rolled_at,
            old_value_expires_at=key.previous_expires_at if key.previous_digest else None,
            allowed_ips=key.allowed_ips, services=where["services"] or None if where else None,
            organizations=where["organizations"] or None if where else None,
        )

    @classmethod
    def of(cls, key) -> ApiKey:
        return cls(**cls.fields_of(key))


class ApiKeyWithValue(ApiKey):
    """A key as returned by create and roll: the only responses that carry its value."""

    value: str = Field(description=(
        "The key itself: the prefix, `_`, random base62 characters and a CRC32 checksum. Shown "
        "in this response only; KeyVault keeps just a keyed digest of it."))

    @classmethod
    def of(cls, key, value: str) -> ApiKeyWithValue:  # type: ignore[override]
        return cls(**cls.fields_of(key), value=value)


class EventKey(_Response):
    """A key as it was when the event happened."""

    id: str | None = Field(description="The key's public id; null if it no longer exists.")
    label: str | None = Field(description="Its label at the time.")
    mask_value: str | None = Field(description="Its mask at the time (a roll changes it).")


class SecurityEvent(_Response):
    id: int
    event: str = Field(description=(
        "The machine-readable code, e.g. `key.created`, `key.rolled`, `key.updated`, "
        "`key.revoked`, `key.leaked` (revoked because it was found in public; `details` has "
        "the `url`), `login.succeeded`, `login.failed`, `sudo.failed`, `login.throttled`, "
        "`password.changed`. `title` and `summary` say the same for people."))
    title: str = Field(description="What happened, for people, e.g. `Key rolled`.")
    summary: str = Field(description=(
        "What changed, in words, e.g. `Renamed from “ci” to “deploy”.`, `Scopes granted: "
        "user:read.`, `Rolled; old value valid for 1 hour.`; empty when there is nothing to add."))
    key_id: str | None = Field(description="The public id of the key the event is about.")
    key: EventKey | None = Field(description=(
        "The key the event is about, with the label and mask it had at the time."))
    actor_key: EventKey | None = Field(description=(
        "The API key that made the change, for changes made through the API; null for changes "
        "made in the browser or on the command line."))
    created_at: datetime
    ip_address: str | None
    user_agent: str | None = Field(description="`keyvault-cli` for the command line.")
    request_id: str | None = Field(description=(
        "The X-Request-Id of the request that caused the event, as in the server's log."))
    details: dict[str, Any]

    @classmethod
    def of(cls, event) -> SecurityEvent:
        text = service.describe(event)
        subject = event.key.public_id if event.key is not None else None
        key = (EventKey(id=subject, label=event.key_label, mask_value=event.key_mask)
               if event.key_id is not None or event.key_label is not None else None)
        actor = (EventKey(id=event.actor_key.public_id if event.actor_key is not None else None,
                          label=event.actor_label, mask_value=event.actor_mask)
                 if event.actor_label is not None else None)
        return cls(id=event.id, event=event.event, title=text.title, summary=text.summary,
                   key_id=subject, key=key, actor_key=actor,
                   created_at=event.created_at, ip_address=event.ip_address,
                   user_agent=event.user_agent, request_id=event.request_id,
                   details=event.details or {})


_LINK = (" Absolute on KEYVAULT_BASE_URL when the server sets it, else relative to this "
         "request's URL.")
_NEXT = "The next (older) page, or null at the end." + _LINK
_PREVIOUS = "The previous (newer) page, or null at the start." + _LINK
_URI = {"format": "uri-reference"}


class ApiKeyPage(_Response):
    next: str | None = Field(description=_NEXT, json_schema_extra=_URI)
    previous: str | None = Field(description=_PREVIOUS, json_schema_extra=_URI)
    results: list[ApiKey] = Field(description="Newest first.")


class SecurityEventPage(_Response):
    next: str | None = Field(description=_NEXT, json_schema_extra=_URI)
    previous: str | None = Field(description=_PREVIOUS, json_schema_extra=_URI)
    results: list[SecurityEvent] = Field(description="Newest first.")


# Verify's answers are TypedDicts, not models: verify is on the hot path of the calling
# services, and serializing a plain dict through its TypedDict's serializer costs a third of
# building and validating a model (bench/README.md). The schema comes from them all the same.
_FORBID = ConfigDict(extra="forbid")

_WITHHELD = ("; absent when a service asks about a key not restricted to it or to its "
             "organisation (README: Services)")


class KeyOwner(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]

    id: int
    email: NotRequired[Annotated[str, Field(description="The owner's e-mail" + _WITHHELD)]]


class OrganizationRef(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]

    id: str
    name: str


class PersonOwner(TypedDict):
    """A person's key."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]

    type: Literal["user"]
    id: int
    email: NotRequired[Annotated[str, Field(description="The owner's e-mail" + _WITHHELD)]]


class ServiceAccountOwner(TypedDict):
    """A key of a service account of an organisation."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]

    type: Literal["service_account"]
    id: str
    name: str
    organization: OrganizationRef


class ServiceOwner(TypedDict):
    """A service's own verify key."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]

    type: Literal["service"]
    id: str
    audience: str
    organization: OrganizationRef


class ActiveKey(TypedDict):
    """A valid key: what it is, whose it is and what it may do."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]

    active: Literal[True]
    code: Literal["valid"]
    key_id: str
    label: str
    scopes: list[str]
    expires_at: Annotated[datetime | None, Field(
        description="When the key stops working; null for never.")]
    created_at: datetime
    user: Annotated[KeyOwner | None, Field(description=(
        "The person whose key it is; null for a service account's key (see `owner`)."))]
    owner: Annotated[PersonOwner | ServiceAccountOwner | ServiceOwner, Field(description=(
        "Whose key it is: a person (`type` `user`), a service account of an organisation, or "
        "a service (its own verify key)."))]
    rolled: Annotated[bool, Field(description=(
        "True when this is a rolled key's old value, still inside its grace period."))]
    old_value_expires_at: Annotated[datetime | None, Field(description=(
        "When that old value stops working; null unless `rolled`."))]
    # RFC 7662 members, for off-the-shelf introspection clients.
    sub: Annotated[str, Field(description=(
        "RFC 7662: the owner's user id, as a string; `sa_` and the service account's id for a "
        "service account's key; `svc_` and the service's id for a service's verify key."))]
    username: NotRequired[Annotated[str, Field(description=(
        "RFC 7662: the owner's email; the service account's name, or the service's audience, "
        "for their keys" + _WITHHELD))]]
    aud: NotRequired[Annotated[str, Field(description=(
        "RFC 7662: the audience of the service that asked, when the caller is a service's own "
        "verify key; `scopes` and `scope` then hold only that service's scopes and the "
        "instance-wide ones."))]]
    scope: Annotated[str, Field(description=(
        "RFC 7662: the scopes the key holds, space-separated and spelled out (`*` and "
        "`object:write` expanded over the catalogue), so that a literal check of one name "
        "agrees with KeyVault's rules."))]
    token_type: Annotated[Literal["bearer"], Field(description="RFC 7662: always `bearer`.")]
    exp: NotRequired[Annotated[int, Field(description=(
        "RFC 7662: when the presented value stops working (its expiry, or the end of a roll's "
        "grace period), in seconds since the epoch; absent when it never expires. Do not "
        "cache an answer until then: a revocation takes effect at once."))]]
    iat: NotRequired[Annotated[int, Field(description=(
        "RFC 7662: when the presented value was issued (the key's creation or its last roll), "
        "in seconds since the epoch; absent for a rolled key's old value."))]]
    ratelimit: NotRequired[Annotated[RateStanding, Field(description=RATE_STANDING)]]
    usage: NotRequired[Annotated[UsageStanding, Field(description=USAGE_STANDING)]]


class InactiveKey(TypedDict):
    """Any other answer: the key must not be accepted."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]

    active: Literal[False]
    code: Literal[CODES[1:]]
    retry_after: NotRequired[Annotated[int, Field(description=(
        "`rate_limited` only: seconds until the key's window ends."))]]
    ratelimit: NotRequired[Annotated[RateStanding, Field(description=RATE_STANDING)]]
    usage: NotRequired[Annotated[UsageStanding, Field(description=USAGE_STANDING)]]


VerifyResult = TypeAdapter(ActiveKey | InactiveKey)
_ACTIVE, _INACTIVE = TypeAdapter(ActiveKey), TypeAdapter(InactiveKey)


def verify_answer(verdict: service.Verdict) -> bytes:
    """Verify's answer about the subject key, as JSON."""
    limits = standing_of(verdict.standing)
    if not verdict.active:
        answer = {"active": False, "code": verdict.code, **limits}
        if verdict.code == "rate_limited" and "ratelimit" in limits:
            answer["retry_after"] = limits["ratelimit"]["reset"]
        return _INACTIVE.dump_json(answer)
    organization = {"id": verdict.organization_id, "name": verdict.organization_name}
    if verdict.service_id is not None:
        user, sub, username = None, "svc_" + verdict.service_id, verdict.service_audience
        owner = {"type": "service", "id": verdict.service_id,
                 "audience": verdict.service_audience, "organization": organization}
    elif verdict.service_account_id is None:
        user = {"id": verdict.user_id, "email": verdict.user_email} if verdict.shows_email \
            else {"id": verdict.user_id}
        owner, sub, username = {"type": "user", **user}, str(verdict.user_id), verdict.user_email
    else:
        user, sub, username = None, "sa_" + verdict.service_account_id, verdict.service_account_name
        owner = {"type": "service_account", "id": verdict.service_account_id,
                 "name": verdict.service_account_name, "organization": organization}
    answer = {
        "active": True, "code": "valid", "key_id": verdict.public_id, "label": verdict.label,
        "scopes": verdict.scopes, "expires_at": verdict.expires_at,
        "created_at": verdict.created_at, "user": user, "owner": owner,
        "rolled": verdict.rolled, "old_value_expires_at": verdict.old_value_expires_at,
        "sub": sub, "username": username,
        "scope": " ".join(verdict.effective_scopes), "token_type": "bearer",
    }
    if not verdict.shows_email:
        del answer["username"]
    if verdict.audience is not None:
        answer["aud"] = verdict.audience
    ends = verdict.ends_at
    if ends is not None:
        answer["exp"] = int(ends.timestamp())
    if verdict.issued_at is not None:
        answer["iat"] = int(verdict.issued_at.timestamp())
    return _ACTIVE.dump_json({**answer, **limits})


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = Field(description="Always `about:blank`.")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What went wrong, for people.")
    code: str | None = Field(None, description=(
        "`insufficient_scope` on scope refusals; `not_allowed` when a role in an organisation "
        "(or a service account's key) does not reach."))
    required_scope: str | None = Field(None, description="The scope the request needed.")
    field: str | None = Field(None, description="The input field at fault.")


REQUEST_MODELS = (CreateKey, UpdateKey, RollKey, FormCredential, VerifyRequest, VerifyForm)
RESPONSE_MODELS = (User, ApiKey, ApiKeyWithValue, ApiKeyPage, EventKey, SecurityEvent,
                   SecurityEventPage, Problem)
