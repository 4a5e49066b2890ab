"""The API's request models: they parse what comes in (types, unknown fields, limits) and
generate the OpenAPI document's request components (keyvault.api.openapi), so the contract has
one source. The domain rules (what a label may hold, which scopes a key may grant, when a key
may expire) stay in keyvault.service, which forms and the command line call too; the field
constraints the schema states are taken from there.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from .. import service
from ..addresses import MAX_RANGES, client_address
from ..org_models import ROLES
from ..service.validation import (
    DESCRIPTION_MAX,
    DESCRIPTION_PATTERN,
    EMAIL_MAX,
    GRACE_MAX_SECONDS,
    LABEL_MAX,
    LABEL_PATTERN,
    NAME_MAX,
    NAME_PATTERN,
    clean_grace_period,
)
from .limits import Cost, RateLimit, UsageLimit, Whole

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
AllowedIps = Annotated[list[str] | None, Field(json_schema_extra={"maxItems": MAX_RANGES}, description=(
    f"Where the key works: at most {MAX_RANGES} IPv4 or IPv6 addresses or CIDR ranges "
    "(`203.0.113.7`, `10.0.0.0/8`, `2001:db8::/32`), stored canonically without duplicates. "
    "Omitted or null: from any address (on create), unchanged (on edit); `[]`: any address. "
    "KeyVault's own API judges the request's client address; verify judges `client_ip`; "
    "forward_auth the gateway's forwarded client address."))]


def _ip_literal(value: Any) -> Any:
    """`client_ip` is an IPv4 or IPv6 address literal, or the request is refused (400)."""
    if value is not None and (not isinstance(value, str) or client_address(value) is None):
        raise service.InvalidInput("client_ip must be an IP address such as 203.0.113.7 or "
                                   "2001:db8::1: the address your own client connected from.",
                                   "client_ip")
    return value


ClientIp = Annotated[str | None, BeforeValidator(_ip_literal), Field(description=(
    "The address the key's user connected to your service from (IPv4 or IPv6). A key "
    "restricted by `allowed_ips` is `ip_not_allowed` outside its ranges, and without this "
    "field. KeyVault trusts it because the caller is an authenticated service."))]
# Where a key works (service.restrictions): public ids; null or omitted, everywhere.
Where = Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]] | None,
                  Field(min_length=1, max_length=100)]
SERVICES = ("The ids of the services the key works at; omitted or null: all services. A key "
            "restricted elsewhere answers `wrong_service` at verify.")
ORGANIZATIONS = ("A person's key only: the ids of organisations at whose services (including "
                 "ones added later) the key works, and the only organisations it manages "
                 "through /api/organizations/.")


def _scopes_required(schema: dict) -> None:
    """The schema says `scopes` must be sent, as a list; the model lets it through missing or
    null so that the service judges it after the label, with the message that names the
    page's choices (service.scopes.scopes_required)."""
    if "scopes" not in schema["required"]:
        schema["required"].append("scopes")
    field = schema["properties"]["scopes"]
    field.pop("default", None)
    branches = field.pop("anyOf", [])
    field.update(next((branch for branch in branches if branch.get("type") == "array"), {}))


class CreateKey(_Request):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=_scopes_required)

    label: Label
    description: Description = None

    scopes: GrantedScopes = Field(None, description=(
        "Required: what the new key may do, from the catalogue (`[\"*\"]` for full access, "
        "only when chosen). Omitted: 400, naming the key page's choices (read only, verify "
        "keys for a service, full access). A key can never grant a scope it lacks (403)."))
    expires_at: DateTimeText | None = Field(None, description=(
        "ISO 8601, in the future; omitted or null for no expiry (refused when the instance caps "
        "key lifetimes). A presenting key that expires cannot create one that outlives it (400); "
        "omitted or null, the new key ends when it does."))
    allowed_ips: AllowedIps = None
    services: Where = Field(None, description=SERVICES)
    organizations: Where = Field(None, description=ORGANIZATIONS)
    rate_limit: RateLimit | None = None
    usage_limit: UsageLimit | None = None
    personal_api_key: Credential = None


class UpdateKey(_Request):
    """Only the fields given change; null leaves a field as it is."""

    label: Label | None = None
    description: Description = None
    scopes: GrantedScopes = Field(None, description=(
        "Narrowing only: the API cannot add scopes to a key (403)."))
    expires_at: DateTimeText | None = Field(None, description=(
        "ISO 8601, in the future. Earlier only: the API can bring a key's expiry forward, or give "
        "a key without one an expiry, but not extend it (403: extending needs the password, on "
        "the key's edit page). An expired key's expiry cannot change (409)."))
    allowed_ips: AllowedIps = Field(None, description=(
        "Narrowing only through the API (fewer or narrower ranges, or a restriction on an "
        "unrestricted key); more addresses needs the password, on the key's edit page (403)."))
    services: Where = Field(None, description=(
        "Narrowing only through the API (403 otherwise); null lifts the restriction, which "
        "widens. Omitted: unchanged."))
    organizations: Where = Field(None, description="As `services`, for organisations.")
    rate_limit: RateLimit | None = Field(None, description=(
        "Replaces the key's rate; omitted leaves it, null removes it."))
    usage_limit: UsageLimit | None = Field(None, description=(
        "Replaces the key's usage quota (`remaining` starts again from what is sent); omitted "
        "leaves it, null removes it."))
    personal_api_key: Credential = None

    def where_changes(self) -> dict:
        """`services` and `organizations` when sent (null: everywhere), for service.update_key."""
        return {name: getattr(self, name) for name in ("services", "organizations")
                if name in self.model_fields_set}


class RollKey(_Request):
    grace_period_seconds: Annotated[int, BeforeValidator(clean_grace_period)] = Field(
        0, ge=0, le=GRACE_MAX_SECONDS,
        description="How long the old value keeps working; 0 stops it at once.")
    personal_api_key: Credential = None


Name = Annotated[str, Field(json_schema_extra={"pattern": NAME_PATTERN}, description=(
    f"1 to {NAME_MAX} characters once surrounding spaces are trimmed; no control characters "
    "and no characters that change the direction of text (as for a key's `label`)."))]
Role = Annotated[Literal[ROLES], Field(description=(
    "`owner` manages everything; `admin` manages service accounts, their keys, invitations "
    "and members other than owners; `member` sees the organisation, never key values."))]
Days = Annotated[Annotated[int, Field(ge=1, le=36500)] | None, Whole]


class CreateOrganization(_Request):
    name: Name
    personal_api_key: Credential = None


class UpdateOrganization(_Request):
    """Owners only. Only the fields given change; for the policy's fields null means no rule
    (the whole catalogue, for `allowed_scopes`), and a field left out stays as it is."""

    name: Name | None = None
    max_key_lifetime_days: Days = Field(None, description=(
        "The longest its service accounts' keys may live (KEYVAULT_MAX_KEY_LIFETIME_DAYS still "
        "caps every key). Keys already issued are not shortened; those that exceed it say so."))
    allowed_scopes: GrantedScopes = Field(None, description=(
        "The scopes its service accounts' keys may carry; null for the whole catalogue. Keys "
        "already issued keep theirs (they say when they exceed it) but cannot be rolled."))
    revoke_unused_after_days: Days = Field(None, description=(
        "A service account's key not presented for this long is revoked by `keyvault keys "
        "prune`; the owners are mailed 7 days before."))
    personal_api_key: Credential = None


class ChangeRole(_Request):
    role: Role
    personal_api_key: Credential = None


class Invite(_Request):
    email: Annotated[str, Field(max_length=EMAIL_MAX, description=(
        "Where the invitation goes; the answer is the same whether or not it has an account."))]
    role: Role
    personal_api_key: Credential = None


class AcceptInvitation(_Request):
    invitation_token: str = Field(description="The token at the end of the invitation's link.")
    personal_api_key: Credential = None


class CreateServiceAccount(_Request):
    name: Name
    description: Description = None
    personal_api_key: Credential = None


class UpdateServiceAccount(_Request):
    """Only the fields given change: a null name or description stays as it is, a null
    rate_limit or usage_limit is removed. The pool (rate_limit, usage_limit) is set by the
    organisation's owners and admins only, never by one of the account's own keys (403)."""

    name: Name | None = None
    description: Description = None
    rate_limit: RateLimit | None = Field(None, description=(
        "The pool's rate, shared by all of the account's keys (each key's own applies too: the "
        "stricter answers); omitted leaves it, null removes it."))
    usage_limit: UsageLimit | None = Field(None, description=(
        "The pool's usage quota, spent by every use of any of the account's keys along with "
        "the key's own; omitted leaves it, null removes it."))
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
    client_ip: ClientIp = None
    cost: Cost = 1
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
    client_ip: ClientIp = None
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
          "personal_api_key": "The API key", "scope": "The scopes", "name": "The name",
          "role": "The role", "email": "The email address",
          "invitation_token": "The invitation token",
          "max_key_lifetime_days": "The maximum lifetime",
          "revoke_unused_after_days": "The unused-key period",
          "allowed_scopes": "The allowed scopes", "url": "The URL", "events": "The events",
          "enabled": "Enabled", "organization_id": "The organisation",
          "allowed_ips": "The allowed addresses", "client_ip": "The client address"}


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
