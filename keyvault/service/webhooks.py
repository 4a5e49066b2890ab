"""Webhook endpoints: registered, changed, rolled, removed, their deliveries listed and resent.

A person's endpoints hear of their own keys; an organisation's (registered by its owners and
admins: organizations.authorize's `manage_webhooks`) of its service accounts' keys. The one
ownership check is `get_webhook`: someone else's endpoint is 404, like a missing one. A URL is
checked when it is registered or changed (webhook_http: 400 naming why) and again at every
delivery (service.webhook_delivery). The signing secret is shown once, when made or rolled; a
roll may keep the previous secret signing for a grace period, so the receiver can switch.

Every change is in the security log (`webhook.created`, `webhook.updated`,
`webhook.secret_rolled`, `webhook.deleted`; an organisation's endpoint in its log): an endpoint
hears of keys, so who pointed one where is what an owner asks after a surprise. The log names
an endpoint by its id and its URL's host, never the whole URL: a path or query may carry a
receiver's token.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from sqlalchemy import func, or_, select

from .. import clock, webhook_http
from ..extensions import db
from ..models import User
from ..org_models import Membership, Organization
from ..webhook_models import Webhook, WebhookDelivery
from . import webhook_delivery
from .errors import DeliveryNotFound, InvalidInput, WebhookLimitReached, WebhookNotFound
from .events import Origin, record
from .organizations import RIGHTS, authorize
from .pagination import Page, paginate
from .validation import clean_description, clean_grace_period, is_public_id

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
                   origin: Origin, organization: str | None = None) -> Created:
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
    db.session.flush()
    _log("webhook.created", user, webhook, origin, host=host_of(url), events=events)
    db.session.commit()
    return Created(webhook, secret)


def host_of(url: str) -> str:
    """The URL's host (and port), as the security log names an endpoint: never its path."""
    return urlsplit(url).netloc.rpartition("@")[2]


def _log(event: str, user: User, webhook: Webhook, origin: Origin, **details: Any) -> None:
    """A change to an endpoint, in its owner's log (the person's, or the organisation's with
    the person who made it); the caller commits."""
    record(event, user.id, origin, organization_id=webhook.organization_id,
           webhook=webhook.public_id, **details)


def update_webhook(user: User, public_id: Any, *, origin: Origin, **changes: Any) -> Webhook:
    """Change the URL, events, description, or enable (`enabled`) a disabled endpoint. Each
    field is checked before any changes; what did change is logged (nothing, when nothing did)."""
    webhook = get_webhook(user, public_id, change=True)
    cleaned: dict[str, Any] = {}
    if "url" in changes:
        cleaned["url"] = clean_url(changes["url"])
    if "events" in changes:
        cleaned["events"] = clean_events(changes["events"])
    if "description" in changes:
        cleaned["description"] = clean_description(changes["description"])
    enabled = changes.get("enabled")
    if "enabled" in changes and not isinstance(enabled, bool):
        raise InvalidInput("Say true or false.", "enabled")
    details: dict[str, Any] = {}
    if cleaned.get("url", webhook.url) != webhook.url:
        details.update(host_from=host_of(webhook.url), host_to=host_of(cleaned["url"]))
    before = list(webhook.events or [])
    if "events" in cleaned and cleaned["events"] != before:
        details.update(events_added=[e for e in cleaned["events"] if e not in before],
                       events_removed=[e for e in before if e not in cleaned["events"]])
    fields = [name for name, value in cleaned.items() if getattr(webhook, name) != value]
    for name in fields:
        setattr(webhook, name, cleaned[name])
    if enabled is True and webhook.disabled_at is not None:
        webhook.disabled_at = webhook.disabled_reason = None
        fields.append("enabled")
        details["enabled"] = True
    elif enabled is False and webhook.disabled_at is None:
        webhook.disabled_at = clock.now()
        webhook.disabled_reason = "Disabled by its owner."
        fields.append("enabled")
        details["enabled"] = False
    if fields:
        _log("webhook.updated", user, webhook, origin, host=host_of(webhook.url), fields=fields,
             **details)
    db.session.commit()
    return webhook


def delete_webhook(user: User, public_id: Any, *, origin: Origin) -> None:
    webhook = get_webhook(user, public_id, change=True)
    _log("webhook.deleted", user, webhook, origin, host=host_of(webhook.url))
    db.session.delete(webhook)
    db.session.commit()


def roll_secret(user: User, public_id: Any, *, origin: Origin,
                grace_period_seconds: Any = 0) -> Created:
    """A new signing secret, shown this once. The old one stops signing at once, or (a grace
    period of up to 7 days) signs every delivery beside the new one until the period ends, so
    the receiver can take the new secret without refusing an event in between. A roll inside
    a grace period drops the secret before the old one: two sign at most."""
    webhook = get_webhook(user, public_id, change=True)  # someone else's: 404 before any 400
    seconds = clean_grace_period(grace_period_seconds)
    secret = webhook_delivery.new_secret()
    if seconds:
        webhook.previous_secret_encrypted = webhook.secret_encrypted
        webhook.previous_secret_expires_at = clock.now() + timedelta(seconds=seconds)
    else:
        webhook.previous_secret_encrypted = webhook.previous_secret_expires_at = None
    webhook.secret_encrypted = webhook_delivery.seal(secret)
    _log("webhook.secret_rolled", user, webhook, origin, host=host_of(webhook.url),
         grace_period_seconds=seconds)
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
