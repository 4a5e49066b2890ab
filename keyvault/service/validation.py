"""The domain rules for what people type: labels, descriptions, emails, passwords, expiries.

Forms, the API's request models and the command line all call these, so a rule is written once.
Where the API's schema states a rule (the label's pattern), the pattern is built here, beside
the function it describes, and a test holds the two together.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app

from .. import mailbox
from .errors import InvalidInput

LABEL_MAX = 40
DESCRIPTION_MAX = 1000
EMAIL_MAX = 254
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
GRACE_MAX_SECONDS = 7 * 24 * 3600
PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
LINE_BREAKS = "\t\n\r"
# Characters that reorder the text around them (embeddings, overrides, isolates, marks): in a
# label they make "gpj.exe" read as "exe.jpg" on a page, in a mail subject, in a terminal.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                          "\u2066\u2067\u2068\u2069")
BIDI_REFUSAL = ("cannot hold characters that change the direction of text (such as U+202E, "
                "right-to-left override): they make text read as something it is not.")


def has_bidi_controls(text: str) -> bool:
    return not BIDI_CONTROLS.isdisjoint(text)


def inert(text: str) -> str:
    """Text from elsewhere (a leak report's `source`, a label kept from before a rule) made
    safe for one line of a mail: control characters, line and paragraph separators and bidi
    controls written as escapes (`\\n`, `\\u202e`), so nothing it holds can start a line or
    turn the text around it."""
    if text.isprintable() and BIDI_CONTROLS.isdisjoint(text):
        return text  # the common case, in one pass (isprintable is False for all of the above)
    return "".join(_escape(char) if _unsafe(char) else char for char in text)


def _unsafe(char: str) -> bool:
    return char in BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp")


def _escape(char: str) -> str:
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return named.get(char) or f"\\u{ord(char):04x}"


def has_control_characters(text: str, allowed: str = "") -> bool:
    """Control characters and lone surrogates mean nothing here (PostgreSQL refuses NUL)."""
    return any(char not in allowed and unicodedata.category(char) in ("Cc", "Cs") for char in text)


def _refuse_control_characters(text: str, name: str, refusal: str, allowed: str = "") -> None:
    if has_control_characters(text, allowed):
        raise InvalidInput(refusal, name)


def clean_label(label: Any) -> str:
    if not isinstance(label, str):
        raise InvalidInput("The label must be text.", "label")
    _refuse_control_characters(label, "label", "The label cannot hold tabs, line breaks or other "
                               "control characters.")
    if has_bidi_controls(label):
        raise InvalidInput(f"The label {BIDI_REFUSAL}", "label")
    label = label.strip()
    if not label:
        raise InvalidInput("Give the key a label, such as what it is for.", "label")
    if len(label) > LABEL_MAX:
        raise InvalidInput(f"Keep the label to {LABEL_MAX} characters or fewer; this one has "
                           f"{len(label)}.", "label")
    return label


NAME_MAX = 64  # an organisation's or a service account's name


def clean_name(name: Any, field: str = "name") -> str:
    """An organisation's or a service account's name: the label's rules, up to NAME_MAX."""
    if not isinstance(name, str):
        raise InvalidInput("The name must be text.", field)
    _refuse_control_characters(name, field, "The name cannot hold tabs, line breaks or other "
                               "control characters.")
    if has_bidi_controls(name):
        raise InvalidInput(f"The name {BIDI_REFUSAL}", field)
    name = name.strip()
    if not name:
        raise InvalidInput("Give it a name.", field)
    if len(name) > NAME_MAX:
        raise InvalidInput(f"Keep the name to {NAME_MAX} characters or fewer; this one has "
                           f"{len(name)}.", field)
    return name


def clean_days(days: Any, field: str, most: int = 36500) -> int | None:
    """A policy's number of days: a whole number from 1 to `most`, or None (no rule)."""
    if days is None:
        return None
    if isinstance(days, float) and days.is_integer():
        days = int(days)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= most:
        raise InvalidInput(f"Give a whole number of days from 1 to {most}, or null for none.",
                           field)
    return days


def clean_description(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        raise InvalidInput("The description must be text.", "description")
    _refuse_control_characters(description, "description", "The description cannot hold control "
                               "characters (tabs and line breaks are fine).", allowed=LINE_BREAKS)
    if has_bidi_controls(description):
        raise InvalidInput(f"The description {BIDI_REFUSAL}", "description")
    description = description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise InvalidInput(f"Keep the description to {DESCRIPTION_MAX} characters or fewer; this "
                           f"one has {len(description)}.", "description")
    return description


def normalise_email(email: str) -> str:
    """An address as it is stored (keyvault.mailbox.normal_form: NFKC, trimmed, lower-cased,
    the domain in IDNA); text that is no address comes back lower-cased and finds nobody."""
    return mailbox.lookup_form(email or "")


def clean_email(email: Any) -> str:
    """The normal form of a new account's address; who else has that mailbox is the caller's
    question (keyvault.mailbox.mailbox_key, service.accounts.sign_up)."""
    try:
        email = mailbox.normal_form(email if isinstance(email, str) else "")
    except ValueError:
        email = ""
    if not email or "@" not in email or len(email) > EMAIL_MAX or has_control_characters(email):
        raise InvalidInput("Enter a valid email address.", "email")
    return email


PASSWORD_RULE = f"At least {PASSWORD_MIN} characters."


def clean_password(password: Any, field: str = "password") -> str:
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        raise InvalidInput(f"Choose a password of at least {PASSWORD_MIN} characters.", field)
    if len(password) > PASSWORD_MAX:
        raise InvalidInput(f"Choose a password of at most {PASSWORD_MAX} characters.", field)
    return password


def clean_grace_period(seconds: Any) -> int:
    """0 to GRACE_MAX_SECONDS, a whole number (JSON's 60.0 is the number 60; true is not)."""
    if isinstance(seconds, float) and seconds.is_integer():
        seconds = int(seconds)
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise InvalidInput("The grace period must be a whole number of seconds.",
                           "grace_period_seconds")
    if not 0 <= seconds <= GRACE_MAX_SECONDS:
        raise InvalidInput(
            f"The grace period can be from 0 seconds (the old value stops at once) to 7 days "
            f"({GRACE_MAX_SECONDS} seconds).",
            "grace_period_seconds",
        )
    return seconds


def clean_expiry(expires_at: Any, now: datetime, policy_days: int | None = None, *,
                 capped: bool = True) -> datetime | None:
    """Validate an expiry against now and (when `capped`) KEYVAULT_MAX_KEY_LIFETIME_DAYS, and
    against an organisation's policy (`policy_days`) for a service account's key: the shorter
    wins."""
    max_days = current_app.config["KEYVAULT_MAX_KEY_LIFETIME_DAYS"] if capped else None
    if capped and policy_days is not None and (max_days is None or policy_days < max_days):
        max_days = policy_days
    if expires_at is None:
        if max_days is not None:
            raise InvalidInput(
                f"Choose when the key expires: keys may live at most {max_days} days here.",
                "expires_at")
        return None
    if isinstance(expires_at, str):
        try:
            expires_at = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                "The expiry must be a date and time in ISO 8601 form, such as "
                "2030-01-31T00:00:00Z.", "expires_at") from None
    if not isinstance(expires_at, datetime):
        raise InvalidInput("The expiry must be a date and time in ISO 8601 form, such as "
                           "2030-01-31T00:00:00Z.", "expires_at")
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    try:
        expires_at = expires_at.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("That expiry is not a date KeyVault can keep: choose one before the "
                           "year 9999.", "expires_at") from None
    if expires_at <= now:
        raise InvalidInput("That expiry has already passed: choose a moment in the future.",
                           "expires_at")
    if max_days is not None and expires_at > now + timedelta(days=max_days, minutes=1):
        raise InvalidInput(f"Keys may live at most {max_days} days here: choose an earlier "
                           "expiry.", "expires_at")
    if expires_at.year > 9998:
        raise InvalidInput("That expiry is too far away: choose one before the year 9999.",
                           "expires_at")
    return expires_at


# Row ids (users.id, ...) are 32-bit on PostgreSQL and 64-bit on SQLite: no row has an id
# outside this range, and SQLite raises OverflowError for a parameter above 2**63 - 1.
ROW_ID_MAX = 2**31 - 1


def is_row_id(value: Any) -> bool:
    """Could a row have this id? Out of range means "no such row" (404), never a crash."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= ROW_ID_MAX


def is_public_id(public_id: Any) -> bool:
    """Could this be a key id we issued? (PostgreSQL would refuse some strings, NUL, outright.)"""
    return bool(PUBLIC_ID.fullmatch(str(public_id)))


# ---------------------------------------------------------------- the same rules as patterns

# What the functions above accept, as JSON Schema (ECMA 262) regular expressions, for the API's
# schema. `\s` is avoided because Python, ECMA 262 and Rust disagree on it: BLANK is exactly
# what str.strip() trims besides control characters, and CONTROL is Unicode category Cc.
_CONTROL = "\\u0000-\\u001F\\u007F-\\u009F"
_CONTROL_BUT_LINE_BREAKS = "\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F"
_LINE_BREAKS = "\\t\\n\\r"
_BIDI = "\\u061C\\u200E\\u200F\\u202A-\\u202E\\u2066-\\u2069"  # BIDI_CONTROLS
_BLANK = "\\u0020\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000"


def _trimmed_text(most: int, blank: str, refused: str, required: bool) -> str:
    """Text whose part between surrounding blanks is 1 (or 0) to `most` characters long."""
    edge, inner = f"[^{refused}{blank}]", f"[^{refused}]"
    core = f"(?:{edge}|{edge}{inner}{{0,{most - 2}}}{edge})"
    return f"^[{blank}]*{core}{'' if required else '?'}[{blank}]*$"


LABEL_PATTERN = _trimmed_text(LABEL_MAX, _BLANK, _CONTROL + _BIDI, required=True)
NAME_PATTERN = _trimmed_text(NAME_MAX, _BLANK, _CONTROL + _BIDI, required=True)
DESCRIPTION_PATTERN = _trimmed_text(DESCRIPTION_MAX, _BLANK + _LINE_BREAKS,
                                    _CONTROL_BUT_LINE_BREAKS + _BIDI, required=False)
