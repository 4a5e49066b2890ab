"""Confirming that an account's address is its owner's: a signed link by mail, valid 24 hours,
that works once.

With KEYVAULT_REQUIRE_EMAIL_CONFIRMATION on (the default in production) an account whose
address is not confirmed can neither log in nor make keys. The link carries the user id, its
expiry and a fingerprint of the password hash, signed with SECRET_KEY; nothing about it is
stored. It works once because confirming sets `email_confirmed_at`, which a second use finds
set; a password change (a reset) stops every link sent before. Using it also takes the password
chosen at sign-up (service.signups.confirm_email), so a stranger who signed up with someone
else's address gains nothing when its owner clicks the link.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from .. import clock
from ..extensions import db
from ..models import User
from . import mail
from .errors import ConfirmLinkInvalid

CONFIRM_VALID = timedelta(hours=24)
ALTERED = ("This confirmation link is not valid: it may have been cut short or altered. Log in "
           "with your email and password to be sent a new one.")
EXPIRED = ("This confirmation link has expired: links work for 24 hours. Log in with your email "
           "and password to be sent a new one.")
USED = ("This confirmation link was already used, or the account's password changed since it "
        "was sent. Log in with your email and password.")


def required(user: User) -> bool:
    """True when this account must confirm its address before logging in or making keys."""
    return (current_app.config["KEYVAULT_REQUIRE_EMAIL_CONFIRMATION"]
            and user.email_confirmed_at is None)


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="keyvault.confirm-email")


def _fingerprint(password_hash: str) -> str:
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, f"confirm\n{password_hash}".encode(), hashlib.sha256).hexdigest()[:24]


def make_token(user: User) -> str:
    expires = int((clock.now() + CONFIRM_VALID).timestamp())
    return _signer().dumps([user.id, expires, _fingerprint(user.password_hash)])


def queue_link(user: User) -> None:
    """Add the confirmation mail to the current transaction; the caller commits."""
    mail.queue(user.email, "confirm_email", hours=int(CONFIRM_VALID.total_seconds() // 3600),
               confirm_url=mail.link("auth.confirm_email", token=make_token(user)))


def render_link(address: str) -> None:
    """Sign a token and render a confirmation mail that goes nowhere: a taken address costs
    the work a new one does, so the answer's timing tells nothing (service.signups)."""
    expires = int((clock.now() + CONFIRM_VALID).timestamp())
    token = _signer().dumps([0, expires, _fingerprint("")])
    mail.render("confirm_email", account=address, hours=24,
                confirm_url=mail.link("auth.confirm_email", token=token))


def user_for_token(token: str) -> User:
    """The account a link confirms; ConfirmLinkInvalid (in words) when it cannot be used."""
    try:
        user_id, expires, fingerprint = _signer().loads(token or "")
        user_id, expires, fingerprint = int(user_id), int(expires), str(fingerprint)
    except (BadSignature, TypeError, ValueError):
        raise ConfirmLinkInvalid(ALTERED) from None
    if clock.now().timestamp() >= expires:
        raise ConfirmLinkInvalid(EXPIRED)
    user = db.session.get(User, user_id)
    if user is None or not user.is_active or user.email_confirmed_at is not None \
            or not hmac.compare_digest(fingerprint, _fingerprint(user.password_hash)):
        raise ConfirmLinkInvalid(USED)
    return user
