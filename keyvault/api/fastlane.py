"""POST /api/verify/ without Flask's per-request machinery, for the common, well-formed call.

Verify is on the hot path of every request the calling services serve. Flask's request
context, routing, session, CSRF and after-request hooks cost more than the verification itself
(bench/README.md has the figures), and none of them matters for a JSON call authenticated by a
Bearer key. This WSGI middleware answers exactly that case — Bearer caller, JSON body, an active
caller holding key:verify — with the same service.check_keys, the same body parsing and the same
answer as the Flask view. Every other request, and every refusal or error, falls through to the
Flask app unchanged, so there is still one place that decides what an error looks like.
"""

from __future__ import annotations

import io

import orjson

from .. import service
from .credentials import bearer_value
from .views import VERIFY, VERIFY_HEADERS, verify_answer, verify_arguments

PATH = "/api/verify/"
HEADERS = [*VERIFY_HEADERS.items(), ("X-Content-Type-Options", "nosniff")]


def _is_json(content_type: str) -> bool:
    """The same rule as Flask's request.is_json."""
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json"))


class VerifyFastLane:
    def __init__(self, wsgi_app, app):
        self.wsgi_app = wsgi_app
        self.app = app
        self.max_body = app.config["MAX_CONTENT_LENGTH"]

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "POST":
            answer = self._answer(environ)
            if answer is not None:
                start_response("200 OK", [*HEADERS, ("Content-Length", str(len(answer)))])
                return [answer]
        return self.wsgi_app(environ, start_response)

    def _answer(self, environ) -> bytes | None:
        """The 200 body, or None to let the Flask view handle (and word) the request."""
        header = environ.get("HTTP_AUTHORIZATION")
        if header is None or not _is_json(environ.get("CONTENT_TYPE", "")):
            return None
        caller = bearer_value(header)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if not caller or not 0 < length <= self.max_body:
            return None
        data = environ["wsgi.input"].read(length)
        answer = self._verify(environ, caller, data)
        if answer is None:
            environ["wsgi.input"] = io.BytesIO(data)  # the Flask view reads it again
        return answer

    def _verify(self, environ, caller: str, data: bytes) -> bytes | None:
        try:
            key, scopes = verify_arguments(orjson.loads(data))
        except (orjson.JSONDecodeError, service.InvalidInput):
            return None
        origin = service.Origin(environ.get("REMOTE_ADDR"), environ.get("HTTP_USER_AGENT"))
        try:
            # No app context: check_keys needs none for the common verdicts (see its docstring).
            caller_verdict, subject = service.check_keys([caller, key], [[VERIFY], scopes],
                                                         origin, app=self.app)
        except Exception:  # noqa: BLE001 - the view meets the same error, logs it, answers 500
            return None
        if not caller_verdict.active:
            return None  # 401/403 with their headers and problem details: the view's job
        return verify_answer(subject)
