"""Database models: User, ApiKey, SecurityEvent, FormSubmission, KeyUsageDay, the outbox's
columns and mail (MailOutbox, KeyNotice) (SQLAlchemy 2.0). The second factor and passkeys:
factor_models; organisations: org_models; webhooks: webhook_models; the revocation stream:
change_models."""

from __future__ import annotations

from datetime import UTC, date, datetime

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from . import clock
from .extensions import db


def as_utc(value: datetime | str | None) -> datetime | None:
    """A stored naive UTC value (a datetime, or SQLite's text) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):  # raw SQLite rows read without the type
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC in the database and hands back aware UTC datetimes on both SQLite and PG."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return as_utc(value)


KEY_STATUSES = ("active", "expired", "revoked", "user_inactive")


def key_status(revoked_at: datetime | None, user_is_active: bool, expires_at: datetime | None,
               now: datetime) -> str:
    """`revoked`, `user_inactive`, `expired` or `active`: the one precedence (model, admin filter)."""
    if revoked_at is not None:
        return "revoked"
    if not user_is_active:
        return "user_inactive"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # service.validation.clean_email
    # SHA-256 of the address's confusable skeleton (keyvault.mailbox): equal keys, one mailbox.
    # Not unique: accounts made before it existed may share one (`keyvault users doubles` lists
    # them); sign-up refuses a new account on a taken key under a lock (service.accounts).
    mailbox_key: Mapped[str] = mapped_column(String(64), index=True, server_default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When its owner proved the address is theirs (service.confirmations); None: not yet, and
    # with KEYVAULT_REQUIRE_EMAIL_CONFIRMATION on the account can neither log in nor make keys.
    email_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Part of the session's user id: raising it ends every browser session the user has.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The notices a person may turn off (service.notifications); security notices always go.
    notify_expiring: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    notify_presented: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    keys: Mapped[list[ApiKey]] = relationship(back_populates="user")

    def get_id(self) -> str:
        """Flask-Login's session id: the user id and the session epoch."""
        return f"{self.id}:{self.session_epoch}"


class ApiKey(db.Model):
    __tablename__ = "api_keys"
    __table_args__ = (
        Index("ix_api_keys_user_created", "user_id", "created_at", "id"),
        Index("ix_api_keys_service_account_created", "service_account_id", "created_at", "id"),
        Index("ix_api_keys_service_created", "service_id", "created_at", "id"),
        # Exactly one owner: a person, a service account, or a service (its verify credential).
        CheckConstraint(" + ".join(f"(CASE WHEN {c} IS NULL THEN 0 ELSE 1 END)" for c in (
            "user_id", "service_account_id", "service_id")) + " = 1", name="one_owner"),
        # Partial: almost every row has no previous digest, and a full index of NULLs makes
        # SQLite's planner (after ANALYZE) think a lookup by it matches every row.
        Index("uq_api_keys_previous_digest", "previous_digest", unique=True,
              sqlite_where=text("previous_digest IS NOT NULL"),
              postgresql_where=text("previous_digest IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    service_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("service_accounts.id", ondelete="CASCADE"))
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    # Where it works (service.restrictions; null: everywhere), on the row for verify's lookup.
    restricted_to: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    label: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text, default="")
    mask: Mapped[str] = mapped_column(String(48))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_rolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # After a roll with a grace period the old value keeps working until previous_expires_at.
    previous_digest: Mapped[str | None] = mapped_column(String(64))
    previous_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    allowed_ips: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))  # CIDRs; None: any

    user: Mapped[User | None] = relationship(back_populates="keys")
    service_account: Mapped[ServiceAccount | None] = relationship()  # noqa: F821 - org_models
    service: Mapped[Service | None] = relationship()  # noqa: F821 - org_models

    @property
    def owner_is_active(self) -> bool:
        """A person's account, or the organisation of a service account or service, is active."""
        owner = self.user or (self.service_account or self.service).organization
        return owner.is_active

    def status(self, now: datetime | None = None) -> str:
        """`active`, `revoked`, `user_inactive` or `expired` (see key_status)."""
        return key_status(self.revoked_at, self.owner_is_active, self.expires_at,
                          now or clock.now())


class SecurityEvent(db.Model):
    __tablename__ = "security_events"
    __table_args__ = (
        Index("ix_security_events_user_created", "user_id", "created_at", "id"),
        # Counting an address's recent failed logins (service.log_in's throttle).
        Index("ix_security_events_address_event_created", "ip_address", "event", "created_at"),
        # One key's events, newest first (the log filtered by key, the key page).
        Index("ix_security_events_key_created", "key_id", "created_at", "id"),
        Index("ix_security_events_organization_created", "organization_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    event: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(64))  # as in the access log
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    # The key's label and mask when the event happened: a later rename or roll does not
    # rewrite history.
    key_label: Mapped[str | None] = mapped_column(String(40))
    key_mask: Mapped[str | None] = mapped_column(String(48))
    # The API key that made the change (an API call), with its label and mask at the time.
    actor_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"))
    actor_label: Mapped[str | None] = mapped_column(String(40))
    actor_mask: Mapped[str | None] = mapped_column(String(48))
    # The organisation the event happened in (its log); null for a person's own affairs.
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL"))

    key: Mapped[ApiKey | None] = relationship(foreign_keys=[key_id])
    actor_key: Mapped[ApiKey | None] = relationship(foreign_keys=[actor_key_id])
    user: Mapped[User | None] = relationship(foreign_keys=[user_id])


class PasswordAttempt(db.Model):
    """One password check (login or sudo prompt) in the guessing window: counted per address,
    per account and per known device (service.guessing). Written before the check, as failed,
    so parallel guesses are counted even while their hashes are still being computed."""

    __tablename__ = "password_attempts"
    __table_args__ = (
        Index("ix_password_attempts_address_created", "ip_address", "created_at"),
        Index("ix_password_attempts_account_created", "account", "created_at"),
        Index("ix_password_attempts_device_created", "device", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now(),
                                                 index=True)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    account: Mapped[str] = mapped_column(String(64))  # a keyed digest of the email tried
    device: Mapped[str | None] = mapped_column(String(32))  # a known device's cookie id
    failed: Mapped[bool] = mapped_column(Boolean, default=True)
    # What was guessed: "password", or "code" (the login's second step); each has its own count.
    kind: Mapped[str] = mapped_column(String(16), default="password", server_default="password")


class FormSubmission(db.Model):
    """A create or roll form that has acted: its one-time token, so a reload, Back or a double
    click cannot act again (service.submissions)."""

    __tablename__ = "form_submissions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())


class KeyUsageDay(db.Model):
    """How many times a key was presented on one UTC day, per verdict code (service.usage
    counts in memory and adds to these rows every few seconds, never once per verify)."""

    __tablename__ = "key_usage_daily"
    __table_args__ = (UniqueConstraint("key_id", "day", "outcome"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    outcome: Mapped[str] = mapped_column(String(20))  # a verdict code: valid, expired, …
    count: Mapped[int] = mapped_column(Integer, default=0)
    # The latest presentation counted in this row, and the address it came from.
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_address: Mapped[str | None] = mapped_column(String(45))


class OutboxColumns:
    """Every outbox table's columns (service.outbox): tries, the next one, the lease of the sender
    holding the row (claimed_until, claimed_by), and how it ended: sent or given up on."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(32))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    gave_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))


class MailOutbox(OutboxColumns, db.Model):
    """One mail to send (service.mail), queued in the transaction of the action that caused it."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_due", "sent_at", "gave_up_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(40))  # its template, for the log line


class KeyNotice(db.Model):
    """A notice about a key that went (a mail, a webhook event), so each goes once: per threshold
    and expiry date, or per day; inserted with the notice, the unique constraint settles races."""

    __tablename__ = "key_notices"
    __table_args__ = (UniqueConstraint("key_id", "kind", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # expires_7d, presented, hook_expires_1d, …
    period: Mapped[str] = mapped_column(String(32))  # the expiry it warned of, or the UTC day
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
