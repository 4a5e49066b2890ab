"""A service account's pages: its keys, exactly as a person's own key pages work (the same
handlers and templates, settings/key_pages.py, with the service account as their KeyHome), and
deleting it. Members see; owners and admins change (service.organizations.authorize, checked
before any form is read or any password asked, and again by the service as it acts)."""

from __future__ import annotations

from flask import abort, flash, redirect, url_for
from flask_login import current_user

from .. import service
from ..http.browser import reauthenticate
from ..http.context import origin
from ..http.forms import ActionForm
from . import key_pages
from .key_home import KeyHome
from .views import bp

accounts = service.service_accounts
BASE = "/organizations/<org_id>/service-accounts/<sa_id>"
KEY = BASE + "/keys/<public_id>"
MANAGE = "manage_service_accounts"


def _home(org_id: str, sa_id: str, action: str = "view") -> KeyHome:
    """The service account's keys as the signed-in person may use them: 404 for one outside
    their organisations, 403 when `action` is past their role."""
    person = current_user._get_current_object()
    access, account = accounts.get_service_account(person, org_id, sa_id, action)
    may_manage = (access.role in service.organizations.RIGHTS[MANAGE]
                  and access.organization.is_active)
    return KeyHome(person, account, org_id, may_manage, "sa_",
                   {"org_id": org_id, "sa_id": sa_id})


def _list(home: KeyHome, **what):
    return key_pages.list_page(home, **what)


@bp.get(BASE)
def sa_api_keys(org_id: str, sa_id: str):
    return _list(_home(org_id, sa_id))


@bp.post(BASE)
def sa_create_key(org_id: str, sa_id: str):
    home = _home(org_id, sa_id, MANAGE)  # before the password prompt: a member hears 403
    if (response := reauthenticate()) is not None:
        return response  # asks for the password, then posts back here
    return key_pages.create(home, lambda **what: _list(home, **what))


@bp.get(KEY)
def sa_key_page(org_id: str, sa_id: str, public_id: str):
    home = _home(org_id, sa_id)
    return key_pages.key_page(home, key_pages.key_or_404(home, public_id))


@bp.route(KEY + "/edit", methods=["GET", "POST"])
def sa_edit_key(org_id: str, sa_id: str, public_id: str):
    return key_pages.edit(_home(org_id, sa_id, MANAGE), public_id)


@bp.get(KEY + "/roll")
def sa_roll_step(org_id: str, sa_id: str, public_id: str):
    return key_pages.roll_step(_home(org_id, sa_id, MANAGE), public_id)


@bp.post(KEY + "/roll")
def sa_roll_key(org_id: str, sa_id: str, public_id: str):
    home = _home(org_id, sa_id, MANAGE)
    if (response := reauthenticate()) is not None:
        return response
    return key_pages.roll(home, public_id)


@bp.post(KEY + "/revoke")
def sa_revoke_key(org_id: str, sa_id: str, public_id: str):
    return key_pages.revoke(_home(org_id, sa_id, MANAGE), public_id)


@bp.post(BASE + "/delete")
def sa_delete(org_id: str, sa_id: str):
    """Delete the service account and its keys: they answer `not_found` from then on."""
    home = _home(org_id, sa_id, MANAGE)
    if not ActionForm().validate_on_submit():
        abort(400)
    name = home.account.name
    accounts.delete_service_account(home.person, org_id, sa_id, origin())
    flash(f"Deleted the service account “{name}”: its keys no longer work.", "success")
    return redirect(url_for(".organization", org_id=org_id, _anchor="service-accounts"), 303)
