"""Error pages: problem+json under /api/, the app's own templates everywhere else."""

from __future__ import annotations

import logging

from flask import render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from .api.errors import from_http_exception, problem

log = logging.getLogger("keyvault")


def _wants_problem() -> bool:
    return request.path.startswith("/api/")


def register(app) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return render_template("errors/error.html", code=400, title="Form expired or forged",
                               detail="The form's security token was missing or wrong. Go back, "
                                      "reload the page and try again."), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if _wants_problem():
            return from_http_exception(error)
        code = error.code or 500
        response = app.make_response(
            (render_template("errors/error.html", code=code, title=error.name,
                             detail=error.description), code)
        )
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        from .extensions import db

        db.session.rollback()
        if _wants_problem():
            return problem(500, "Internal Server Error",
                           "Something went wrong on our side; it has been logged.")
        return render_template("errors/error.html", code=500, title="Internal Server Error",
                               detail=InternalServerError.description), 500
