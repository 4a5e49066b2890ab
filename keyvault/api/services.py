"""/api/organizations/<id>/services/: an organisation's services, their scopes and their verify
keys, on the API blueprint. Every rule is service.services' (and service.keys')."""

from __future__ import annotations

from flask import Response, g, jsonify, request, url_for

from ..service import services
from ..service.scopes import READ_ORGS, WRITE_ORGS
from .inputs import RollKey, parse
from .schemas import ApiKey, ApiKeyWithValue
from .service_inputs import CreateService, CreateServiceKey, UpdateService
from .service_schemas import Service, ServiceKeyPage, ServicePage
from .views import _acting_origin, _flag, _limit, _links, body_fields, bp, no_store, requires

BASE = "/organizations/<org_id>/services/"
ONE = BASE + "<service_id>/"
KEY = ONE + "keys/<key_id:public_id>/"


def _scopes(listed) -> list[dict] | None:
    return None if listed is None else [scope.model_dump() for scope in listed]


@bp.get(BASE)
@requires(READ_ORGS, service_accounts=True)
def list_services(org_id: str):
    limit = _limit()
    page = services.page_services(g.api_owner, org_id, limit, request.args.get("cursor"))
    return jsonify(ServicePage(**_links(page, limit=limit, org_id=org_id),
                               results=[Service.of(s) for s in page.results]))


@bp.post(BASE)
@requires(WRITE_ORGS, service_accounts=True)
def create_service(org_id: str):
    body = parse(CreateService, body_fields())
    created = services.create_service(g.api_owner, org_id, _acting_origin(), name=body.name,
                                      audience=body.audience, description=body.description,
                                      scopes=_scopes(body.scopes))
    response = jsonify(Service.of(created))
    response.status_code = 201
    response.headers["Location"] = url_for(".get_service", org_id=org_id,
                                           service_id=created.public_id)
    return response


@bp.get(ONE)
@requires(READ_ORGS, service_accounts=True)
def get_service(org_id: str, service_id: str):
    return jsonify(Service.of(services.get_service(g.api_owner, org_id, service_id)[1]))


@bp.patch(ONE)
@requires(WRITE_ORGS, service_accounts=True)
def update_service(org_id: str, service_id: str):
    body = parse(UpdateService, body_fields())
    changed = services.update_service(
        g.api_owner, org_id, service_id, _acting_origin(), name=body.name,
        audience=body.audience, description=body.description, scopes=_scopes(body.scopes),
        narrow=body.narrow)
    return jsonify(Service.of(changed))


@bp.delete(ONE)
@requires(WRITE_ORGS, service_accounts=True)
def delete_service(org_id: str, service_id: str):
    """Delete it, its scopes and its verify keys; `?narrow=true` when keys carry its scopes."""
    services.delete_service(g.api_owner, org_id, service_id, _acting_origin(),
                            narrow=_flag("narrow"))
    return Response(status=204)


# ---------------------------------------------------------------- its verify keys


@bp.get(ONE + "keys/")
@requires(READ_ORGS, service_accounts=True)
def list_service_keys(org_id: str, service_id: str):
    limit, include_revoked = _limit(), _flag("include_revoked")
    page = services.page_service_keys(g.api_owner, org_id, service_id, include_revoked, limit,
                                      request.args.get("cursor"))
    params = {"limit": limit, "org_id": org_id, "service_id": service_id}
    if include_revoked:
        params["include_revoked"] = "true"
    return jsonify(ServiceKeyPage(**_links(page, **params),
                                  results=[ApiKey.of(k) for k in page.results]))


@bp.post(ONE + "keys/")
@requires(WRITE_ORGS, service_accounts=True)
def create_service_key(org_id: str, service_id: str):
    body = parse(CreateServiceKey, body_fields())
    key, value = services.create_service_key(
        g.api_owner, org_id, service_id, _acting_origin(), label=body.label,
        expires_at=body.expires_at, granting_ends_at=g.api_key.ends_at)
    response = jsonify(ApiKeyWithValue.of(key, value))
    response.status_code = 201
    response.headers["Location"] = url_for(".get_service_key", org_id=org_id,
                                           service_id=service_id, public_id=key.public_id)
    return no_store(response)


@bp.get(KEY)
@requires(READ_ORGS, service_accounts=True)
def get_service_key(org_id: str, service_id: str, public_id: str):
    return jsonify(ApiKey.of(services.get_service_key(g.api_owner, org_id, service_id,
                                                      public_id)))


@bp.delete(KEY)
@requires(WRITE_ORGS, service_accounts=True)
def revoke_service_key(org_id: str, service_id: str, public_id: str):
    services.revoke_service_key(g.api_owner, org_id, service_id, public_id, _acting_origin())
    return Response(status=204)


@bp.post(KEY + "roll/")
@requires(WRITE_ORGS, service_accounts=True)
def roll_service_key(org_id: str, service_id: str, public_id: str):
    body = parse(RollKey, body_fields())
    key, value = services.roll_service_key(g.api_owner, org_id, service_id, public_id,
                                           _acting_origin(),
                                           grace_period_seconds=body.grace_period_seconds)
    return no_store(jsonify(ApiKeyWithValue.of(key, value)))
