"""Password reset by e-mail (GitHub's "Forgot password?"): a signed link, valid 30 minutes,
that works once.

The link carries the user id, its expiry and a fingerprint of the password hash and session
epoch, signed with SECRET_KEY: using it changes both, and so does any other password change or
"log out everywhere", so every link sent before stops working. Nothing about it is stored.
Asking for a link answers the same, with about the same work, whether or not the address has an
account; a deactivated account gets no mail.

How many links may be asked for (count_reset_ask), so that nobody can spend the owner's links:
- a browser that has logged in to the account before (its signed device cookie) has a count of
  its own, KEYVAULT_RATELIMIT_RESET (5 an hour), that nothing done elsewhere touches;
- any other ask counts for the email address from its client address (the same 5 an hour per
  client), and for the email address from all such clients together, KEYVAULT_RATELIMIT_RESET_TOTAL
  (10 an hour): strangers, however many addresses they use, mail the owner at most that often.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, update

from .. import clock, passwords
from ..extensions import db
from ..models import User
from ..ratelimit import Outcome, limiter
from . import mail
from .accounts import _hasher, user_by_email
from .errors import ResetLinkInvalid
from .events import Origin, record
from .guessing import Device
from .validation import clean_password

RESET_VALID = timedelta(minutes=30)
ALTERED = "This reset link is not valid: it may have been cut short or altered. Ask for a new one."
EXPIRED = "This reset link has expired: links work for 30 minutes. Ask for a new one."
USED = ("This reset link was already used, or your password changed since it was sent. "
        "Ask for a new one.")


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="keyvault.password-reset")


def _fingerprint(password_hash: str, session_epoch: int) -> str:
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, f"{password_hash}\n{session_epoch}".encode(),
                    hashlib.sha256).hexdigest()[:24]


def make_token(user: User) -> str:
    expires = int((clock.now() + RESET_VALID).timestamp())
    return _signer().dumps([user.id, expires, _fingerprint(user.password_hash,
                                                           user.session_epoch)])


def _read(token: str) -> tuple[int, int, str]:
    try:
        user_id, expires, fingerprint = _signer().loads(token or "")
        return int(user_id), int(expires), str(fingerprint)
    except (BadSignature, TypeError, ValueError):
        raise ResetLinkInvalid(ALTERED) from None


def user_for_token(token: str) -> User:
    """The account a link resets; ResetLinkInvalid (in words) when it cannot be used."""
    user_id, expires, fingerprint = _read(token)
    if clock.now().timestamp() >= expires:
        raise ResetLinkInvalid(EXPIRED)
    user = db.session.get(User, user_id)
    if user is None or not user.is_active or not hmac.compare_digest(
            fingerprint, _fingerprint(user.password_hash, user.session_epoch)):
        raise ResetLinkInvalid(USED)
    return user


def count_reset_ask(email: str, origin: Origin, device: Device | None) -> Outcome | None:
    """Count one ask for a link to the normalised `email` (the rule in the module docstring):
    the count that refuses it, else the last one made; None when no limit is set."""
    counts = limiter()
    if device is not None:
        user = user_by_email(email)
        if user is not None and device.user_id == user.id:
            return counts.hit("reset", f"browser/{user.id}/{device.id}")
    here = counts.hit("reset", f"{email}/{origin.ip_address or 'unknown'}")
    if here is not None and not here.allowed:
        return here
    return counts.hit("reset_total", email) or here


def request_reset(email: str, origin: Origin) -> None:
    """Mail a reset link to the account with this email, if there is an active one."""
    user = user_by_email(email)
    if user is None or not user.is_active:
        # About the work done for an account (a mail rendered, a row written, a commit), so the
        # answer's timing tells nothing; logged as a failed login for an unknown email is.
        mail.render("password_reset", account=email, minutes=30,
                    reset_url=mail.link("auth.reset_password", token=_signer().dumps([0, 0, ""])))
        record("password.reset_requested", user.id if user is not None else None, origin,
               reason="inactive" if user is not None else "unknown_email")
        db.session.commit()
        return
    mail.queue(user.email, "password_reset", minutes=int(RESET_VALID.total_seconds() // 60),
               reset_url=mail.link("auth.reset_password", token=make_token(user)))
    record("password.reset_requested", user.id, origin)
    db.session.commit()


def reset_password(token: str, new_password: str, origin: Origin) -> User:
    """Set the password a link was sent for; every session ends and the link stops working.
    The change is conditional on nothing having changed since the check, so two uses of one
    link cannot both succeed."""
    user = user_for_token(token)
    password = clean_password(new_password, "password")
    new_hash = passwords.hash_password(_hasher(), password)
    changed = db.session.execute(
        update(User).where(User.id == user.id, User.password_hash == user.password_hash,
                           User.session_epoch == user.session_epoch)
        # the link came by mail, so the address is its owner's (service.confirmations)
        .values(password_hash=new_hash, session_epoch=User.session_epoch + 1,
                email_confirmed_at=func.coalesce(User.email_confirmed_at, clock.now()))
        .execution_options(synchronize_session=False))
    if changed.rowcount != 1:
        db.session.rollback()
        raise ResetLinkInvalid(USED)
    record("password.reset", user.id, origin)
    db.session.commit()
    db.session.refresh(user)
    return user
