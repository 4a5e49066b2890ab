"""Password hashing (passwords.py), tested on its own: no app, no database."""

from __future__ import annotations

import pytest

from keyvault import passwords

CHEAP = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


@pytest.fixture(scope="module")
def hasher():
    return passwords.make_hasher(**CHEAP)


def test_hash_is_argon2id_and_verifies(hasher):
    """A hash is argon2id with the hasher's parameters and verifies the same password."""
    stored = passwords.hash_password(hasher, "correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "m=1024,t=1,p=1" in stored
    assert "correct horse battery" not in stored
    assert passwords.verify_password(hasher, stored, "correct horse battery") is True


def test_hashes_are_salted(hasher):
    """The same password hashes differently each time."""
    assert passwords.hash_password(hasher, "same") != passwords.hash_password(hasher, "same")


@pytest.mark.parametrize("attempt", ["correct horse batterY", "", "correct horse battery "])
def test_wrong_password_is_false(hasher, attempt):
    """Any other password is a plain False."""
    stored = passwords.hash_password(hasher, "correct horse battery")
    assert passwords.verify_password(hasher, stored, attempt) is False


@pytest.mark.parametrize("stored", [
    "", "not a hash", "$argon2id$v=19$m=1024,t=1,p=1$garbage",
    "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$",
    "$2b$12$abcdefghijklmnopqrstuuNqY0i2cYvFCZ9Xh5sN6uZ6i8fKkXo1a",
])
def test_corrupt_hash_is_false_not_an_exception(hasher, stored):
    """A damaged or foreign stored hash counts as a mismatch."""
    assert passwords.verify_password(hasher, stored, "anything") is False


def test_needs_rehash_when_parameters_change(hasher):
    """A hash made with other parameters needs re-hashing; one made with these does not."""
    stored = passwords.hash_password(hasher, "pw")
    assert passwords.needs_rehash(hasher, stored) is False
    stronger = passwords.make_hasher(time_cost=2, memory_cost=2048, parallelism=1)
    assert passwords.needs_rehash(stronger, stored) is True
    assert passwords.needs_rehash(stronger, passwords.hash_password(stronger, "pw")) is False


def test_needs_rehash_for_a_corrupt_hash(hasher):
    """An unreadable stored hash is replaced at the next successful login."""
    assert passwords.needs_rehash(hasher, "not a hash") is True


def test_default_hasher_is_argon2id_with_library_defaults():
    """Production keeps argon2-cffi's defaults (RFC 9106 low-memory profile) and argon2id."""
    from argon2 import PasswordHasher, Type

    default, library = passwords.make_hasher(), PasswordHasher()
    assert default.type is Type.ID
    assert (default.time_cost, default.memory_cost, default.parallelism) == (
        library.time_cost, library.memory_cost, library.parallelism)
