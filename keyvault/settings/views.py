"""The account-settings pages: API keys, the security log, and deleting the account."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, logout_user

from .. import clock, service
from ..request_context import origin
from ..service import scopes, submissions
from ..web import no_store, reauthenticate, sudo_required
from .forms import EXPIRY_CHOICES, ActionForm, CreateKeyForm, EditKeyForm, RollKeyForm, choices

bp = Blueprint("settings", __name__)


@bp.before_request
@login_required
def require_login():
    """Every settings page is for a logged-in person."""


def _scope_choices():
    pairs = [(scopes.FULL_ACCESS, "* (full access)")] + [(s, s) for s in scopes.catalogue()]
    return choices(pairs)


def _preset_scopes(preset: str, chosen: list[str]) -> list[str]:
    catalogue = scopes.catalogue()
    if preset == "full":
        return [scopes.FULL_ACCESS]
    if preset == "read_only":
        # an operator's scope (reading /metrics) is no part of a person's "read only"
        return [s for s in catalogue if s.endswith(":read") and s != scopes.READ_METRICS]
    if preset == "verify":
        return [scopes.VERIFY]
    return chosen


def _expiry_choices():
    max_days = current_app.config["KEYVAULT_MAX_KEY_LIFETIME_DAYS"]
    if max_days is None:
        return choices(EXPIRY_CHOICES)
    return choices((v, t) for v, t in EXPIRY_CHOICES
                   if v == "custom" or (v != "none" and int(v) <= max_days))


def _expiry_from(form: CreateKeyForm) -> datetime | None:
    choice = form.expiry.data
    if choice == "none":
        return None
    if choice == "custom":
        if form.expires_on.data is None:
            raise service.InvalidInput("Pick a date for the custom expiry.", "expires_on")
        # A custom date means "valid through that whole day" (UTC), as GitHub shows it; on the
        # last day a lifetime cap allows, that is "until the cap".
        end = datetime.combine(form.expires_on.data, time.max, tzinfo=UTC).replace(microsecond=0)
        max_days = current_app.config["KEYVAULT_MAX_KEY_LIFETIME_DAYS"]
        if max_days is not None:
            cap = clock.now() + timedelta(days=max_days)
            if end.date() == cap.date():
                end = min(end, cap)
        return end
    return clock.now() + timedelta(days=int(choice))


def _create_form(fresh: bool = False) -> CreateKeyForm:
    """The create form: from the posted fields, or `fresh` (empty) to show after a success."""
    form = CreateKeyForm(formdata=None) if fresh else CreateKeyForm()
    form.scopes.choices = _scope_choices()
    form.expiry.choices = _expiry_choices()
    offered = [choice.value for choice in form.expiry.choices]
    if form.expiry.data not in offered and fresh:
        form.expiry.data = offered[0]
    return form


def _page(create_form=None, new_value=None, new_key=None, status=200):
    no_store()
    keys = service.list_keys(current_user, include_revoked=True)
    now = clock.now()
    return render_template(
        "settings/api_keys.html",
        keys=keys,
        now=now,
        form=create_form or _create_form(fresh=True),
        action_form=ActionForm(),
        roll_form=RollKeyForm(formdata=None),  # a fresh one-time token, never the posted one
        new_value=new_value,
        new_key=new_key,
        live_count=service.live_key_count(current_user),
        max_keys=current_app.config["KEYVAULT_MAX_KEYS_PER_USER"],
        max_days=current_app.config["KEYVAULT_MAX_KEY_LIFETIME_DAYS"],
        soon=timedelta(days=7),
    ), status


def _already_done(refusal: submissions.AlreadySubmitted, action: str):
    """A second submission of a form that already acted (reload, Back, double click): say so;
    the value was shown once, in the answer to the first, and is not shown again."""
    flash(f"This form was already submitted: the key was {action} then, and its value was "
          "shown once, in that answer. If you did not copy it, roll the key to get a new one."
          if refusal.used else refusal.detail, "error")
    no_store()
    return redirect(url_for(".api_keys"), 303)


@bp.get("/api-keys")
def api_keys():
    return _page()


@bp.post("/api-keys")
@sudo_required
def create_key():
    form = _create_form()
    if form.validate_on_submit():
        try:
            submissions.claim(current_user, form.once.data)
            key, value = service.create_key(
                current_user,
                label=form.label.data,
                description=form.description.data,
                scopes=_preset_scopes(form.preset.data, form.scopes.data or []),
                expires_at=_expiry_from(form),
                origin=origin(),
            )
        except submissions.AlreadySubmitted as refusal:
            return _already_done(refusal, "created")
        except service.ServiceError as error:
            target = getattr(form, error.field, None) if error.field else None
            (target.errors if target is not None else form.form_errors).append(error.detail)
        else:
            # The value is rendered into this one response and never stored, flashed or redirected.
            return _page(new_value=value, new_key=key)
    return _page(create_form=form, status=400)


@bp.route("/api-keys/<public_id>/edit", methods=["GET", "POST"])
def edit_key(public_id: str):
    key = _key_or_404(public_id)
    if key.revoked_at is not None:  # nothing to edit: say so on the list instead of a dead form
        flash(f"“{key.label}” is revoked: it can no longer be edited.", "error")
        return redirect(url_for(".api_keys"), 303)
    form = EditKeyForm(obj=None if request.method == "POST" else key)
    form.scopes.choices = _scope_choices()
    if request.method == "GET":
        form.scopes.data = key.scopes
    if form.validate_on_submit():
        widen = not service.is_narrowing(key.scopes, form.scopes.data or key.scopes)
        if widen and (response := reauthenticate()) is not None:
            return response  # asks for the password, then posts back here
        try:
            service.update_key(
                current_user, public_id, label=form.label.data,
                description=form.description.data or "",
                scopes=form.scopes.data or [], may_widen=True, origin=origin(),
            )
        except service.ServiceError as error:
            form.form_errors.append(error.detail)
        else:
            flash(f"Saved changes to “{form.label.data}”.", "success")
            return redirect(url_for(".api_keys"))
    return render_template("settings/edit_key.html", form=form, key=key), (
        400 if form.errors or form.form_errors else 200)


@bp.post("/api-keys/<public_id>/roll")
@sudo_required
def roll_key(public_id: str):
    form = RollKeyForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        _key_or_404(public_id)
        submissions.claim(current_user, form.once.data)
        key, value = service.roll_key(current_user, public_id, origin=origin(),
                                      grace_period_seconds=int(form.grace.data))
    except submissions.AlreadySubmitted as refusal:
        return _already_done(refusal, "rolled")
    except service.KeyNotFound:
        abort(404)
    except service.ServiceError as error:
        flash(error.detail, "error")
        return redirect(url_for(".api_keys"))
    return _page(new_value=value, new_key=key)


@bp.post("/api-keys/<public_id>/revoke")
def revoke_key(public_id: str):
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        key = service.revoke_key(current_user, public_id, origin())
    except service.KeyNotFound:
        abort(404)
    flash(f"Revoked “{key.label}” ({key.mask}). It no longer works.", "success")
    return redirect(url_for(".api_keys"))


@bp.get("/security-log")
def security_log():
    try:
        page = service.page_events(current_user, 50, request.args.get("cursor"))
    except service.InvalidInput:
        abort(400)
    return render_template("settings/security_log.html", page=page)


@bp.route("/account", methods=["GET", "POST"])
def account():
    form = ActionForm()
    return render_template("settings/account.html", form=form)


@bp.post("/account/delete")
@sudo_required
def delete_account():
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    service.delete_account(current_user._get_current_object(), origin())
    logout_user()
    flash("Your account and all its keys have been deleted.", "info")
    return redirect(url_for("auth.login"))


def _key_or_404(public_id: str):
    try:
        return service.get_key(current_user, public_id)
    except service.KeyNotFound:
        abort(404)
