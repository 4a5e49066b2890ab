"""Forms that act once: a create or roll form carries a one-time token, claimed in the same
transaction as what the form does, so a reload, Back or a double click cannot act twice."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from .. import clock
from ..extensions import db
from ..models import FormSubmission, User
from .errors import ServiceError

KEPT_FOR = timedelta(days=1)  # a page older than that is stale anyway: its token is forgotten


class AlreadySubmitted(ServiceError):
    status = 409
    title = "Already done"

    def __init__(self, detail: str, used: bool = True):
        super().__init__(detail)
        self.used = used  # False: the form carries no token this app issued


def new_token() -> str:
    return secrets.token_urlsafe(24)


def claim(owner: User, token: str | None) -> None:
    """Record that this form submission acts, in the caller's transaction (which commits it
    with what the form does, or rolls both back); AlreadySubmitted when it already did."""
    if not isinstance(token, str) or not 16 <= len(token) <= 64:
        raise AlreadySubmitted("This form is out of date: reload the page and try again.",
                               used=False)
    now = clock.now()
    db.session.execute(delete(FormSubmission).where(FormSubmission.user_id == owner.id,
                                                    FormSubmission.created_at < now - KEPT_FOR))
    db.session.add(FormSubmission(token=token, user_id=owner.id, created_at=now))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise AlreadySubmitted("This form was already submitted, and it acted then.") from None
