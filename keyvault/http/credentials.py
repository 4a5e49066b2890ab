"""Where a request's API key is read from: the one function that decides it."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from flask import Request
from werkzeug.exceptions import BadRequest

from ..jsonio import decode
from .problems import MalformedBody

FIELD = "personal_api_key"

@dataclass(frozen=True)
class WrongScheme:
    """An Authorization header in a scheme this door does not read (`Token <key>`): no key was
    presented, and the answer (http.gate) says which scheme to use rather than "malformed"."""

    scheme: str
    basic: bool = False  # Basic is read here too (verify)

    @property
    def detail(self) -> str:
        expected = "'Authorization: Bearer <key>'" + (
            " (or Basic, with the key as the password)" if self.basic else "")
        # The scheme is echoed only when it looks like one: a bare key sent with no scheme must
        # not come back in the answer.
        if _SCHEME.fullmatch(self.scheme):
            return (f"The Authorization header uses the scheme '{self.scheme}', which this "
                    f"endpoint does not read: send the key as {expected}.")
        return f"The Authorization header has no scheme this endpoint reads: send {expected}."


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,19}")  # a key has "_": never one of these


@dataclass(frozen=True)
class Credential:
    value: str | WrongScheme
    source: str  # "header", "body" or "query"


def json_body(request: Request):
    """The parsed JSON body (None when the body is not JSON, or empty); MalformedBody on bad JSON.

    Parsed once per request, and cached on the request.
    """
    if not request.is_json:
        return None
    try:
        return request.keyvault_json
    except AttributeError:
        pass
    body = request.keyvault_json = parse_json(request.get_data(cache=True))
    return body


FORM = "application/x-www-form-urlencoded"


def refuse_json_sent_as_form(request: Request) -> None:
    """BadRequest for a body that looks like JSON but is typed as a form (curl -d's default):
    read as a form, it would be one field named after the whole body, and the answer would
    speak of fields the client never meant to send."""
    if request.mimetype == FORM and request.get_data(cache=True).lstrip()[:1] in (b"{", b"["):
        raise BadRequest(
            "This body looks like JSON, but its Content-Type says it is a form "
            f"({FORM}, what curl -d sends unless told otherwise). Send it with the header "
            "Content-Type: application/json (with curl: --json, or "
            "-H 'Content-Type: application/json').")


def parse_json(data: bytes):
    """A request body's JSON (keyvault.jsonio: orjson, several times faster than the standard
    library); None for an empty body, MalformedBody for anything but JSON, `null` included."""
    if not data:
        return None
    try:
        body = decode(data)
    except ValueError:
        body = None
    if body is None:
        raise MalformedBody("The request body is not valid JSON.")
    return body


def bearer_value(header: str, basic: bool = False) -> str | WrongScheme:
    """The key in an Authorization header; WrongScheme for any other scheme.

    With `basic` (verify, the introspection endpoint), HTTP Basic is read too, the key being the
    password: RFC 7662 clients authenticate with client credentials that way (§2.1), so an
    off-the-shelf one works with the service key as its client secret, whatever its client id.
    """
    name, _, value = header.partition(" ")
    scheme = name.lower()
    if scheme == "bearer":
        return value.strip()
    if basic and scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return WrongScheme(name.strip(), basic)


def read_credential(request: Request, basic: bool = False) -> Credential | None:
    """Authorization: Bearer, then a body field, then the query string; only the first found counts.

    A key found in one place is never retried from another, so a wrong header can't be rescued
    by a right query parameter (or the other way round).
    """
    header = request.headers.get("Authorization")
    if header is not None:
        return Credential(bearer_value(header, basic), "header")
    try:
        body = json_body(request)
    except MalformedBody:
        body = None  # no credential in it: the caller hears 401 first; the view then says 400
    if isinstance(body, dict) and FIELD in body:
        value = body[FIELD]
        return Credential(value if isinstance(value, str) else "", "body")
    form_body = request.mimetype in (FORM, "multipart/form-data")
    if form_body and FIELD in request.form:
        return Credential(request.form[FIELD], "body")
    if FIELD in request.args:
        return Credential(request.args[FIELD], "query")
    return None
