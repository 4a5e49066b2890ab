"""People's accounts: sign-up, login and its guessing limit, sudo checks, sessions, deletion."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import func, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from .. import clock, passwords
from ..extensions import db
from ..factor_models import RecoveryCode, TotpCredential
from ..mailbox import mailbox_key
from ..models import (
    ApiKey,
    FormSubmission,
    KeyUsageDay,
    SecurityEvent,
    User,
)
from ..org_models import Membership, Organization
from . import confirmations, guessing, key_changes
from .errors import (
    EmailNotConfirmed,
    EmailTaken,
    InvalidInput,
    LastOwner,
    UserNotFound,
    WrongPassword,
)
from .events import Origin, finish_login, record
from .second_factor import methods
from .validation import clean_email, clean_password, has_control_characters, is_row_id, normalise_email

# Wrong passwords at the login form, at a confirmation prompt, and as the current password when
# changing it all count toward one limit (service.guessing).
FAILURE_WINDOW = guessing.WINDOW


def _hasher():
    hasher = current_app.extensions.get("keyvault.hasher")
    if hasher is None:
        hasher = passwords.make_hasher(**current_app.config["KEYVAULT_ARGON2"])
        current_app.extensions["keyvault.hasher"] = hasher
        current_app.extensions["keyvault.dummy_hash"] = passwords.hash_password(hasher, "x" * 16)
    return hasher


def user_by_email(email: str) -> User | None:
    """The account for an email; None for one no account can have (PostgreSQL refuses NUL).

    Addresses are stored in their normal form (keyvault.mailbox); an account made before that
    form existed is still found by its address as stored then (trimmed, lower-cased), and that
    one wins when both exist: it is exactly what its owner types.
    """
    normal = normalise_email(email)
    literal = (email or "").strip().lower()
    if has_control_characters(normal) or has_control_characters(literal):
        return None
    users = db.session.scalars(select(User).where(User.email.in_({normal, literal}))
                               .order_by(User.id)).all()
    return next((user for user in users if user.email == literal), users[0] if users else None)


EMAIL_TAKEN = "An account with this email already exists."
_MAILBOX_LOCK = 0x6B765F6D  # PostgreSQL advisory lock space for sign-ups: "kv_m"


def _lock_mailbox(key: str) -> None:
    """Hold other sign-ups of this mailbox until the commit, so two look-alike addresses signing
    up at once cannot both find it free.

    Not a unique index: accounts made before mailbox keys existed may share one (they are
    reported, never merged), and a lock works whether or not such doubles exist. PostgreSQL: an
    advisory lock on the key, so sign-ups of other mailboxes do not wait; SQLite: its one write
    lock, taken by a write that changes nothing before the check reads.
    """
    db.session.commit()  # end any read: SQLite refuses to turn an old snapshot into a write
    if db.engine.dialect.name == "postgresql":
        db.session.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:space AS integer), CAST(:key AS integer))"),
            {"space": _MAILBOX_LOCK, "key": int(key[:8], 16) - 2**31})
    else:
        db.session.execute(update(User).where(User.id == 0).values(id=User.id))


def _same_mailbox(email: str, key: str) -> User | None:
    """The account this address belongs to: its own, else the oldest that looks the same."""
    users = db.session.scalars(select(User).where(or_(User.email == email,
                                                      User.mailbox_key == key))
                               .order_by(User.id)).all()
    return next((user for user in users if user.email == email), users[0] if users else None)


def refuse_taken_mailbox(email: str) -> None:
    """EmailTaken, as sign_up would say it, when this address's mailbox already has an account:
    for the command line, which asks for a password only when it can be used. (sign_up checks
    again under its lock: this is no guarantee, only a kindness.)"""
    email = clean_email(email)
    existing = _same_mailbox(email, mailbox_key(email))
    if existing is not None:
        raise EmailTaken(EMAIL_TAKEN, "email", existing=existing.email, existing_id=existing.id)


def sign_up(email: str, password: str, origin: Origin, *, is_admin: bool = False,
            confirmed: bool = False, commit: bool = True) -> User:
    """A new account, unless its mailbox has one: EmailTaken, with the same words whether the
    address is taken or only looks like one that is (its `existing` names that account).
    `confirmed`: its address is known to be its owner's (an operator made it). Without
    `commit` the caller adds to the transaction and commits, the new account or not
    (service.signups)."""
    email = clean_email(email)
    password = clean_password(password)
    key = mailbox_key(email)
    password_hash = passwords.hash_password(_hasher(), password)  # slow: before the lock
    _lock_mailbox(key)
    existing = _same_mailbox(email, key)
    if existing is not None:
        if commit:  # else the caller writes in this transaction either way (service.signups)
            db.session.rollback()
        raise EmailTaken(EMAIL_TAKEN, "email", existing=existing.email, existing_id=existing.id)
    user = User(
        email=email,
        mailbox_key=key,
        password_hash=password_hash,
        is_admin=is_admin,
        created_at=clock.now(),
        email_confirmed_at=clock.now() if confirmed else None,
    )
    db.session.add(user)
    try:
        db.session.flush()
        record("user.created", user.id, origin)
        if commit:
            db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise EmailTaken(EMAIL_TAKEN, "email", existing=email) from None
    return user


def log_in(email: str, password: str, origin: Origin,
           device: guessing.Device | None = None) -> User | None:
    """The user when email and password match an active account, else None; logs either way.
    A user with a second factor (service.second_factor.methods) is not logged in yet: the
    caller asks for the code, and service.second_factor.check_login_code finishes the login.

    An unknown email costs one argon2 verification too, so timing does not reveal accounts.
    EmailNotConfirmed, with a new link mailed, for the right password of an account whose
    address is not confirmed (service.confirmations). TooManyFailures when this address,
    account or browser has been guessing (service.guessing).
    """
    hasher = _hasher()
    user = user_by_email(email)
    attempt = guessing.begin(email, origin, user.id if user is not None else None, device)
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
    if confirmations.required(user):  # the password is right: only its owner hears this
        record("login.failed", user.id, origin, reason="unconfirmed")
        confirmations.queue_link(user)
        db.session.commit()
        raise EmailNotConfirmed(f"Confirm your email address first: we have mailed a new "
                                f"confirmation link to {user.email}.", "email")
    guessing.succeeded(attempt)
    if passwords.needs_rehash(hasher, user.password_hash):
        user.password_hash = passwords.hash_password(hasher, password)
    if not methods(user):  # else the login's second step finishes it
        finish_login(user, origin)
    db.session.commit()
    return user


def end_sessions(user: User, origin: Origin) -> None:
    """Log the user out of every browser session (their session cookies stop working)."""
    user.session_epoch += 1
    record("logout", user.id, origin)
    db.session.commit()


def check_password(user: User, password: str, origin: Origin,
                   device: guessing.Device | None = None, *,
                   failure: str = "sudo.failed") -> bool:
    """Re-authentication for sensitive actions (sudo mode); a wrong password is logged, as a
    failed login is: someone holding the session may be guessing, and is stopped like one."""
    attempt = guessing.begin(user.email, origin, user.id, device)
    if passwords.verify_password(_hasher(), user.password_hash, password):
        guessing.succeeded(attempt)
        db.session.commit()
        return True
    record(failure, user.id, origin)
    db.session.commit()
    return False


def change_password(user: User, current: str, new: str, origin: Origin,
                    device: guessing.Device | None = None) -> None:
    """The person's own change: the current password first (a wrong one counts toward the
    guessing limit, as at the confirmation prompt), then the new one. Every session of the
    user ends; the caller logs the person's own session back in (keyvault.settings)."""
    new = clean_password(new, "new_password")
    if not check_password(user, current, origin, device, failure="password.change_failed"):
        raise WrongPassword("Your current password is not right.", "current_password")
    if current == new:
        raise InvalidInput("Choose a new password that differs from the current one.",
                           "new_password")
    _set_password(user, new, origin)


def set_password(user: User, password: str, origin: Origin) -> None:
    """An operator's reset (the command line): no current password; every session ends."""
    _set_password(user, clean_password(password), origin)


def _set_password(user: User, password: str, origin: Origin) -> None:
    user.password_hash = passwords.hash_password(_hasher(), password)
    user.session_epoch += 1  # every session cookie issued before now stops working
    record("password.changed", user.id, origin)
    db.session.commit()


def set_admin(user: User, is_admin: bool, origin: Origin) -> bool:
    """Grant or revoke administration; False when the user already was (or was not) one."""
    if user.is_admin == is_admin:
        return False
    user.is_admin = is_admin
    record("user.admin_granted" if is_admin else "user.admin_revoked", user.id, origin)
    db.session.commit()
    return True


def get_user(user_id: int) -> User | None:
    return db.session.get(User, user_id) if is_row_id(user_id) else None


def find_user(email: str) -> User:
    user = user_by_email(email)
    if user is None:
        raise UserNotFound(f"There is no account with the email {normalise_email(email)}.")
    return user


def sole_owner_of(user: User) -> list[Organization]:
    """The organisations `user` is the only owner of, by name: deleting the account would leave
    them without one."""
    owners = select(Membership.organization_id).where(Membership.role == "owner").group_by(
        Membership.organization_id).having(func.count(Membership.id) == 1).scalar_subquery()
    return list(db.session.scalars(select(Organization).join(Membership).where(
        Membership.user_id == user.id, Membership.role == "owner",
        Organization.id.in_(owners)).order_by(Organization.name, Organization.id)))


def delete_account(user: User, origin: Origin) -> None:
    """Delete the account, its keys, their use counts and its log: every key stops verifying
    at once. LastOwner, naming them, while it is the last owner of an organisation."""
    if orphaned := sole_owner_of(user):
        names = ", ".join(f"“{organization.name}”" for organization in orphaned)
        raise LastOwner(f"This account is the last owner of {names}: make someone else an "
                        "owner there, or delete the organisation, before deleting the account.")
    key_changes.owner_deleted(user.id)  # no log event to carry it: the log goes too
    keys = select(ApiKey.id).where(ApiKey.user_id == user.id).scalar_subquery()
    db.session.execute(KeyUsageDay.__table__.delete().where(KeyUsageDay.key_id.in_(keys)))
    for table in (SecurityEvent.__table__, FormSubmission.__table__, ApiKey.__table__,
                  RecoveryCode.__table__, TotpCredential.__table__):
        db.session.execute(table.delete().where(table.c.user_id == user.id))
    db.session.delete(user)
    db.session.commit()
