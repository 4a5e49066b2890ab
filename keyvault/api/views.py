"""The JSON API for programs, and the verify endpoint for services. Keys only, never cookies.

Views are thin: read the request → parse it with a model from .schemas → call the service →
answer with a model. Every presented key goes through .gate; every error leaves through
keyvault.http.errors' one handler as problem+json.
"""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, Response, current_app, g, jsonify, render_template, request, url_for
from werkzeug.exceptions import UnsupportedMediaType
from werkzeug.routing import BaseConverter

from .. import service
from ..http import gate
from ..http.context import origin
from ..http.credentials import (
    json_body,
    read_credential,
    refuse_json_sent_as_form,
)
from ..http.problems import respond
from ..links import external_url
from ..service.errors import OrganizationNotFound
from ..service.pagination import clean_limit
from ..service.restrictions import may_manage
from ..service.scopes import READ_KEYS, READ_USER, VERIFY, WRITE_KEYS
from . import openapi, reference
from . import verify as verification
from .inputs import CreateKey, RollKey, UpdateKey, VerifyForm, VerifyRequest, parse
from .limits import limit_terms
from .schemas import ApiKey, ApiKeyPage, ApiKeyWithValue, SecurityEvent, SecurityEventPage, User

bp = Blueprint("api", __name__)
NOT_A_PERSON = ("This is a service account's key: it has no account and no personal keys. It "
                "can describe itself (/api/personal_api_keys/@current/) and, as its scopes and "
                "its organisation allow, use /api/organizations/.")


class KeyIdConverter(BaseConverter):
    """A key id in a path: never one of the `@` names (`@current`), so a method that
    `/personal_api_keys/@current/` does not take answers 405 rather than reaching a key's route."""

    regex = r"[^/@][^/]*"


bp.record_once(lambda state: state.app.url_map.converters.setdefault("key_id", KeyIdConverter))

# ---------------------------------------------------------------- request plumbing


@bp.after_request
def rate_limit_headers(response: Response) -> Response:
    """Every answer to a key that was counted tells where it stands (ratelimit)."""
    response.headers.extend(g.get("rate_limit_headers", ()))
    return response


def _credential(basic: bool = False) -> str | None:
    credential = read_credential(request, basic)
    return credential.value if credential is not None else None


def requires(scope: str, *, service_accounts: bool = False):
    """Authenticate the request's key and demand `scope`; the key's facts land in g.api_key,
    its owner in g.api_owner (a User, or a ServiceAccount) and g.api_user (None for a service
    account's key, which only routes taking `service_accounts` let in)."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            admission = gate.admit(_credential(), [scope], origin())
            if admission.refusal is not None:
                return respond(admission.refusal)
            g.rate_limit_headers = admission.rate_limit_headers()
            caller = g.api_key = admission.caller
            if not may_manage(caller.restricted_to, kwargs.get("org_id")):
                raise OrganizationNotFound()  # a key restricted to others: as if absent
            if caller.service_account_id is None:
                g.api_owner = g.api_user = service.get_user(caller.user_id)
            elif not service_accounts:
                raise service.NotAllowed(NOT_A_PERSON)
            else:
                g.api_user = None
                g.api_owner = service.service_accounts.find_service_account(
                    caller.service_account_id)
            return view(*args, **kwargs)

        wrapper.required_scope = scope
        return wrapper

    return decorate


LIST_FIELDS = ("scopes", "allowed_ips")  # a form sends these as one field per item


def body_fields() -> dict:
    """The request's JSON body, or its form fields; {} when there is none. In a form, `scopes`
    is a list: one field per scope (`scopes=user:read&scopes=key:verify`)."""
    body = json_body(request)
    if body is None:
        refuse_json_sent_as_form(request)
        if request.get_data(cache=True) and not request.form:
            raise UnsupportedMediaType("Send a JSON object with the header Content-Type: "
                                       "application/json.")
        body = {name: request.form.getlist(name) if name in LIST_FIELDS else value
                for name, value in request.form.items()}
    return body


def _limit() -> int:
    return clean_limit(request.args.get("limit"))


def _flag(name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise service.InvalidInput("Use true or false here.", name)
    return raw in ("true", "1")


def _links(page: service.Page, **params) -> dict:
    def link(cursor):
        if cursor is None:
            return None
        return external_url(request.endpoint, cursor=cursor, **params)

    return {"next": link(page.next_cursor), "previous": link(page.previous_cursor)}


def _acting_origin() -> service.Origin:
    """Where this API call came from, naming the key that makes the change (security log)."""
    return origin().acting_as(service.get_key(g.api_owner, g.api_key.public_id))


def no_store(response: Response) -> Response:
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
    limit, key_id, cursor = _limit(), request.args.get("key"), request.args.get("cursor")
    if key_id is None:
        page = service.page_events(g.api_user, limit, cursor)
        links = _links(page, limit=limit)
    else:
        page = service.events_for_key(g.api_user, key_id, limit, cursor)
        links = _links(page, limit=limit, key=key_id)
    return jsonify(SecurityEventPage(**links, results=[SecurityEvent.of(e) for e in page.results]))


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
        expires_at=body.expires_at, allowed_ips=body.allowed_ips,
        granting_scopes=g.api_key.scopes,
        granting_ends_at=g.api_key.ends_at,
        origin=_acting_origin(),
        services=body.services, organizations=body.organizations, **limit_terms(body),
    )
    response = jsonify(ApiKeyWithValue.of(key, value))
    response.status_code = 201
    response.headers["Location"] = url_for(".key_detail", public_id=key.public_id)
    return no_store(response)


@bp.get("/personal_api_keys/@current/")
@requires(READ_KEYS, service_accounts=True)
def current_key():
    return jsonify(ApiKey.of(service.get_key(g.api_owner, g.api_key.public_id)))


@bp.get("/personal_api_keys/<key_id:public_id>/")
@requires(READ_KEYS)
def key_detail(public_id: str):
    return jsonify(ApiKey.of(service.get_key(g.api_user, public_id)))


@bp.patch("/personal_api_keys/<key_id:public_id>/")
@requires(WRITE_KEYS)
def update_key(public_id: str):
    body = parse(UpdateKey, body_fields())
    key = service.key_limits.update_key_and_limits(  # one transaction: all or nothing
        g.api_user, public_id,
        label=body.label, description=body.description, scopes=body.scopes,
        expires_at=body.expires_at, allowed_ips=body.allowed_ips,
        granting_scopes=g.api_key.scopes, may_widen=False,
        origin=_acting_origin(), **body.where_changes(), **limit_terms(body),
    )
    return jsonify(ApiKey.of(key))


@bp.delete("/personal_api_keys/<key_id:public_id>/")
@requires(WRITE_KEYS)
def revoke_key(public_id: str):
    service.revoke_key(g.api_user, public_id, _acting_origin())
    return Response(status=204)


@bp.post("/personal_api_keys/<key_id:public_id>/roll/")
@requires(WRITE_KEYS)
def roll_key(public_id: str):
    body = parse(RollKey, body_fields())
    key, value = service.roll_key(g.api_user, public_id, origin=_acting_origin(),
                                  grace_period_seconds=body.grace_period_seconds,
                                  granting_scopes=g.api_key.scopes,
                                  granting_ends_at=g.api_key.ends_at)
    return no_store(jsonify(ApiKeyWithValue.of(key, value)))


# ---------------------------------------------------------------- verification for services


def _verify_body() -> VerifyRequest:
    """The verify request from a JSON body, or an RFC 7662 form body (`token=`)."""
    body = json_body(request)
    if body is None:
        refuse_json_sent_as_form(request)
    if body is None and request.get_data(cache=True) and not request.form:
        raise UnsupportedMediaType('Send JSON such as {"key": "..."} with the header '
                                   "Content-Type: application/json, or token=... as a form.")
    if body is not None or not request.form:
        return verification.verify_request(body)
    form = parse(VerifyForm, request.form.to_dict())
    return VerifyRequest(key=form.token, scopes=form.required_scopes, client_ip=form.client_ip)


@bp.post("/verify/")
def verify():
    """Is this key valid, whose is it and what may it do? One database round trip for both keys."""
    return respond(verification.verify(_credential(basic=True), _verify_body, origin()))


verify.required_scope = VERIFY


# ---------------------------------------------------------------- documentation


@bp.get("/schema/")
def schema():
    return jsonify(openapi.document())


@bp.get("/docs/")
def docs():
    spec = openapi.document()
    base_url = current_app.config["KEYVAULT_BASE_URL"]  # never the request's Host
    return render_template(
        "api/docs.html", spec=spec, groups=reference.groups(spec, base_url),
        error_examples=reference.error_answers(spec), base_url=base_url,
        me=reference.address(base_url, "/api/users/@me/"),
        key_variable=reference.KEY_VARIABLE, url_variable=reference.URL_VARIABLE,
        prefix=current_app.config["KEYVAULT_KEY_PREFIX"])
