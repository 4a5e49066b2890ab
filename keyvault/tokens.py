"""The API key itself: generate, checksum, parse, mask and digest. Standard library only."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 40  # 40 base62 characters carry 40 * log2(62) ≈ 238 bits
CHECKSUM_LENGTH = 6  # 62**6 > 2**32, so any CRC32 fits
DEFAULT_PREFIX = "kv"
_ALPHABET_SET = frozenset(ALPHABET)


def is_valid_prefix(prefix: str) -> bool:
    """A prefix is one or more ASCII letters or digits, so a key stays one double-clickable word."""
    return bool(prefix) and prefix.isascii() and prefix.isalnum()


_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]  # every two-digit base62 number, in order


def checksum(body: str) -> str:
    """CRC32 of the random body as 6 zero-padded, big-endian base62 characters.

    Three two-digit lookups instead of six divisions: verify checks this on every call.
    """
    high, rest = divmod(zlib.crc32(body.encode("ascii")), 62**4)
    middle, low = divmod(rest, 62**2)
    return _PAIRS[high] + _PAIRS[middle] + _PAIRS[low]


def generate(prefix: str = DEFAULT_PREFIX) -> str:
    """A new key: prefix, underscore, 40 random base62 characters and their checksum."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return f"{prefix}_{body}{checksum(body)}"


def is_well_formed(key: str, prefix: str = DEFAULT_PREFIX) -> bool:
    """True when the key has the right prefix, length, alphabet and checksum; no database needed.

    The checksum is public (anyone can compute it), so a plain comparison is fine here.
    """
    if not isinstance(key, str) or len(key) != len(prefix) + 1 + BODY_LENGTH + CHECKSUM_LENGTH:
        return False
    if not key.startswith(prefix) or key[len(prefix)] != "_":
        return False
    rest = key[len(prefix) + 1 :]
    if not _ALPHABET_SET.issuperset(rest):
        return False
    return checksum(rest[:BODY_LENGTH]) == rest[BODY_LENGTH:]


def finder(prefix: str = DEFAULT_PREFIX) -> re.Pattern[str]:
    """The regular expression that finds keys in text, as published for secret scanners: the
    prefix, `_` and 46 base62 characters between word boundaries. A match is a key only when
    its checksum holds (is_well_formed), which a scanner can check without asking anyone."""
    return re.compile(rf"\b{re.escape(prefix)}_[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}\b")


def mask(key: str) -> str:
    """The display form: prefix, an ellipsis and the last four characters."""
    prefix = key.rpartition("_")[0] or DEFAULT_PREFIX
    return f"{prefix}_…{key[-4:]}"


@functools.lru_cache(maxsize=8)
def _keyed(pepper: bytes):
    """An HMAC already keyed with the pepper: copying it skips re-deriving the key pads."""
    return hmac.new(pepper, digestmod=hashlib.sha256)


def digest_of(key: str, pepper: bytes) -> str:
    """HMAC-SHA256 of the whole key under the pepper, hex: the only form the database holds."""
    mac = _keyed(pepper).copy()
    mac.update(key.encode("utf-8"))
    return mac.hexdigest()


def new_public_id() -> str:
    """A random, URL-safe key id that reveals nothing about the secret.

    Never one starting with '-': `keyvault keys revoke -Cx…` would read it as an option."""
    while True:
        public_id = secrets.token_urlsafe(12)
        if not public_id.startswith("-"):
            return public_id
