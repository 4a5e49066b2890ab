"""Bytes KeyVault cannot read are refused at one place, whatever server hands them over.

Servers give the app each request as PEP 3333 says: the query string and every header value
as a latin-1 string of the bytes that came (keyvault.server does, as werkzeug's own server and
its test client do), so nothing is dropped on the way. Before anything reads them (the
trusted-proxy fix, the request id, the verify fast path, a view), `RefuseUnreadable` looks once:

- the query string, percent-decoded, must be UTF-8, which is how werkzeug parses it;
- a header KeyVault decides by (`DECISIVE`: the credential, the scopes a gateway requires,
  forwarded addresses, the request id, the body's framing, a leak report's signature) must be
  printable ASCII: nothing else can be a key, a scope, an address or an id, and a check that
  read it any other way could fail open;
- any other header value must be UTF-8.

A request that breaks a rule goes on with the unreadable part taken out, so nothing further in
can act on it or trip over it, and with a mark (`UNREADABLE`) that the app answers first: 400
in its usual form (problem+json under /api/, the error page elsewhere), logged as one line.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, unquote_to_bytes

from flask import Flask, request
from werkzeug.exceptions import BadRequest

from .context import request_id

UNREADABLE = "keyvault.unreadable"  # environ key: why this request is refused


def environ_key(header: str) -> str:
    """`X-Request-Id` -> `HTTP_X_REQUEST_ID`."""
    return "HTTP_" + header.upper().replace("-", "_")


# Headers every route decides by; a blueprint adds its own (init_app's `decisive`).
DECISIVE = frozenset({
    "CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING", "HTTP_HOST",
    "HTTP_AUTHORIZATION", "HTTP_X_KEYVAULT_REQUIRED_SCOPES", "HTTP_X_REQUEST_ID",
    "HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX",
    # The address a key is judged at (allowed_ips), the service a gateway names and its key,
    # what a check costs, where a stream resumes: each decides a verdict, so each fails closed.
    "HTTP_X_REAL_IP", "HTTP_X_KEYVAULT_SERVICE", "HTTP_X_KEYVAULT_SERVICE_KEY",
    "HTTP_X_KEYVAULT_COST", "HTTP_LAST_EVENT_ID",
})
_FIELD_TEXT = re.compile(r"[\t\x20-\x7e]*")  # RFC 9110 field-value without obs-text
log = logging.getLogger("keyvault")


def header_name(key: str) -> str:
    """`HTTP_X_REQUEST_ID` -> `X-Request-Id`."""
    return key.removeprefix("HTTP_").replace("_", "-").title()


def _is_utf8(text: str) -> bool:
    """Is this latin-1 string of bytes UTF-8? (a character past U+00FF is no byte at all)"""
    try:
        text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return False
    return True


def query_is_readable(query: str) -> bool:
    if query.isascii() and "%" not in query:
        return True  # most queries: nothing to decode
    try:
        unquote_to_bytes(query.encode("latin-1")).decode("utf-8")
    except UnicodeError:
        return False
    return True


def header_is_readable(key: str, value: str, decisive: frozenset = DECISIVE) -> bool:
    if key in decisive:
        return value.isascii() and (value.isprintable() or _FIELD_TEXT.fullmatch(value) is not None)
    return value.isascii() or _is_utf8(value)


def unreadable_parts(environ: dict, decisive: frozenset = DECISIVE) -> list[str]:
    """Why each part of this request cannot be read, in words for the client; [] if none."""
    reasons = []
    if not query_is_readable(environ.get("QUERY_STRING", "")):
        reasons.append("The query string is not UTF-8 (percent-decoded).")
    for key, value in environ.items():
        if (key.startswith("HTTP_") or key in decisive) and isinstance(value, str) \
                and not (value.isascii() and value.isprintable()) \
                and not header_is_readable(key, value, decisive):  # printable ASCII passes all
            rule = "printable ASCII" if key in decisive else "UTF-8"
            reasons.append(f"The {header_name(key)} header is not {rule}.")
    return reasons


class RefuseUnreadable:
    """WSGI middleware, outermost: marks a request with unreadable bytes and takes them out."""

    def __init__(self, wsgi_app, decisive: frozenset = DECISIVE):
        self.wsgi_app = wsgi_app
        self.decisive = decisive

    def __call__(self, environ, start_response):
        decisive = self.decisive
        reasons = unreadable_parts(environ, decisive)
        if reasons:
            if not query_is_readable(environ.get("QUERY_STRING", "")):
                environ["QUERY_STRING"] = ""
            for key in [key for key, value in environ.items()
                        if (key.startswith("HTTP_") or key in decisive)
                        and isinstance(value, str) and not header_is_readable(key, value, decisive)]:
                del environ[key]
            environ[UNREADABLE] = " ".join(reasons)
        return self.wsgi_app(environ, start_response)


def init_app(app: Flask, decisive: tuple[str, ...] = ()) -> None:
    """Wrap the whole WSGI app (call it last, outside ProxyFix) and answer marked requests
    before any other before_request hook runs. `decisive`: more headers (by name) that must be
    printable ASCII, such as a leak report's signature headers."""
    app.wsgi_app = RefuseUnreadable(app.wsgi_app,
                                    DECISIVE | {environ_key(header) for header in decisive})

    def refuse_unreadable():
        reason = request.environ.get(UNREADABLE)
        if reason is not None:
            path = quote(request.environ["PATH_INFO"].encode("latin-1", "replace"), safe="/:@!$&'()*+,;=~-._")
            log.warning("refused %s %s (request %s), 400: %s", request.method, path,
                        request_id(), reason)
            raise BadRequest(reason)

    app.before_request_funcs.setdefault(None, []).insert(0, refuse_unreadable)
