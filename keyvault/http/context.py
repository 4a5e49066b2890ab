"""What every request carries, whichever way it is served (the verify fast path or Flask).

`AroundRequest` wraps the whole WSGI app, so whatever it does reaches every route, the fast path
included: it gives each request an id (`X-Request-Id`, kept from the client when it is a sane
token), times it (`Server-Timing`) and sets the headers every answer carries (`no-store` on
every API and /metrics answer that does not set its own Cache-Control). `origin()` is
where a request came from, for the security log, in the browser blueprints and the API alike.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import secrets
from contextvars import ContextVar
from time import perf_counter

from flask import request

from .. import metrics
from ..addresses import client_address
from ..logs import LOG_FIELDS, REQUEST_ID  # environ keys: the request's id, the log's facts
from ..redact import scrub
from ..service import Origin

_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# API (and /metrics) answers depend on the key presented (in a header, the body or the query),
# so no cache may keep one; the two documents under /api/ are built from configuration alone,
# the same for all.
_SAME_FOR_EVERYONE = ("/api/docs", "/api/docs/", "/api/schema", "/api/schema/")
_log_fields: ContextVar[dict | None] = ContextVar("keyvault_log_fields", default=None)


def note(**fields) -> None:
    """Add facts to this request's access-log line (never a key value or a password)."""
    current = _log_fields.get()
    if current is not None:
        current.update(fields)


def origin_of(environ: dict) -> Origin:
    """Who sent the request, for the security log; a key in the User-Agent is not kept."""
    agent = environ.get("HTTP_USER_AGENT")
    return Origin(environ.get("REMOTE_ADDR"), scrub(agent) if agent else agent,
                  environ.get(REQUEST_ID))


def origin() -> Origin:
    """The current Flask request's origin."""
    return origin_of(request.environ)


def request_id(environ: dict | None = None) -> str:
    """This request's id ("-" outside AroundRequest, as in tests that call a view directly)."""
    return (environ if environ is not None else request.environ).get(REQUEST_ID, "-")


class RealIpFallback:
    """Behind trusted proxies (KEYVAULT_TRUSTED_PROXIES), a request that carries no
    X-Forwarded-For but an X-Real-IP (nginx's `proxy_set_header X-Real-IP $remote_addr`) comes
    from that address. Wrapped around ProxyFix, so every layer reads one client address."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        real = environ.get("HTTP_X_REAL_IP", "").strip()
        if "HTTP_X_FORWARDED_FOR" not in environ and client_address(real) is not None:
            environ["HTTP_X_FORWARDED_FOR"] = real  # ProxyFix reads it as the nearest proxy's
        return self.wsgi_app(environ, start_response)


class AroundRequest:
    """WSGI middleware for work that belongs to every request: id, timing, common headers, and
    bodies of unknown length.

    A chunked body (no Content-Length) is read here, up to `max_body` bytes and one more, and
    handed on with its length, so every route, the fast path included, sees one kind of body and
    one limit: over it, the declared length is over the limit and the answer is 413 (werkzeug
    would otherwise cut the body at the limit and let it fail as malformed JSON).
    """

    def __init__(self, wsgi_app, max_body: int, headers: tuple[tuple[str, str], ...] = ()):
        self.wsgi_app = wsgi_app
        self.max_body = max_body
        self.headers = headers  # more headers for every answer (HSTS in production)
        self._ids = itertools.count()
        self._id_prefix = ""

    def _new_id(self) -> str:
        """16 hex digits: random per process (8, drawn after the fork), then a counter (8).
        Unique, cheap (it runs for every request) and meant for finding log lines, not as a
        secret."""
        if not self._id_prefix or self._pid != os.getpid():
            self._pid, self._id_prefix = os.getpid(), secrets.token_hex(4)
            self._ids = itertools.count()
        return f"{self._id_prefix}{next(self._ids) & 0xFFFFFFFF:08x}"

    def __call__(self, environ, start_response):
        started = perf_counter()
        if "CONTENT_LENGTH" not in environ and "chunked" in environ.get(
                "HTTP_TRANSFER_ENCODING", "").lower():
            data = environ["wsgi.input"].read(self.max_body + 1)
            environ["wsgi.input"] = io.BytesIO(data)
            environ["CONTENT_LENGTH"] = str(len(data))
            del environ["HTTP_TRANSFER_ENCODING"]
        incoming = environ.get("HTTP_X_REQUEST_ID")
        ident = incoming if incoming and _SANE_ID.fullmatch(incoming) else self._new_id()
        environ[REQUEST_ID] = ident
        fields = environ[LOG_FIELDS] = {}
        path = environ.get("PATH_INFO", "")
        private = (path.startswith("/api/") and path not in _SAME_FOR_EVERYONE
                   or path.startswith("/metrics"))

        def start(status, headers, exc_info=None):
            headers.append(("X-Content-Type-Options", "nosniff"))  # set nowhere else
            if private and not any(name.lower() == "cache-control" for name, _ in headers):
                headers.append(("Cache-Control", "no-store"))
            headers.append(("X-Request-Id", ident))
            headers.extend(self.headers)
            seconds = perf_counter() - started
            headers.append(("Server-Timing", f"app;dur={seconds * 1000:.2f}"))
            metrics.observe_request(environ, environ["REQUEST_METHOD"], seconds)
            return start_response(status, headers, exc_info)

        token = _log_fields.set(fields)
        try:
            return self.wsgi_app(environ, start)
        finally:
            _log_fields.reset(token)
