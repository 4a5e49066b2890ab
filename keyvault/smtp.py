"""Handing one mail to an SMTP server (smtplib): the transport behind service.mail.

KEYVAULT_SMTP_URL says where and how: `smtp://user:pw@host:587` speaks STARTTLS when the server
offers it (`?starttls=require` refuses to send in the clear, `?starttls=off` never asks),
`smtps://user:pw@host:465` is TLS from the first byte. User name and password are
percent-decoded, so `@` or `:` in them is written `%40`, `%3A`. Standard library only.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import getaddresses
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

TIMEOUT_SECONDS = 30
STARTTLS_MODES = ("auto", "require", "off")


class SmtpSettings(NamedTuple):
    host: str
    port: int
    implicit_tls: bool
    starttls: str  # auto, require or off (ignored with implicit TLS)
    username: str | None
    password: str | None


def parse_url(url: str) -> SmtpSettings:
    """KEYVAULT_SMTP_URL as settings; ValueError with a message naming what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("KEYVAULT_SMTP_URL must start with smtp:// or smtps://, such as "
                         "smtp://user:password@mail.example.com:587")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("KEYVAULT_SMTP_URL has a port that is not a number") from None
    if not parts.hostname:
        raise ValueError("KEYVAULT_SMTP_URL names no host")
    query = parse_qs(parts.query)
    unknown = set(query) - {"starttls"}
    if unknown:
        raise ValueError(f"KEYVAULT_SMTP_URL: unknown option {sorted(unknown)[0]!r} "
                         "(only starttls=auto|require|off)")
    starttls = query.get("starttls", ["auto"])[-1]
    if starttls not in STARTTLS_MODES:
        raise ValueError(f"KEYVAULT_SMTP_URL: starttls must be one of {', '.join(STARTTLS_MODES)}, "
                         f"got {starttls!r}")
    implicit = parts.scheme == "smtps"
    return SmtpSettings(
        host=parts.hostname, port=port or (465 if implicit else 587), implicit_tls=implicit,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


class StartTlsRefused(smtplib.SMTPException):
    """starttls=require, and the server does not offer STARTTLS."""


class RecipientRefused(smtplib.SMTPException):
    """The server will never take this recipient: the address needs SMTPUTF8 (non-ASCII
    characters) and the server does not offer it, or the server refused the address with a
    permanent (5xx) reply. Sending again cannot help, unlike a 4xx reply or a lost connection."""


def _needs_smtputf8(message: EmailMessage) -> bool:
    """A recipient address with non-ASCII characters can only travel with SMTPUTF8 (RFC 6531)."""
    recipients = getaddresses([str(value) for value in message.get_all("To", [])])
    return any(not address.isascii() for _, address in recipients)


def send(settings: SmtpSettings, message: EmailMessage, timeout: float = TIMEOUT_SECONDS) -> None:
    """Deliver `message` to the server, or raise (smtplib.SMTPException or OSError)."""
    context = ssl.create_default_context()
    if settings.implicit_tls:
        client: smtplib.SMTP = smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout,
                                                context=context)
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
    with client:
        client.ehlo()
        if not settings.implicit_tls and settings.starttls != "off":
            if client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            elif settings.starttls == "require":
                raise StartTlsRefused("the server does not offer STARTTLS (starttls=require)")
        if settings.username is not None:
            client.login(settings.username, settings.password or "")
        if _needs_smtputf8(message) and not client.has_extn("smtputf8"):
            raise RecipientRefused("the address has non-ASCII characters and the server does not "
                                   "offer SMTPUTF8, which such an address needs")
        try:
            client.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            replies = error.recipients.values()
            if not replies or any(not 500 <= code < 600 for code, _ in replies):
                raise  # a temporary refusal (4xx): worth another try later
            reply = "; ".join(f"{code} {text.decode('utf-8', 'replace')}" for code, text in replies)
            raise RecipientRefused(f"the server refused the recipient for good: {reply}") from None
