"""/api/organizations/<id>/service_accounts/: an organisation's service accounts and their keys,
on the API blueprint. Their keys answer like a person's (api.views), with `exceeds_policy`;
every rule is service.service_accounts' (and service.keys')."""

from __future__ import annotations

from flask import Response, g, jsonify, request, url_for

from .. import service
from ..service.scopes import READ_ORGS, WRITE_ORGS
from .inputs import CreateKey, CreateServiceAccount, RollKey, UpdateKey, UpdateServiceAccount, parse
from .limits import limit_terms
from .org_schemas import (
    ServiceAccount,
    ServiceAccountKey,
    ServiceAccountKeyPage,
    ServiceAccountKeyWithValue,
    ServiceAccountPage,
)
from .views import (
    _acting_origin,
    _flag,
    _limit,
    _links,
    body_fields,
    bp,
    no_store,
    requires,
)

accounts = service.service_accounts
BASE = "/organizations/<org_id>/service_accounts/"
ONE = BASE + "<sa_id>/"
KEY = ONE + "keys/<key_id:public_id>/"


@bp.get(BASE)
@requires(READ_ORGS, service_accounts=True)
def service_accounts(org_id: str):
    limit = _limit()
    page = accounts.page_service_accounts(g.api_owner, org_id, limit, request.args.get("cursor"))
    return jsonify(ServiceAccountPage(**_links(page, limit=limit, org_id=org_id),
                                      results=[ServiceAccount.of(a) for a in page.results]))


@bp.post(BASE)
@requires(WRITE_ORGS, service_accounts=True)
def create_service_account(org_id: str):
    body = parse(CreateServiceAccount, body_fields())
    account = accounts.create_service_account(g.api_owner, org_id, _acting_origin(),
                                              name=body.name, description=body.description)
    response = jsonify(ServiceAccount.of(account))
    response.status_code = 201
    response.headers["Location"] = url_for(".service_account", org_id=org_id,
                                           sa_id=account.public_id)
    return response


@bp.get(ONE)
@requires(READ_ORGS, service_accounts=True)
def service_account(org_id: str, sa_id: str):
    _, account = accounts.get_service_account(g.api_owner, org_id, sa_id)
    return jsonify(ServiceAccount.of(account))


@bp.patch(ONE)
@requires(WRITE_ORGS, service_accounts=True)
def update_service_account(org_id: str, sa_id: str):
    body = parse(UpdateServiceAccount, body_fields())
    account = accounts.update_service_account(g.api_owner, org_id, sa_id, _acting_origin(),
                                              name=body.name, description=body.description,
                                              **limit_terms(body))
    return jsonify(ServiceAccount.of(account))


@bp.delete(ONE)
@requires(WRITE_ORGS, service_accounts=True)
def delete_service_account(org_id: str, sa_id: str):
    """Delete it and its keys: they answer `not_found` from the next verify on."""
    accounts.delete_service_account(g.api_owner, org_id, sa_id, _acting_origin())
    return Response(status=204)


# ---------------------------------------------------------------- its keys


@bp.get(ONE + "keys/")
@requires(READ_ORGS, service_accounts=True)
def service_account_keys(org_id: str, sa_id: str):
    limit, include_revoked = _limit(), _flag("include_revoked")
    page = accounts.page_account_keys(g.api_owner, org_id, sa_id, include_revoked, limit,
                                      request.args.get("cursor"))
    params = {"limit": limit, "org_id": org_id, "sa_id": sa_id}
    if include_revoked:
        params["include_revoked"] = "true"
    return jsonify(ServiceAccountKeyPage(**_links(page, **params),
                                         results=[ServiceAccountKey.of(k) for k in page.results]))


@bp.post(ONE + "keys/")
@requires(WRITE_ORGS, service_accounts=True)
def create_service_account_key(org_id: str, sa_id: str):
    body = parse(CreateKey, body_fields())
    key, value = accounts.create_account_key(
        g.api_owner, org_id, sa_id, _acting_origin(), label=body.label,
        description=body.description, scopes=body.scopes, expires_at=body.expires_at,
        allowed_ips=body.allowed_ips, granting_scopes=g.api_key.scopes,
        granting_ends_at=g.api_key.ends_at,
        services=body.services, organizations=body.organizations, **limit_terms(body))
    response = jsonify(ServiceAccountKeyWithValue.of(key, value))
    response.status_code = 201
    response.headers["Location"] = url_for(".service_account_key", org_id=org_id, sa_id=sa_id,
                                           public_id=key.public_id)
    return no_store(response)


@bp.get(KEY)
@requires(READ_ORGS, service_accounts=True)
def service_account_key(org_id: str, sa_id: str, public_id: str):
    return jsonify(ServiceAccountKey.of(accounts.get_account_key(g.api_owner, org_id, sa_id,
                                                                 public_id)))


@bp.patch(KEY)
@requires(WRITE_ORGS, service_accounts=True)
def update_service_account_key(org_id: str, sa_id: str, public_id: str):
    body = parse(UpdateKey, body_fields())
    key = accounts.update_account_key(
        g.api_owner, org_id, sa_id, public_id, _acting_origin(), label=body.label,
        description=body.description, scopes=body.scopes, allowed_ips=body.allowed_ips,
        granting_scopes=g.api_key.scopes, may_widen=False, **body.where_changes(),
        **limit_terms(body))
    return jsonify(ServiceAccountKey.of(key))


@bp.delete(KEY)
@requires(WRITE_ORGS, service_accounts=True)
def revoke_service_account_key(org_id: str, sa_id: str, public_id: str):
    accounts.revoke_account_key(g.api_owner, org_id, sa_id, public_id, _acting_origin())
    return Response(status=204)


@bp.post(KEY + "roll/")
@requires(WRITE_ORGS, service_accounts=True)
def roll_service_account_key(org_id: str, sa_id: str, public_id: str):
    body = parse(RollKey, body_fields())
    key, value = accounts.roll_account_key(
        g.api_owner, org_id, sa_id, public_id, _acting_origin(),
        grace_period_seconds=body.grace_period_seconds, granting_scopes=g.api_key.scopes,
        granting_ends_at=g.api_key.ends_at)
    return no_store(jsonify(ServiceAccountKeyWithValue.of(key, value)))
