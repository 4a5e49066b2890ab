"""The key core (tokens.py), tested on its own: no app, no database."""

from __future__ import annotations

import hashlib
import hmac
import re
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyvault import tokens

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_SHAPE = re.compile(r"kv_[0-9A-Za-z]{46}")


def to_base62(number: int, width: int) -> str:
    """Independent reference: big-endian base62, zero-padded to `width`."""
    digits = ""
    while number:
        number, remainder = divmod(number, 62)
        digits = BASE62[remainder] + digits
    return digits.rjust(width, "0")


def make_key(body: str, prefix: str = "kv") -> str:
    return f"{prefix}_{body}{to_base62(zlib.crc32(body.encode()), 6)}"


bodies = st.text(alphabet=BASE62, min_size=40, max_size=40)


# ---------------------------------------------------------------- format


def test_generated_key_has_the_documented_format():
    """kv_ + 40 base62 characters + 6 base62 checksum characters: 49 in all."""
    key = tokens.generate()
    assert len(key) == 49
    assert KEY_SHAPE.fullmatch(key)
    body, check = key[3:43], key[43:]
    assert check == to_base62(zlib.crc32(body.encode()), 6)


def test_generated_keys_differ():
    """Keys come from a CSPRNG: a hundred of them are all different."""
    assert len({tokens.generate() for _ in range(100)}) == 100


def test_alphabet_is_big_endian_base62():
    """The checksum alphabet is 0-9A-Za-z in that order."""
    assert tokens.ALPHABET == BASE62


def test_custom_prefix():
    """A configured prefix replaces `kv` and the key is checked against it."""
    key = tokens.generate("acme2")
    assert key.startswith("acme2_") and len(key) == len("acme2_") + 46
    assert tokens.is_well_formed(key, "acme2")
    assert not tokens.is_well_formed(key)  # not a kv_ key
    assert not tokens.is_well_formed(tokens.generate(), "acme2")


@pytest.mark.parametrize(("prefix", "valid"), [
    ("kv", True), ("acme", True), ("ABC123", True), ("", False), ("k_v", False),
    ("k-v", False), ("kv ", False), ("ké", False), ("k.v", False),
])
def test_prefix_is_letters_and_digits_only(prefix, valid):
    """A prefix keeps the key one double-clickable word."""
    assert tokens.is_valid_prefix(prefix) is valid


def test_checksum_is_zero_padded():
    """A body whose CRC32 is small still gets six checksum characters, left-padded with 0."""
    # Find a 40-character body whose CRC32 is below 62**3, so at least three leading zeros.
    body = next(b for b in (f"{n:040d}" for n in range(10_000_000))
                if zlib.crc32(b.encode()) < 62**3)
    crc = zlib.crc32(body.encode())
    assert tokens.checksum(body) == to_base62(crc, 6)
    assert len(tokens.checksum(body)) == 6
    assert tokens.checksum(body).startswith("000")
    assert tokens.is_well_formed(make_key(body))


@pytest.mark.parametrize(("body", "crc"), [
    ("0" * 40, zlib.crc32(b"0" * 40)),
    ("z" * 40, zlib.crc32(b"z" * 40)),
])
def test_checksum_is_crc32_in_base62(body, crc):
    """The checksum is exactly CRC32 of the body's ASCII bytes, in 6 base62 digits."""
    assert tokens.checksum(body) == to_base62(crc, 6)


# ---------------------------------------------------------------- mask and digest


def test_mask_shows_prefix_and_last_four():
    """The display form is `kv_…` plus the last four characters."""
    key = tokens.generate()
    assert tokens.mask(key) == f"kv_…{key[-4:]}"
    assert tokens.mask(tokens.generate("acme")).startswith("acme_…")


def test_digest_is_hmac_sha256_hex_of_the_whole_key():
    """The stored form is HMAC-SHA256(pepper, full key) as 64 hex characters."""
    key = tokens.generate()
    pepper = b"pepper-one"
    expected = hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()
    assert tokens.digest_of(key, pepper) == expected
    assert re.fullmatch(r"[0-9a-f]{64}", expected)
    assert tokens.digest_of(key, pepper) != hashlib.sha256(key.encode()).hexdigest()


def test_digest_depends_on_pepper():
    """Another pepper gives another digest, so a database dump alone cannot test a guess."""
    key = tokens.generate()
    assert tokens.digest_of(key, b"pepper-one") != tokens.digest_of(key, b"pepper-two")
    assert tokens.digest_of(key, b"pepper-one") == tokens.digest_of(key, b"pepper-one")


def test_public_ids_are_random_and_url_safe():
    """The public id is random and URL-safe, not derived from the secret."""
    ids = {tokens.new_public_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)


# ---------------------------------------------------------------- validation


GOOD = make_key("a" * 40)


@pytest.mark.parametrize(("key", "reason"), [
    (GOOD, None),
    ("kx" + GOOD[2:], "wrong prefix"),
    ("KV" + GOOD[2:], "prefix is case-sensitive"),
    ("kv-" + GOOD[3:], "wrong separator"),
    (GOOD[:-1], "too short"),
    (GOOD + "0", "too long"),
    ("", "empty"),
    (GOOD[:10] + "-" + GOOD[11:], "dash is not base62"),
    (GOOD[:10] + "_" + GOOD[11:], "underscore is not base62"),
    (GOOD[:10] + "é" + GOOD[11:], "non-ASCII"),
    (GOOD[:10] + " " + GOOD[11:], "space"),
    (make_key("a" * 40)[:-6] + "000000", "wrong checksum"),
    (" " + GOOD[:-1], "leading space"),
])
def test_is_well_formed_table(key, reason):
    """Only the right prefix, length, alphabet and checksum pass."""
    assert tokens.is_well_formed(key) is (reason is None), reason


@pytest.mark.parametrize("value", [None, 42, b"kv_" + b"a" * 46])
def test_is_well_formed_rejects_non_strings(value):
    """Non-string input is simply not a key, never an exception."""
    assert tokens.is_well_formed(value) is False


# ---------------------------------------------------------------- properties


@given(st.sampled_from(["kv", "acme", "X9"]))
def test_every_generated_key_is_well_formed(prefix):
    """Whatever the prefix, a generated key passes its own validation."""
    key = tokens.generate(prefix)
    assert tokens.is_well_formed(key, prefix)
    assert tokens.mask(key) == f"{prefix}_…{key[-4:]}"


@given(bodies)
def test_any_body_with_its_checksum_is_well_formed(body):
    """The validator accepts exactly what the reference construction builds."""
    assert tokens.is_well_formed(make_key(body))


@given(bodies, st.integers(min_value=0, max_value=48), st.sampled_from(BASE62))
def test_any_single_character_substitution_is_rejected(body, position, replacement):
    """Changing any one character (prefix, body or checksum) to another base62 one is caught."""
    key = make_key(body)
    if key[position] == replacement:
        replacement = BASE62[(BASE62.index(replacement) + 1) % 62]
    changed = key[:position] + replacement + key[position + 1:]
    assert changed != key
    assert not tokens.is_well_formed(changed)


@given(bodies, st.integers(min_value=0, max_value=48), st.sampled_from("_-. é/+="))
def test_any_non_base62_character_is_rejected(body, position, replacement):
    """A character outside the alphabet anywhere makes the key malformed."""
    key = make_key(body)
    if key[position] == replacement:
        return  # the separator stays a separator
    assert not tokens.is_well_formed(key[:position] + replacement + key[position + 1:])


def test_key_ids_never_look_like_command_line_options():
    """An id starting with '-' (1 in 64 from token_urlsafe) breaks `keyvault keys revoke ID`."""
    ids = [tokens.new_public_id() for _ in range(3000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_the_published_pattern_finds_keys_in_text_and_nothing_else():
    """The README's regular expression: prefix, `_`, 46 base62 characters, word boundaries."""
    key = tokens.generate("kv")
    text = (f'API_KEY={key}\nheaders = {{"Authorization": "Bearer {key}"}}\n'
            f"x{key} {key}x {key[:-1]} kv_{'a' * 47} acme_{key[3:]}")
    finder = tokens.finder("kv")
    assert finder.pattern == r"\bkv_[0-9A-Za-z]{46}\b"
    assert [m.group() for m in finder.finditer(text)] == [key, key]
    assert tokens.finder("acme").findall(text) == [f"acme_{key[3:]}"]


def test_the_checksum_tells_a_key_from_lookalikes_the_pattern_finds():
    key = tokens.generate("kv")
    lookalike = key[:-6] + ("000000" if key[-6:] != "000000" else "000001")
    assert tokens.finder("kv").fullmatch(lookalike)
    assert tokens.is_well_formed(key, "kv") and not tokens.is_well_formed(lookalike, "kv")
