"""/api/organizations/: organisations, their members, invitations and log, on the API blueprint.

Views are thin: every rule (who may do what, the last owner, policy) is service.organizations'
and service.invitations'; a person's key acts as that person, a service account's key as its
service account (only in its own organisation, as its scopes and the policy allow).
"""

from __future__ import annotations

from flask import Response, g, jsonify, request, url_for

from .. import service
from ..service.restrictions import may_manage
from ..service.scopes import READ_ORGS, WRITE_ORGS
from .inputs import AcceptInvitation, ChangeRole, CreateOrganization, Invite, UpdateOrganization, parse
from .org_schemas import (
    Invitation,
    InvitationPage,
    Member,
    MemberPage,
    Organization,
    OrganizationEvent,
    OrganizationEventPage,
    OrganizationPage,
)
from .views import _acting_origin, _limit, _links, body_fields, bp, requires

organizations = service.organizations


def _page(model, page, results_model, **params):
    return jsonify(model(**_links(page, **params),
                         results=[results_model.of(row) for row in page.results]))


@bp.get("/organizations/")
@requires(READ_ORGS, service_accounts=True)
def list_organizations():
    """The caller's organisations (a service account's key: its own one)."""
    if g.api_user is None:
        account = g.api_owner
        return jsonify(OrganizationPage(next=None, previous=None, results=[
            Organization.of(account.organization, "service_account")]))
    limit = _limit()
    page = organizations.page_memberships(g.api_user, limit, request.args.get("cursor"))
    return jsonify(OrganizationPage(**_links(page, limit=limit), results=[
        Organization.of(member.organization, member.role) for member in page.results
        if may_manage(g.api_key.restricted_to, member.organization.public_id)]))


@bp.post("/organizations/")
@requires(WRITE_ORGS)
def create_organization():
    body = parse(CreateOrganization, body_fields())
    member = organizations.create_organization(g.api_user, body.name, _acting_origin())
    response = jsonify(Organization.of(member.organization, member.role))
    response.status_code = 201
    response.headers["Location"] = url_for(".organization",
                                           org_id=member.organization.public_id)
    return response


@bp.get("/organizations/<org_id>/")
@requires(READ_ORGS, service_accounts=True)
def organization(org_id: str):
    access = organizations.authorize(g.api_owner, org_id, "view")
    return jsonify(Organization.of(access.organization, access.role))


@bp.patch("/organizations/<org_id>/")
@requires(WRITE_ORGS, service_accounts=True)
def update_organization(org_id: str):
    body = parse(UpdateOrganization, body_fields())
    changes = {name: getattr(body, name) for name in body.model_fields_set
               if name != "personal_api_key"}
    if "name" in changes and changes["name"] is None:
        del changes["name"]  # null leaves the name as it is
    access = organizations.update_organization(g.api_owner, org_id, _acting_origin(), **changes)
    return jsonify(Organization.of(access.organization, access.role))


@bp.delete("/organizations/<org_id>/")
@requires(WRITE_ORGS, service_accounts=True)
def delete_organization(org_id: str):
    organizations.delete_organization(g.api_owner, org_id, _acting_origin())
    return Response(status=204)


@bp.get("/organizations/<org_id>/log/")
@requires(READ_ORGS, service_accounts=True)
def organization_log(org_id: str):
    limit = _limit()
    page = organizations.page_log(g.api_owner, org_id, limit, request.args.get("cursor"))
    return _page(OrganizationEventPage, page, OrganizationEvent, limit=limit, org_id=org_id)


# ---------------------------------------------------------------- members


@bp.get("/organizations/<org_id>/members/")
@requires(READ_ORGS, service_accounts=True)
def members(org_id: str):
    limit = _limit()
    page = organizations.page_members(g.api_owner, org_id, limit, request.args.get("cursor"))
    return _page(MemberPage, page, Member, limit=limit, org_id=org_id)


@bp.patch("/organizations/<org_id>/members/<int(signed=True):user_id>/")
@requires(WRITE_ORGS, service_accounts=True)
def change_role(org_id: str, user_id: int):
    body = parse(ChangeRole, body_fields())
    member = organizations.change_role(g.api_owner, org_id, user_id, body.role, _acting_origin())
    return jsonify(Member.of(member))


@bp.delete("/organizations/<org_id>/members/<int(signed=True):user_id>/")
@requires(WRITE_ORGS, service_accounts=True)
def remove_member(org_id: str, user_id: int):
    """Remove a member, or leave (your own user id)."""
    organizations.remove_member(g.api_owner, org_id, user_id, _acting_origin())
    return Response(status=204)


# ---------------------------------------------------------------- invitations


@bp.get("/organizations/<org_id>/invitations/")
@requires(READ_ORGS, service_accounts=True)
def invitations(org_id: str):
    limit = _limit()
    page = service.invitations.page_invitations(g.api_owner, org_id, limit,
                                                request.args.get("cursor"))
    return _page(InvitationPage, page, Invitation, limit=limit, org_id=org_id)


@bp.post("/organizations/<org_id>/invitations/")
@requires(WRITE_ORGS, service_accounts=True)
def invite(org_id: str):
    body = parse(Invite, body_fields())
    invitation = service.invitations.invite(g.api_owner, org_id, body.email, body.role,
                                            _acting_origin())
    response = jsonify(Invitation.of(invitation))
    response.status_code = 201
    return response


@bp.delete("/organizations/<org_id>/invitations/<invitation_id>/")
@requires(WRITE_ORGS, service_accounts=True)
def revoke_invitation(org_id: str, invitation_id: str):
    service.invitations.revoke_invitation(g.api_owner, org_id, invitation_id, _acting_origin())
    return Response(status=204)


@bp.post("/invitations/accept/")
@requires(WRITE_ORGS)
def accept_invitation():
    """Join with the invitation's role: the key's owner must have the invited address."""
    body = parse(AcceptInvitation, body_fields())
    member = service.invitations.accept(body.invitation_token, g.api_user, _acting_origin())
    return jsonify(Organization.of(member.organization, member.role))
