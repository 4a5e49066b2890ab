"""Webhook endpoints: registered, changed, rolled, removed, their deliveries listed and resent.

A person's endpoints hear of their own keys; an organisation's (registered by its owners and
admins: organizations.authorize's `manage_webhooks`) of its service accounts' keys. The one
ownership check is `get_webhook`: someone else's endpoint is 404, like a missing one. A URL is
checked when it is registered or changed (webhook_http: 400 naming why) and again at every
delivery (service.webhook_delivery). The signing secret is shown once, when made or rolled.
"""

from __future__ import annotations

import secrets
from typing import Any, NamedTuple

from sqlalchemy import func, or_, select

from .. import clock, webhook_http
from ..extensions import db
from ..models import User
from ..org_models import Membership, Organization
from ..webhook_models import Webhook, WebhookDelivery
from . import webhook_delivery
from .errors import DeliveryNotFound, InvalidInput, WebhookLimitReached, WebhookNotFound
from .organizations import RIGHTS, authorize
from .pagination import Page, paginate
from .validation import clean_description, is_public_id

URL_MAX = 2000
MAX_PER_OWNER = 10


class Created(NamedTuple):
    """A new (or rolled) endpoint, and its signing secret: shown this once."""

    webhook: Webhook
    secret: str


def clean_url(url: Any) -> str:
    """A URL webhooks may be sent to now (InvalidInput on `url` naming why not)."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("Enter the https URL to send events to.", "url")
    url = url.strip()
    if len(url) > URL_MAX:
        raise InvalidInput(f"Keep the URL to {URL_MAX} characters or fewer.", "url")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise InvalidInput("The URL cannot hold spaces or control characters.", "url")
    try:
        webhook_delivery.target_of(url)
    except webhook_http.Refused as refused:
        raise InvalidInput(str(refused), "url") from None
    return url


def clean_events(events: Any) -> list[str]:
    choices = ", ".join(webhook_delivery.EVENTS)
    if not isinstance(events, list) or not events:
        raise InvalidInput(f"Choose the events to send: a list of one or more of {choices}.",
                           "events")
    unknown = [event for event in events if event not in webhook_delivery.EVENTS]
    if unknown:
        raise InvalidInput(f"Unknown event {unknown[0]!r}: choose from {choices}.", "events")
    return list(dict.fromkeys(events))


def _managed_organizations(user: User):
    """The organisations whose webhooks `user` may manage (their role allows it)."""
    return select(Membership.organization_id).where(
        Membership.user_id == user.id, Membership.role.in_(RIGHTS["manage_webhooks"]))


def page_webhooks(user: User, limit: int, cursor: str | None) -> Page:
    """The person's endpoints and those of the organisations they manage, newest first."""
    stmt = select(Webhook).where(or_(Webhook.user_id == user.id,
                                     Webhook.organization_id.in_(_managed_organizations(user))))
    return paginate(stmt, Webhook, limit, cursor)


def get_webhook(user: User, public_id: Any, *, change: bool = False) -> Webhook:
    """The one ownership check: the person's endpoint, or their organisation's when their role
    lets them manage its webhooks (and, for a change, it is not deactivated)."""
    if not is_public_id(public_id):
        raise WebhookNotFound()
    webhook = db.session.scalar(select(Webhook).where(Webhook.public_id == str(public_id)))
    if webhook is None or (webhook.user_id is not None and webhook.user_id != user.id):
        raise WebhookNotFound()
    if webhook.organization_id is not None:
        organization = db.session.get(Organization, webhook.organization_id)
        member = db.session.scalar(select(Membership).where(
            Membership.organization_id == organization.id, Membership.user_id == user.id))
        if member is None or member.role not in RIGHTS["manage_webhooks"]:
            raise WebhookNotFound()
        if change:
            authorize(user, organization.public_id, "manage_webhooks")
    return webhook


def organization_of(webhook: Webhook) -> Organization | None:
    return (db.session.get(Organization, webhook.organization_id)
            if webhook.organization_id is not None else None)


def create_webhook(user: User, url: Any, events: Any, description: Any = None, *,
                   organization: str | None = None) -> Created:
    """Register an endpoint for the person's keys, or (naming one) an organisation's."""
    owner = {"user_id": user.id}
    if organization is not None:
        owner = {"organization_id": authorize(user, organization, "manage_webhooks")
                 .organization.id}
    url, events = clean_url(url), clean_events(events)
    description = clean_description(description)
    column = Webhook.user_id if "user_id" in owner else Webhook.organization_id
    count = db.session.scalar(select(func.count(Webhook.id)).where(
        column == next(iter(owner.values()))))
    if count >= MAX_PER_OWNER:
        raise WebhookLimitReached(f"There are already {MAX_PER_OWNER} webhooks, the most "
                                  "allowed: remove one to add another.")
    secret = webhook_delivery.new_secret()
    webhook = Webhook(public_id=secrets.token_urlsafe(12), url=url, events=events,
                      description=description, secret_encrypted=webhook_delivery.seal(secret),
                      **owner)
    db.session.add(webhook)
    db.session.commit()
    return Created(webhook, secret)


def update_webhook(user: User, public_id: Any, **changes: Any) -> Webhook:
    """Change the URL, events, description, or enable (`enabled`) a disabled endpoint."""
    webhook = get_webhook(user, public_id, change=True)
    if "url" in changes:
        webhook.url = clean_url(changes["url"])
    if "events" in changes:
        webhook.events = clean_events(changes["events"])
    if "description" in changes:
        webhook.description = clean_description(changes["description"])
    if "enabled" in changes:
        enabled = changes["enabled"]
        if not isinstance(enabled, bool):
            raise InvalidInput("Say true or false.", "enabled")
        if enabled:
            webhook.disabled_at = webhook.disabled_reason = None
        elif webhook.disabled_at is None:
            webhook.disabled_at = clock.now()
            webhook.disabled_reason = "Disabled by its owner."
    db.session.commit()
    return webhook


def delete_webhook(user: User, public_id: Any) -> None:
    db.session.delete(get_webhook(user, public_id, change=True))
    db.session.commit()


def roll_secret(user: User, public_id: Any) -> Created:
    """A new signing secret, at once (the old one signs nothing more); shown this once."""
    webhook = get_webhook(user, public_id, change=True)
    secret = webhook_delivery.new_secret()
    webhook.secret_encrypted = webhook_delivery.seal(secret)
    db.session.commit()
    return Created(webhook, secret)


def page_deliveries(user: User, public_id: Any, limit: int, cursor: str | None) -> Page:
    """The endpoint's deliveries, newest first: event, status, timing, the answer's start."""
    webhook = get_webhook(user, public_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    return paginate(stmt, WebhookDelivery, limit, cursor)


def redeliver(user: User, public_id: Any, delivery_id: Any) -> WebhookDelivery:
    """Send a delivery again, as a new one with the same webhook-id (receivers may drop it)."""
    webhook = get_webhook(user, public_id, change=True)
    if not is_public_id(delivery_id):
        raise DeliveryNotFound()
    original = db.session.scalar(select(WebhookDelivery).where(
        WebhookDelivery.public_id == str(delivery_id), WebhookDelivery.webhook_id == webhook.id))
    if original is None:
        raise DeliveryNotFound()
    now = clock.now()
    row = WebhookDelivery(public_id=secrets.token_urlsafe(12), message_id=original.message_id,
                          webhook=webhook, event=original.event, payload=original.payload,
                          created_at=now, next_attempt_at=now, attempts=0)
    db.session.add(row)
    db.session.commit()
    return row


def send_test(user: User, public_id: Any) -> WebhookDelivery:
    """Queue a `webhook.test` event to the endpoint, whatever events it asked for."""
    webhook = get_webhook(user, public_id, change=True)
    row = webhook_delivery.enqueue(webhook, webhook_delivery.TEST_EVENT,
                                   {"webhook": {"id": webhook.public_id}})
    db.session.commit()
    return row
