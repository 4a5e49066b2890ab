"""The webhooks' tables: Webhook (an endpoint a person, or an organisation's owners and admins,
registered for their keys' events) and WebhookDelivery (one event to send it: a row of the
outbox, service.outbox)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import clock
from .extensions import db
from .models import OutboxColumns, UTCDateTime


class Webhook(db.Model):
    """An endpoint: events of its owner's keys are POSTed to `url`, signed with its secret
    (stored encrypted: it must be read to sign). Owned by a person or by an organisation."""

    __tablename__ = "webhooks"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (organization_id IS NULL)", name="one_owner"),
        Index("ix_webhooks_user", "user_id"),
        Index("ix_webhooks_organization", "organization_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(Text, default="")
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret_encrypted: Mapped[str] = mapped_column(String(255))
    # After a roll with a grace period: the secret before it, which signs every delivery too
    # until `previous_secret_expires_at` (service.webhooks.roll_secret).
    previous_secret_encrypted: Mapped[str | None] = mapped_column(String(255))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
    # Set when deliveries failed for 3 days (its owner is mailed) or by its owner.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))


class WebhookDelivery(OutboxColumns, db.Model):
    """One event for one endpoint, queued in the transaction of the change it tells of. A
    redelivery is a new row with the same `message_id` (the webhook-id header, so receivers can
    drop repeats); the latest attempt's status, time and answer (at most 1 KiB) are kept."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "sent_at", "gave_up_at", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook", "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    message_id: Mapped[str] = mapped_column(String(40))
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)  # the exact body that is signed and sent
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(String(1024))

    webhook: Mapped[Webhook] = relationship()
