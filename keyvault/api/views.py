"""The JSON API for programs, and the verify endpoint for services. Keys only, never cookies.

Views are thin: read the request → parse it with a model from .schemas → call the service →
answer with a model. Every presented key goes through .gate; every error leaves through
keyvault.errors' one handler as problem+json.
"""

from __future__ import annotations

import re
from functools import wraps
from urllib.parse import quote

from flask import Blueprint, Response, g, jsonify, render_template, request, url_for
from werkzeug.exceptions import UnsupportedMediaType

from .. import metrics, service
from ..request_context import origin
from ..service.pagination import clean_limit
from ..service.scopes import READ_KEYS, READ_USER, VERIFY, WRITE_KEYS
from ..web import external_url
from . import gate, openapi
from .credentials import bearer_value, json_body, read_credential
from .errors import respond
from .schemas import (
    ApiKey,
    ApiKeyPage,
    ApiKeyWithValue,
    CreateKey,
    RollKey,
    SecurityEvent,
    SecurityEventPage,
    UpdateKey,
    User,
    VerifyForm,
    VerifyRequest,
    parse,
)

bp = Blueprint("api", __name__)

# ---------------------------------------------------------------- request plumbing


def _credential(basic: bool = False) -> str | None:
    credential = read_credential(request, basic)
    return credential.value if credential is not None else None


def requires(scope: str):
    """Authenticate the request's key and demand `scope`; the key's facts land in g.api_key."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            admission = gate.admit(_credential(), [scope], origin())
            if admission.refusal is not None:
                return respond(admission.refusal)
            g.api_key = admission.caller
            g.api_user = service.get_user(admission.caller.user_id)
            return view(*args, **kwargs)

        wrapper.required_scope = scope
        return wrapper

    return decorate


def body_fields() -> dict:
    """The request's JSON body, or its form fields; {} when there is none."""
    body = json_body(request)
    if body is None:
        if request.get_data(cache=True) and not request.form:
            raise UnsupportedMediaType("Send a JSON object with Content-Type: application/json.")
        body = request.form.to_dict() if request.form else {}
    return body


def _limit() -> int:
    return clean_limit(request.args.get("limit"))


def _flag(name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise service.InvalidInput(f"{name} must be true or false.", name)
    return raw in ("true", "1")


def _links(page: service.Page, **params) -> dict:
    def link(cursor):
        if cursor is None:
            return None
        return external_url(request.endpoint, cursor=cursor, **params)

    return {"next": link(page.next_cursor), "previous": link(page.previous_cursor)}


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------- users


@bp.get("/users/@me/")
@requires(READ_USER)
def me():
    return jsonify(User.of(g.api_user))


@bp.get("/users/@me/security_log/")
@requires(READ_USER)
def security_log():
    limit = _limit()
    page = service.page_events(g.api_user, limit, request.args.get("cursor"))
    return jsonify(SecurityEventPage(**_links(page, limit=limit),
                                     results=[SecurityEvent.of(e) for e in page.results]))


# ---------------------------------------------------------------- keys


@bp.get("/personal_api_keys/")
@requires(READ_KEYS)
def list_keys():
    limit, include_revoked = _limit(), _flag("include_revoked")
    page = service.page_keys(g.api_user, include_revoked, limit, request.args.get("cursor"))
    params = {"limit": limit}
    if include_revoked:
        params["include_revoked"] = "true"
    return jsonify(ApiKeyPage(**_links(page, **params),
                              results=[ApiKey.of(key) for key in page.results]))


@bp.post("/personal_api_keys/")
@requires(WRITE_KEYS)
def create_key():
    body = parse(CreateKey, body_fields())
    key, value = service.create_key(
        g.api_user,
        label=body.label,
        description=body.description,
        scopes=body.scopes,
        expires_at=body.expires_at,
        granting_scopes=g.api_key.scopes,
        granting_ends_at=g.api_key.ends_at,
        origin=origin(),
    )
    response = jsonify(ApiKeyWithValue.of(key, value))
    response.status_code = 201
    response.headers["Location"] = url_for(".key_detail", public_id=key.public_id)
    return _no_store(response)


@bp.get("/personal_api_keys/@current/")
@requires(READ_KEYS)
def current_key():
    return jsonify(ApiKey.of(service.get_key(g.api_user, g.api_key.public_id)))


@bp.get("/personal_api_keys/<public_id>/")
@requires(READ_KEYS)
def key_detail(public_id: str):
    return jsonify(ApiKey.of(service.get_key(g.api_user, public_id)))


@bp.patch("/personal_api_keys/<public_id>/")
@requires(WRITE_KEYS)
def update_key(public_id: str):
    body = parse(UpdateKey, body_fields())
    key = service.update_key(
        g.api_user, public_id,
        label=body.label, description=body.description, scopes=body.scopes,
        granting_scopes=g.api_key.scopes, may_widen=False, origin=origin(),
    )
    return jsonify(ApiKey.of(key))


@bp.delete("/personal_api_keys/<public_id>/")
@requires(WRITE_KEYS)
def revoke_key(public_id: str):
    service.revoke_key(g.api_user, public_id, origin())
    return Response(status=204)


@bp.post("/personal_api_keys/<public_id>/roll/")
@requires(WRITE_KEYS)
def roll_key(public_id: str):
    body = parse(RollKey, body_fields())
    key, value = service.roll_key(g.api_user, public_id, origin=origin(),
                                  grace_period_seconds=body.grace_period_seconds,
                                  granting_scopes=g.api_key.scopes,
                                  granting_ends_at=g.api_key.ends_at)
    return _no_store(jsonify(ApiKeyWithValue.of(key, value)))


# ---------------------------------------------------------------- verification for services


def _verify_body() -> VerifyRequest:
    """The verify request from a JSON body, or an RFC 7662 form body (`token=`)."""
    body = json_body(request)
    if body is None and request.get_data(cache=True) and not request.form:
        raise UnsupportedMediaType('Send JSON {"key": "..."}, or token=... as a form.')
    if body is not None or not request.form:
        return gate.verify_request(body)
    form = parse(VerifyForm, request.form.to_dict())
    return VerifyRequest(key=form.token, scopes=form.required_scopes)


@bp.post("/verify/")
def verify():
    """Is this key valid, whose is it and what may it do? One database round trip for both keys."""
    return respond(gate.verify(_credential(basic=True), _verify_body, origin()))


verify.required_scope = VERIFY


# RFC 6750 scope-token characters: printable ASCII but space, '"' and '\\'.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_SCOPE_SEPARATORS = re.compile(r"[ ,]+")


def _scope_list(text: str) -> list[str]:
    """Scopes separated by spaces or commas, nothing else: a tab or another control character
    is not a separator (str.split would make it one), so it is refused as part of a name."""
    return [scope for scope in _SCOPE_SEPARATORS.split(text) if scope]


@bp.get("/forward_auth/")
def forward_auth():
    """The same check for gateways (nginx auth_request, Traefik, Caddy): answers in headers.

    Gateways forward the client's own URL and headers, so nothing the client controls may
    weaken the check: the key is read from the Authorization header only (never from the
    forwarded query string), and the scopes required are the union of the `scopes` query
    parameter and the X-KeyVault-Required-Scopes header, so a client's `?scopes=` can add
    to what the gateway demands but never replace it.
    """
    from_query = _scope_list(request.args.get("scopes", ""))
    from_header = _scope_list(request.headers.get("X-KeyVault-Required-Scopes", ""))
    header = request.headers.get("Authorization")
    credential = bearer_value(header) if header is not None else None
    bad = [scope for scope in (*from_query, *from_header) if not SCOPE_TOKEN.fullmatch(scope)]
    if bad and credential is not None:
        raise service.InvalidInput(f"Not a scope name: {bad[0]!r}.", "scopes")
    required = list(dict.fromkeys([*from_header, *from_query]))
    admission = gate.admit(credential, required, origin(),
                           missing="This endpoint needs an API key in the Authorization header.")
    metrics.record_verify("forward_auth", admission.caller.code if admission.caller else "no_key")
    if admission.refusal is not None:
        return respond(admission.refusal)
    verdict = admission.caller
    response = Response(status=200)
    response.headers.update({
        "X-KeyVault-User-Id": str(verdict.user_id),
        # Header values are Latin-1: an internationalised address travels percent-encoded.
        "X-KeyVault-User-Email": quote(verdict.user_email, safe="@+!#$&'*=?^`{|}~"),
        "X-KeyVault-Key-Id": verdict.public_id,
        "X-KeyVault-Scopes": " ".join(verdict.scopes),
    })
    return _no_store(response)


forward_auth.required_scope = None


# ---------------------------------------------------------------- documentation


@bp.get("/schema/")
def schema():
    return jsonify(openapi.document())


@bp.get("/docs/")
def docs():
    return render_template("api/docs.html", spec=openapi.document())
