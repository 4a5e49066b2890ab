"""RFC 9457 problem+json: the one way the API answers an error, in Flask and on the fast path.

Every error answer is an `Answer` (status, headers, body bytes) built here; `respond` turns one
into a Flask response and the verify fast path writes it to the socket itself, so both send the
same bytes.
"""

from __future__ import annotations

from typing import NamedTuple

from flask import current_app
from werkzeug.exceptions import HTTPException

from ..addresses import client_address
from ..failures import DATABASE_ERRORS
from ..jsonio import encode
from ..service import ServiceError

PROBLEM_TYPE = "about:blank"
PROBLEM_JSON = "application/problem+json"


class Answer(NamedTuple):
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class MalformedBody(ValueError):
    """The JSON body could not be parsed; the API answers 400."""


def problem(status: int, title: str, detail: str, headers: dict | None = None,
            **extra) -> Answer:
    body = {"type": PROBLEM_TYPE, "title": title, "status": status, "detail": detail, **extra}
    return Answer(status, (("Content-Type", PROBLEM_JSON), *(headers or {}).items()),
                  encode(body))


def respond(answer: Answer):
    """The Flask response for an Answer."""
    return current_app.response_class(answer.body, status=answer.status,
                                      headers=list(answer.headers))


def unauthorized(detail: str, key_presented: bool) -> Answer:
    challenge = 'Bearer realm="keyvault"'
    if key_presented:
        challenge += f', error="invalid_token", error_description="{detail}"'
    return problem(401, "Unauthorized", detail, {"WWW-Authenticate": challenge})


def too_many_requests(outcome) -> Answer:
    """429 for a key past its door's quota (a ratelimit.Outcome), with the draft's headers."""
    quota = outcome.quota
    return problem(
        429, "Too Many Requests",
        f"This key has made {quota.amount} requests to {quota.door} in {quota.window} seconds, "
        f"its limit: try again in {outcome.reset} seconds.",
        dict(outcome.headers()), code="rate_limited", limit=quota.door,
    )


def over_key_limit(outcome, headers: tuple[tuple[str, str], ...]) -> Answer:
    """429 for a key past the rate its owner set on it (or on its service account's pool)."""
    quota = outcome.quota
    whose = "its service account's" if quota.door == "pool" else "its owner's"
    return problem(
        429, "Too Many Requests",
        f"This key is past {whose} limit of {quota.amount} requests in {quota.window} seconds: "
        f"try again in {outcome.reset} seconds.",
        dict(headers), code="rate_limited", limit=quota.door, retry_after=outcome.reset)


def usage_exceeded(remaining: int | None) -> Answer:
    """403 for a key whose usage quota (or its pool's) cannot pay for this request."""
    return problem(403, "Usage exceeded",
                   "This key's usage quota is used up (or has less left than this request "
                   "costs) until it refills.", code="usage_exceeded", remaining=remaining)


def forbidden_scope(scope: str) -> Answer:
    return problem(
        403, "Insufficient scope", f"This key lacks the scope {scope!r} that this request needs.",
        {"WWW-Authenticate": f'Bearer realm="keyvault", error="insufficient_scope", scope="{scope}"'},
        code="insufficient_scope", required_scope=scope,
    )


def forbidden_address(address: str | None) -> Answer:
    """A key restricted to address ranges, used from outside them (or from no known address)."""
    where = (f"from {address}" if client_address(address) is not None
             else "without a known client address")
    return problem(403, "Address not allowed",
                   f"This key may not be used {where}: it is restricted to its allowed address "
                   "ranges (allowed_ips).", code="ip_not_allowed")


def from_service_error(error: ServiceError) -> Answer:
    extra = {"field": error.field} if error.field else {}
    if error.code:
        extra["code"] = error.code
    return problem(error.status, error.title, error.detail, **extra)


def from_http_exception(error: HTTPException, max_body: int | None = None) -> Answer:
    """A werkzeug error (404, 405, 413, …) as problem+json, keeping headers like Allow."""
    headers = {name: value for name, value in error.get_headers()
               if name.lower() != "content-type"}
    detail = error.description or error.name
    if error.code == 413:
        limit = max_body if max_body is not None else current_app.config["MAX_CONTENT_LENGTH"]
        detail = f"The request body is larger than the limit of {limit} bytes."
    return problem(error.code or 500, error.name, detail, headers)


def from_malformed_body(error: MalformedBody) -> Answer:
    return problem(400, "Malformed JSON", str(error))


RETRY_AFTER_SECONDS = 5  # after a database failure (503)


def from_error(error: Exception, max_body: int | None = None) -> Answer:
    """Any error an API request can end in, as its problem answer (keyvault.failures logs)."""
    if isinstance(error, DATABASE_ERRORS):
        return DATABASE_UNAVAILABLE
    if isinstance(error, ServiceError):
        return from_service_error(error)
    if isinstance(error, MalformedBody):
        return from_malformed_body(error)
    if isinstance(error, HTTPException):
        return from_http_exception(error, max_body)
    return INTERNAL_ERROR


INTERNAL_ERROR = problem(500, "Internal Server Error",
                         "Something went wrong on our side; it has been logged.")
DATABASE_UNAVAILABLE = problem(
    503, "Service Unavailable",
    "KeyVault's database is unavailable or busy; nothing was decided. Try again shortly.",
    {"Retry-After": str(RETRY_AFTER_SECONDS)})
