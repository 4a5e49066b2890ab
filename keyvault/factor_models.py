"""The second factor and passkeys (SQLAlchemy 2.0): an authenticator app (TotpCredential), its
recovery codes (RecoveryCode), WebAuthn credentials (Passkey) and the challenges of their
ceremonies (WebAuthnChallenge). Each row belongs to a user and goes with them (ON DELETE CASCADE)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import clock
from .extensions import db
from .models import User, UTCDateTime


class TotpCredential(db.Model):
    """A user's authenticator app (service.second_factor): its secret, encrypted with a key
    derived from KEYVAULT_KEY_PEPPER; `enabled_at` is None while enrolment awaits a right code.
    `last_step` is the latest 30-second step whose code was accepted: no code is taken twice."""

    __tablename__ = "totp_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    secret_encrypted: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
    enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_step: Mapped[int | None] = mapped_column(Integer)


class RecoveryCode(db.Model):
    """One single-use recovery code, as a keyed digest (service.second_factor); `used_at` once it
    has stood in for a code."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Passkey(db.Model):
    """A WebAuthn credential a person registered to log in without a password (service.passkeys).
    Only the public key is kept: the private key never leaves the authenticator."""

    __tablename__ = "passkeys"
    __table_args__ = (Index("ix_passkeys_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # base64url of the authenticator's credential id (at most 1023 bytes, so 1364 characters)
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE-encoded
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    name: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # May the credential be synced to other devices, and is it (WebAuthn's BE and BS flags)?
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False)
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship()


class WebAuthnChallenge(db.Model):
    """A challenge handed to a browser for one passkey ceremony; deleted when it is answered, so
    an answer cannot be replayed, whichever worker gets it (service.passkeys)."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the challenge
    purpose: Mapped[str] = mapped_column(String(20))  # register, login, second_factor
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now(),
                                                 index=True)
