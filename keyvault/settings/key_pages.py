"""The key pages, whoever owns the keys: a person's own (/settings/api-keys) and a service
account's (settings/service_accounts.py). One set of handlers and templates, given a KeyHome
(settings/key_home.py) that says whose keys they are, who may change them and where its pages
are; every change goes through the service for that owner (a service account's through its
organisation's one rights check)."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, flash, redirect, render_template, request

from .. import clock, service
from ..extensions import db
from ..http.browser import already_submitted, no_store, reauthenticate
from ..http.forms import (
    KEEP_EXPIRY,
    PRESET_HINTS,
    ActionForm,
    RollKeyForm,
    address_list,
    choices,
)
from ..http.service_forms import CreateKeyWhereForm as CreateKeyForm
from ..http.service_forms import EditKeyWhereForm as EditKeyForm
from ..service import key_addresses, key_lists, restrictions, scopes, submissions, usage
from ..service import service_accounts as accounts
from ..service.errors import (
    NotAllowed,
    OrganizationInactive,
    OrganizationNotFound,
    ServiceAccountNotFound,
)
from .chart import usage_chart
from .chart import words as outcome_words
from .expiry import expiry_choices, expiry_from
from .key_home import KeyHome
from .limits import fill, rate_words, terms_from, usage_words

USAGE_DAYS = 30
# Refusals that end a key form with the error page (403, 404, 409), not beside a field.
NOT_THEIRS = (NotAllowed, OrganizationInactive, OrganizationNotFound, ServiceAccountNotFound)


def scope_descriptions(home: KeyHome) -> dict[str, str]:
    """What each scope on offer lets a key do, in words, for the templates."""
    return {scope: scopes.describe(scope) for scope in home.offered_scopes()}


def _preset_scopes() -> dict[str, list[str]]:
    """The scopes each preset of the create form grants (the page lists them beside it)."""
    return {"read_only": scopes.read_only(), "verify": [scopes.VERIFY],
            "full": [scopes.FULL_ACCESS]}


def _scope_choices(home: KeyHome, kept: list[str] = ()):
    """The scopes on offer, each registered scope labelled with its service's name."""
    of = {scope: name for name, group in scopes.by_service() if name for scope in group}
    return choices([(s, "* (full access)" if s == scopes.FULL_ACCESS
                     else f"{s} ({of[s]})" if s in of else s) for s in home.offered_scopes(kept)])


def _service_choices():
    return choices([(s.public_id, s.name) for s in service.services.all_services()])


def scope_services() -> dict[str, str]:
    """Each registered scope's service (public id): the forms show a restricted key the scopes
    of its chosen services only (static/js/app.js)."""
    return {scope: s.public_id for s in service.services.all_services() for scope in s.scopes}


def _chosen_scopes(form: CreateKeyForm) -> list[str]:
    if form.preset.data in (presets := _preset_scopes()):
        return presets[form.preset.data]
    if not form.scopes.data:
        raise service.InvalidInput("Tick at least one scope, or choose another kind of access.",
                                   "scopes")
    return form.scopes.data


# Refusals from the service name API fields; on the page they belong to these form fields.
FORM_FIELDS = {"expires_at": "expiry", "scopes": "scopes", "label": "label", "services": "services",
               "description": "description", "expires_on": "expires_on",
               "allowed_ips": "allowed_ips", "rate_limit": "rate_limit", "usage_limit": "quota"}


def show_refusal(form, error: service.ServiceError) -> None:
    """Put a service refusal beside the field it is about, once."""
    target = getattr(form, FORM_FIELDS.get(error.field or "", ""), None)
    errors = target.errors if target is not None else form.form_errors
    if not isinstance(errors, list):
        errors = target.errors = list(errors)
    if error.detail not in errors:
        errors.append(error.detail)


def _create_form(home: KeyHome, fresh: bool = False) -> CreateKeyForm:
    """The create form: from the posted fields, or `fresh` (empty) to show after a success."""
    form = CreateKeyForm(formdata=None) if fresh else CreateKeyForm()
    form.scopes.choices, form.services.choices = _scope_choices(home), _service_choices()
    form.expiry.choices = expiry_choices(clock.now(), home.max_days)
    offered = [choice.value for choice in form.expiry.choices]
    if form.expiry.data not in offered and fresh:
        form.expiry.data = offered[0]
    return form


def _shown_before(home: KeyHome) -> str | None:
    """A reload or Back of the page that showed a value (app.js made its history entry
    `?shown=<key id>`): say where the value went, without showing it."""
    public_id = request.args.get("shown")
    if request.method != "GET" or not public_id:
        return None
    try:
        key = home.get(public_id)
    except service.KeyNotFound:
        return None
    return (f"The value of “{key.label}” was shown once, on the page you left, and is not "
            "shown again. If you did not copy it, roll the key to get a new value.")


def list_page(home: KeyHome, create_form=None, new_value=None, new_key=None, status=200,
              **extra):
    """The key list with its create form (`extra`: what a service account's page adds)."""
    no_store()
    now = clock.now()
    query = service.KeyQuery.parse(request.args.get("q"), request.args.get("status"),
                                   request.args.get("scope"), request.args.get("sort"))
    return render_template(
        "settings/api_keys.html", home=home,
        keys=service.find_keys(home.owner, query, now), query=query,
        statuses=key_lists.STATUSES, sorts=key_lists.SORTS, now=now,
        form=create_form or _create_form(home, fresh=True), action_form=ActionForm(),
        new_value=new_value, new_key=new_key, live_count=service.live_key_count(home.owner),
        max_keys=home.max_keys, max_days=home.max_days, soon=timedelta(days=7),
        scope_descriptions=scope_descriptions(home), preset_hints=PRESET_HINTS,
        preset_scopes=_preset_scopes(), scope_services=scope_services(),
        shown_before=None if new_value else _shown_before(home), **extra,
    ), status


def _already_done(refusal: submissions.AlreadySubmitted, action: str, back_to: str):
    return already_submitted(
        refusal, f"This form was already submitted: the key was {action} then, and its value "
        "was shown once, in that answer. If you did not copy it, roll the key to get a new one.",
        back_to)


def create(home: KeyHome, show_list):
    """The create form posted (the route asked for the password first); `show_list(**what)`
    answers with the owner's list page."""
    form = _create_form(home)
    if form.validate_on_submit():
        try:
            chosen = _chosen_scopes(form)
            expires_at = expiry_from(form.expiry.data, form.expires_on.data, home.max_days)
            submissions.claim(home.person, form.once.data)
            key, value = home.create(label=form.label.data, description=form.description.data,
                                     scopes=chosen, expires_at=expires_at,
                                     allowed_ips=address_list(form.allowed_ips.data),
                                     services=form.chosen_services(), **terms_from(form))
        except submissions.AlreadySubmitted as refusal:
            return _already_done(refusal, "created", home.url("api_keys"))
        except service.KeyLimitReached:
            db.session.rollback()  # the page says so above the form, once
        except service.ServiceError as error:
            db.session.rollback()  # the form's token too: it acts once fixed
            if isinstance(error, NOT_THEIRS):
                raise  # not theirs to change: the error page
            show_refusal(form, error)
        else:
            # The value is rendered into this one response and never stored, flashed or redirected.
            return show_list(new_value=value, new_key=key)
    return show_list(create_form=form, status=400)


def _edited_expiry(form: EditKeyForm, home: KeyHome):
    """None to keep the expiry, service.NO_EXPIRY for none, else the new moment."""
    if form.expiry.data == KEEP_EXPIRY:
        return None
    return expiry_from(form.expiry.data, form.expires_on.data, home.max_days) or service.NO_EXPIRY


def edit(home: KeyHome, public_id: str):
    """Label, description, scopes and expiry. Narrowing (fewer scopes, an earlier expiry) needs
    nothing more; widening (more scopes, a later expiry or none) asks for the password."""
    key = key_or_404(home, public_id)
    home.must_manage()
    if key.revoked_at is not None:  # nothing to edit: say so on the list instead of a dead form
        flash(f"“{key.label}” is revoked: it can no longer be edited.", "error")
        return redirect(home.url("key_page", public_id=public_id), 303)
    form = EditKeyForm(obj=None if request.method == "POST" else key)
    form.scopes.choices = _scope_choices(home, key.scopes)
    form.services.choices = _service_choices()
    form.expiry.choices = expiry_choices(clock.now(), home.max_days, key.expires_at)
    if request.method == "GET":
        form.scopes.data = key.scopes
        form.expiry.data = KEEP_EXPIRY
        form.allowed_ips.data = "\n".join(key.allowed_ips or [])
        named = (key.restricted_to or {}).get("services")
        form.where.data, form.services.data = ("only", named) if named else ("all", [])
        fill(form, key.limits)
    if form.validate_on_submit():
        try:
            if not form.scopes.data:
                raise service.InvalidInput("Tick at least one scope: a key without scopes "
                                           "could do nothing; revoke it instead.", "scopes")
            expires_at = _edited_expiry(form, home)
            ranges = key_addresses.clean_allowed_ips(address_list(form.allowed_ips.data))
            chosen = form.chosen_services()
            limits = terms_from(form, key.limits)
            where = {} if chosen == ((key.restricted_to or {}).get("services") or None) \
                else {"services": chosen}
            widen = (not service.is_narrowing(key.scopes, form.scopes.data)
                     or service.extends_life(key, expires_at) or key_addresses.widens(key, ranges)
                     or (where and restrictions.widens_services(home.person, key.restricted_to,
                                                                 chosen))
                     or service.key_limits.would_raise(key, **limits))
            if widen and (response := reauthenticate()) is not None:
                return response  # asks for the password, then posts back here
            home.update(public_id, label=form.label.data,
                        description=form.description.data or "", scopes=form.scopes.data,
                        expires_at=expires_at, allowed_ips=ranges or [], may_widen=True,
                        may_raise=True, **where, **limits)
        except service.ServiceError as error:
            db.session.rollback()
            if isinstance(error, NOT_THEIRS):
                raise  # not theirs to change: the error page
            show_refusal(form, error)
        else:
            flash(f"Saved changes to “{form.label.data}”.", "success")
            return redirect(home.url("key_page", public_id=public_id))
    return render_template("settings/edit_key.html", home=home, form=form, key=key,
                           now=clock.now(), max_days=home.max_days,
                           scope_descriptions=scope_descriptions(home),
                           scope_services=scope_services()), (
        400 if form.errors or form.form_errors else 200)


def key_page(home: KeyHome, key, new_value: str | None = None):
    no_store()  # the answer to a roll shows the new value
    now = clock.now()
    used = usage.key_usage(key, now.date(), USAGE_DAYS)
    return render_template(
        "settings/key.html", home=home, key=key, status=key.status(now), now=now,
        usage=used, chart=usage_chart(used), outcome_words=outcome_words,
        events=[(event, service.describe(event), service.performed_by(event))
                for event in home.events(key.public_id)],
        scope_descriptions={s: scopes.describe(s) for s in key.scopes},
        rate_words=rate_words(key.limits), usage_words=usage_words(key.limits, now),
        exceeds_policy=accounts.exceeds_policy(key), action_form=ActionForm(),
        new_value=new_value, new_key=key if new_value else None,
        shown_before=None if new_value else _shown_before(home),
    )


def _not_rollable(home: KeyHome, key):
    flash(f"“{key.label}” is {key.status()} and cannot be rolled; create a new key instead.",
          "error")
    return redirect(home.url("key_page", public_id=key.public_id), 303)


def roll_step(home: KeyHome, public_id: str):
    """Rolling asks first: how long the old value should keep working."""
    key = key_or_404(home, public_id)
    home.must_manage()
    if key.status() != "active":
        return _not_rollable(home, key)
    return render_template("settings/roll_key.html", home=home, key=key,
                           form=RollKeyForm(formdata=None))


def roll(home: KeyHome, public_id: str):
    """The roll form posted (the route asked for the password first)."""
    key = key_or_404(home, public_id)
    form = RollKeyForm()
    if not form.validate_on_submit():
        return render_template("settings/roll_key.html", home=home, key=key, form=form), 400
    back_to = home.url("key_page", public_id=public_id)
    try:
        submissions.claim(home.person, form.once.data)
        key, value = home.roll(public_id, grace_period_seconds=int(form.grace.data))
    except submissions.AlreadySubmitted as refusal:
        return _already_done(refusal, "rolled", back_to)
    except service.ServiceError as error:
        db.session.rollback()  # the form's token too
        if isinstance(error, service.KeyNotLive):
            return _not_rollable(home, key_or_404(home, public_id))
        if isinstance(error, NOT_THEIRS):
            raise  # not theirs to roll: the error page
        flash(error.detail, "error")
        return redirect(back_to, 303)
    # The value is rendered into this one response and never stored, flashed or redirected.
    return key_page(home, key, new_value=value)


def revoke(home: KeyHome, public_id: str):
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        key = home.revoke(public_id)
    except service.KeyNotFound:
        abort(404)
    flash(f"Revoked “{key.label}” ({key.mask}). It no longer works.", "success")
    return redirect(home.url("api_keys"))


def key_or_404(home: KeyHome, public_id: str):
    try:
        return home.get(public_id)
    except service.KeyNotFound:
        abort(404)
