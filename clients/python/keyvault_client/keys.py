"""The key format, checked locally: a malformed key is refused without asking KeyVault.

The same rules as the server's `keyvault.tokens`: `<prefix>_`, 40 base62 characters, then the
CRC32 of those 40 characters as 6 zero-padded, big-endian base62 characters.
"""

from __future__ import annotations

import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 40
CHECKSUM_LENGTH = 6
_ALPHABET_SET = frozenset(ALPHABET)


def checksum(body: str) -> str:
    """CRC32 of `body` as 6 zero-padded, big-endian base62 characters."""
    number = zlib.crc32(body.encode("ascii"))
    digits = []
    for _ in range(CHECKSUM_LENGTH):
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def is_well_formed(key: object, prefix: str | None = None) -> bool:
    """True when `key` has a letters-and-digits prefix (`prefix` exactly, when given), the right
    length and alphabet and a matching checksum. The checksum is public: no secret is compared."""
    if not isinstance(key, str) or not key.isascii():
        return False
    found_prefix, underscore, rest = key.partition("_")
    if not underscore or not found_prefix.isalnum() or (prefix is not None and found_prefix != prefix):
        return False
    if len(rest) != BODY_LENGTH + CHECKSUM_LENGTH or not _ALPHABET_SET.issuperset(rest):
        return False
    return checksum(rest[:BODY_LENGTH]) == rest[BODY_LENGTH:]
