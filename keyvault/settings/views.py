"""The account-settings pages: API keys, the security log, mail preferences, and deleting the
account (two-factor authentication: settings/two_factor.py, on this blueprint). The key pages'
handlers are key_pages', shared with a service account's keys (settings/service_accounts.py)."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user, login_required

from ..http.browser import sudo_required
from . import key_pages
from .key_pages import KeyHome

bp = Blueprint("settings", __name__)


@bp.before_request
@login_required
def require_login():
    """Every settings page is for a logged-in person."""


def _mine() -> KeyHome:
    """The signed-in person's own keys."""
    return KeyHome(current_user._get_current_object())


def _list(**what):
    return key_pages.list_page(_mine(), **what)


@bp.get("/api-keys")
def api_keys():
    return _list()


@bp.post("/api-keys")
@sudo_required
def create_key():
    return key_pages.create(_mine(), _list)


@bp.route("/api-keys/<public_id>/edit", methods=["GET", "POST"])
def edit_key(public_id: str):
    return key_pages.edit(_mine(), public_id)


@bp.get("/api-keys/<public_id>")
def key_page(public_id: str):
    home = _mine()
    return key_pages.key_page(home, key_pages.key_or_404(home, public_id))


@bp.get("/api-keys/<public_id>/roll")
def roll_step(public_id: str):
    return key_pages.roll_step(_mine(), public_id)


@bp.post("/api-keys/<public_id>/roll")
@sudo_required
def roll_key(public_id: str):
    return key_pages.roll(_mine(), public_id)


@bp.post("/api-keys/<public_id>/revoke")
def revoke_key(public_id: str):
    return key_pages.revoke(_mine(), public_id)
