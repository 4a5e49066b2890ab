"""The account pages of the settings blueprint: the security log, the password, mail
preferences, deleting the account (two-factor and passkeys: two_factor.py, the account page)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from .. import service
from ..http.browser import known_device, mark_authenticated, retry_after, sudo_required
from ..http.context import origin
from ..http.forms import ActionForm, ChangePasswordForm, NotificationsForm, PasskeyNameForm
from ..service import notifications, passkeys, second_factor
from ..service.errors import LastOwner
from ..service.validation import PASSWORD_RULE
from .views import bp

NOTIFICATIONS_PREFIX = "mail"  # its fields' ids differ from the password form's (submit, csrf)


LOG_PAGE = 50


@bp.get("/security-log")
def security_log():
    """The log, newest first, a page at a time, filtered by the query: `key=<public id>` (one
    key's events), `kind=<event>`, `since`/`until` (days, UTC, both included)."""
    key_id, cursor = request.args.get("key") or None, request.args.get("cursor")
    only = service.LogFilter.parse(request.args.get("kind"), request.args.get("since"),
                                   request.args.get("until"))  # InvalidInput: a 400 page
    try:
        key = service.get_key(current_user, key_id) if key_id is not None else None
    except service.KeyNotFound:
        abort(404)
    page = service.page_events(current_user, LOG_PAGE, cursor, key=key, only=only)
    rows = [(event, service.describe(event), service.performed_by(event))
            for event in page.results]
    params = {**only.as_params(), **({"key": key.public_id} if key else {})}
    return render_template("settings/security_log.html", page=page, rows=rows, key=key,
                           only=only, params=params, kinds=service.event_kinds(),
                           keys=service.list_keys(current_user))


def _account_page(password_form: ChangePasswordForm | None = None, status: int = 200,
                  headers: dict | None = None):
    notices = NotificationsForm(formdata=None, prefix=NOTIFICATIONS_PREFIX,
                                expiring=current_user.notify_expiring,
                                presented=current_user.notify_presented)
    return render_template(
        "settings/account.html", form=ActionForm(),
        password_form=password_form or ChangePasswordForm(formdata=None),
        password_rule=PASSWORD_RULE, two_factor=second_factor.status(current_user),
        passkeys=passkeys.list_passkeys(current_user),
        rename_form=PasskeyNameForm(formdata=None),
        notifications_form=notices,
    ), status, headers or {}


@bp.get("/account")
def account():
    return _account_page()


@bp.post("/account/password")
def change_password():
    """The current password, then the new one twice; every other session ends, this one stays."""
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        return _account_page(form, 400)
    user = current_user._get_current_object()
    try:
        service.change_password(user, form.current_password.data, form.new_password.data,
                                origin(), known_device())
    except service.TooManyFailures as refusal:
        form.current_password.errors.append(refusal.detail)
        return _account_page(form, 429, retry_after())
    except service.ServiceError as error:
        getattr(form, error.field or "current_password").errors.append(error.detail)
        return _account_page(form, 400)
    login_user(user)  # this session carries the new session epoch: it alone stays logged in
    mark_authenticated()
    flash("Your password has been changed. Every other session has been logged out.", "success")
    return redirect(url_for(".account"), 303)


@bp.post("/account/notifications")
def notification_preferences():
    """Turn the reminders on or off; the security notices are not the person's to turn off."""
    form = NotificationsForm(prefix=NOTIFICATIONS_PREFIX)
    if not form.validate_on_submit():
        abort(400)
    notifications.set_preferences(current_user._get_current_object(),
                                  expiring=form.expiring.data, presented=form.presented.data)
    flash("Saved your mail preferences.", "success")
    return redirect(url_for(".account"), 303)


@bp.post("/account/delete")
@sudo_required
def delete_account():
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        service.delete_account(current_user._get_current_object(), origin())
    except LastOwner as refusal:  # transfer or delete the organisations first
        flash(refusal.detail, "error")
        return redirect(url_for(".account"), 303)
    logout_user()
    flash("Your account and all its keys have been deleted.", "info")
    return redirect(url_for("auth.login"))
