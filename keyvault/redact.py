"""Hiding keys that clients put where they do not belong: URLs, Referers, User-Agents.

Standard library only: the access log (keyvault.server) and the security log
(keyvault.http.context) both use it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

SECRET_NAMES = frozenset({"personal_api_key", "token", "key"})
# A query parameter: what precedes it, its (possibly percent-encoded) name, and its value.
_PARAM = re.compile(r"(^|[?&;])([^&;=\s\"?]*)=([^&;\s\"]*)")
# Anything shaped like a key (prefix, underscore, 46 base62 characters), wherever it appears.
_KEY_SHAPED = re.compile(r"(?<![0-9A-Za-z])[0-9A-Za-z]+_[0-9A-Za-z]{46}(?![0-9A-Za-z])")
# An invitation link carries its signed token in the path (/organizations/invitations/<token>).
_INVITATION = re.compile(r"(/organizations/invitations/)[^/?#\s\"]+")


def scrub(text: str) -> str:
    """Hide keys: values of key-carrying parameters, whatever way their names are encoded (the
    app decodes `personal%5Fapi%5Fkey` too), anything key-shaped, and invitation links' tokens."""

    if "/invitations/" in text:
        text = _INVITATION.sub(r"\1[redacted]", text)
    if "=" not in text and "_" not in text:
        return text  # neither a parameter nor anything key-shaped: most request lines

    def redact(match: re.Match) -> str:
        if unquote_plus(match.group(2)).lower() in SECRET_NAMES:
            return f"{match.group(1)}{match.group(2)}=[redacted]"
        return match.group(0)

    return _KEY_SHAPED.sub("[redacted]", _PARAM.sub(redact, text))
