"""E-mail through an outbox: queued in the caller's transaction, sent later by any sender.

`queue` renders a mail from its templates (templates/mail/<kind>.txt and .html, sharing
_layout.*), every value it prints made inert (line breaks and bidi controls as escapes), and
adds it to the current transaction: the mail exists iff the action that caused it commits, and
the request never waits for an SMTP server. `send_pending` (the command
`keyvault mail send-pending`, and the background sender each `keyvault serve` worker runs)
sends them through the outbox (service.outbox: leased, so each mail goes once, and a sender
killed mid-way loses nothing). A failure is retried with exponential backoff, and given up after
KEYVAULT_MAIL_MAX_ATTEMPTS with the error kept; a recipient the server can never take
(smtp.RecipientRefused: no SMTPUTF8 for a non-ASCII address, a 5xx refusal) is given up at
once. The log gets one line per failure, never a body.

Without KEYVAULT_SMTP_URL, development writes each whole mail to the log (a developer needs the
reset link); production keeps the mails queued and warns at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, NamedTuple

from flask import Flask, current_app, has_request_context
from jinja2 import Environment

from .. import clock, smtp
from ..extensions import db
from ..links import mail_url
from ..models import MailOutbox
from . import outbox
from .outbox import SendReport
from .validation import inert

log = logging.getLogger("keyvault.mail")

RETRY_CAP = timedelta(hours=1)
# Mails that carry a secret (a reset, confirmation or invitation link): their bodies are blanked
# once sent.
SECRET_KINDS = frozenset({"password_reset", "confirm_email", "org_invitation"})
MAIL_TEMPLATES = "keyvault.mail_templates"


class Rendered(NamedTuple):
    subject: str
    text: str
    html: str


def _finalize(value: Any) -> Any:
    """Every value a mail template prints, tamed (validation.inert): text that came from a
    request or a report never starts a line of its own or turns the text around it."""
    return type(value)(inert(value)) if isinstance(value, str) else value


def _mail_templates() -> Environment:
    """The app's templates, printing every value through _finalize; one per app."""
    env = current_app.extensions.get(MAIL_TEMPLATES)
    if env is None:
        env = current_app.extensions[MAIL_TEMPLATES] = current_app.jinja_env.overlay(
            finalize=_finalize)
    return env


def render(kind: str, **context) -> Rendered:
    """A mail's subject and bodies; the .txt template sets `subject`, one line of tamed text."""
    env = _mail_templates()
    text_module = env.get_template(f"mail/{kind}.txt").make_module(context)
    subject = inert(" ".join(str(text_module.subject).split()))
    html = env.get_template(f"mail/{kind}.html").render(subject=subject, **context)
    return Rendered(subject, str(text_module).strip() + "\n", html)


def queue(to: str, kind: str, **context) -> MailOutbox:
    """Add a mail to the current transaction; the caller commits (or rolls back: no mail)."""
    mail = render(kind, account=to, **context)
    row = MailOutbox(to_address=to, subject=mail.subject[:255], text_body=mail.text,
                     html_body=mail.html, kind=kind, created_at=clock.now(),
                     next_attempt_at=clock.now(), attempts=0)
    db.session.add(row)
    return row


def link(endpoint: str, **values) -> str:
    """A link for a mail (links.mail_url), inside a request or not."""
    if has_request_context():
        return mail_url(endpoint, **values)
    with current_app.test_request_context("/"):
        return mail_url(endpoint, **values)


# ---------------------------------------------------------------- sending


def _deliver(app: Flask, mail: MailOutbox) -> dict:
    url = app.config["KEYVAULT_SMTP_URL"]
    if url is None:  # development (production never gets here: send_pending keeps the mail)
        log.info("mail (no KEYVAULT_SMTP_URL set, so written here) to %s: %s\n%s",
                 mail.to_address, mail.subject, mail.text_body)
        return {}
    smtp.send(smtp.parse_url(url), _message(app, mail))
    return {}


def _message(app: Flask, mail: MailOutbox) -> EmailMessage:
    message = EmailMessage()
    message["From"] = app.config["KEYVAULT_MAIL_FROM"]
    message["To"] = mail.to_address
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(clock.now())
    message["Message-ID"] = make_msgid(domain="keyvault")
    message.set_content(mail.text_body)
    message.add_alternative(mail.html_body, subtype="html")
    return message


def backoff(app: Flask, attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failure: doubling from the first, capped."""
    first = timedelta(seconds=app.config["KEYVAULT_MAIL_RETRY_SECONDS"])
    return min(first * 2 ** (attempts - 1), RETRY_CAP)


def _retry_at(app: Flask, mail: MailOutbox, attempts: int):
    if attempts >= app.config["KEYVAULT_MAIL_MAX_ATTEMPTS"]:
        return None
    return clock.now() + backoff(app, attempts)


COURIER = outbox.Courier(
    "mail", MailOutbox, _deliver, _retry_at,
    # a recipient the server can never take: the next try would be refused too
    hopeless=lambda error: isinstance(error, smtp.RecipientRefused),
    on_sent=lambda mail: {"text_body": "", "html_body": ""} if mail.kind in SECRET_KINDS else {})


def send_pending(app: Flask | None = None, *, limit: int = 1000) -> SendReport:
    """Send every mail that is due (up to `limit`), each by the one sender that claims it."""
    app = app or current_app._get_current_object()
    config = app.config
    if config["KEYVAULT_SMTP_URL"] is None and config["KEYVAULT_ENV"] == "production":
        return SendReport(0, 0, 0)  # kept for when an SMTP server is configured
    lease = timedelta(seconds=config["KEYVAULT_MAIL_LEASE_SECONDS"])
    return outbox.send_pending(app, COURIER, lease, limit=limit)


def warn_about_setup(app: Flask) -> None:
    """At start-up: say so when mail cannot reach anyone, or its links have no host."""
    if app.config["KEYVAULT_SMTP_URL"] is None and app.config["KEYVAULT_ENV"] == "production":
        log.warning("KEYVAULT_SMTP_URL is not set: mail (password resets, key notices) stays "
                    "queued and nobody receives it")
    if app.config["KEYVAULT_BASE_URL"] is None:
        development = app.config["KEYVAULT_DEVELOPMENT_URL"]
        log.warning("KEYVAULT_BASE_URL is not set: links in mails are %s", (
            f"on {development}, where this server listens (development only)" if development
            else "paths without a host"))


def start_sender(app: Flask) -> Callable[[], None]:
    """A thread that sends due mail every KEYVAULT_MAIL_SEND_SECONDS (0: none); returns stop()."""
    warn_about_setup(app)
    return outbox.start_sender(app, app.config["KEYVAULT_MAIL_SEND_SECONDS"],
                               lambda: send_pending(app), "mail")
