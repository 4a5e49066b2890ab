"""The one error handler: problem+json under /api/, the app's own error page everywhere else."""

from __future__ import annotations

import logging

from flask import render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from .api.errors import MalformedBody, from_error, respond
from .extensions import db
from .request_context import request_id
from .service import ServiceError

log = logging.getLogger("keyvault")
EXPECTED = (HTTPException, ServiceError, MalformedBody)


def register(app) -> None:
    @app.errorhandler(Exception)
    def error_answer(error: Exception):
        if not isinstance(error, EXPECTED):
            log.exception("unhandled error on %s %s (request %s)", request.method, request.path,
                          request_id())
            db.session.rollback()
        if request.path.startswith("/api/"):
            return respond(from_error(error))
        return _error_page(app, error)


def _error_page(app, error: Exception):
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
