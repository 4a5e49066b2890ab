"""Passkeys (WebAuthn, with py_webauthn): register, list, rename, remove, and log in with one.

A ceremony starts with options holding a fresh challenge, which is kept here (its digest, in
webauthn_challenges) for CHALLENGE_LIFETIME; the browser's answer names the challenge, and the
challenge is deleted before the answer is checked, so no answer counts twice, on any worker.
The relying party (the domain passkeys are bound to, and the origin pages are served from)
comes from the caller (keyvault.http.browser.relying_party): nothing here knows about HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from .. import clock
from ..extensions import db
from ..factor_models import Passkey, WebAuthnChallenge
from ..models import User
from . import confirmations, guessing
from .errors import InvalidInput, KeyNotFound, ServiceError, TooManyFailures
from .events import Origin, finish_login, record
from .validation import clean_label, is_row_id

CHALLENGE_LIFETIME = timedelta(minutes=5)
MAX_PASSKEYS = 20
PURPOSES = ("register", "login", "second_factor")
TRANSPORTS = {transport.value for transport in AuthenticatorTransport}


class RelyingParty(NamedTuple):
    """Who asks for passkeys: the domain they are bound to, and the origin pages come from."""

    id: str
    origin: str
    name: str = "KeyVault"


class PasskeyNotFound(KeyNotFound):
    def __init__(self, detail: str = "No such passkey."):
        super().__init__(detail)


class PasskeyRefused(ServiceError):
    """A passkey's answer that does not log anyone in or register anything."""

    status = 400
    title = "Passkey not accepted"


def user_handle(user_id: int) -> bytes:
    """The account's WebAuthn user handle: stable, opaque (no email or row id shows), and kept
    by the authenticator with each passkey so it can tell this account's passkeys apart."""
    pepper = current_app.config["KEYVAULT_KEY_PEPPER"].encode()
    return hmac.new(pepper, f"webauthn-user:{user_id}".encode(), hashlib.sha256).digest()


def clean_name(name: Any) -> str:
    """A passkey's name follows a key label's rules (service.validation.clean_label)."""
    try:
        return clean_label(name)
    except InvalidInput as error:
        raise InvalidInput(error.detail.replace("label", "name"), "name") from None


# ---------------------------------------------------------------- the account's passkeys


def list_passkeys(user: User) -> list[Passkey]:
    return list(db.session.scalars(select(Passkey).where(Passkey.user_id == user.id)
                                   .order_by(Passkey.created_at, Passkey.id)))


def has_passkeys(user_id: int) -> bool:
    """For the second step of a password login: may this account answer with a passkey?"""
    return db.session.scalar(select(func.count(Passkey.id))
                             .where(Passkey.user_id == user_id)) > 0


def get_passkey(user: User, passkey_id: Any) -> Passkey:
    """The one ownership check: a passkey of someone else is as unknown as a missing one."""
    passkey = db.session.get(Passkey, passkey_id) if is_row_id(passkey_id) else None
    if passkey is None or passkey.user_id != user.id:
        raise PasskeyNotFound()
    return passkey


def rename_passkey(user: User, passkey_id: Any, name: Any, origin: Origin) -> Passkey:
    passkey = get_passkey(user, passkey_id)
    name = clean_name(name)
    if name != passkey.name:
        record("passkey.renamed", user.id, origin, name_from=passkey.name, name_to=name)
        passkey.name = name
        db.session.commit()
    return passkey


def remove_passkey(user: User, passkey_id: Any, origin: Origin) -> Passkey:
    passkey = get_passkey(user, passkey_id)
    record("passkey.removed", user.id, origin, name=passkey.name)
    db.session.delete(passkey)
    db.session.commit()
    return passkey


# ---------------------------------------------------------------- challenges


def _digest(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def _issue(options, purpose: str, user_id: int | None) -> str:
    """Keep the options' challenge for its ceremony; the options as JSON for the browser."""
    now = clock.now()
    db.session.execute(delete(WebAuthnChallenge).where(
        WebAuthnChallenge.created_at < now - CHALLENGE_LIFETIME))
    db.session.add(WebAuthnChallenge(digest=_digest(options.challenge), purpose=purpose,
                                     user_id=user_id, created_at=now))
    db.session.commit()
    return options_to_json(options)


def _consume(client_data_json: bytes, purpose: str, user_id: int | None) -> bytes:
    """The challenge the browser answered, if this server issued it for this ceremony and it is
    still fresh; deleted either way, so an answer is checked at most once."""
    try:
        challenge = parse_client_data_json(client_data_json).challenge
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise InvalidInput("The passkey's answer is not in the form a browser sends.") from error
    removed = db.session.execute(delete(WebAuthnChallenge).where(
        WebAuthnChallenge.digest == _digest(challenge),
        WebAuthnChallenge.purpose == purpose,
        WebAuthnChallenge.user_id.is_(None) if user_id is None
        else WebAuthnChallenge.user_id == user_id,
        WebAuthnChallenge.created_at >= clock.now() - CHALLENGE_LIFETIME,
    )).rowcount
    db.session.execute(delete(WebAuthnChallenge).where(  # a stale one goes too
        WebAuthnChallenge.digest == _digest(challenge)))
    db.session.commit()
    if removed != 1:
        raise PasskeyRefused("This passkey request has expired or was already used. "
                             "Try again.")
    return challenge


def _timeout_ms() -> int:
    return int(CHALLENGE_LIFETIME.total_seconds() * 1000)


# ---------------------------------------------------------------- registration


def registration_options(user: User, rp: RelyingParty) -> str:
    """Options for navigator.credentials.create(): a discoverable credential if the
    authenticator can keep one, user verification if it can, none of the account's own again."""
    exclude = [PublicKeyCredentialDescriptor(id=_raw_id(p.credential_id),
                                             transports=_transports(p.transports))
               for p in list_passkeys(user)]
    options = generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_name=user.email, user_id=user_handle(user.id),
        timeout=_timeout_ms(), exclude_credentials=exclude,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED))
    return _issue(options, "register", user.id)


def register_passkey(user: User, name: Any, credential: Any, rp: RelyingParty,
                     origin: Origin) -> Passkey:
    """Keep the passkey the browser just made (its answer to registration_options)."""
    name = clean_name(name)
    try:
        parsed = parse_registration_credential_json(_as_dict(credential))
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise InvalidInput("The passkey's answer is not in the form a browser sends.") from error
    challenge = _consume(parsed.response.client_data_json, "register", user.id)
    if len(list_passkeys(user)) >= MAX_PASSKEYS:
        raise PasskeyRefused(f"An account can have at most {MAX_PASSKEYS} passkeys: remove one "
                             "first.")
    try:
        verified = verify_registration_response(
            credential=parsed, expected_challenge=challenge, expected_rp_id=rp.id,
            expected_origin=rp.origin)
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise PasskeyRefused("Your browser's answer did not verify, so no passkey was added. "
                             "Try again.") from error
    passkey = Passkey(
        user_id=user.id, credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key, sign_count=verified.sign_count,
        transports=[t.value for t in parsed.response.transports or [] if t.value in TRANSPORTS],
        name=name, created_at=clock.now(),
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up)
    db.session.add(passkey)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise PasskeyRefused("This passkey is already registered.") from None
    record("passkey.added", user.id, origin, name=name, synced=passkey.backed_up)
    db.session.commit()
    return passkey


# ---------------------------------------------------------------- authentication


def authentication_options(rp: RelyingParty, expected_user_id: int | None = None) -> str:
    """Options for navigator.credentials.get(). For a login, no list of credentials: the
    authenticator offers its passkeys for this site (discoverable credentials, no email asked).
    For the second step of a password login (`expected_user_id`), that account's passkeys."""
    allow = None
    if expected_user_id is not None:
        allow = [PublicKeyCredentialDescriptor(id=_raw_id(p.credential_id),
                                               transports=_transports(p.transports))
                 for p in db.session.scalars(select(Passkey)
                                             .where(Passkey.user_id == expected_user_id))]
    options = generate_authentication_options(
        rp_id=rp.id, timeout=_timeout_ms(), allow_credentials=allow,
        user_verification=UserVerificationRequirement.PREFERRED)
    purpose = "login" if expected_user_id is None else "second_factor"
    return _issue(options, purpose, expected_user_id)


def authenticate(credential: Any, rp: RelyingParty, origin: Origin, *,
                 expected_user_id: int | None = None) -> User:
    """The active account whose passkey gave this answer to authentication_options.

    Without `expected_user_id` this is a whole login: the passkey must have verified the person
    (PIN or biometrics), which with the device itself makes two factors; `login.succeeded` is
    logged. With it, the answer is a second factor after the password: it must come from one of
    that account's passkeys (the device need not verify the person: the password did that
    part). Either way the login is logged. Every refusal is PasskeyRefused
    (or InvalidInput for a malformed answer) and is logged as `passkey.failed`; a login's
    failures count toward the address's guessing limit (TooManyFailures: service.guessing).
    """
    try:
        parsed = parse_authentication_credential_json(_as_dict(credential))
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise InvalidInput("The passkey's answer is not in the form a browser sends.") from error
    purpose = "login" if expected_user_id is None else "second_factor"
    # A failed passkey login counts toward the address's guessing limit, as a wrong password.
    try:
        attempt = guessing.begin(None, origin, None, None) if expected_user_id is None else None
    except TooManyFailures:
        minutes = int(guessing.WINDOW.total_seconds() // 60)
        raise TooManyFailures(f"Too many failed logins from your address: try again in "
                              f"{minutes} minutes.") from None
    try:
        challenge = _consume(parsed.response.client_data_json, purpose, expected_user_id)
    except PasskeyRefused:
        _failed(None, origin, "challenge")
        raise
    passkey = db.session.scalar(select(Passkey).where(
        Passkey.credential_id == bytes_to_base64url(parsed.raw_id)))
    if passkey is None:
        _failed(None, origin, "unknown_credential")
        raise PasskeyRefused("KeyVault does not know this passkey: it may have been removed. "
                             "Log in with your password.")
    user = passkey.user
    handle = parsed.response.user_handle
    if expected_user_id is not None and passkey.user_id != expected_user_id or (
            handle is not None and not hmac.compare_digest(handle, user_handle(user.id))):
        _failed(None, origin, "other_account")
        raise PasskeyRefused("This passkey belongs to another account.")
    try:
        verified = verify_authentication_response(
            credential=parsed, expected_challenge=challenge, expected_rp_id=rp.id,
            expected_origin=rp.origin, credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=expected_user_id is None)
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        _failed(user.id, origin, "invalid", passkey=passkey.name, problem=str(error)[:200])
        raise PasskeyRefused("The passkey's answer could not be verified. Try again, or log "
                             "in with your password.") from error
    if not user.is_active:
        _failed(user.id, origin, "inactive", passkey=passkey.name)
        raise PasskeyRefused("This account is deactivated.")
    if confirmations.required(user):
        _failed(user.id, origin, "unconfirmed", passkey=passkey.name)
        raise PasskeyRefused("Confirm your email address first: log in with your password to "
                             "be mailed a new confirmation link.")
    now = clock.now()
    passkey.sign_count = verified.new_sign_count
    passkey.backed_up = verified.credential_backed_up
    passkey.last_used_at = now
    guessing.succeeded(attempt)
    if expected_user_id is None:
        finish_login(user, origin, method="passkey", passkey=passkey.name)
    else:
        finish_login(user, origin, second_factor="passkey", passkey=passkey.name)
    db.session.commit()
    return user


def _failed(user_id: int | None, origin: Origin, reason: str, **details: Any) -> None:
    record("passkey.failed", user_id, origin, reason=reason, **details)
    db.session.commit()


# ---------------------------------------------------------------- encoding


def _as_dict(credential: Any) -> dict:
    if not isinstance(credential, dict):
        raise InvalidInput("The passkey's answer is not in the form a browser sends.")
    return credential


def _raw_id(credential_id: str) -> bytes:
    return base64url_to_bytes(credential_id)


def _transports(names: list[str]) -> list[AuthenticatorTransport]:
    return [AuthenticatorTransport(name) for name in names or [] if name in TRANSPORTS]
