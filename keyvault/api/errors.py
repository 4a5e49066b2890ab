"""RFC 9457 problem+json: the one way the API answers an error."""

from __future__ import annotations

import orjson
from flask import Response, current_app
from werkzeug.exceptions import HTTPException

PROBLEM_TYPE = "about:blank"


def problem(status: int, title: str, detail: str, headers: dict | None = None,
            **extra) -> Response:
    body = {"type": PROBLEM_TYPE, "title": title, "status": status, "detail": detail, **extra}
    response = current_app.response_class(
        orjson.dumps(body), status=status, mimetype="application/problem+json"
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def from_http_exception(error: HTTPException) -> Response:
    """Turn a werkzeug error (404, 405, 413, …) into problem+json, keeping headers like Allow."""
    headers = {}
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            headers[name] = value
    detail = error.description or error.name
    if error.code == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        detail = f"The request body is larger than the limit of {limit} bytes."
    return problem(error.code or 500, error.name, detail, headers)
