"""The one error handler: problem+json under /api/, the app's own error page everywhere else;
what an error leaves in the log is keyvault.failures' to say."""

from __future__ import annotations

import contextlib

from flask import render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from .. import failures
from ..extensions import db
from ..failures import DATABASE_ERRORS
from ..service import ServiceError
from .context import request_id
from .problems import (
    RETRY_AFTER_SECONDS,
    MalformedBody,
    from_error,
    respond,
)

EXPECTED = (HTTPException, ServiceError, MalformedBody)
CSRF_EXPIRED = "The CSRF token has expired."  # flask_wtf.csrf's reason when the time limit passed


def report(app, error: Exception, method: str, path: str, request: str) -> None:
    """Log an error a request ended in, if it is worth a line (keyvault.failures says how)."""
    if not isinstance(error, EXPECTED):
        failures.report(app, error, method, path, request)


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
