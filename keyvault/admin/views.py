"""Administration: every user's keys (never their values), revoking keys, deactivating users and
organisations."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import service
from ..http.browser import enrolment_required, send_to_enrolment
from ..http.context import origin
from ..http.forms import ActionForm
from ..models import KEY_STATUSES
from ..service import second_factor
from ..service.validation import EMAIL_MAX

bp = Blueprint("admin", __name__)

@bp.before_request
def require_admin():
    """Non-admins, and people not logged in, are told the pages do not exist."""
    if not current_user.is_authenticated or not current_user.is_admin:
        abort(404)
    if enrolment_required():  # KEYVAULT_REQUIRE_2FA_FOR_ADMINS
        return send_to_enrolment()
    return None


PAGE_SIZE = 50


@bp.get("/keys")
def keys():
    """Both tables a page at a time (`keys_cursor`, `users_cursor`), each with its filters; the
    links of one table keep the other's place and every filter."""
    email = request.args.get("user", "").strip() or None
    status = request.args.get("status") or None
    search = request.args.get("email", "").strip()
    if status is not None and status not in KEY_STATUSES:
        raise service.InvalidInput(f"Choose a status from the list: {', '.join(KEY_STATUSES)}.")
    if len(search) > EMAIL_MAX:
        raise service.InvalidInput(f"Email addresses have at most {EMAIL_MAX} characters.")
    key_page = service.admin_list_keys(email, status, limit=PAGE_SIZE,
                                       cursor=request.args.get("keys_cursor"))
    user_page = service.admin_list_users(search, limit=PAGE_SIZE,
                                         cursor=request.args.get("users_cursor"))
    params = {name: value for name, value in request.args.items()
              if name in ("user", "status", "email", "keys_cursor", "users_cursor") and value}
    return render_template(
        "admin/keys.html", keys=key_page.results, key_page=key_page, email=email or "",
        status=status or "", statuses=KEY_STATUSES, form=ActionForm(), search=search,
        users=user_page.results, user_page=user_page,
        link=lambda **changes: url_for(".keys", **{**params, **changes}),
        with_two_factor=second_factor.users_with_methods(),
        organizations=service.organizations.all_organizations(),
    )


@bp.post("/keys/<public_id>/revoke")
def revoke_key(public_id: str):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        key = service.admin_revoke_key(current_user, public_id, origin())
    except service.KeyNotFound:
        abort(404)
    flash(f"Revoked “{key.label}” of {key.user.email}.", "success")
    return redirect(url_for(".keys"))


@bp.post("/users/<int:user_id>/<any(activate, deactivate):action>")
def set_active(user_id: int, action: str):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        user = service.set_user_active(current_user, user_id, action == "activate", origin())
    except service.UserNotFound:
        abort(404)
    except service.ServiceError as error:
        flash(error.detail, "error")
        return redirect(url_for(".keys"))
    flash(f"{user.email} is now {'active' if user.is_active else 'deactivated'}.", "success")
    return redirect(url_for(".keys"))


@bp.post("/users/<int:user_id>/reset-2fa")
def reset_two_factor(user_id: int):
    """A person who lost their authenticator and recovery codes: their password alone logs them
    in again (logged in their security log, with the administrator's email)."""
    if not ActionForm().validate_on_submit():
        abort(400)
    user = service.get_user(user_id)
    if user is None:
        abort(404)
    if second_factor.disable(user, origin(), by_admin=current_user._get_current_object()):
        flash(f"Two-factor authentication of {user.email} was reset.", "success")
    else:
        flash(f"{user.email} has no two-factor authentication to reset.", "info")
    return redirect(url_for(".keys"), 303)


@bp.post("/organizations/<public_id>/<any(activate, deactivate):action>")
def set_organization_active(public_id: str, action: str):
    """A deactivated organisation's service-account keys stop at their next verify."""
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        organization = service.organizations.set_organization_active(
            current_user._get_current_object(), public_id, action == "activate", origin())
    except service.KeyNotFound:
        abort(404)
    state = "active" if organization.is_active else "deactivated"
    flash(f"{organization.name} is now {state}.", "success")
    return redirect(url_for(".keys"), 303)
