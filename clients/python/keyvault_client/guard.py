"""What every guard shares: where a request's key is read from, and the one decision (and
problem+json answer) for a presented key. The framework modules only adapt these to a request.

The key is read as KeyVault itself reads it: the Authorization header, else a `personal_api_key`
field of a JSON or form body, else a `personal_api_key` query parameter. Only the first place
found counts: a wrong key there is never rescued by a right one somewhere else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qsl

from .client import AsyncKeyVaultClient, KeyVaultClient
from .errors import KeyVaultError
from .verification import Verification

log = logging.getLogger("keyvault_client")

FIELD = "personal_api_key"
PROBLEM_JSON = "application/problem+json"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class PresentedKey:
    value: str  # "" when the place held something that can never be a key (another scheme)
    source: str  # "header", "body" or "query"


@dataclass(frozen=True)
class Refusal:
    """A guard's answer when the request may not go ahead: status, headers and body bytes."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def mimetype_of(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def needs_body(authorization: str | None, content_type: str | None) -> bool:
    """Whether the body has to be read to find the key (no header; a JSON or form body)."""
    return authorization is None and (_is_json(mimetype_of(content_type))
                                      or mimetype_of(content_type) in FORM_TYPES)


def find_key(authorization: str | None, content_type: str | None, body: bytes,
             query_string: str) -> PresentedKey | None:
    """The key a request presents, from the first place that has one; None when none does.

    `body` is only looked at when needs_body() says so (pass b"" otherwise).
    """
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        return PresentedKey(value.strip() if scheme.lower() == "bearer" else "", "header")
    mimetype = mimetype_of(content_type)
    if _is_json(mimetype):
        parsed = _json(body)
        if isinstance(parsed, dict) and FIELD in parsed:
            value = parsed[FIELD]
            return PresentedKey(value if isinstance(value, str) else "", "body")
    elif mimetype in FORM_TYPES:
        fields = _form_fields(content_type or "", body)
        if FIELD in fields:
            return PresentedKey(fields[FIELD], "body")
    query = _first_values(parse_qsl(query_string, keep_blank_values=True, errors="replace"))
    if FIELD in query:
        return PresentedKey(query[FIELD], "query")
    return None


def decide(presented: PresentedKey | None, verification: Verification | None,
           scopes: tuple[str, ...], realm: str) -> Refusal | None:
    """None when the request may go ahead; else the problem answer to send: 401 for a key that
    is not valid, 403 for one valid but not for this (scope, address, used-up quota), 429 with
    Retry-After for one past its owner's rate, as KeyVault's own API answers them."""
    if presented is None:
        return _problem(401, "Unauthorized", "This request needs an API key.",
                        f'Bearer realm="{realm}"')
    assert verification is not None
    if verification.active:
        return None
    if verification.code == "insufficient_scope":
        needed = " ".join(scopes)
        return _problem(403, "Insufficient scope", f"This key lacks a scope this request needs: {needed}.",
                        f'Bearer realm="{realm}", error="insufficient_scope", scope="{needed}"',
                        code="insufficient_scope", required_scope=needed)
    if verification.code == "rate_limited":  # the key is good, but past its owner's rate
        wait = verification.retry_after
        return _problem(429, "Too Many Requests", "This key is past the rate its owner set"
                        + (f": try again in {wait} seconds." if wait is not None else "."), None,
                        retry_after=str(wait) if wait is not None else None, code="rate_limited")
    if verification.code == "usage_exceeded":
        return _problem(403, "Usage exceeded", "This key's usage quota is used up until it refills.",
                        None, code="usage_exceeded")
    if verification.code == "ip_not_allowed":
        return _problem(403, "Address not allowed", "This key may not be used from this address: it "
                        "is restricted to its allowed address ranges.", None, code="ip_not_allowed")
    detail = f"The API key is not valid ({verification.code})."
    return _problem(401, "Unauthorized", detail,
                    f'Bearer realm="{realm}", error="invalid_token", error_description="{detail}"',
                    code=verification.code)


def unavailable(error: KeyVaultError) -> Refusal:
    """503: the key could not be checked, so the request is refused (fail closed)."""
    log.error("key not checked, request refused: %s", error)
    return _problem(503, "Service Unavailable", "API keys cannot be checked right now; try again later.",
                    None, retry_after="5")


def check(client: KeyVaultClient, presented: PresentedKey | None, scopes: tuple[str, ...],
          realm: str, client_ip: str | None = None) -> Verification | Refusal:
    """The one pipeline for a presented key: ask KeyVault (with the request's client address,
    for keys restricted to address ranges), then decide."""
    if presented is None:
        return decide(None, None, scopes, realm)
    try:
        verification = client.verify(presented.value, scopes or None, client_ip=client_ip)
    except KeyVaultError as error:
        return unavailable(error)
    return decide(presented, verification, scopes, realm) or verification


async def check_async(client: AsyncKeyVaultClient, presented: PresentedKey | None,
                      scopes: tuple[str, ...], realm: str,
                      client_ip: str | None = None) -> Verification | Refusal:
    """check(), for the asyncio client."""
    if presented is None:
        return decide(None, None, scopes, realm)
    try:
        verification = await client.verify(presented.value, scopes or None, client_ip=client_ip)
    except KeyVaultError as error:
        return unavailable(error)
    return decide(presented, verification, scopes, realm) or verification


def scope_tuple(scopes: Iterable[str] | None) -> tuple[str, ...]:
    if isinstance(scopes, str):
        raise TypeError("scopes is a list of scope names, not one string")
    return tuple(scopes or ())


def require_client(client: object, kind: type, where: str,
                   cache_seconds: float | None = None) -> None:
    """The guard's client is of the right kind; a guard's `cache_seconds` turns on its cache."""
    if not isinstance(client, kind):
        raise TypeError(f"{where} needs a {kind.__name__}, got {type(client).__name__}")
    if cache_seconds is not None:
        client.cache_verdicts(cache_seconds)


def _problem(status: int, title: str, detail: str, challenge: str | None, *,
             retry_after: str | None = None, **extra: str) -> Refusal:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = [("Content-Type", PROBLEM_JSON), ("Cache-Control", "no-store")]
    if challenge:
        headers.append(("WWW-Authenticate", challenge))
    if retry_after:
        headers.append(("Retry-After", retry_after))
    return Refusal(status, tuple(headers), json.dumps(body).encode())


def _is_json(mimetype: str) -> bool:
    """As Flask's Request.is_json: application/json or application/*+json."""
    return mimetype == "application/json" or (mimetype.startswith("application/")
                                              and mimetype.endswith("+json"))


def _json(body: bytes) -> object:
    try:
        return json.loads(body) if body else None
    except ValueError:  # not JSON: no key in it (the app itself will answer 400)
        return None


def _first_values(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in pairs:
        found.setdefault(name, value)
    return found


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """A form body's text fields (first value of each); file parts are not fields."""
    if mimetype_of(content_type) == "application/x-www-form-urlencoded":
        return _first_values(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return {}
    pairs = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and part.get_filename() is None:
            payload = part.get_payload(decode=True) or b""
            pairs.append((name, payload.decode(part.get_content_charset() or "utf-8", "replace")))
    return _first_values(pairs)

