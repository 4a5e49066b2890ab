"""Where a request's API key is read from: the one function that decides it."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Request

FIELD = "personal_api_key"


class MalformedBody(ValueError):
    """The JSON body could not be parsed; the API answers 400."""


@dataclass(frozen=True)
class Credential:
    value: str
    source: str  # "header", "body" or "query"


def json_body(request: Request):
    """The parsed JSON body (None when the body is not JSON); raises MalformedBody on bad JSON."""
    if not request.is_json:
        return None
    cached = request.get_json(silent=True, cache=True)
    if cached is None and request.get_data(cache=True):
        raise MalformedBody("The request body is not valid JSON.")
    return cached


def read_credential(request: Request) -> Credential | None:
    """Authorization: Bearer, then a body field, then the query string; only the first found counts.

    A key found in one place is never retried from another, so a wrong header can't be rescued
    by a right query parameter (or the other way round).
    """
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return Credential(value.strip() if scheme.lower() == "bearer" else "", "header")
    body = json_body(request)
    if isinstance(body, dict) and FIELD in body:
        value = body[FIELD]
        return Credential(value if isinstance(value, str) else "", "body")
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if FIELD in request.form:
            return Credential(request.form[FIELD], "body")
    if FIELD in request.args:
        return Credential(request.args[FIELD], "query")
    return None
