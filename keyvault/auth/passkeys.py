"""Passkeys in the browser: log in with one, and add, rename and remove them (the account page).

The JSON endpoints are called by static/js/passkeys.js, which sends the page's CSRF token in the
X-CSRFToken header; they answer refusals as problem+json for the script to show.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from ..http.browser import (
    NO_BASE_URL,
    in_sudo_mode,
    no_store,
    passkeys_unavailable,
    relying_party,
    retry_after,
    safe_next,
    sudo_required,
)
from ..http.context import origin
from ..http.forms import ActionForm, PasskeyNameForm
from ..http.problems import from_service_error, problem, respond
from ..service import ServiceError, passkeys, second_factor
from .views import HOME, _finish_login, _pending_login

bp = Blueprint("passkeys", __name__)

ACCOUNT = "settings.account"


def _refusal(error: ServiceError):
    return respond(from_service_error(error))


def _unavailable():
    """404 in words: which address to open instead, or what the operator must set."""
    return respond(problem(404, "Passkeys unavailable", passkeys_unavailable() or NO_BASE_URL))


def _json_body() -> dict | None:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else None


def _malformed():
    return respond(problem(400, "Malformed JSON",
                           "Send the passkey's answer as the JSON object the page's script "
                           "builds."))


def _options(options_json: str):
    """WebAuthn options as the browser's script expects them (never cached: one challenge each)."""
    no_store()
    return current_app.response_class(options_json, mimetype="application/json")


def _confirm_first():
    return respond(problem(403, "Confirm your password",
                           "Confirm your password again before adding a passkey: reload the "
                           "page."))


# ---------------------------------------------------------------- logging in


@bp.post("/login/passkey/options")
def login_options():
    """A fresh challenge for "Sign in with a passkey"."""
    rp = relying_party()
    if rp is None:
        return _unavailable()
    return _options(passkeys.authentication_options(rp))


@bp.post("/login/passkey")
def login():
    """The passkey's answer: right, and the person is logged in as after a password."""
    rp, body = relying_party(), _json_body()
    if rp is None:
        return _unavailable()
    if body is None:
        return _malformed()
    try:
        user = passkeys.authenticate(body.get("credential"), rp, origin())
    except ServiceError as error:
        refusal = _refusal(error)
        if error.status == 429:  # the address has been guessing (service.guessing)
            refusal.headers.update(retry_after())
        return refusal
    return _finish_login(user, safe_next(body.get("next"), url_for(HOME)),
                         answer=lambda target: jsonify(redirect=target))


def _login_timed_out():
    return respond(problem(401, "Log in again",
                           "Your login timed out or was not started: log in with your "
                           "password again."))


@bp.post("/login/two-factor/passkey/options")
def second_factor_options():
    """A challenge for "Use a passkey" on the login's second step: the pending account's
    passkeys only."""
    rp = relying_party()
    if rp is None:
        return _unavailable()
    user, _ = _pending_login()
    if user is None or "passkey" not in second_factor.methods(user):
        return _login_timed_out()
    return _options(passkeys.authentication_options(rp, expected_user_id=user.id))


@bp.post("/login/two-factor/passkey")
def second_factor_login():
    """A passkey in place of the app's code, after a right password."""
    rp, body = relying_party(), _json_body()
    if rp is None:
        return _unavailable()
    if body is None:
        return _malformed()
    user, target = _pending_login()
    if user is None or "passkey" not in second_factor.methods(user):
        return _login_timed_out()
    try:
        passkeys.authenticate(body.get("credential"), rp, origin(), expected_user_id=user.id)
    except ServiceError as error:
        return _refusal(error)
    return _finish_login(user, target, answer=lambda where: jsonify(redirect=where))


# ---------------------------------------------------------------- the account's passkeys


@bp.get("/settings/passkeys/new")
@login_required
@sudo_required
def new():
    """Name the passkey, then let the browser make it (passkeys.js)."""
    no_store()
    return render_template("settings/new_passkey.html", form=PasskeyNameForm(formdata=None),
                           available=relying_party() is not None,
                           unavailable=passkeys_unavailable() or NO_BASE_URL)


@bp.post("/settings/passkeys/options")
@login_required
def registration_options():
    rp = relying_party()
    if rp is None:
        return _unavailable()
    if not in_sudo_mode():
        return _confirm_first()
    return _options(passkeys.registration_options(current_user, rp))


@bp.post("/settings/passkeys")
@login_required
def register():
    rp, body = relying_party(), _json_body()
    if rp is None:
        return _unavailable()
    if body is None:
        return _malformed()
    if not in_sudo_mode():
        return _confirm_first()
    try:
        passkey = passkeys.register_passkey(current_user, body.get("name"),
                                            body.get("credential"), rp, origin())
    except ServiceError as error:
        return _refusal(error)
    flash(f"Added the passkey “{passkey.name}”. You can log in with it instead of your "
          "password.", "success")
    return jsonify(redirect=url_for(ACCOUNT))


@bp.post("/settings/passkeys/<int:passkey_id>/rename")
@login_required
def rename(passkey_id: int):
    form = PasskeyNameForm()
    if not form.validate_on_submit():
        flash(" ".join(form.name.errors) or "Give the passkey a name.", "error")
        return redirect(url_for(ACCOUNT), 303)
    try:
        passkey = passkeys.rename_passkey(current_user, passkey_id, form.name.data, origin())
    except passkeys.PasskeyNotFound:
        abort(404)
    flash(f"Renamed the passkey to “{passkey.name}”.", "success")
    return redirect(url_for(ACCOUNT), 303)


@bp.post("/settings/passkeys/<int:passkey_id>/remove")
@login_required
@sudo_required
def remove(passkey_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        passkey = passkeys.remove_passkey(current_user, passkey_id, origin())
    except passkeys.PasskeyNotFound:
        abort(404)
    flash(f"Removed the passkey “{passkey.name}”. It no longer logs in.", "success")
    return redirect(url_for(ACCOUNT), 303)
