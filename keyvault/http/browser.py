"""Helpers shared by the browser blueprints: safe redirects, sudo mode, template filters."""

from __future__ import annotations

import ipaddress
import re
from functools import wraps
from urllib.parse import urlsplit

from flask import current_app, flash, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user
from markupsafe import Markup, escape

from .. import addresses, clock, service
from ..service import second_factor
from ..service.guessing import Device
from ..service.passkeys import RelyingParty
from ..service.restrictions import where_in_words
from .context import origin

AUTH_AT = "auth_at"

def safe_next(target: str | None, default: str) -> str:
    """Follow `next` only to a local path: no scheme, no host, no `//` or backslash tricks."""
    if not target or not isinstance(target, str):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(c) < 32 for c in target):
        return default
    return target


DEVICE_COOKIE = "kv_device"
DEVICE_COOKIE_DAYS = 400  # the longest lifetime browsers keep


def _device_signer():
    from itsdangerous import URLSafeSerializer

    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="keyvault.device")


def known_device():
    """The browser's signed device cookie (service.guessing.Device), set by a login on it; None
    without one or with one that does not verify."""
    from itsdangerous import BadSignature

    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return None
    try:
        user_id, device_id = _device_signer().loads(raw)
        return Device(int(user_id), str(device_id)[:32])
    except (BadSignature, TypeError, ValueError):
        return None


def remember_device(response, user_id: int):
    """After a login: mark this browser as one the person uses, so that someone guessing their
    password elsewhere cannot lock them out of it (service.guessing)."""
    import secrets

    device = known_device()
    device_id = device.id if device is not None and device.user_id == user_id \
        else secrets.token_hex(16)
    response.set_cookie(DEVICE_COOKIE, _device_signer().dumps([user_id, device_id]),
                        max_age=DEVICE_COOKIE_DAYS * 86400, httponly=True, samesite="Lax",
                        secure=current_app.config["SESSION_COOKIE_SECURE"], path="/")
    return response




def relying_party():
    """Who asks for passkeys (service.passkeys.RelyingParty): the origin of KEYVAULT_BASE_URL and
    KEYVAULT_WEBAUTHN_RP_ID (by default that URL's host). Without a base URL, development uses
    the host this request came to (http://localhost works: browsers count it as secure), but
    not an IP address (passkeys_unavailable says why); production has no passkeys then (None),
    since a Host header proves nothing."""
    base = current_app.config["KEYVAULT_BASE_URL"]
    if base:
        parts = urlsplit(base)
        return RelyingParty(current_app.config["KEYVAULT_WEBAUTHN_RP_ID"],
                            f"{parts.scheme}://{parts.netloc}")
    if passkeys_unavailable() is not None:
        return None
    host = urlsplit(request.host_url)
    return RelyingParty(current_app.config["KEYVAULT_WEBAUTHN_RP_ID"] or host.hostname,
                        f"{host.scheme}://{host.netloc}")


NO_BASE_URL = "Passkeys are not set up on this server: its operator must set KEYVAULT_BASE_URL."


def passkeys_unavailable() -> str | None:
    """Why passkeys cannot work at the address this page was opened at, naming the address to
    use; None when they can. Browsers refuse a passkey whose domain is an IP address, so
    `make run`'s http://127.0.0.1:5000/ cannot have them while http://localhost:5000/ can."""
    if current_app.config["KEYVAULT_BASE_URL"]:
        return None
    if current_app.config["KEYVAULT_ENV"] == "production":
        return NO_BASE_URL
    host = urlsplit(request.host_url)
    try:
        address = ipaddress.ip_address(host.hostname or "")
        port = host.port
    except ValueError:
        return None  # a name: passkeys work (http://localhost counts as secure)
    if address.is_loopback:
        use = f"http://localhost{f':{port}' if port else ''}/"
        return (f"Passkeys need a domain name, and browsers refuse them at an IP address such as "
                f"{address}: open KeyVault at {use} instead.")
    return (f"Passkeys need a domain name, and browsers refuse them at an IP address such as "
            f"{address}: open KeyVault by its domain name (KEYVAULT_BASE_URL).")


def mark_authenticated() -> None:
    """Remember when the person last proved who they are (login or password confirmation)."""
    session[AUTH_AT] = int(clock.now().timestamp())


def in_sudo_mode() -> bool:
    auth_at = session.get(AUTH_AT)
    window = current_app.config["KEYVAULT_SUDO_MINUTES"] * 60
    return isinstance(auth_at, int) and clock.now().timestamp() - auth_at < window


def reauthenticate():
    """None when the person may go on; else the response that asks for their password first.

    A POST without a recent login is answered with a password prompt that posts the same fields
    back to the same action, so the person's action completes once they confirm.
    """
    if in_sudo_mode():
        return None
    if request.method != "POST":
        return redirect(url_for("auth.confirm", next=request.full_path.rstrip("?")))
    password = request.form.get("sudo_password")
    status, error = 200, None
    if password is not None:
        status, error = 400, "That password is not right."
        try:  # an empty password is checked too: a throttled address hears 429 either way
            if service.check_password(current_user, password, origin(), known_device()):
                mark_authenticated()
                return None
        except service.TooManyFailures as refusal:
            status, error = refusal.status, refusal.detail
    fields = [(k, v) for k, v in request.form.items(multi=True)
              if k not in ("csrf_token", "sudo_password")]
    page = render_template("auth/confirm.html", replay_action=request.path,
                           replay_fields=fields, error=error)
    return page, status, retry_after() if status == 429 else {}


def retry_after() -> dict:
    """The header of a 429 for an address that has been guessing passwords."""
    return {"Retry-After": str(int(service.FAILURE_WINDOW.total_seconds()))}


def enrolment_required() -> bool:
    """KEYVAULT_REQUIRE_2FA_FOR_ADMINS: the person logged in is an administrator without a
    second factor, who may only set one up (settings.two_factor_setup) until they have."""
    if not current_app.config["KEYVAULT_REQUIRE_2FA_FOR_ADMINS"]:
        return False
    if not current_user.is_authenticated or not current_user.is_admin:
        return False
    return not second_factor.methods(current_user)


def send_to_enrolment():
    """Where enrolment_required() sends the administrator, with the reason."""
    flash("Administrators must use two-factor authentication: set it up to go on.", "info")
    return redirect(url_for("settings.two_factor_setup"), 303)


def sudo_required(view):
    """Sensitive browser actions (create, roll, widen scopes, delete account) need a recent login."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        response = reauthenticate()
        return response if response is not None else view(*args, **kwargs)

    return wrapper


def no_store() -> None:
    """Mark this response as never to be cached (it may show a key value)."""
    g.no_store = True


def already_submitted(refusal, said: str, back_to: str):
    """A second submission of a form that shows a secret and acts once (reload, Back, double
    click; service.submissions): `said`, or the refusal's own words when the form carried no
    token of ours; the secret was shown once, in the answer to the first, and is not again."""
    flash(said if refusal.used else refusal.detail, "error")
    no_store()
    return redirect(back_to, 303)




BREAK_AFTER = re.compile(r"([.@:_/])")


def breakable(text) -> Markup:
    """Text (escaped) with a line-break opportunity after each `.`, `@`, `:`, `_` and `/`, so a
    long email or scope that must wrap does so between its parts, never mid-word."""
    return Markup(BREAK_AFTER.sub(r"\1<wbr>", str(escape(text))))


def register_filters(app) -> None:
    app.add_template_filter(clock.format_datetime, "datetime")
    app.add_template_filter(clock.relative, "relative")
    app.add_template_filter(breakable, "breakable")
    app.add_template_filter(addresses.describe, "where_from")
    app.add_template_filter(where_in_words, "where")  # a key's restriction: "All services", …


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, for the pages only.

    The API (everything under /api/) authenticates with keys and never reads or writes a session:
    it gets an empty one, and its answers carry no cookie and no `Vary: Cookie` (Flask-Login's
    after-request hook looks into every session). Requests without a session cookie skip the
    signing serializer too.
    """

    def open_session(self, app, request):
        if request.path.startswith("/api/") or "HTTP_COOKIE" not in request.environ or (
                app.config["SESSION_COOKIE_NAME"] not in request.cookies):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app, session, response):
        if request.path.startswith("/api/"):
            return
        if not session and not session.modified:
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)
