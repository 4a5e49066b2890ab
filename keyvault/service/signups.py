"""Sign-up that tells no one who has an account, and confirming the address it was made with.

With KEYVAULT_REQUIRE_EMAIL_CONFIRMATION on, `register` answers alike for a free address and
one whose mailbox has an account (the same address, or one that looks the same:
keyvault.mailbox): the caller shows one page, and the address typed gets a mail either way,
a confirmation link (service.confirmations) or "you already have an account". Both do the same
work in the same order (the password hashed, the mailbox locked, a users row and two more
written, a confirmation mail rendered, one commit),
so the answer's timing tells nothing either (tests/test_signup_confirmation.py measures it).
"""

from __future__ import annotations

from sqlalchemy import update

from .. import clock
from ..extensions import db
from ..models import User
from . import confirmations, mail
from .accounts import check_password, sign_up
from .errors import ConfirmLinkInvalid, EmailTaken
from .events import Origin, finish_login, record
from .guessing import Device
from .second_factor import methods
from .validation import clean_email


def register(email: str, password: str, origin: Origin) -> None:
    """A new, unconfirmed account and its confirmation mail; for a taken mailbox, no account
    and the "you already have an account" mail. InvalidInput (a bad address or password) is
    the only refusal, and it says nothing about accounts."""
    try:
        user = sign_up(email, password, origin, commit=False)
    except EmailTaken as taken:
        _tell_taken(email, taken, origin)
        return
    confirmations.queue_link(user)
    db.session.commit()


def _tell_taken(email: str, taken: EmailTaken, origin: Origin) -> None:
    """Mail the address typed: log in or reset when it is the account's own, or why it cannot
    have one when it only looks like an account's (never naming that account). The account's
    log notes the attempt."""
    typed = clean_email(email)  # it passed sign_up's check: the form the account would have
    lookalike = taken.existing is not None and typed != taken.existing
    # The work a new account costs, done for nothing: a users row written (the account's own,
    # left as it was) and a confirmation mail rendered but sent nowhere.
    db.session.execute(update(User).where(User.id == taken.existing_id).values(id=User.id))
    confirmations.render_link(typed)
    mail.queue(typed, "signup_existing", lookalike=lookalike,
               login_url=mail.link("auth.login"), reset_url=mail.link("auth.forgot_password"))
    record("user.signup_repeated", taken.existing_id, origin, lookalike=lookalike)
    db.session.commit()


def confirm_email(token: str, password: str, origin: Origin,
                  device: Device | None = None) -> User | None:
    """Confirm the address a link was mailed to, given the password chosen at sign-up: the
    account, logged in as service.accounts.log_in leaves it, or None for a wrong password
    (counted toward the guessing limit). The link works once: the change is conditional on
    the address being unconfirmed still."""
    user = confirmations.user_for_token(token)
    if not check_password(user, password, origin, device, failure="signup.confirm_failed"):
        return None
    confirmed = db.session.execute(
        User.__table__.update().where(User.id == user.id, User.email_confirmed_at.is_(None))
        .values(email_confirmed_at=clock.now()))
    if confirmed.rowcount != 1:
        db.session.rollback()
        raise ConfirmLinkInvalid(confirmations.USED)
    record("user.email_confirmed", user.id, origin)
    if not methods(user):  # mailbox and password proved: a login (else the second step ends it)
        finish_login(user, origin, method="email_confirmation")
    db.session.commit()
    db.session.refresh(user)
    return user
