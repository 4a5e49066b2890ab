"""The API's request and response models: they parse what comes in, shape what goes out, and
generate the OpenAPI document's components (keyvault.api.openapi), so the contract has one source.

Request models check types, unknown fields and limits; the domain rules (what a label may hold,
which scopes a key may grant, when a key may expire) stay in keyvault.service, which forms and
the command line call too. Field constraints that the schema states are taken from there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from typing_extensions import TypedDict

from .. import service
from ..models import KEY_STATUSES
from ..service.validation import (
    DESCRIPTION_MAX,
    DESCRIPTION_PATTERN,
    GRACE_MAX_SECONDS,
    LABEL_MAX,
    LABEL_PATTERN,
    clean_grace_period,
)
from ..service.verify import CODES

CREDENTIAL_DESCRIPTION = (
    "Alternative place for the caller's key (a string). Read only when there is no "
    "Authorization header, and then anything but the right key is a 401; never a fall-back "
    "when the header's key is wrong.")


# ---------------------------------------------------------------- requests


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


# The patterns describe service.validation's rules for the schema; the service enforces them,
# with messages that say which rule a value broke.
Label = Annotated[str, Field(json_schema_extra={"pattern": LABEL_PATTERN}, description=(
    f"1 to {LABEL_MAX} characters once surrounding spaces are trimmed; no control characters "
    "and no characters that change the direction of text (U+202A–U+202E, U+2066–U+2069, "
    "U+200E, U+200F, U+061C)."))]
Description = Annotated[str | None, Field(json_schema_extra={"pattern": DESCRIPTION_PATTERN}, description=(
    f"Free text, at most {DESCRIPTION_MAX} characters once trimmed; tabs and line breaks are "
    "the only control characters allowed; no characters that change the direction of text "
    "(as for `label`)."))]
Credential = Annotated[Any, Field(description=CREDENTIAL_DESCRIPTION)]
# An ISO 8601 date-time, parsed (and judged) by service.validation.clean_expiry.
DateTimeText = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
# Scope items are refined per instance (the catalogue) when the document is built.
GrantedScopes = Annotated[list[str] | None, Field(min_length=1)]


class CreateKey(_Request):
    label: Label
    description: Description = None
    scopes: GrantedScopes = Field(None, description=(
        "Scopes from the catalogue. Omitted: the presenting key's own scopes. A key can never "
        "grant a scope it lacks (403)."))
    expires_at: DateTimeText | None = Field(None, description=(
        "ISO 8601, in the future; omitted or null for no expiry (refused when the instance caps "
        "key lifetimes). A presenting key that expires cannot create one that outlives it (400); "
        "omitted or null, the new key ends when it does."))
    personal_api_key: Credential = None


class UpdateKey(_Request):
    """Only the fields given change; null leaves a field as it is."""

    label: Label | None = None
    description: Description = None
    scopes: GrantedScopes = Field(None, description=(
        "Narrowing only: the API cannot add scopes to a key (403)."))
    personal_api_key: Credential = None


class RollKey(_Request):
    grace_period_seconds: Annotated[int, BeforeValidator(clean_grace_period)] = Field(
        0, ge=0, le=GRACE_MAX_SECONDS,
        description="How long the old value keeps working; 0 stops it at once.")
    personal_api_key: Credential = None


class FormCredential(_Request):
    personal_api_key: Credential = None


class VerifyRequest(_Request):
    """The key your service was handed, and the scopes it must hold. `token`, RFC 7662's name,
    is accepted in place of `key` when there is no `key`. Other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    key: str = Field(description="The key your service was handed.")
    scopes: list[str] | None = Field(
        None, description="Scopes the key must hold, else `insufficient_scope`.")
    personal_api_key: Credential = None

    @model_validator(mode="before")
    @classmethod
    def _token_stands_for_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "token" in data:
            if not isinstance(data["token"], str):
                raise service.InvalidInput("The key to check must be text.", "token")
            if "key" not in data:
                return {**data, "key": data["token"]}
        return data


class VerifyForm(_Request):
    """RFC 7662 style: `token=`, scopes space- or comma-separated. `key=` is accepted in place
    of `token` (and wins when both are sent); `scope=` in place of `scopes`."""

    model_config = ConfigDict(extra="ignore")

    token: str = Field(description="The key your service was handed.")
    scopes: str | None = None
    scope: str | None = Field(None, description="Used when `scopes` is absent.")
    personal_api_key: Credential = None

    @model_validator(mode="before")
    @classmethod
    def _key_stands_for_token(cls, data: Any) -> Any:
        if isinstance(data, dict) and "key" in data:
            return {**data, "token": data["key"]}
        return data

    @property
    def required_scopes(self) -> list[str]:
        scopes = self.scopes if self.scopes is not None else (self.scope or "")
        return scopes.replace(",", " ").split()


def parse(model: type[_Request], body: Any) -> Any:
    """`body` (a parsed JSON object, or a form's fields) as `model`; InvalidInput naming the
    field when it does not fit."""
    if not isinstance(body, dict):
        raise service.InvalidInput("Send the request's fields as a JSON object, such as "
                                   '{"label": "deploy"}.')
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise _invalid_input(error) from None


_EXPECTED = {"string_type": "text", "list_type": "a list", "int_type": "a whole number",
             "bool_type": "true or false"}
# What each field is, in words: a problem's `detail` speaks of the thing, its `field` names it.
_NOUNS = {"label": "The label", "description": "The description", "scopes": "The scopes",
          "expires_at": "The expiry", "grace_period_seconds": "The grace period",
          "key": "The key to check", "token": "The key to check",
          "personal_api_key": "The API key", "scope": "The scopes"}


def _invalid_input(error: ValidationError) -> service.InvalidInput:
    """The first problem pydantic found, in people's words; `field` names the field."""
    problems = error.errors(include_url=False)
    unknown = sorted(str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden")
    if unknown:
        listed = ", ".join(f"“{name}”" for name in unknown)
        return service.InvalidInput(
            f"This request does not take {listed}: leave {'them' if len(unknown) > 1 else 'it'} "
            "out.", unknown[0])
    first = problems[0]
    name = str(first["loc"][0]) if first["loc"] else None
    noun = _NOUNS.get(name or "", "A value")
    kind = first["type"]
    if kind == "missing":
        return service.InvalidInput(f"{noun} is missing.", name)
    if len(first["loc"]) > 1 and kind in _EXPECTED:
        return service.InvalidInput(f"{noun} must be a list of names (text).", name)
    if kind in _EXPECTED:
        return service.InvalidInput(f"{noun} must be {_EXPECTED[kind]}.", name)
    if kind == "too_short" and name == "scopes":
        return service.InvalidInput("Choose at least one scope, or * for full access.", name)
    return service.InvalidInput(f"{noun} is not valid: {first['msg'].lower()}.", name)


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
    old_value_expires_at: datetime | None = Field(description=(
        "After a roll with a grace period: when the previous value stops working."))

    @classmethod
    def fields_of(cls, key) -> dict:
        return dict(
            id=key.public_id, label=key.label, description=key.description or "",
            mask_value=key.mask, scopes=list(key.scopes), status=key.status(),
            created_at=key.created_at, last_used_at=key.last_used_at, expires_at=key.expires_at,
            revoked_at=key.revoked_at, last_rolled_at=key.last_rolled_at,
            old_value_expires_at=key.previous_expires_at if key.previous_digest else None,
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


class ApiKeyPage(_Response):
    next: str | None = Field(description=_NEXT, json_schema_extra={"format": "uri-reference"})
    previous: str | None = Field(description=_PREVIOUS,
                                 json_schema_extra={"format": "uri-reference"})
    results: list[ApiKey] = Field(description="Newest first.")


class SecurityEventPage(_Response):
    next: str | None = Field(description=_NEXT, json_schema_extra={"format": "uri-reference"})
    previous: str | None = Field(description=_PREVIOUS,
                                 json_schema_extra={"format": "uri-reference"})
    results: list[SecurityEvent] = Field(description="Newest first.")


# Verify's answers are TypedDicts, not models: verify is on the hot path of the calling
# services, and serializing a plain dict through its TypedDict's serializer costs a third of
# building and validating a model (bench/README.md). The schema comes from them all the same.
_FORBID = ConfigDict(extra="forbid")


class KeyOwner(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]

    id: int
    email: str


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
    user: KeyOwner
    rolled: Annotated[bool, Field(description=(
        "True when this is a rolled key's old value, still inside its grace period."))]
    old_value_expires_at: Annotated[datetime | None, Field(description=(
        "When that old value stops working; null unless `rolled`."))]
    # RFC 7662 members, for off-the-shelf introspection clients.
    sub: Annotated[str, Field(description="RFC 7662: the owner's user id, as a string.")]
    username: Annotated[str, Field(description="RFC 7662: the owner's email.")]
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


class InactiveKey(TypedDict):
    """Any other answer: the key must not be accepted."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]

    active: Literal[False]
    code: Literal[CODES[1:]]


VerifyResult = TypeAdapter(ActiveKey | InactiveKey)
_ACTIVE, _INACTIVE = TypeAdapter(ActiveKey), TypeAdapter(InactiveKey)


def verify_answer(verdict: service.Verdict) -> bytes:
    """Verify's answer about the subject key, as JSON."""
    if not verdict.active:
        return _INACTIVE.dump_json({"active": False, "code": verdict.code})
    answer = {
        "active": True, "code": "valid", "key_id": verdict.public_id, "label": verdict.label,
        "scopes": verdict.scopes, "expires_at": verdict.expires_at,
        "created_at": verdict.created_at,
        "user": {"id": verdict.user_id, "email": verdict.user_email}, "rolled": verdict.rolled,
        "old_value_expires_at": verdict.old_value_expires_at,
        "sub": str(verdict.user_id), "username": verdict.user_email,
        "scope": " ".join(verdict.effective_scopes), "token_type": "bearer",
    }
    ends = verdict.ends_at
    if ends is not None:
        answer["exp"] = int(ends.timestamp())
    if verdict.issued_at is not None:
        answer["iat"] = int(verdict.issued_at.timestamp())
    return _ACTIVE.dump_json(answer)


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = Field(description="Always `about:blank`.")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What went wrong, for people.")
    code: str | None = Field(None, description="`insufficient_scope` on scope refusals.")
    required_scope: str | None = Field(None, description="The scope the request needed.")
    field: str | None = Field(None, description="The input field at fault.")


REQUEST_MODELS = (CreateKey, UpdateKey, RollKey, FormCredential, VerifyRequest, VerifyForm)
RESPONSE_MODELS = (User, ApiKey, ApiKeyWithValue, ApiKeyPage, EventKey, SecurityEvent,
                   SecurityEventPage, Problem)
