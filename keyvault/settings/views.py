"""The account-settings pages: API keys, the security log, mail preferences, and deleting the
account (two-factor authentication: settings/two_factor.py, on this blueprint)."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import clock, service
from ..extensions import db
from ..http.browser import (
    no_store,
    reauthenticate,
    sudo_required,
)
from ..http.context import origin
from ..http.forms import (
    KEEP_EXPIRY,
    PRESET_HINTS,
    ActionForm,
    CreateKeyForm,
    EditKeyForm,
    RollKeyForm,
    choices,
)
from ..service import key_lists, scopes, submissions, usage
from .chart import usage_chart
from .chart import words as outcome_words
from .expiry import expiry_choices, expiry_from
from .limits import fill, rate_words, terms_from, usage_words

USAGE_DAYS = 30
KEY_EVENTS = 20

bp = Blueprint("settings", __name__)


@bp.before_request
@login_required
def require_login():
    """Every settings page is for a logged-in person."""


def _scope_choices():
    pairs = [(scopes.FULL_ACCESS, "* (full access)")] + [(s, s) for s in scopes.catalogue()]
    return choices(pairs)


def _scope_descriptions() -> dict[str, str]:
    """What each scope on offer lets a key do, in words, for the templates."""
    return {scope: scopes.describe(scope) for scope in (scopes.FULL_ACCESS, *scopes.catalogue())}


def _preset_scopes() -> dict[str, list[str]]:
    """The scopes each preset of the create form grants (the page lists them beside it)."""
    return {"read_only": scopes.read_only(), "verify": [scopes.VERIFY],
            "full": [scopes.FULL_ACCESS]}


def _chosen_scopes(form: CreateKeyForm) -> list[str]:
    if form.preset.data in (presets := _preset_scopes()):
        return presets[form.preset.data]
    if not form.scopes.data:
        raise service.InvalidInput("Tick at least one scope, or choose another kind of access.",
                                   "scopes")
    return form.scopes.data


# Refusals from the service name API fields; on the page they belong to these form fields.
FORM_FIELDS = {"expires_at": "expiry", "scopes": "scopes", "label": "label",
               "description": "description", "expires_on": "expires_on",
               "rate_limit": "rate_limit", "usage_limit": "quota"}


def _show_refusal(form, error: service.ServiceError) -> None:
    """Put a service refusal beside the field it is about, once."""
    target = getattr(form, FORM_FIELDS.get(error.field or "", ""), None)
    errors = target.errors if target is not None else form.form_errors
    if not isinstance(errors, list):
        errors = target.errors = list(errors)
    if error.detail not in errors:
        errors.append(error.detail)


def _create_form(fresh: bool = False) -> CreateKeyForm:
    """The create form: from the posted fields, or `fresh` (empty) to show after a success."""
    form = CreateKeyForm(formdata=None) if fresh else CreateKeyForm()
    form.scopes.choices = _scope_choices()
    form.expiry.choices = expiry_choices(clock.now())
    offered = [choice.value for choice in form.expiry.choices]
    if form.expiry.data not in offered and fresh:
        form.expiry.data = offered[0]
    return form


def _shown_before() -> str | None:
    """A reload or Back of the page that showed a value (app.js made its history entry
    `?shown=<key id>`): say where the value went, without showing it."""
    public_id = request.args.get("shown")
    if request.method != "GET" or not public_id:
        return None
    try:
        key = service.get_key(current_user, public_id)
    except service.KeyNotFound:
        return None
    return (f"The value of “{key.label}” was shown once, on the page you left, and is not "
            "shown again. If you did not copy it, roll the key to get a new value.")


def _page(create_form=None, new_value=None, new_key=None, status=200):
    no_store()
    now = clock.now()
    query = service.KeyQuery.parse(request.args.get("q"), request.args.get("status"),
                                   request.args.get("scope"), request.args.get("sort"))
    return render_template(
        "settings/api_keys.html",
        keys=service.find_keys(current_user, query, now),
        query=query,
        statuses=key_lists.STATUSES,
        sorts=key_lists.SORTS,
        now=now,
        form=create_form or _create_form(fresh=True),
        action_form=ActionForm(),
        new_value=new_value,
        new_key=new_key,
        live_count=service.live_key_count(current_user),
        max_keys=current_app.config["KEYVAULT_MAX_KEYS_PER_USER"],
        max_days=current_app.config["KEYVAULT_MAX_KEY_LIFETIME_DAYS"],
        soon=timedelta(days=7),
        scope_descriptions=_scope_descriptions(),
        preset_hints=PRESET_HINTS,
        preset_scopes=_preset_scopes(),
        shown_before=None if new_value else _shown_before(),
    ), status


def _already_done(refusal: submissions.AlreadySubmitted, action: str, back_to: str):
    """A second submission of a form that already acted (reload, Back, double click): say so;
    the value was shown once, in the answer to the first, and is not shown again."""
    flash(f"This form was already submitted: the key was {action} then, and its value was "
          "shown once, in that answer. If you did not copy it, roll the key to get a new one."
          if refusal.used else refusal.detail, "error")
    no_store()
    return redirect(back_to, 303)


@bp.get("/api-keys")
def api_keys():
    return _page()


@bp.post("/api-keys")
@sudo_required
def create_key():
    form = _create_form()
    if form.validate_on_submit():
        try:
            chosen = _chosen_scopes(form)
            expires_at = expiry_from(form.expiry.data, form.expires_on.data)
            submissions.claim(current_user, form.once.data)
            key, value = service.create_key(
                current_user,
                label=form.label.data,
                description=form.description.data,
                scopes=chosen,
                expires_at=expires_at,
                origin=origin(),
                **terms_from(form),
            )
        except submissions.AlreadySubmitted as refusal:
            return _already_done(refusal, "created", url_for(".api_keys"))
        except service.KeyLimitReached:
            db.session.rollback()  # the page says so above the form, once
        except service.ServiceError as error:
            db.session.rollback()  # the form's token too: it acts once fixed
            _show_refusal(form, error)
        else:
            # The value is rendered into this one response and never stored, flashed or redirected.
            return _page(new_value=value, new_key=key)
    return _page(create_form=form, status=400)


def _edited_expiry(form: EditKeyForm):
    """None to keep the expiry, service.NO_EXPIRY for none, else the new moment."""
    if form.expiry.data == KEEP_EXPIRY:
        return None
    return expiry_from(form.expiry.data, form.expires_on.data) or service.NO_EXPIRY


@bp.route("/api-keys/<public_id>/edit", methods=["GET", "POST"])
def edit_key(public_id: str):
    """Label, description, scopes, expiry and limits. Narrowing (fewer scopes, an earlier expiry,
    a lower limit) needs nothing more; widening (more scopes, a later expiry or none, a higher
    or removed limit) asks for the password."""
    key = _key_or_404(public_id)
    if key.revoked_at is not None:  # nothing to edit: say so on the list instead of a dead form
        flash(f"“{key.label}” is revoked: it can no longer be edited.", "error")
        return redirect(url_for(".key_page", public_id=public_id), 303)
    form = EditKeyForm(obj=None if request.method == "POST" else key)
    form.scopes.choices = _scope_choices()
    form.expiry.choices = expiry_choices(clock.now(), key.expires_at)
    if request.method == "GET":
        form.scopes.data = key.scopes
        form.expiry.data = KEEP_EXPIRY
        fill(form, key.limits)
    if form.validate_on_submit():
        try:
            if not form.scopes.data:
                raise service.InvalidInput("Tick at least one scope: a key without scopes "
                                           "could do nothing; revoke it instead.", "scopes")
            expires_at = _edited_expiry(form)
            limits = terms_from(form, key.limits)
            widen = (not service.is_narrowing(key.scopes, form.scopes.data)
                     or service.extends_life(key, expires_at)
                     or service.key_limits.would_raise(key, **limits))
            if widen and (response := reauthenticate()) is not None:
                return response  # asks for the password, then posts back here
            service.key_limits.update_key_and_limits(
                current_user, public_id, label=form.label.data,
                description=form.description.data or "", scopes=form.scopes.data,
                expires_at=expires_at, may_widen=True, may_raise=True, origin=origin(),
                **limits,
            )
        except service.ServiceError as error:
            db.session.rollback()
            _show_refusal(form, error)
        else:
            flash(f"Saved changes to “{form.label.data}”.", "success")
            return redirect(url_for(".key_page", public_id=public_id))
    return render_template("settings/edit_key.html", form=form, key=key, now=clock.now(),
                           max_days=current_app.config["KEYVAULT_MAX_KEY_LIFETIME_DAYS"],
                           scope_descriptions=_scope_descriptions()), (
        400 if form.errors or form.form_errors else 200)


@bp.get("/api-keys/<public_id>")
def key_page(public_id: str):
    key = _key_or_404(public_id)
    return _key_page(key)


def _key_page(key, new_value: str | None = None):
    no_store()  # the answer to a roll shows the new value
    now = clock.now()
    used = usage.key_usage(key, now.date(), USAGE_DAYS)
    return render_template(
        "settings/key.html",
        key=key,
        status=key.status(now),
        now=now,
        usage=used,
        chart=usage_chart(used),
        outcome_words=outcome_words,
        events=[(event, service.describe(event), service.performed_by(event))
                for event in service.events_for_key(current_user, key.public_id,
                                                    KEY_EVENTS).results],
        scope_descriptions={s: scopes.describe(s) for s in key.scopes},
        rate_words=rate_words(key.limits), usage_words=usage_words(key.limits, now),
        action_form=ActionForm(),
        new_value=new_value,
        new_key=key if new_value else None,
        shown_before=None if new_value else _shown_before(),
    )


def _not_rollable(key):
    flash(f"“{key.label}” is {key.status()} and cannot be rolled; create a new key instead.",
          "error")
    return redirect(url_for(".key_page", public_id=key.public_id), 303)


@bp.get("/api-keys/<public_id>/roll")
def roll_step(public_id: str):
    """Rolling asks first: how long the old value should keep working."""
    key = _key_or_404(public_id)
    if key.status() != "active":
        return _not_rollable(key)
    return render_template("settings/roll_key.html", key=key, form=RollKeyForm(formdata=None))


@bp.post("/api-keys/<public_id>/roll")
@sudo_required
def roll_key(public_id: str):
    key = _key_or_404(public_id)
    form = RollKeyForm()
    if not form.validate_on_submit():
        return render_template("settings/roll_key.html", key=key, form=form), 400
    back_to = url_for(".key_page", public_id=public_id)
    try:
        submissions.claim(current_user, form.once.data)
        key, value = service.roll_key(current_user, public_id, origin=origin(),
                                      grace_period_seconds=int(form.grace.data))
    except submissions.AlreadySubmitted as refusal:
        return _already_done(refusal, "rolled", back_to)
    except service.ServiceError as error:
        db.session.rollback()  # the form's token too
        if isinstance(error, service.KeyNotLive):
            return _not_rollable(_key_or_404(public_id))
        flash(error.detail, "error")
        return redirect(back_to, 303)
    # The value is rendered into this one response and never stored, flashed or redirected.
    return _key_page(key, new_value=value)


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


def _key_or_404(public_id: str):
    try:
        return service.get_key(current_user, public_id)
    except service.KeyNotFound:
        abort(404)
