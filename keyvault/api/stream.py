"""GET /api/verify/events: the revocation stream, Server-Sent Events for verifiers that cache.

The caller is admitted here, as for verify (a `key:verify` key, the one pipeline: http.gate),
and the answer's head is made here whoever serves it. Its body is the events of
service.key_changes, one `id:`/`data:` frame each, a comment as heartbeat when quiet:

- under `keyvault serve`, the bridge sees STREAM in the environ and streams the body on the
  worker's event loop from the worker's one reader (keyvault.server.stream), so a subscriber
  costs a coroutine and no query of its own;
- under any other WSGI server (and Flask's test client) the body below reads the database
  itself for as long as the request's `timeout` allows: the same events, the same frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import orjson
from flask import Flask, current_app, request

from .. import service
from ..http import gate
from ..http.context import origin
from ..http.credentials import read_credential
from ..http.problems import respond
from ..service import key_changes
from ..service.scopes import VERIFY
from .verify import NO_VERIFY_KEY
from .views import bp

STREAM = "keyvault.event_stream"  # environ key: the bridge streams this request's body itself
MAX_TIMEOUT = 86_400
OPENING = b"retry: 1000\n: connected\n\n"  # reconnect after 1 s; the stream is up
HEARTBEAT = b": heartbeat\n\n"
HEADERS = (("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-store"),
           ("X-Accel-Buffering", "no"))  # nginx: pass each event on at once


class StreamRequest(NamedTuple):
    """What a subscriber asked for: events after `after` (None: from now on), for `timeout`
    seconds (None: until it leaves), with a heartbeat every `heartbeat` seconds; and who asked:
    the caller's key id, and how to judge that key again (as at the door)."""

    after: int | None
    timeout: float | None
    heartbeat: float
    caller: str | None = None
    still_admitted: Callable[[], bool] | None = None

    def names_caller(self, changes: list[key_changes.Change]) -> bool:
        return self.caller is not None and any(c.key_id == self.caller for c in changes)

    def caller_gone(self, changes: list[key_changes.Change]) -> bool:
        """Did one of these changes end the caller's own admission (its key revoked, expired,
        narrowed past key:verify, its owner deactivated)? Judged again, in one lookup, only
        when a change names the caller's key; then the stream ends after these frames, and
        the client's reconnection hears 401 or 403 like any request with that key."""
        return (self.names_caller(changes) and self.still_admitted is not None
                and not self.still_admitted())


def frame(change: key_changes.Change) -> bytes:
    """One event as SSE: its id (for Last-Event-ID) and {"key_id", "event", "at"}."""
    data = orjson.dumps({"key_id": change.key_id, "event": change.event,
                         "at": change.at.strftime("%Y-%m-%dT%H:%M:%SZ")})
    return b"id: %d\ndata: %s\n\n" % (change.id, data)


# Last-Event-ID as its document says: up to 19 digits (stream_operations). Ids never come
# near 2**62, so a larger one resumes exactly where that would: after every event.
LAST_EVENT_ID_MAX, AFTER_EVERY_EVENT = 10**19 - 1, 2**62


def _number(text: str | None, name: str, maximum: int, *, empty_is_none: bool = False) -> int | None:
    """A whole number from 0 to `maximum`; None when absent (or empty, where that means absent:
    a first connection's empty Last-Event-ID), else 400."""
    if text is None or (empty_is_none and text.strip() == ""):
        return None
    if not text.strip().isdigit() or int(text) > maximum:
        raise service.InvalidInput(f"{name} must be a whole number from 0 to {maximum}.", name)
    return int(text)


@bp.get("/verify/events")
def verify_events():
    """The revocation stream: every change that can turn a valid verdict into a refusal."""
    credential = read_credential(request, False)
    admission = gate.admit(credential.value if credential else None, [VERIFY], origin(),
                           missing=NO_VERIFY_KEY, door="verify")
    if admission.refusal is not None:
        return respond(admission.refusal)
    after = _number(request.headers.get("Last-Event-ID") or request.args.get("last_event_id"),
                    "Last-Event-ID", LAST_EVENT_ID_MAX, empty_is_none=True)
    if after is not None:  # past every event either way; the database compares up to 2**63 - 1
        after = min(after, AFTER_EVERY_EVENT)
    timeout = _number(request.args.get("timeout"), "timeout", MAX_TIMEOUT)
    config = current_app.config
    asked = StreamRequest(after, timeout, config["KEYVAULT_STREAM_HEARTBEAT_SECONDS"],
                          admission.caller.public_id,
                          _judge_again(current_app._get_current_object(), credential.value,
                                       origin().ip_address))
    request.environ[STREAM] = asked
    body = _polling(current_app._get_current_object(), asked,
                    config["KEYVAULT_STREAM_POLL_MS"] / 1000)
    return current_app.response_class(
        body, headers=[*HEADERS, *admission.rate_limit_headers()], direct_passthrough=True)


verify_events.required_scope = VERIFY


def _judge_again(app: Flask, value: str, client_ip: str | None) -> Callable[[], bool]:
    """The caller's key judged as at the door (without counting it), from any thread."""
    def still_admitted() -> bool:
        return service.check_keys([value], [[VERIFY]], app=app, client_ips=[client_ip])[0].active

    return still_admitted


def _polling(app: Flask, asked: StreamRequest, poll: float) -> Iterator[bytes]:
    """The stream for a WSGI server that is not KeyVault's own: this request reads the
    database every `poll` seconds itself, until its timeout (a thread held all along)."""
    ends = None if asked.timeout is None else time.monotonic() + asked.timeout
    with app.app_context():
        watcher = key_changes.Watcher(key_changes.latest_id() if asked.after is None
                                      else asked.after, prune_seconds=0)
    yield OPENING
    quiet_since = time.monotonic()
    while ends is None or time.monotonic() < ends:
        with app.app_context():
            changes = watcher.step()
        if changes:
            yield b"".join(frame(change) for change in changes)
            if asked.caller_gone(changes):
                return
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= asked.heartbeat:
            yield HEARTBEAT
            quiet_since = time.monotonic()
        time.sleep(poll if ends is None else max(0.0, min(poll, ends - time.monotonic())))
