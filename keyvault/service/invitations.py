"""Invitations to an organisation: mailed through the outbox as a signed link that works once,
for 7 days, for an account with the invited address.

The link carries the invitation's random public id, signed with SECRET_KEY; the row says whether
it is still pending (not accepted, not revoked, not expired), and accepting marks it with a
conditional UPDATE, so two uses of one link cannot both succeed. Inviting an address answers the
same whether or not it has an account: the mail goes to the address either way, and the person
signs up on the spot to accept. Owners and admins invite and revoke; only owners invite owners.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select, update

from .. import clock, tokens
from ..extensions import db
from ..models import User
from ..org_models import Invitation, Membership
from . import mail
from .errors import (
    AlreadyMember,
    InvitationForSomeoneElse,
    InvitationInvalid,
    InvitationNotFound,
    OrganizationInactive,
)
from .events import Origin, record
from .organizations import Actor, add_member, authorize, clean_role, membership
from .pagination import Page, paginate
from .validation import clean_email, is_public_id, normalise_email

INVITATION_VALID = timedelta(days=7)
# The page that accepts an invitation (the browser's part builds it), on KEYVAULT_BASE_URL.
ACCEPT_PATH = "/organizations/invitations/{token}"
ALTERED = ("This invitation link is not valid: it may have been cut short or altered. Ask for "
           "a new one.")
EXPIRED = "This invitation has expired: invitations work for 7 days. Ask for a new one."
USED = "This invitation was already accepted or was revoked. Ask for a new one."
OTHER_EMAIL = ("This invitation is for another email address: sign in with the account it was "
               "sent to.")


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="keyvault.org-invitation")


def token_for(invitation: Invitation) -> str:
    return _signer().dumps(invitation.public_id)


def accept_url(token: str) -> str:
    """Where the mail sends the invited person: absolute on KEYVAULT_BASE_URL when set."""
    return (current_app.config["KEYVAULT_BASE_URL"] or "") + ACCEPT_PATH.format(token=token)


def invite(actor: Actor, org_id: Any, email: Any, role: Any, origin: Origin) -> Invitation:
    """Mail an invitation for `role` to `email`; an earlier pending one to the same address is
    revoked (one link works at a time)."""
    access = authorize(actor, org_id, "manage_invitations")
    role = clean_role(role)
    if role == "owner":
        access = authorize(actor, org_id, "manage_owners")
    email = clean_email(email)
    organization, now = access.organization, clock.now()
    members = db.session.scalar(select(User.email).join(Membership).where(
        Membership.organization_id == organization.id, User.email == email))
    if members is not None:  # the member list shows it already: no account is revealed
        raise AlreadyMember(f"{email} is already a member of {organization.name}.")
    db.session.execute(update(Invitation).where(
        Invitation.organization_id == organization.id, Invitation.email == email,
        Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None)).values(revoked_at=now))
    invitation = Invitation(public_id=tokens.new_public_id(), organization_id=organization.id,
                            email=email, role=role, created_at=now,
                            expires_at=now + INVITATION_VALID, invited_by_id=access.user_id)
    db.session.add(invitation)
    inviter = (access.actor.email if access.user_id is not None
               else f"The service account “{access.actor.name}”")
    mail.queue(email, "org_invitation", organization=organization.name, role=role,
               inviter=inviter, days=INVITATION_VALID.days,
               accept_url=accept_url(token_for(invitation)))
    record("org.invitation_sent", access.user_id, origin, organization_id=organization.id,
           email=email, role=role)
    db.session.commit()
    return invitation


def _pending():
    return (Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None),
            Invitation.expires_at > clock.now())


def page_invitations(actor: Actor, org_id: Any, limit: int, cursor: str | None) -> Page:
    """The organisation's pending invitations, newest first."""
    access = authorize(actor, org_id, "manage_invitations")
    stmt = select(Invitation).where(Invitation.organization_id == access.organization.id,
                                    *_pending())
    return paginate(stmt, Invitation, limit, cursor)


def revoke_invitation(actor: Actor, org_id: Any, invitation_id: Any, origin: Origin) -> None:
    access = authorize(actor, org_id, "manage_invitations")
    invitation = db.session.scalar(select(Invitation).where(
        Invitation.organization_id == access.organization.id,
        Invitation.public_id == str(invitation_id), *_pending())
    ) if is_public_id(invitation_id) else None
    if invitation is None:
        raise InvitationNotFound()
    invitation.revoked_at = clock.now()
    record("org.invitation_revoked", access.user_id, origin,
           organization_id=access.organization.id, email=invitation.email, role=invitation.role)
    db.session.commit()


def invitation_for_token(token: Any) -> Invitation:
    """The pending invitation a link stands for (a page shows it before accepting);
    InvitationInvalid, in words, when it cannot be used."""
    try:
        public_id = _signer().loads(token if isinstance(token, str) else "")
    except BadSignature:
        raise InvitationInvalid(ALTERED, "token") from None
    invitation = db.session.scalar(select(Invitation).where(
        Invitation.public_id == str(public_id))) if is_public_id(public_id) else None
    if invitation is None or invitation.accepted_at is not None \
            or invitation.revoked_at is not None:
        raise InvitationInvalid(USED, "token")
    if clock.now() >= invitation.expires_at:
        raise InvitationInvalid(EXPIRED, "token")
    return invitation


def accept(token: Any, user: User, origin: Origin) -> Membership:
    """`user` joins with the invitation's role, once: the account's address must be the one
    invited (InvitationForSomeoneElse, 403, otherwise; the link stays usable by its owner)."""
    invitation = invitation_for_token(token)
    if normalise_email(user.email) != invitation.email:
        raise InvitationForSomeoneElse(OTHER_EMAIL, "token")
    organization = invitation.organization
    if not organization.is_active:
        raise OrganizationInactive("This organisation was deactivated by the administrator.")
    if membership(organization, user) is not None:
        raise AlreadyMember(f"You are already a member of {organization.name}.")
    taken = db.session.execute(
        update(Invitation).where(Invitation.id == invitation.id, Invitation.accepted_at.is_(None),
                                 Invitation.revoked_at.is_(None))
        .values(accepted_at=clock.now(), accepted_by_id=user.id)
        .execution_options(synchronize_session=False))
    if taken.rowcount != 1:
        db.session.rollback()
        raise InvitationInvalid(USED, "token")
    return add_member(organization, user, invitation.role, origin, invitation=invitation.public_id)
