"""The OpenAPI operation of GET /api/verify/events (keyvault.api.stream), merged into the
document beside keyvault.api.operations' ones."""

from __future__ import annotations

from ..service.key_changes import EVENTS
from ..service.scopes import VERIFY
from .operations import _media, _operation, _ref

EXAMPLE_STREAM = ('retry: 1000\n: connected\n\n'
                  'id: 42\ndata: {"key_id":"Fb3qZ9xLmN2pRt5K","event":"revoked",'
                  '"at":"2026-11-02T09:41:27Z"}\n\n: heartbeat\n\n')


def paths() -> dict:
    return {"/api/verify/events": {"get": _operation(
        "verifyEvents", "Verification", "Revocation stream for verifiers that cache",
        "Server-Sent Events (`text/event-stream`): one event for every change that can turn a "
        "valid verdict into a refusal or narrow it, or a refusal into a valid verdict "
        "(`scopes_widened`, `owner_activated`), as `data: {\"key_id\", \"event\", \"at\"}` "
        f"with an `id:`. Events: {', '.join(f'`{e}`' for e in EVENTS)}. A service that caches "
        "verify's verdicts drops every verdict of `key_id` on any event about it, and (a refusal "
        "names no key) every refusal it holds. Send the last "
        "`id` you read as `Last-Event-ID` when you reconnect: events are kept at least 10 "
        "minutes. A comment (`: heartbeat`) comes every 15 s of quiet. The events come from the "
        "database, so every worker and instance sends the same ones.", VERIFY,
        {"200": {"description": "The stream, open until you close it (or `timeout` passes).",
                 "headers": {"Cache-Control": _ref("headers", "NoStore")},
                 "content": {"text/event-stream": {"schema": {"type": "string"},
                                                   "examples": _media(EXAMPLE_STREAM)}}}},
        parameters=[
            {"name": "Last-Event-ID", "in": "header", "required": False,
             "description": "Resume after this event id (what you missed is sent first); "
                            "empty, as a first connection sends it: from now on.",
             "schema": {"type": "string", "pattern": "^[0-9]{0,19}$"}, "example": "42"},
            {"name": "timeout", "in": "query", "required": False,
             "description": "End the stream after this many seconds (default: never).",
             "schema": {"type": "integer", "minimum": 0, "maximum": 86400}, "example": 60},
        ],
    )}}
