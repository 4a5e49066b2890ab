"""The second factor: an authenticator app (TOTP) and recovery codes — enrolment, the login's
second step, turning it off, an administrator's reset.

- `methods(user)` is the one answer to "does this user have a second factor, and which": the
  login asks for one when the list is not empty (passkeys add their name here).
- The authenticator secret is stored encrypted (Fernet, its key derived with HKDF from
  KEYVAULT_KEY_PEPPER): a copy of the database alone gives nobody the codes. The pepper rather
  than SECRET_KEY: rotating the session key is the routine answer to a leaked cookie secret and
  must not void everyone's second factor, while the pepper can never change anyway (every key's
  digest depends on it). A pending enrolment's secret waits here too, never in the form or cookie.
- A code is right within ±1 time step (30 s either side, for clocks that drift); the step of the
  last accepted code is stored, so a code is taken once and never an older one after it.
- Recovery codes are 10 random base32 characters (50 bits), stored as HMAC-SHA256 digests keyed
  with the pepper. A keyed hash rather than argon2: 50 random bits cannot be guessed online (the
  guessing limit) nor offline without the pepper, and a digest is found by one indexed query and
  marked used atomically, where argon2 would cost ten slow verifications per attempt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import NamedTuple

import pyotp
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import delete, func, or_, select, update

from .. import clock
from ..extensions import db
from ..factor_models import RecoveryCode, TotpCredential
from ..models import User
from . import guessing
from .errors import InvalidInput
from .events import Origin, finish_login, record
from .passkeys import has_passkeys

STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
ISSUER = "KeyVault"
_RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no l/o/0/1 to misread
_TOTP_CODE = re.compile(r"\d{6}")


class WrongCode(InvalidInput):
    """The code typed at enrolment is not the app's current one."""


class TwoFactorStatus(NamedTuple):
    """What the account page says: on or off, and how many recovery codes are left."""

    enabled: bool
    recovery_codes_left: int


def methods(user: User) -> list[str]:
    """The user's second factors ("totp", and then "passkey" if they have one); empty when a
    password alone logs them in.

    Two-factor authentication is turned on with an authenticator app, which comes with recovery
    codes; a passkey then also answers the login's second step. Passkeys alone do not make the
    password ask for more (as on GitHub): they log in on their own, without the password, and
    someone whose only passkey is lost is not locked out of an account with no recovery codes.
    """
    enabled = db.session.scalar(select(TotpCredential.id).where(
        TotpCredential.user_id == user.id, TotpCredential.enabled_at.is_not(None)))
    if enabled is None:
        return []
    return ["totp", "passkey"] if has_passkeys(user.id) else ["totp"]


def users_with_methods() -> set[int]:
    """The ids of every user with a second factor (the admin page's column)."""
    return set(db.session.scalars(select(TotpCredential.user_id).where(
        TotpCredential.enabled_at.is_not(None))))


def status(user: User) -> TwoFactorStatus:
    left = db.session.scalar(select(func.count(RecoveryCode.id)).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))
    return TwoFactorStatus(bool(methods(user)), left or 0)


# ---------------------------------------------------------------- secrets at rest


def _fernet() -> Fernet:
    pepper = current_app.config["KEYVAULT_KEY_PEPPER"].encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"keyvault totp secret").derive(pepper)
    return Fernet(base64.urlsafe_b64encode(key))


def _secret_of(credential: TotpCredential) -> str:
    try:
        return _fernet().decrypt(credential.secret_encrypted.encode()).decode()
    except InvalidToken:  # the pepper changed: no code can be right
        return ""


def _recovery_digest(code: str) -> str:
    pepper = current_app.config["KEYVAULT_KEY_PEPPER"].encode()
    return hmac.new(pepper, b"recovery:" + code.encode(), hashlib.sha256).hexdigest()


def _normal_recovery_code(typed: str) -> str | None:
    code = "".join(typed.split()).replace("-", "").lower()
    if len(code) != 10 or any(c not in _RECOVERY_ALPHABET for c in code):
        return None
    return code


# ---------------------------------------------------------------- enrolment


def pending_secret(user: User) -> str:
    """The secret the person is enrolling (base32), made on first asking and kept until a right
    code turns it on, so a reload of the page shows the same QR code."""
    credential = _credential(user)
    if credential is not None and credential.enabled_at is not None:
        raise InvalidInput("Two-factor authentication is already on.")
    secret = _secret_of(credential) if credential is not None else ""
    if not secret:  # none yet, or one the pepper no longer opens
        secret = pyotp.random_base32()
        if credential is None:
            credential = TotpCredential(user_id=user.id)
            db.session.add(credential)
        credential.created_at = clock.now()
        credential.secret_encrypted = _fernet().encrypt(secret.encode()).decode()
        db.session.commit()
    return secret


def provisioning_uri(user: User, secret: str) -> str:
    """The otpauth:// URI the QR code holds."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def enable(user: User, code: str, origin: Origin) -> list[str]:
    """Turn the second factor on with a right code from the app; the new recovery codes, to show
    once. WrongCode (nothing changes) otherwise."""
    credential = _credential(user)
    if credential is None or credential.enabled_at is not None:
        raise InvalidInput("Start the set-up again: there is no code waiting to be confirmed.")
    if not _accept_totp(credential, code):
        db.session.rollback()
        raise WrongCode("That code is not right. Enter the 6-digit code your app shows now.",
                        "code")
    credential.enabled_at = clock.now()
    codes = _new_recovery_codes(user)
    record("2fa.enabled", user.id, origin)
    db.session.commit()
    return codes


def regenerate_recovery_codes(user: User, origin: Origin) -> list[str]:
    """Void every recovery code and make ten new ones, to show once."""
    if not methods(user):
        raise InvalidInput("Two-factor authentication is off: there are no recovery codes.")
    codes = _new_recovery_codes(user)
    record("2fa.recovery_regenerated", user.id, origin)
    db.session.commit()
    return codes


def disable(user: User, origin: Origin, *, reset: bool = False,
            by_admin: User | None = None) -> bool:
    """Turn the second factor off: the person (sudo), or a `reset` by an operator at the command
    line or by the administrator `by_admin`; False when it was not on. A password alone logs
    the person in again."""
    was_on = bool(methods(user))
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.session.execute(delete(TotpCredential).where(TotpCredential.user_id == user.id))
    if was_on and (reset or by_admin is not None):
        details = {"by_admin": by_admin.email} if by_admin is not None else {}
        record("2fa.reset_by_admin", user.id, origin, **details)
    elif was_on:
        record("2fa.disabled", user.id, origin)
    db.session.commit()
    return was_on


def _credential(user: User) -> TotpCredential | None:
    return db.session.scalar(select(TotpCredential).where(TotpCredential.user_id == user.id))


def _new_recovery_codes(user: User) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        db.session.add(RecoveryCode(user_id=user.id, digest=_recovery_digest(raw),
                                    created_at=clock.now()))
    return codes


def _accept_totp(credential: TotpCredential, typed: str) -> bool:
    """A right code for a step after the last one accepted; that step is taken at once (one
    conditional UPDATE, so two requests with the same code cannot both win)."""
    code = "".join(typed.split())
    secret = _secret_of(credential)
    if not _TOTP_CODE.fullmatch(code) or not secret:
        return False
    totp, now = pyotp.TOTP(secret), int(clock.now().timestamp()) // STEP_SECONDS
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            taken = db.session.execute(update(TotpCredential).where(
                TotpCredential.id == credential.id,
                or_(TotpCredential.last_step.is_(None), TotpCredential.last_step < step))
                .values(last_step=step).execution_options(synchronize_session=False))
            return taken.rowcount == 1
    return False


# ---------------------------------------------------------------- the login's second step


def check_login_code(user: User, typed: str, origin: Origin,
                     device: guessing.Device | None = None) -> str | None:
    """The login's second step: "totp" or "recovery" when `typed` is a right code (a recovery
    code is used up), None when it is not (logged as 2fa.failed). Wrong codes count toward their
    own guessing limit (service.guessing, kind "code"): TooManyFailures when it is reached."""
    attempt = guessing.begin(user.email, origin, user.id, device, kind="code")
    credential = _credential(user)
    method = None
    if credential is not None and credential.enabled_at is not None:
        if _accept_totp(credential, typed):
            method = "totp"
        elif (recovery := _normal_recovery_code(typed)) is not None and db.session.execute(
                update(RecoveryCode).where(
                    RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None),
                    RecoveryCode.digest == _recovery_digest(recovery))
                .values(used_at=clock.now()).execution_options(synchronize_session=False)
        ).rowcount == 1:
            method = "recovery"
    if method is None:
        record("2fa.failed", user.id, origin)
        db.session.commit()
        return None
    guessing.succeeded(attempt)
    if method == "recovery":
        record("2fa.recovery_used", user.id, origin, left=status(user).recovery_codes_left)
    finish_login(user, origin, second_factor=method)
    db.session.commit()
    return method
