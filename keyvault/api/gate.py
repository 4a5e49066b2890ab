"""The one pipeline for a presented key, in HTTP terms: judge it, then answer or let it in.

API routes (`requires`), verify and forward_auth all come here, from Flask or from the verify
fast path: the credential and the required scopes go in, service.check_keys judges every key of
the request in one lookup, `refusal` maps a caller's verdict to its 401 or 403, and only a
request that is let in records its keys' use (last used, expired-use events). A subject key
(verify's) is never touched when its caller is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from flask import Flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .. import metrics, service
from ..ratelimit import Outcome, limiter
from ..request_context import note
from ..service import Origin, Verdict
from ..service.scopes import VERIFY
from .errors import (
    Answer,
    MalformedBody,
    forbidden_scope,
    from_error,
    too_many_requests,
    unauthorized,
)
from .schemas import VerifyRequest, parse, verify_answer

INVALID_KEY_DETAIL = {
    "malformed": "The API key is malformed (wrong prefix, length or checksum).",
    "not_found": "The API key is not recognised.",
    "revoked": "The API key has been revoked.",
    "expired": "The API key has expired.",
    "user_inactive": "The API key's owner is deactivated.",
}
NO_KEY = "This endpoint needs an API key: send it as 'Authorization: Bearer <key>'."
NO_VERIFY_KEY = f"Authenticate with your service's own key carrying '{VERIFY}'."
VERIFY_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))


class Admission(NamedTuple):
    """The caller's verdict, the subject's (verify only, when the caller is let in), the answer
    that ends the request when the caller is refused, and the caller's count at its door."""

    caller: Verdict | None
    subject: Verdict | None = None
    refusal: Answer | None = None
    counted: Outcome | None = None

    def rate_limit_headers(self) -> tuple[tuple[str, str], ...]:
        return self.counted.headers() if self.counted is not None else ()


def refusal(verdict: Verdict, needed: list[str]) -> Answer | None:
    """The one mapping from a caller's verdict to HTTP: None to go on, else its 401 or 403."""
    if verdict.code == "insufficient_scope":
        return forbidden_scope(" ".join(needed))
    if not verdict.active:
        return unauthorized(INVALID_KEY_DETAIL[verdict.code], key_presented=True)
    return None


def admit(credential: str | None, needed: list[str], origin: Origin, *,
          subject: tuple[str, list[str]] | None = None, missing: str = NO_KEY,
          door: str = "api", app: Flask | None = None) -> Admission:
    """Judge the caller's key (and a subject key, in the same lookup), count it at its door
    (ratelimit: 429 past the quota), and record what a judged key leaves behind: the caller's
    always, the subject's only when the caller is let in."""
    if credential is None:
        return Admission(None, refusal=unauthorized(missing, key_presented=False))
    values, required = [credential], [needed]
    if subject is not None:
        values.append(subject[0])
        required.append(subject[1])
    verdicts = service.check_keys(values, required, app=app)
    caller = verdicts[0]
    if caller.public_id is not None:
        note(key_id=caller.public_id)
    refused = refusal(caller, needed)
    counted = None
    if refused is None:
        counted = limiter(app).hit(door, caller.key_id)
        if counted is not None and not counted.allowed:
            metrics.record_rate_limited(door)
            refused = too_many_requests(counted)
    if refused is not None:
        service.record_use([caller], origin, app=app)
        return Admission(caller, refusal=refused, counted=counted)
    service.record_use(verdicts, origin, app=app)
    return Admission(caller, verdicts[1] if subject is not None else None, counted=counted)


BODY_ERRORS = (service.InvalidInput, MalformedBody, HTTPException)
NO_BODY = 'Send {"key": "...", "scopes": [...]} as JSON, or token=... as a form.'


def verify_request(body: Any) -> VerifyRequest:
    """Verify's parsed JSON body as its model; None means there was no body."""
    if body is None:
        raise service.InvalidInput(NO_BODY, "key")
    return parse(VerifyRequest, body)


def verify(credential: str | None, read_body: Callable[[], VerifyRequest | Any], origin: Origin,
           *, app: Flask | None = None) -> Answer:
    """POST /api/verify/ (see _verify), counted in keyvault_verify_total by outcome."""
    try:
        answer, outcome = _verify(credential, read_body, origin, app)
    except Exception as error:  # a database failure (503), or a body too large (413)
        too_large = isinstance(error, RequestEntityTooLarge)
        metrics.record_verify("verify", "bad_request" if too_large else "error")
        raise
    metrics.record_verify("verify", outcome)
    return answer


def _verify(credential: str | None, read_body: Callable[[], VerifyRequest | Any], origin: Origin,
            app: Flask | None) -> tuple[Answer, str]:
    """POST /api/verify/, whoever serves it (the fast path or the Flask view).

    Who is asking comes first: a caller that is refused hears 401/403, never what is wrong with
    the body. `read_body` returns the parsed request or raises one of BODY_ERRORS (a request
    too large to read raises 413 before anything else, in both servers).
    """
    if credential is None:
        return unauthorized(NO_VERIFY_KEY, key_presented=False), "caller_refused"
    try:
        body = read_body()
        subject = (body.key, body.scopes or [])
    except BODY_ERRORS as error:
        if isinstance(error, RequestEntityTooLarge):
            raise
        admission = admit(credential, [VERIFY], origin, door="verify", app=app)
        if admission.refusal is not None:
            return admission.refusal, "caller_refused"
        answer = from_error(error)
        return (answer._replace(headers=(*answer.headers, *admission.rate_limit_headers())),
                "bad_request")
    admission = admit(credential, [VERIFY], origin, subject=subject, door="verify", app=app)
    if admission.refusal is not None:
        return admission.refusal, "caller_refused"
    return (Answer(200, (*VERIFY_HEADERS, *admission.rate_limit_headers()),
                   verify_answer(admission.subject)), admission.subject.code)
