"""The one error handler: problem+json under /api/, the app's own error page everywhere else,
and the one place that decides what an error leaves in the log."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from flask import render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from . import metrics
from .api.errors import (
    DATABASE_ERRORS,
    RETRY_AFTER_SECONDS,
    MalformedBody,
    from_error,
    respond,
)
from .extensions import db
from .request_context import request_id
from .service import ServiceError

log = logging.getLogger("keyvault")
EXPECTED = (HTTPException, ServiceError, MalformedBody)
CSRF_EXPIRED = "The CSRF token has expired."  # flask_wtf.csrf's reason when the time limit passed
# One log line per kind of database failure per interval: an outage under load must not write
# a line (let alone a traceback holding SQL parameters, key digests among them) per request.
DATABASE_LOG_INTERVAL = 30.0


class _FailureLog:
    """When each kind of database failure was last logged, for one app."""

    def __init__(self):
        self.last: dict[str, float] = {}
        self.lock = threading.Lock()

    def due(self, kind: str) -> bool:
        now = time.monotonic()
        with self.lock:
            if now - self.last.get(kind, -DATABASE_LOG_INTERVAL) < DATABASE_LOG_INTERVAL:
                return False
            self.last[kind] = now
            return True


def report(app, error: Exception, method: str, path: str, request: str) -> None:
    """Log an error a request ended in, if it is worth a line: database failures once per kind
    per DATABASE_LOG_INTERVAL, without SQL; anything unexpected with its traceback."""
    if isinstance(error, EXPECTED):
        return
    if isinstance(error, DATABASE_ERRORS):
        cause = getattr(error, "orig", None) or error
        kind = type(cause).__name__
        metrics.record_database_error(kind)
        if not app.extensions.setdefault("keyvault.failure_log", _FailureLog()).due(kind):
            return
        first_line = (str(cause).strip().splitlines() or [""])[0][:200]
        log.error("database unavailable (%s: %s) on %s %s (request %s); answering 503, "
                  "logged at most every %d s", kind, first_line, method, path, request,
                  DATABASE_LOG_INTERVAL)
        return
    log.error("unhandled error on %s %s (request %s)", method, path, request, exc_info=error)


def register(app) -> None:
    @app.errorhandler(Exception)
    def error_answer(error: Exception):
        report(app, error, request.method, request.path, request_id())
        if not isinstance(error, EXPECTED):
            with contextlib.suppress(DATABASE_ERRORS):
                db.session.rollback()
        if request.path.startswith("/api/"):
            return respond(from_error(error))
        return _error_page(app, error)


def _error_page(app, error: Exception):
    if isinstance(error, DATABASE_ERRORS):
        return render_template("errors/error.html", code=503, title="Service Unavailable",
                               detail="The database is unavailable or busy. Try again in a "
                                      "few seconds."), 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(error, CSRFError) and error.description == CSRF_EXPIRED:
        minutes = app.config["KEYVAULT_CSRF_MINUTES"]
        span = (f"{minutes // 60} hour{'s' if minutes != 60 else ''}" if minutes % 60 == 0
                else f"{minutes} minute{'s' if minutes != 1 else ''}")
        return render_template("errors/error.html", code=400, title="This form has expired",
                               detail=f"The page was open for more than {span}, so its form "
                                      "stopped working and nothing was changed. Reload the page "
                                      "and try again."), 400
    if isinstance(error, CSRFError):
        return render_template("errors/error.html", code=400, title="Form expired or forged",
                               detail="The form's security token was missing or wrong. Go back, "
                                      "reload the page and try again."), 400
    if isinstance(error, ServiceError):
        return render_template("errors/error.html", code=error.status, title=error.title,
                               detail=error.detail), error.status
    if not isinstance(error, HTTPException):
        error = InternalServerError()
    code = error.code or 500
    response = app.make_response(
        (render_template("errors/error.html", code=code, title=error.name,
                         detail=error.description), code)
    )
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response
