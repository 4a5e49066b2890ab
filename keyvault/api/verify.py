"""POST /api/verify/, whoever serves it (the fast path or the Flask view): the caller is
admitted through the one pipeline (keyvault.http.gate), then the subject key's verdict is the
answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .. import metrics, service
from ..http.gate import admit
from ..http.problems import Answer, MalformedBody, from_error, unauthorized
from ..service import Origin
from ..service.scopes import VERIFY
from .inputs import VerifyRequest, parse
from .schemas import verify_answer

NO_VERIFY_KEY = f"Authenticate with your service's own key carrying '{VERIFY}'."
VERIFY_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))


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
    except service.AnswerLater:  # not an outcome: the same request, answered again
        raise
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
        subject, subject_ip = (body.key, body.scopes or [], body.cost), body.client_ip
    except BODY_ERRORS as error:
        if isinstance(error, RequestEntityTooLarge):
            raise
        admission = admit(credential, [VERIFY], origin, door="verify", app=app)
        if admission.refusal is not None:
            return admission.refusal, "caller_refused"
        answer = from_error(error)
        return (answer._replace(headers=(*answer.headers, *admission.rate_limit_headers())),
                "bad_request")
    admission = admit(credential, [VERIFY], origin, subject=subject, door="verify", app=app,
                      subject_ip=subject_ip, presented="caller")
    if admission.refusal is not None:
        return admission.refusal, "caller_refused"
    return (Answer(200, (*VERIFY_HEADERS, *admission.rate_limit_headers()),
                   verify_answer(admission.subject)), admission.subject.code)
