"""WSGI middleware: every request must present an active key before the wrapped app sees it.

The app finds the Verification at `environ["keyvault.verification"]`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from .client import KeyVaultClient
from .guard import Refusal, check, find_key, needs_body, require_client, scope_tuple

ENVIRON_KEY = "keyvault.verification"


class KeyVaultMiddleware:
    """`app.wsgi_app = KeyVaultMiddleware(app.wsgi_app, client, scopes=[...])`."""

    def __init__(self, app: Callable[..., Iterable[bytes]], client: KeyVaultClient,
                 scopes: Iterable[str] | None = None, *, realm: str = "api",
                 cache_seconds: float | None = None):
        require_client(client, KeyVaultClient, "KeyVaultMiddleware", cache_seconds)
        self.app = app
        self.client = client
        self.scopes = scope_tuple(scopes)
        self.realm = realm

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        authorization = environ.get("HTTP_AUTHORIZATION")
        content_type = environ.get("CONTENT_TYPE")
        body = b""
        if needs_body(authorization, content_type):
            body = _read_body(environ)
            # The app reads the same body again, from the start.
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        presented = find_key(authorization, content_type, body, environ.get("QUERY_STRING", ""))
        result = check(self.client, presented, self.scopes, self.realm, environ.get("REMOTE_ADDR"))
        if isinstance(result, Refusal):
            headers = [*result.headers, ("Content-Length", str(len(result.body)))]
            start_response(f"{result.status} {_REASONS[result.status]}", headers)
            return [result.body]
        environ[ENVIRON_KEY] = result
        return self.app(environ, start_response)


_REASONS = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests",
            503: "Service Unavailable"}


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            return stream.read(int(length))
        except ValueError:
            return b""
    # No length: chunked; readable to its end only when the server says the stream ends.
    return stream.read() if environ.get("wsgi.input_terminated") else b""
