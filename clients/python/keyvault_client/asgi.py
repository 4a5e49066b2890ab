"""ASGI middleware: every HTTP request (and websocket) must present an active key first.

The app finds the Verification at `scope["keyvault.verification"]` (Starlette:
`request.scope["keyvault.verification"]`). Needs no framework; lifespan events pass through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from .client import AsyncKeyVaultClient
from .guard import Refusal, check_async, find_key, needs_body, require_client, scope_tuple

SCOPE_KEY = "keyvault.verification"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class KeyVaultASGIMiddleware:
    """`app = KeyVaultASGIMiddleware(app, async_client, scopes=[...])`."""

    def __init__(self, app: ASGIApp, client: AsyncKeyVaultClient, scopes: Iterable[str] | None = None,
                 *, realm: str = "api", cache_seconds: float | None = None):
        require_client(client, AsyncKeyVaultClient, "KeyVaultASGIMiddleware", cache_seconds)
        self.app = app
        self.client = client
        self.scopes = scope_tuple(scopes)
        self.realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        authorization, content_type = headers.get("authorization"), headers.get("content-type")
        body = b""
        if scope["type"] == "http" and needs_body(authorization, content_type):
            body, receive = await _buffered(receive)
        presented = find_key(authorization, content_type, body,
                             scope.get("query_string", b"").decode("latin-1"))
        client = scope.get("client")
        result = await check_async(self.client, presented, self.scopes, self.realm,
                                   client[0] if client else None)
        if isinstance(result, Refusal):
            await _refuse(scope, receive, send, result)
            return
        scope[SCOPE_KEY] = result
        await self.app(scope, receive, send)


def _headers(scope: Scope) -> dict[str, str]:
    """Header name -> first value (names lower-case, as ASGI sends them)."""
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        found.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return found


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a receive() that hands it to the app again."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"", _replaying([message], receive)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, _replaying([{"type": "http.request", "body": body, "more_body": False}], receive)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008})  # policy violation
        return
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
               for name, value in refusal.headers]
    headers.append((b"content-length", str(len(refusal.body)).encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": refusal.body})
