"""KeyVault's answer about one key, parsed into a typed, immutable value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from .errors import UnexpectedAnswer

INACTIVE_CODES = ("malformed", "not_found", "revoked", "expired", "user_inactive", "insufficient_scope")


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
    user_id: int | None = None
    user_email: str | None = None
    rolled: bool = False  # the old value of a rolled key, inside its grace period
    old_value_expires_at: datetime | None = None
    ends_at: datetime | None = None  # when this presented value stops working (RFC 7662 exp)
    issued_at: datetime | None = None  # RFC 7662 iat
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
            return cls(active=False, code=code, answer=MappingProxyType(dict(answer)))
        if code != "valid":
            raise UnexpectedAnswer(f"an active answer with code {code!r}")
        try:
            user = answer["user"]
            return cls(
                active=True, code="valid",
                key_id=_typed(answer["key_id"], str), label=_typed(answer["label"], str),
                scopes=_strings(answer["scopes"]),
                effective_scopes=tuple(_typed(answer.get("scope", ""), str).split()),
                expires_at=_time(answer["expires_at"]), created_at=_time(answer["created_at"]),
                user_id=_typed(user["id"], int), user_email=_typed(user["email"], str),
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
