"""The organisations' tables: Organization (with its policy), Membership, Invitation,
ServiceAccount, Service and ServiceScope (SQLAlchemy 2.0). A service account's or a service's
keys are ApiKey rows (keyvault.models) whose service_account_id or service_id is set instead of
user_id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import clock
from .extensions import db
from .models import User, UTCDateTime

ROLES = ("owner", "admin", "member")


class Organization(db.Model):
    """A team that owns service accounts and their keys. Deactivated by the instance admin
    (`is_active`), its keys verify as `user_inactive` until it is activated again."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Policy, set by owners (service.organizations.set_policy): null means "no rule of ours".
    max_key_lifetime_days: Mapped[int | None] = mapped_column(Integer)
    allowed_scopes: Mapped[list[str] | None] = mapped_column(JSON)  # null: the whole catalogue
    revoke_unused_after_days: Mapped[int | None] = mapped_column(Integer)

    members: Mapped[list[Membership]] = relationship(back_populates="organization",
                                                     cascade="all, delete-orphan",
                                                     passive_deletes=True)


class Membership(db.Model):
    """A person's role in an organisation: owner, admin or member."""

    __tablename__ = "organization_members"
    __table_args__ = (UniqueConstraint("organization_id", "user_id"),
                      Index("ix_organization_members_user", "user_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())

    organization: Mapped[Organization] = relationship(back_populates="members")
    user: Mapped[User] = relationship()


class Invitation(db.Model):
    """An invitation mailed to an address for a role: its link is signed and works once, until
    `expires_at`, for an account with that address (service.invitations)."""

    __tablename__ = "organization_invitations"
    __table_args__ = (Index("ix_organization_invitations_org_created", "organization_id",
                            "created_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organization: Mapped[Organization] = relationship()
    invited_by: Mapped[User | None] = relationship(foreign_keys=[invited_by_id])


class ServiceAccount(db.Model):
    """A non-human identity of an organisation: it cannot log in; its keys outlive any person."""

    __tablename__ = "service_accounts"
    __table_args__ = (Index("ix_service_accounts_org_created", "organization_id", "created_at",
                            "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    organization: Mapped[Organization] = relationship()
    created_by: Mapped[User | None] = relationship()


class Service(db.Model):
    """A service of an organisation (service.services): the audience verify names, the scopes it
    defines, and its own verify keys (ApiKey rows whose service_id is set). `scopes` repeats
    its scope names, kept in step by the service layer, so verify's one lookup reads them."""

    __tablename__ = "services"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    audience: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: clock.now())

    organization: Mapped[Organization] = relationship()
    defined: Mapped[list[ServiceScope]] = relationship(
        back_populates="service", cascade="all, delete-orphan", passive_deletes=True,
        order_by="ServiceScope.name")


class ServiceScope(db.Model):
    """A scope a service defines, with its description; a name belongs to one service."""

    __tablename__ = "service_scopes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"),
                                            index=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(200))

    service: Mapped[Service] = relationship(back_populates="defined")
