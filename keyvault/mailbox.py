"""When two email addresses are one mailbox: the stored form and the confusable skeleton.

An address is stored in its normal form: NFKC (so full-width `ａlice` is `alice`), trimmed,
lower-cased, and its domain in IDNA (`bücher.de` as `xn--bcher-kva.de`, ASCII on the wire).
Two addresses are one mailbox when their keys are equal: the key is the SHA-256 of the
skeleton of Unicode Technical Standard #39 (NFD, default-ignorable characters removed, each
character replaced by its prototype from confusables.txt, NFD again), taken of the case-folded
address with its domain in Unicode, local part and domain alike, and then without combining
diacritical marks, so `аlice` (Cyrillic а), `alice@exаmple.com`, `ALİCE` and `álice` are all
`alice`. The mark removal goes beyond TR39 on purpose: an accent is easy to miss on a screen,
and two real people whose addresses differ only by one at one domain are rarer than someone
taking an address that looks like another's. Standard library and idna (IDNA 2008 with UTS #46)
only; the data is keyvault/confusables.txt (its source and version are in its header).
"""

from __future__ import annotations

import hashlib
import unicodedata
from functools import cache
from pathlib import Path

import idna

CONFUSABLES = Path(__file__).resolve().parent / "confusables.txt"

# Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 15.0): invisible, so TR39
# removes them before mapping (a zero-width space inside `alice` changes nothing one can see).
DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)

# The blocks of combining diacritical marks (accents, dots, strokes, cedillas) that the key
# ignores; the marks of other scripts (Indic vowel signs, ...) are letters there and stay.
DIACRITICS = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF),
              (0xFE20, 0xFE2F))


def _within(char: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    point = ord(char)
    return any(low <= point <= high for low, high in ranges)


@cache
def _prototypes() -> dict[str, str]:
    """confusables.txt as {character: prototype}, read once (≈ 6,500 lines, a few ms)."""
    table = {}
    for line in CONFUSABLES.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        source, prototype = line.split(";")
        table[chr(int(source, 16))] = "".join(chr(int(p, 16)) for p in prototype.split())
    return table


def tr39_skeleton(text: str) -> str:
    """skeleton(X) of UTS #39 section 4: equal skeletons, confusable strings."""
    prototypes = _prototypes()
    text = unicodedata.normalize("NFD", text)
    text = "".join(prototypes.get(char, char) for char in text
                   if not _within(char, DEFAULT_IGNORABLE))
    return unicodedata.normalize("NFD", text)


def _split(address: str) -> tuple[str, str, str]:
    local, at, domain = address.rpartition("@")
    return (local, at, domain) if at else (address, "", "")


def normal_form(address: str) -> str:
    """The address as stored and mailed; ValueError when its domain has no IDNA form."""
    local, at, domain = _split(unicodedata.normalize("NFKC", address).strip())
    if domain and not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as error:
            raise ValueError(f"the domain {domain!r} cannot be written in IDNA: {error}") from None
    return f"{local.lower()}{at}{domain.lower()}"


def lookup_form(address: str) -> str:
    """normal_form, or for an address that has none the NFKC lower-cased text (nothing found)."""
    try:
        return normal_form(address)
    except ValueError:
        return unicodedata.normalize("NFKC", address).strip().lower()


def _unicode_domain(domain: str) -> str:
    labels = []
    for label in domain.split("."):
        try:
            labels.append(idna.decode(label) if label.startswith("xn--") else label)
        except (idna.IDNAError, UnicodeError):
            labels.append(label)
    return ".".join(labels)


def skeleton(address: str) -> str:
    """The text the mailbox key is made of (shown to operators; compare keys, not this)."""
    local, at, domain = _split(lookup_form(address))
    text = tr39_skeleton(f"{local}{at}{_unicode_domain(domain)}".casefold())
    return "".join(char for char in text if not _within(char, DIACRITICS))


def mailbox_key(address: str) -> str:
    """SHA-256 (hex) of the skeleton: one length whatever the address, so it indexes anywhere."""
    return hashlib.sha256(skeleton(address).encode("utf-8", "surrogatepass")).hexdigest()
