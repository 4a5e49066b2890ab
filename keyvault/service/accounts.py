"""People's accounts: sign-up, login and its guessing limit, sudo checks, sessions, deletion."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .. import clock, passwords
from ..extensions import db
from ..models import ApiKey, FormSubmission, SecurityEvent, User
from .errors import EmailTaken, TooManyFailures, UserNotFound
from .events import Origin, record
from .validation import clean_email, clean_password, has_control_characters, is_row_id, normalise_email

FAILURE_WINDOW = timedelta(minutes=15)
_FAILURES = ("login.failed", "sudo.failed")


def _hasher():
    hasher = current_app.extensions.get("keyvault.hasher")
    if hasher is None:
        hasher = passwords.make_hasher(**current_app.config["KEYVAULT_ARGON2"])
        current_app.extensions["keyvault.hasher"] = hasher
        current_app.extensions["keyvault.dummy_hash"] = passwords.hash_password(hasher, "x" * 16)
    return hasher


def user_by_email(email: str) -> User | None:
    """The account for an email; None for one no account can have (PostgreSQL refuses NUL)."""
    email = normalise_email(email)
    if has_control_characters(email):
        return None
    return db.session.scalar(select(User).where(User.email == email))


def sign_up(email: str, password: str, origin: Origin, *, is_admin: bool = False) -> User:
    email = clean_email(email)
    password = clean_password(password)
    if user_by_email(email) is not None:
        raise EmailTaken("An account with this email already exists.", "email")
    user = User(
        email=email,
        password_hash=passwords.hash_password(_hasher(), password),
        is_admin=is_admin,
        created_at=clock.now(),
    )
    db.session.add(user)
    try:
        db.session.flush()
        record("user.created", user.id, origin)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise EmailTaken("An account with this email already exists.", "email") from None
    return user


def _refuse_if_guessing(origin: Origin, user_id: int | None) -> None:
    """TooManyFailures when this address has failed KEYVAULT_LOGIN_MAX_FAILURES password checks
    (logins and sudo prompts) in the last 15 minutes; the refusal is logged too.

    Counted per address from the security log, so every instance behind a load balancer sees
    the same count, and an address is refused whichever account it tries next — the answer
    does not tell whether an account exists.
    """
    allowed = current_app.config["KEYVAULT_LOGIN_MAX_FAILURES"]
    if not allowed or not origin.ip_address:
        return

    def recent(*events: str):
        return select(func.count(SecurityEvent.id)).where(
            SecurityEvent.ip_address == origin.ip_address[:45],
            SecurityEvent.event.in_(events),
            SecurityEvent.created_at > clock.now() - FAILURE_WINDOW,
        )

    if db.session.scalar(recent(*_FAILURES)) >= allowed:
        # Logged once per window: refusals cost no argon2, so one row each would let an
        # address fill the security log as fast as it can send requests.
        if not db.session.scalar(recent("login.throttled")):
            record("login.throttled", user_id, origin)
            db.session.commit()
        minutes = int(FAILURE_WINDOW.total_seconds() // 60)
        raise TooManyFailures(
            f"Too many failed password attempts from your address: try again in {minutes} "
            "minutes.")


def log_in(email: str, password: str, origin: Origin) -> User | None:
    """The user when email and password match an active account, else None; logs either way.

    An unknown email costs one argon2 verification too, so timing does not reveal accounts.
    TooManyFailures when this address has been guessing (see _refuse_if_guessing).
    """
    _refuse_if_guessing(origin, None)
    hasher = _hasher()
    user = user_by_email(email)
    if user is None:
        passwords.verify_password(hasher, current_app.extensions["keyvault.dummy_hash"], password)
        record("login.failed", None, origin, reason="unknown_email")
        db.session.commit()
        return None
    if not passwords.verify_password(hasher, user.password_hash, password):
        record("login.failed", user.id, origin, reason="wrong_password")
        db.session.commit()
        return None
    if not user.is_active:
        record("login.failed", user.id, origin, reason="inactive")
        db.session.commit()
        return None
    if passwords.needs_rehash(hasher, user.password_hash):
        user.password_hash = passwords.hash_password(hasher, password)
    user.last_login_at = clock.now()
    record("login.succeeded", user.id, origin)
    db.session.commit()
    return user


def end_sessions(user: User, origin: Origin) -> None:
    """Log the user out of every browser session (their session cookies stop working)."""
    user.session_epoch += 1
    record("logout", user.id, origin)
    db.session.commit()


def check_password(user: User, password: str, origin: Origin) -> bool:
    """Re-authentication for sensitive actions (sudo mode); a wrong password is logged, as a
    failed login is: someone holding the session may be guessing, and is stopped like one."""
    _refuse_if_guessing(origin, user.id)
    if passwords.verify_password(_hasher(), user.password_hash, password):
        return True
    record("sudo.failed", user.id, origin)
    db.session.commit()
    return False


def get_user(user_id: int) -> User | None:
    return db.session.get(User, user_id) if is_row_id(user_id) else None


def find_user(email: str) -> User:
    user = user_by_email(email)
    if user is None:
        raise UserNotFound(f"No user with the email {email!r}.")
    return user


def delete_account(user: User, origin: Origin) -> None:
    """Delete the account, its keys and its log: every key stops verifying at once."""
    for table in (SecurityEvent.__table__, FormSubmission.__table__, ApiKey.__table__):
        db.session.execute(table.delete().where(table.c.user_id == user.id))
    db.session.delete(user)
    db.session.commit()
