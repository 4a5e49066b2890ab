"""Password hashing with argon2id. No Flask, no database."""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


def make_hasher(time_cost: int = 3, memory_cost: int = 65536, parallelism: int = 4) -> PasswordHasher:
    """An argon2id hasher; tests pass cheap parameters, production keeps argon2-cffi's defaults."""
    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
    )


def hash_password(hasher: PasswordHasher, password: str) -> str:
    return hasher.hash(password)


def verify_password(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    """True when the password matches; a corrupt hash counts as a mismatch, never an exception."""
    try:
        return hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(hasher: PasswordHasher, password_hash: str) -> bool:
    """True when the stored hash was made with other parameters than the hasher's."""
    try:
        return hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True
