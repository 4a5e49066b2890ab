"""The JSON API for programs, and the verify endpoint for services. Keys only, never cookies."""

from __future__ import annotations

import re
from functools import wraps
from typing import Any
from urllib.parse import quote

import orjson
from flask import Blueprint, Response, current_app, g, render_template, request, url_for
from werkzeug.exceptions import HTTPException, UnsupportedMediaType

from .. import service
from ..web import origin
from .credentials import MalformedBody, json_body, read_credential
from .errors import from_http_exception, problem

bp = Blueprint("api", __name__)

READ_KEYS = "personal_api_key:read"
WRITE_KEYS = "personal_api_key:write"
READ_USER = "user:read"
VERIFY = "key:verify"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

INVALID_KEY_DETAIL = {
    "malformed": "The API key is malformed (wrong prefix, length or checksum).",
    "not_found": "The API key is not recognised.",
    "revoked": "The API key has been revoked.",
    "expired": "The API key has expired.",
    "user_inactive": "The API key's owner is deactivated.",
}


# ---------------------------------------------------------------- responses


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def json_response(body: Any, status: int = 200) -> Response:
    return current_app.response_class(orjson.dumps(body), status=status,
                                      mimetype="application/json")


def unauthorized(detail: str, key_presented: bool) -> Response:
    challenge = 'Bearer realm="keyvault"'
    if key_presented:
        challenge += f', error="invalid_token", error_description="{detail}"'
    return problem(401, "Unauthorized", detail, {"WWW-Authenticate": challenge})


def forbidden_scope(scope: str) -> Response:
    return problem(
        403, "Insufficient scope", f"This key lacks the scope {scope!r} that this request needs.",
        {"WWW-Authenticate": f'Bearer realm="keyvault", error="insufficient_scope", scope="{scope}"'},
        code="insufficient_scope", required_scope=scope,
    )


def service_error(error: service.ServiceError) -> Response:
    extra = {"field": error.field} if error.field else {}
    if isinstance(error, service.ScopeNotAllowed):
        extra["code"] = "insufficient_scope"
    return problem(error.status, error.title, error.detail, **extra)


def key_json(key, value: str | None = None) -> dict:
    body = {
        "id": key.public_id,
        "label": key.label,
        "description": key.description or "",
        "mask_value": key.mask,
        "scopes": list(key.scopes),
        "status": key.status(),
        "created_at": _iso(key.created_at),
        "last_used_at": _iso(key.last_used_at),
        "expires_at": _iso(key.expires_at),
        "revoked_at": _iso(key.revoked_at),
        "last_rolled_at": _iso(key.last_rolled_at),
        "old_value_expires_at": _iso(key.previous_expires_at) if key.previous_digest else None,
    }
    if value is not None:
        body["value"] = value
    return body


def event_json(event) -> dict:
    return {
        "id": event.id,
        "event": event.event,
        "key_id": event.key.public_id if event.key is not None else None,
        "created_at": _iso(event.created_at),
        "ip_address": event.ip_address,
        "user_agent": event.user_agent,
        "details": event.details or {},
    }


def user_json(user) -> dict:
    return {"id": user.id, "email": user.email, "is_admin": user.is_admin,
            "created_at": _iso(user.created_at), "last_login_at": _iso(user.last_login_at)}


# ---------------------------------------------------------------- request plumbing


@bp.errorhandler(MalformedBody)
def malformed_body(error: MalformedBody):
    return problem(400, "Malformed JSON", str(error))


@bp.errorhandler(service.ServiceError)
def refused(error: service.ServiceError):
    return service_error(error)


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    return from_http_exception(error)


def requires(scope: str):
    """Authenticate the request's key and demand `scope`; the key's facts land in g.api_key."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            credential = read_credential(request)
            if credential is None:
                return unauthorized("This endpoint needs an API key: send it as "
                                    "'Authorization: Bearer <key>'.", key_presented=False)
            verdict = service.verify_key(credential.value, origin=origin())
            if not verdict.active:
                return unauthorized(INVALID_KEY_DETAIL[verdict.code], key_presented=True)
            if not service.has_scope(verdict.scopes, scope):
                return forbidden_scope(scope)
            g.api_key = verdict
            g.api_user = service.get_user(verdict.user_id)
            return view(*args, **kwargs)

        wrapper.required_scope = scope
        return wrapper

    return decorate


def body_object(allowed: set[str]) -> dict:
    """The JSON object body, checked for unknown fields; {} when there is no body."""
    body = json_body(request)
    if body is None:
        if request.get_data(cache=True) and not request.form:
            raise UnsupportedMediaType("Send a JSON object with Content-Type: application/json.")
        body = {k: v for k, v in request.form.items()} if request.form else {}
    if not isinstance(body, dict):
        raise service.InvalidInput("The request body must be a JSON object.")
    body = {k: v for k, v in body.items() if k != "personal_api_key"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise service.InvalidInput(f"Unknown field(s): {', '.join(unknown)}.", unknown[0])
    return body


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise service.InvalidInput("limit must be a whole number.", "limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise service.InvalidInput(f"limit must be between 1 and {MAX_LIMIT}.", "limit")
    return limit


def _flag(name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise service.InvalidInput(f"{name} must be true or false.", name)
    return raw in ("true", "1")


def paginated(page: service.Page, render, **params) -> Response:
    def link(cursor):
        if cursor is None:
            return None
        return url_for(request.endpoint, _external=True, cursor=cursor, **params)

    return json_response({"next": link(page.next_cursor), "previous": link(page.previous_cursor),
                          "results": [render(item) for item in page.results]})


# ---------------------------------------------------------------- users


@bp.get("/users/@me/")
@requires(READ_USER)
def me():
    return json_response(user_json(g.api_user))


@bp.get("/users/@me/security_log/")
@requires(READ_USER)
def security_log():
    limit = _limit()
    page = service.page_events(g.api_user, limit, request.args.get("cursor"))
    return paginated(page, event_json, limit=limit)


# ---------------------------------------------------------------- keys


@bp.get("/personal_api_keys/")
@requires(READ_KEYS)
def list_keys():
    limit, include_revoked = _limit(), _flag("include_revoked")
    page = service.page_keys(g.api_user, include_revoked, limit, request.args.get("cursor"))
    params = {"limit": limit}
    if include_revoked:
        params["include_revoked"] = "true"
    return paginated(page, key_json, **params)


@bp.post("/personal_api_keys/")
@requires(WRITE_KEYS)
def create_key():
    body = body_object({"label", "description", "scopes", "expires_at"})
    if "label" not in body:
        raise service.InvalidInput("label is required.", "label")
    key, value = service.create_key(
        g.api_user,
        label=body["label"],
        description=body.get("description"),
        scopes=body.get("scopes"),
        expires_at=body.get("expires_at"),
        granting_scopes=g.api_key.scopes,
        granting_ends_at=g.api_key.ends_at,
        origin=origin(),
    )
    response = json_response(key_json(key, value), 201)
    response.headers["Location"] = url_for(".key_detail", public_id=key.public_id)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/personal_api_keys/@current/")
@requires(READ_KEYS)
def current_key():
    return json_response(key_json(service.get_key(g.api_user, g.api_key.public_id)))


@bp.get("/personal_api_keys/<public_id>/")
@requires(READ_KEYS)
def key_detail(public_id: str):
    return json_response(key_json(service.get_key(g.api_user, public_id)))


@bp.patch("/personal_api_keys/<public_id>/")
@requires(WRITE_KEYS)
def update_key(public_id: str):
    body = body_object({"label", "description", "scopes"})
    key = service.update_key(
        g.api_user, public_id,
        label=body.get("label"), description=body.get("description"), scopes=body.get("scopes"),
        granting_scopes=g.api_key.scopes, may_widen=False, origin=origin(),
    )
    return json_response(key_json(key))


@bp.delete("/personal_api_keys/<public_id>/")
@requires(WRITE_KEYS)
def revoke_key(public_id: str):
    service.revoke_key(g.api_user, public_id, origin())
    return Response(status=204)


@bp.post("/personal_api_keys/<public_id>/roll/")
@requires(WRITE_KEYS)
def roll_key(public_id: str):
    body = body_object({"grace_period_seconds"})
    key, value = service.roll_key(g.api_user, public_id, origin=origin(),
                                  grace_period_seconds=body.get("grace_period_seconds", 0),
                                  granting_scopes=g.api_key.scopes,
                                  granting_ends_at=g.api_key.ends_at)
    response = json_response(key_json(key, value))
    response.headers["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------- verification for services


def _verify_request() -> tuple[str, list[str]]:
    """The key and required scopes from a JSON body, or an RFC 7662 form body (`token=`)."""
    body = json_body(request)
    if body is not None:
        return verify_arguments(body)
    if request.get_data(cache=True) and not request.form:
        raise UnsupportedMediaType('Send JSON {"key": "..."}, or token=... as a form.')
    if not request.form:
        raise service.InvalidInput(
            'Send {"key": "...", "scopes": [...]} as JSON, or token=... as a form.', "key")
    key = request.form.get("key", request.form.get("token"))  # as for JSON: `key` first
    scopes = request.form.get("scopes", request.form.get("scope", "")).replace(",", " ").split()
    if key is None:
        raise service.InvalidInput("key is required: the key your service was handed.", "key")
    return key, scopes


def verify_arguments(body: Any) -> tuple[str, list[str]]:
    """The key and required scopes from verify's parsed JSON body; InvalidInput when malformed."""
    if not isinstance(body, dict):
        raise service.InvalidInput("The request body must be a JSON object.")
    for name in ("key", "token"):
        if name in body and not isinstance(body[name], str):
            raise service.InvalidInput(f"{name} must be a string.", name)
    key = body.get("key", body.get("token"))
    scopes = body.get("scopes", [])
    if scopes is None:
        scopes = []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise service.InvalidInput("scopes must be a list of strings.", "scopes")
    if key is None:
        raise service.InvalidInput("key is required: the key your service was handed.", "key")
    return key, scopes


def verdict_json(verdict: service.Verdict) -> dict:
    body: dict[str, Any] = {"active": verdict.active, "code": verdict.code}
    if verdict.active:
        body.update(
            key_id=verdict.public_id, label=verdict.label, scopes=verdict.scopes,
            expires_at=_iso(verdict.expires_at), created_at=_iso(verdict.created_at),
            user={"id": verdict.user_id, "email": verdict.user_email},
        )
        if verdict.rolled:
            body.update(rolled=True, old_value_expires_at=_iso(verdict.old_value_expires_at))
    return body


@bp.post("/verify/")
def verify():
    """Is this key valid, whose is it and what may it do? One database round trip for both keys."""
    credential = read_credential(request)
    if credential is None:
        return unauthorized("Authenticate with your service's own key carrying 'key:verify'.",
                            key_presented=False)
    try:
        key, scopes = _verify_request()
    except (service.InvalidInput, UnsupportedMediaType, MalformedBody):
        # Who is asking comes first: a bad caller hears 401/403, not what is wrong with the body.
        refusal = _refuse_caller(service.verify_key(credential.value, [VERIFY], origin()))
        if refusal is not None:
            return refusal
        raise
    caller, subject = service.check_keys([credential.value, key], [[VERIFY], scopes], origin())
    refusal = _refuse_caller(caller)
    if refusal is not None:
        return refusal
    return current_app.response_class(verify_answer(subject), headers=VERIFY_HEADERS)


verify.required_scope = VERIFY


def _refuse_caller(caller: service.Verdict) -> Response | None:
    if caller.code == "insufficient_scope":
        return forbidden_scope(VERIFY)
    if not caller.active:
        return unauthorized(INVALID_KEY_DETAIL[caller.code], key_presented=True)
    return None


VERIFY_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


def verify_answer(subject: service.Verdict) -> bytes:
    """The body of a 200 from verify (also sent by keyvault.api.fastlane)."""
    return orjson.dumps(verdict_json(subject))


# RFC 6750 scope-token characters: printable ASCII but space, '"' and '\\'.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_SCOPE_SEPARATORS = re.compile(r"[ ,]+")


def _scope_list(text: str) -> list[str]:
    """Scopes separated by spaces or commas, nothing else: a tab or another control character
    is not a separator (str.split would make it one), so it is refused as part of a name."""
    return [scope for scope in _SCOPE_SEPARATORS.split(text) if scope]


@bp.get("/forward_auth/")
def forward_auth():
    """The same check for gateways (nginx auth_request, Traefik, Caddy): answers in headers."""
    credential = read_credential(request)
    if credential is None:
        return unauthorized("This endpoint needs an API key.", key_presented=False)
    from_query = _scope_list(request.args.get("scopes", ""))
    from_header = _scope_list(request.headers.get("X-KeyVault-Required-Scopes", ""))
    bad = [scope for scope in (*from_query, *from_header) if not SCOPE_TOKEN.fullmatch(scope)]
    if bad:  # checked in both places, though the header counts only when the query is empty
        raise service.InvalidInput(f"Not a scope name: {bad[0]!r}.", "scopes")
    required = from_query or from_header
    verdict = service.verify_key(credential.value, required, origin())
    if verdict.code == "insufficient_scope":
        return forbidden_scope(" ".join(required))
    if not verdict.active:
        return unauthorized(INVALID_KEY_DETAIL[verdict.code], key_presented=True)
    response = Response(status=200)
    response.headers.update({
        "X-KeyVault-User-Id": str(verdict.user_id),
        # Header values are Latin-1: an internationalised address travels percent-encoded.
        "X-KeyVault-User-Email": quote(verdict.user_email, safe="@+!#$&'*=?^`{|}~"),
        "X-KeyVault-Key-Id": verdict.public_id,
        "X-KeyVault-Scopes": " ".join(verdict.scopes),
        "Cache-Control": "no-store",
    })
    return response


forward_auth.required_scope = None


# ---------------------------------------------------------------- documentation


@bp.get("/schema/")
def schema():
    from .openapi import document

    return json_response(document())


@bp.get("/docs/")
def docs():
    from .openapi import document

    return render_template("api/docs.html", spec=document())
