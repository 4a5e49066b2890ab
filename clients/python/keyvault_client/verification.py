"""KeyVault's answer about one key, parsed into a typed, immutable value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from .errors import UnexpectedAnswer

# Every reason KeyVault gives (its contract's codes, in its order); an unknown one is kept as sent.
INACTIVE_CODES = ("malformed", "not_found", "revoked", "user_inactive", "expired", "wrong_service",
                  "ip_not_allowed", "insufficient_scope", "rate_limited", "usage_exceeded")
OWNER_TYPES = ("user", "service_account", "service")


@dataclass(frozen=True)
class Owner:
    """Whose key it is: a person (`user`: `id` is their user id), an organisation's service
    account (`service_account`: its id and `name`), or a registered service's own verify key
    (`service`: its id and `audience`); the last two name their organisation."""

    type: str  # one of OWNER_TYPES
    id: int | str
    name: str | None = None
    audience: str | None = None
    organization_id: str | None = None
    organization_name: str | None = None

    @classmethod
    def from_answer(cls, owner: Any) -> Owner:
        kind = _typed(owner["type"], str)
        if kind not in OWNER_TYPES:
            raise ValueError(f"an owner of unknown type {kind!r}")
        organization = owner.get("organization") or {}
        return cls(type=kind, id=_typed(owner["id"], int if kind == "user" else str),
                   name=_optional(owner.get("name"), str),
                   audience=_optional(owner.get("audience"), str),
                   organization_id=_optional(organization.get("id"), str),
                   organization_name=_optional(organization.get("name"), str))


@dataclass(frozen=True)
class Verification:
    """Whether a key is active, and for an active key whose it is and what it may do.

    Use it for the request at hand only: never cache it yourself (a revocation takes effect at
    once); the client's `cache_seconds` caches it safely, told of revocations.
    """

    active: bool
    code: str  # "valid", or why not: one of INACTIVE_CODES
    key_id: str | None = None
    label: str | None = None
    scopes: tuple[str, ...] = ()  # as granted, e.g. ("*",) or ("feature_flag:write",)
    effective_scopes: tuple[str, ...] = ()  # spelled out: `*` and `x:write` expanded (RFC 7662 scope)
    expires_at: datetime | None = None
    created_at: datetime | None = None
    user_id: int | None = None  # the person's id; None for a service account's or service's key
    user_email: str | None = None  # None too when the service asking may not hear it
    owner: Owner | None = None  # whose key it is, whatever kind of owner
    subject: str | None = None  # RFC 7662 sub: the user id, `sa_…` or `svc_…`
    audience: str | None = None  # RFC 7662 aud: the registered service that asked, if one did
    rolled: bool = False  # the old value of a rolled key, inside its grace period
    old_value_expires_at: datetime | None = None
    ends_at: datetime | None = None  # when this presented value stops working (RFC 7662 exp)
    issued_at: datetime | None = None  # RFC 7662 iat
    retry_after: int | None = None  # rate_limited: seconds until the key's window ends
    answer: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def inactive(cls, code: str) -> Verification:
        return cls(active=False, code=code, answer=MappingProxyType({"active": False, "code": code}))

    @classmethod
    def from_answer(cls, answer: object) -> Verification:
        """Parse verify's 200 body; UnexpectedAnswer for anything outside the contract."""
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise UnexpectedAnswer("verify's answer has no boolean `active`")
        code = answer.get("code")
        if not answer["active"]:
            if not isinstance(code, str):
                raise UnexpectedAnswer("an inactive answer without a `code`")
            try:
                retry_after = _optional(answer.get("retry_after"), int)
            except TypeError as error:
                raise UnexpectedAnswer(f"an inactive answer of the wrong shape: {error!r}") from error
            return cls(active=False, code=code, retry_after=retry_after,
                       answer=MappingProxyType(dict(answer)))
        if code != "valid":
            raise UnexpectedAnswer(f"an active answer with code {code!r}")
        try:
            user = answer["user"]
            if user is not None and not isinstance(user, dict):
                raise TypeError(f"expected an object or null for user, got {user!r}")
            return cls(
                active=True, code="valid",
                key_id=_typed(answer["key_id"], str), label=_typed(answer["label"], str),
                scopes=_strings(answer["scopes"]),
                effective_scopes=tuple(_typed(answer.get("scope", ""), str).split()),
                expires_at=_time(answer["expires_at"]), created_at=_time(answer["created_at"]),
                user_id=_typed(user["id"], int) if user is not None else None,
                user_email=_optional(user.get("email"), str) if user is not None else None,
                owner=Owner.from_answer(answer["owner"]),
                subject=_typed(answer["sub"], str), audience=_optional(answer.get("aud"), str),
                rolled=_typed(answer["rolled"], bool),
                old_value_expires_at=_time(answer.get("old_value_expires_at")),
                ends_at=_epoch(answer.get("exp")), issued_at=_epoch(answer.get("iat")),
                answer=MappingProxyType(dict(answer)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise UnexpectedAnswer(f"an active answer of the wrong shape: {error!r}") from error


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}, got {value!r}")
    return value


def _optional(value: Any, kind: type) -> Any:
    return None if value is None else _typed(value, kind)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(_typed(item, str) for item in _typed(value, list))


def _time(value: Any) -> datetime | None:
    """An ISO-8601 time with its offset (KeyVault writes `...Z`), or None for null."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(_typed(value, str))
    if parsed.tzinfo is None:
        raise ValueError(f"a time without an offset: {value!r}")
    return parsed


def _epoch(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(_typed(value, int), UTC)
