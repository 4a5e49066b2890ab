"""The revocation stream's table: key_changes, one row for each change that can turn a key's
valid verdict into a refusal or narrow it (service.key_changes writes them, GET
/api/verify/events reads them). A row names the key by its public id, not a foreign key: the
key may be gone (its owner deleted) by the time a verifier reads about it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db
from .models import ApiKey, UTCDateTime


class KeyChange(db.Model):
    """One event of the stream. Its id is the SSE event id (`Last-Event-ID`), so ids only grow:
    AUTOINCREMENT on SQLite never hands out an id again, even after pruning every row."""

    __tablename__ = "key_changes"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))  # the key's public id
    event: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Set for the time-based events (expired, grace_ended) that every worker's sweep may find:
    # the unique index lets the first insert win and the others do nothing.
    once: Mapped[str | None] = mapped_column(String(80), unique=True)


# The sweep finds keys whose expiry (or roll grace) has just passed by these, not a table scan
# (declared here: they serve the stream, and models.py is full).
Index("ix_api_keys_expires_at", ApiKey.__table__.c.expires_at)
Index("ix_api_keys_previous_expires_at", ApiKey.__table__.c.previous_expires_at)
