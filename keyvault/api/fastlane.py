"""POST /api/verify/ without Flask's per-request machinery, for the common call.

Verify is on the hot path of every request the calling services serve. Flask's request
context, routing, session, CSRF and after-request hooks cost more than the verification itself
(bench/README.md has the figures), and none of them matters for a JSON call authenticated by an
Authorization header. This WSGI middleware answers exactly those calls, refusals and errors
included, through the same pipeline as the Flask view (verify.verify: one lookup for caller and
subject, the same body model, the same answers), so it writes the very bytes the view would.
Anything else (a key in the body or the query, a form body, a body of unknown length) goes to
Flask. Work for every request (request id, timing) wraps both: keyvault.http.context.
"""

from __future__ import annotations

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from ..http.context import note, origin_of, request_id
from ..http.credentials import bearer_value, parse_json
from ..http.errors import report
from ..http.problems import Answer, MalformedBody, from_error, from_http_exception
from ..http.wire import UNREADABLE
from ..service import AnswerLater, digests_of
from . import verify
from .inputs import VerifyRequest

PATH = "/api/verify/"


def _is_json(content_type: str) -> bool:
    """The same rule as Flask's request.is_json."""
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json"))


TAKEN = "keyvault.fast_path"  # environ key: takes' decision, made once per request


def takes(environ: dict) -> bool:
    """Is this a request the fast path answers: POST /api/verify/, a key in Authorization, a
    JSON body of known (or no) length, and nothing in it the app cannot read (keyvault.http.wire:
    Flask answers those)? The shape is decided once: keyvault serve's bridge asks first (to
    answer on the event loop), then VerifyFastLane reads the same answer; wire's mark, made
    between the two, is looked up each time."""
    decided = environ.get(TAKEN)
    if decided is None:
        decided = environ[TAKEN] = (
            environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "POST"
            and "HTTP_AUTHORIZATION" in environ
            and _is_json(environ.get("CONTENT_TYPE", ""))
            and (environ.get("CONTENT_LENGTH") or "0").isdigit())
    return decided and UNREADABLE not in environ


def lookup_of(environ: dict, app) -> tuple[str, ...] | None:
    """The digests a request the fast path takes will look up (its caller's key, then the key
    in its body: service.check_keys' one lookup), read before it is answered: on PostgreSQL
    the server fetches their rows first, so the pipeline runs once, not once to learn what to
    fetch and again with the rows (keyvault.handoff; bench/README.md). None when there is
    nothing to fetch, or no cheap way to tell; a wrong guess costs one more fetch, never a
    wrong answer (the lookup asks for the digests it needs: Fetched.rows_of)."""
    caller = bearer_value(environ["HTTP_AUTHORIZATION"], basic=True)
    if not isinstance(caller, str) or not caller:
        return None
    body = environ["wsgi.input"]
    try:
        key = parse_json(body.read()).get("key")
    except (MalformedBody, AttributeError):  # not JSON, or not an object
        key = None
    finally:
        body.seek(0)
    digests = tuple(d for d in digests_of([caller, key] if isinstance(key, str) else [caller],
                                          app) if d is not None)
    return digests or None


_STATUS_LINES = {status: f"{status} {reason}" for status, reason in HTTP_STATUS_CODES.items()}


class VerifyFastLane:
    def __init__(self, wsgi_app, app):
        self.wsgi_app = wsgi_app
        self.app = app
        self.max_body = app.config["MAX_CONTENT_LENGTH"]
        self.too_large = from_http_exception(RequestEntityTooLarge(), self.max_body)

    def __call__(self, environ, start_response):
        if takes(environ):
            note(route=PATH)
            # No Content-Length: an empty body (RFC 9112 §6.3); AroundRequest gave a chunked
            # one its length.
            answer = self._answer(environ, int(environ.get("CONTENT_LENGTH") or "0"))
            start_response(_STATUS_LINES[answer.status],
                           [*answer.headers, ("Content-Length", str(len(answer.body)))])
            return [answer.body]
        return self.wsgi_app(environ, start_response)

    def _answer(self, environ, length: int) -> Answer:
        if length > self.max_body:
            return self.too_large

        def read_body() -> VerifyRequest:
            return verify.verify_request(parse_json(environ["wsgi.input"].read(length)))

        caller = bearer_value(environ["HTTP_AUTHORIZATION"], basic=True)
        try:
            return verify.verify(caller, read_body, origin_of(environ), app=self.app)
        except AnswerLater:  # the server's bridge answers it again (rows fetched, or a thread)
            raise
        except Exception as error:  # noqa: BLE001 - answered and logged as in Flask (errors.py)
            report(self.app, error, "POST", PATH, request_id(environ))
            return from_error(error, self.max_body)
