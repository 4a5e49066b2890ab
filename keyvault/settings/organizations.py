"""The Organisations pages of the settings blueprint: my organisations and a form to create one;
one organisation's page (members and roles, invitations, service accounts, policy, its log).

Every action names the right it needs and asks service.organizations.authorize first, so a
member's POST is refused (403) before its form is read, and another organisation's id is 404;
the service checks again as it acts. A role sees exactly the controls its rights allow.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user

from .. import service
from ..extensions import db
from ..http.browser import reauthenticate
from ..http.context import origin
from ..http.forms import ActionForm, choices
from ..http.org_forms import (
    CreateOrganizationForm,
    InviteForm,
    PolicyForm,
    RoleForm,
    ServiceAccountForm,
)
from ..service import scopes, submissions
from ..service.errors import AlreadyMember, InvalidInput, LastOwner
from .views import bp

orgs, accounts, invitations = (service.organizations, service.service_accounts,
                               service.invitations)
LOG_EVENTS = 30
MOST = 200  # members, invitations and service accounts listed on one page


def _me():
    return current_user._get_current_object()


def _allowed(org_id: str, action: str) -> orgs.Access:
    """The one rights check, before a form is read: 404 outside, 403 past the role."""
    return orgs.authorize(_me(), org_id, action)


def _back(org_id: str, anchor: str | None = None):
    return redirect(url_for(".organization", org_id=org_id, _anchor=anchor), 303)


# ---------------------------------------------------------------- my organisations


def _list(form: CreateOrganizationForm | None = None, status: int = 200):
    memberships = orgs.page_memberships(_me(), MOST, None).results
    return render_template("settings/organizations.html", memberships=memberships,
                           form=form or CreateOrganizationForm(formdata=None)), status


@bp.get("/organizations")
def organizations():
    return _list()


@bp.post("/organizations")
def create_organization():
    form = CreateOrganizationForm()
    if not form.validate_on_submit():
        return _list(form, 400)
    try:
        submissions.claim(_me(), form.once.data)
        created = orgs.create_organization(_me(), form.name.data, origin())
    except submissions.AlreadySubmitted as refusal:
        flash("This form was already submitted: the organisation was created then."
              if refusal.used else refusal.detail, "error")
        return redirect(url_for(".organizations"), 303)
    flash(f"Created “{created.organization.name}”. You are its owner.", "success")
    return _back(created.organization.public_id)


# ---------------------------------------------------------------- one organisation


def _policy_form(access: orgs.Access, formdata=True) -> PolicyForm:
    org = access.organization
    form = PolicyForm() if formdata else PolicyForm(
        formdata=None, name=org.name, max_key_lifetime_days=org.max_key_lifetime_days,
        revoke_unused_after_days=org.revoke_unused_after_days,
        allowed_scopes=org.allowed_scopes or [])
    form.allowed_scopes.choices = choices(
        [(s, s) for s in (scopes.FULL_ACCESS, *scopes.catalogue())])
    return form


def _page(org_id: str, status: int = 200, **forms):
    """The organisation's page as the signed-in person's role shows it (`forms`: ones that were
    posted and refused, shown with their errors)."""
    me = _me()
    access = _allowed(org_id, "view")
    role = access.role

    def can(action: str) -> bool:
        return role in orgs.RIGHTS[action] and access.organization.is_active

    pending = (invitations.page_invitations(me, org_id, MOST, None).results
               if can("manage_invitations") else [])
    log = [(event, service.describe(event), service.performed_by(event))
           for event in orgs.page_log(me, org_id, LOG_EVENTS, None).results]
    invite_form = forms.get("invite_form") or InviteForm(formdata=None)
    if not can("manage_owners"):
        invite_form.role.choices = [c for c in invite_form.role.choices if c.value != "owner"]
    return render_template(
        "settings/organization.html", org=access.organization, role=role, can=can,
        members=orgs.page_members(me, org_id, MOST, None).results, invitations=pending,
        service_accounts=accounts.page_service_accounts(me, org_id, MOST, None).results,
        log=log, invite_form=invite_form, role_form=RoleForm(formdata=None),
        account_form=forms.get("account_form") or ServiceAccountForm(formdata=None),
        policy_form=forms.get("policy_form") or _policy_form(access, formdata=False),
        action_form=ActionForm(), scope_descriptions={
            s: scopes.describe(s) for s in (scopes.FULL_ACCESS, *scopes.catalogue())},
    ), status


@bp.get("/organizations/<org_id>")
def organization(org_id: str):
    return _page(org_id)


def _refused(org_id: str, form, field, error: service.ServiceError, anchor: str):
    db.session.rollback()  # the form's token too: it acts once fixed
    (field.errors if field is not None else form.form_errors).append(error.detail)
    return _page(org_id, 400, **{anchor: form})


@bp.post("/organizations/<org_id>/invitations")
def invite(org_id: str):
    _allowed(org_id, "manage_invitations")
    form = InviteForm()
    if not form.validate_on_submit():
        return _page(org_id, 400, invite_form=form)
    try:
        submissions.claim(_me(), form.once.data)
        invitation = invitations.invite(_me(), org_id, form.email.data, form.role.data, origin())
    except submissions.AlreadySubmitted:
        flash("This form was already submitted: the invitation went then.", "error")
        return _back(org_id, "invitations")
    except (AlreadyMember, InvalidInput) as error:
        return _refused(org_id, form, form.email, error, "invite_form")
    flash(f"Invitation sent to {invitation.email} as {invitation.role}: the link works for "
          "7 days.", "success")
    return _back(org_id, "invitations")


@bp.post("/organizations/<org_id>/invitations/<invitation_id>/revoke")
def revoke_invitation(org_id: str, invitation_id: str):
    _allowed(org_id, "manage_invitations")
    if not ActionForm().validate_on_submit():
        abort(400)
    invitations.revoke_invitation(_me(), org_id, invitation_id, origin())
    flash("Invitation revoked: its link no longer works.", "success")
    return _back(org_id, "invitations")


@bp.post("/organizations/<org_id>/members/<int:user_id>/role")
def change_role(org_id: str, user_id: int):
    _allowed(org_id, "manage_members")
    form = RoleForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        member = orgs.change_role(_me(), org_id, user_id, form.role.data, origin())
    except LastOwner as refusal:
        flash(refusal.detail, "error")
        return _back(org_id, "members")
    flash(f"{member.user.email} is now {'an' if member.role != 'member' else 'a'} "
          f"{member.role}.", "success")
    return _back(org_id, "members")


@bp.post("/organizations/<org_id>/members/<int:user_id>/remove")
def remove_member(org_id: str, user_id: int):
    """Remove a member, or leave (removing oneself: any role may, but the last owner)."""
    leaving = user_id == _me().id
    _allowed(org_id, "view" if leaving else "manage_members")
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        orgs.remove_member(_me(), org_id, user_id, origin())
    except LastOwner as refusal:
        flash(refusal.detail, "error")
        return _back(org_id, "members")
    if leaving:
        flash("You left the organisation.", "success")
        return redirect(url_for(".organizations"), 303)
    flash("Removed the member: their rights in the organisation ended at once.", "success")
    return _back(org_id, "members")


@bp.post("/organizations/<org_id>/service-accounts")
def create_service_account(org_id: str):
    _allowed(org_id, "manage_service_accounts")
    form = ServiceAccountForm()
    if not form.validate_on_submit():
        return _page(org_id, 400, account_form=form)
    try:
        submissions.claim(_me(), form.once.data)
        account = accounts.create_service_account(_me(), org_id, origin(), name=form.name.data,
                                                  description=form.description.data)
    except submissions.AlreadySubmitted:
        flash("This form was already submitted: the service account was created then.", "error")
        return _back(org_id, "service-accounts")
    flash(f"Created the service account “{account.name}”: give it keys below.", "success")
    return redirect(url_for(".sa_api_keys", org_id=org_id, sa_id=account.public_id), 303)


@bp.post("/organizations/<org_id>/policy")
def policy(org_id: str):
    """Owners: the name and the policy (a change never widens or shortens a key issued)."""
    access = _allowed(org_id, "change_policy")
    form = _policy_form(access)
    if not form.validate_on_submit():
        return _page(org_id, 400, policy_form=form)
    try:
        orgs.update_organization(
            _me(), org_id, origin(), name=form.name.data,
            max_key_lifetime_days=form.max_key_lifetime_days.data,
            revoke_unused_after_days=form.revoke_unused_after_days.data,
            allowed_scopes=form.allowed_scopes.data or None)
    except InvalidInput as error:
        return _refused(org_id, form, getattr(form, error.field or "", None), error,
                        "policy_form")
    flash("Saved the organisation's settings. Keys already issued keep their lifetime and "
          "scopes; new keys and rolls follow the policy.", "success")
    return _back(org_id, "policy")


@bp.post("/organizations/<org_id>/delete")
def delete_organization(org_id: str):
    access = _allowed(org_id, "delete")  # before the password prompt: a member hears 403
    if not ActionForm().validate_on_submit():
        abort(400)
    if (response := reauthenticate()) is not None:
        return response  # asks for the password, then posts back here
    name = access.organization.name
    orgs.delete_organization(_me(), org_id, origin())
    flash(f"Deleted “{name}”: its service accounts' keys no longer work.", "success")
    return redirect(url_for(".organizations"), 303)

