"""Revoking several keys at once from the keys page: the ticked keys, one confirmation page
naming them, then one form that acts once."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import service
from ..extensions import db
from ..http.browser import no_store
from ..http.context import origin
from ..http.forms import RevokeKeysForm
from ..service import submissions
from .views import bp


def _named(public_ids: list[str]):
    try:
        return service.keys_named(current_user, public_ids)
    except service.KeyNotFound:
        abort(404)


@bp.get("/api-keys/revoke")
def revoke_keys_step():
    """The confirmation: the ticked keys (`?key=<id>&key=<id>`), each by label and mask."""
    try:
        keys = _named(request.args.getlist("key"))
    except service.InvalidInput as refusal:  # none ticked, or too many
        flash(refusal.detail, "error")
        return redirect(url_for(".api_keys"), 303)
    no_store()  # Back after revoking asks again, and hears they are revoked
    form = RevokeKeysForm(formdata=None)
    form.keys.data = [key.public_id for key in keys]
    live = [key for key in keys if key.revoked_at is None]
    return render_template("settings/revoke_keys.html", keys=keys, live=live, form=form)


@bp.post("/api-keys/revoke")
def revoke_keys():
    """Revoke them all in one transaction; a second submission of the same page acts no more."""
    form = RevokeKeysForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        submissions.claim(current_user, form.once.data)
        keys = service.revoke_keys(current_user, form.keys.data, origin())
    except submissions.AlreadySubmitted as refusal:
        flash("This form was already submitted: those keys were revoked then." if refusal.used
              else refusal.detail, "error")
        return redirect(url_for(".api_keys"), 303)
    except service.KeyNotFound:
        db.session.rollback()
        abort(404)
    names = ", ".join(f"“{key.label}” ({key.mask})" for key in keys)
    flash(f"Revoked {len(keys)} key{'s' if len(keys) != 1 else ''}: {names}. "
          f"{'They no longer work' if len(keys) != 1 else 'It no longer works'}.", "success")
    return redirect(url_for(".api_keys"), 303)
