"""Webhook events, queued and sent: what a key's change tells its owner's endpoints.

The security log calls `after_record` for every event it records, in the caller's transaction:
a key created, changed, rolled, revoked or reported leaked queues one delivery (service.outbox)
per enabled endpoint of the key's owner (a person, or the organisation of a service account)
that asked for that event, so a delivery exists iff its change commits. `queue_expiry_events`
(run by `keyvault notify expiring`) adds key.expiring 7 days and 1 day ahead, and key.expired.

Deliveries follow the Standard Webhooks specification: `webhook-id`, `webhook-timestamp` and
`webhook-signature` (`v1,` + base64 HMAC-SHA256 of "id.timestamp.body" under the endpoint's
`whsec_` secret; after a roll with a grace period, a second `v1,` signature under the previous
secret until the period ends, space-separated as the specification allows). A payload names
keys by id, label and mask, never by value. Every attempt checks the URL again
(keyvault.webhook_http: no private address, unless allowed; connected to the address checked);
a 2xx answer is success, anything else is retried with exponential backoff for up to 3 days,
then the endpoint is disabled and its owner mailed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from .. import clock, webhook_http
from ..extensions import db
from ..models import ApiKey, KeyNotice, SecurityEvent, User
from ..org_models import Membership, ServiceAccount
from ..webhook_models import Webhook, WebhookDelivery
from . import mail, outbox

# The events an endpoint may ask for, and what each means (the API's and the pages' words).
EVENTS = {
    "key.created": "A key was created.",
    "key.updated": "A key's label, description or scopes changed.",
    "key.rolled": "A key was given a new value.",
    "key.revoked": "A key was revoked.",
    "key.expired": "A key reached its expiry.",
    "key.leaked": "A key was found in public and revoked.",
    "key.expiring": "A key expires within 7 days, and again within 1 day.",
}
TEST_EVENT = "webhook.test"  # "send a test event": goes whatever the endpoint asked for
FROM_LOG = {"key.created", "key.updated", "key.rolled", "key.revoked", "key.leaked"}
# (KeyNotice kind, how long before the expiry), nearest first; then the expiry itself.
EXPIRY_NOTICES = (("hook_expires_1d", timedelta(days=1)), ("hook_expires_7d", timedelta(days=7)))
EXPIRED_NOTICE = "hook_expired"
SECRET_PREFIX = "whsec_"
GIVE_UP_AFTER = timedelta(days=3)
FIRST_RETRY = timedelta(seconds=10)
RETRY_CAP = timedelta(hours=6)
TIMEOUT_SECONDS = webhook_http.TIMEOUT_SECONDS  # for the whole attempt


# ---------------------------------------------------------------- secrets and signatures


def new_secret() -> str:
    """A signing secret: `whsec_` and 32 random bytes in base64, as Standard Webhooks has it."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _fernet() -> Fernet:
    pepper = current_app.config["KEYVAULT_KEY_PEPPER"].encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"keyvault webhook secret").derive(pepper)
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret: str) -> str:
    """The secret as stored: encrypted under a key derived from the pepper."""
    return _fernet().encrypt(secret.encode()).decode()


def _unsealed(sealed: str) -> str:
    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except InvalidToken:  # the pepper changed: roll the secret
        raise DeliveryFailed("the signing secret cannot be read (was the pepper changed?); "
                             "roll it") from None


def signing_secrets(webhook: Webhook, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one while a
    roll's grace period lasts (service.webhooks.roll_secret)."""
    found = [_unsealed(webhook.secret_encrypted)]
    if webhook.previous_secret_encrypted is not None \
            and webhook.previous_secret_expires_at is not None \
            and now < webhook.previous_secret_expires_at:
        found.append(_unsealed(webhook.previous_secret_encrypted))
    return found


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


# ---------------------------------------------------------------- queueing


def _when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def key_data(key: ApiKey, label: str | None = None, mask: str | None = None) -> dict:
    """A key as a payload tells of it: ids, label, mask, scopes and times, never its value."""
    account = key.service_account
    owner = ({"type": "user", "id": key.user_id} if account is None else
             {"type": "service_account", "id": account.public_id,
              "organization_id": account.organization.public_id})
    return {"key": {"id": key.public_id, "label": label or key.label, "mask": mask or key.mask,
                    "scopes": list(key.scopes or []), "created_at": _when(key.created_at),
                    "expires_at": _when(key.expires_at), "revoked_at": _when(key.revoked_at),
                    "last_rolled_at": _when(key.last_rolled_at)},
            "owner": owner}


def enqueue(webhook: Webhook, event: str, data: dict, *,
            message_id: str | None = None, at: datetime | None = None) -> WebhookDelivery:
    """Add a delivery of `event` to `webhook` to the current transaction; the caller commits."""
    now = at or clock.now()
    body = json.dumps({"type": event, "timestamp": _when(now), "data": data},
                      separators=(",", ":"), ensure_ascii=False)
    row = WebhookDelivery(public_id=secrets.token_urlsafe(12),
                          message_id=message_id or "msg_" + secrets.token_urlsafe(18),
                          webhook=webhook, event=event, payload=body, created_at=now,
                          next_attempt_at=now, attempts=0)
    db.session.add(row)
    return row


def endpoints_for(key: ApiKey, event: str) -> list[Webhook]:
    """The enabled endpoints of the key's owner that asked for `event`."""
    if key.service_account_id is not None:
        owner = Webhook.organization_id == key.service_account.organization_id
    else:
        owner = Webhook.user_id == key.user_id
    found = db.session.scalars(select(Webhook).where(owner, Webhook.disabled_at.is_(None))
                               .order_by(Webhook.id)).all()
    return [webhook for webhook in found if event in (webhook.events or [])]


def after_record(event: SecurityEvent) -> None:
    """Queue the deliveries a security-log event calls for, in its transaction (no commit)."""
    if event.event not in FROM_LOG or event.key is None:
        return
    for webhook in endpoints_for(event.key, event.event):
        enqueue(webhook, event.event, key_data(event.key, event.key_label, event.key_mask),
                at=event.created_at)


def _notice_once(key: ApiKey, kind: str, period: str, event: str, now: datetime) -> bool:
    if db.session.scalar(select(KeyNotice.id).where(
            KeyNotice.key_id == key.id, KeyNotice.kind == kind, KeyNotice.period == period)):
        return False
    webhooks = endpoints_for(key, event)
    if not webhooks:
        return False
    db.session.add(KeyNotice(key_id=key.id, kind=kind, period=period, created_at=now))
    for webhook in webhooks:
        enqueue(webhook, event, key_data(key), at=now)
    try:
        db.session.commit()
    except IntegrityError:  # another run queued these a moment ago
        db.session.rollback()
        return False
    return True


def queue_expiry_events(now: datetime | None = None) -> int:
    """Queue key.expiring (7 days and 1 day ahead) and key.expired, each once per key, threshold
    and expiry date, for keys whose owners have an endpoint; returns how many keys had some."""
    now = now or clock.now()
    users = select(Webhook.user_id).where(Webhook.disabled_at.is_(None))
    orgs = select(Webhook.organization_id).where(Webhook.disabled_at.is_(None))
    keys = db.session.scalars(
        select(ApiKey).outerjoin(User, ApiKey.user_id == User.id)
        .outerjoin(ServiceAccount, ApiKey.service_account_id == ServiceAccount.id)
        .where(ApiKey.revoked_at.is_(None), ApiKey.expires_at.is_not(None),
               ApiKey.expires_at > now - timedelta(days=1),
               ApiKey.expires_at <= now + EXPIRY_NOTICES[-1][1],
               or_(ApiKey.user_id.in_(users), ServiceAccount.organization_id.in_(orgs)))
        .order_by(ApiKey.id)).all()
    queued = 0
    for key in keys:
        period = key.expires_at.isoformat(timespec="seconds")
        if key.expires_at <= now:
            queued += _notice_once(key, EXPIRED_NOTICE, period, "key.expired", now)
            continue
        kind = next(kind for kind, before in EXPIRY_NOTICES if key.expires_at - now <= before)
        queued += _notice_once(key, kind, period, "key.expiring", now)
    return queued


# ---------------------------------------------------------------- sending


class DeliveryFailed(Exception):
    """An attempt that got no 2xx; `kept` holds what to show of it in the delivery log."""

    def __init__(self, reason: str, kept: dict | None = None):
        super().__init__(reason)
        self.kept = kept or {}


class EndpointDisabled(DeliveryFailed):
    pass


def target_of(url: str, app: Flask | None = None) -> webhook_http.Target:
    """Check `url` as this instance's settings say (webhook_http.check; Refused says why)."""
    config = (app or current_app).config
    return webhook_http.check(url, allow_private=config["KEYVAULT_WEBHOOK_ALLOW_PRIVATE"],
                              https_only=config["KEYVAULT_ENV"] == "production")


def _deliver(app: Flask, row: WebhookDelivery) -> dict:
    webhook = row.webhook
    if webhook.disabled_at is not None:
        raise EndpointDisabled("the endpoint is disabled")
    try:
        target = target_of(webhook.url, app)
    except webhook_http.Refused as refused:
        raise DeliveryFailed(f"not sent: {refused}") from None
    now = clock.now()
    timestamp = int(now.timestamp())
    body = row.payload.encode()
    headers = {"content-type": "application/json", "user-agent": "KeyVault-Webhooks/1",
               "webhook-id": row.message_id, "webhook-timestamp": str(timestamp),
               "webhook-signature": " ".join(
                   signature(secret, row.message_id, timestamp, body)
                   for secret in signing_secrets(webhook, now))}
    answer = webhook_http.post(target, body, headers, timeout=TIMEOUT_SECONDS)
    kept = {"status_code": answer.status, "duration_ms": round(answer.seconds * 1000),
            "response_body": answer.body}
    if not 200 <= answer.status < 300:
        raise DeliveryFailed(f"answered {answer.status}" + (
            " (redirects are not followed)" if 300 <= answer.status < 400 else ""), kept)
    return kept


def backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failure: 10 s, doubling, at most 6 hours."""
    return min(FIRST_RETRY * 2 ** (attempts - 1), RETRY_CAP)


def _retry_at(app: Flask, row: WebhookDelivery, attempts: int) -> datetime | None:
    """Exponential backoff until 3 days after the delivery was queued (one last try then)."""
    now, deadline = clock.now(), row.created_at + GIVE_UP_AFTER
    return None if now >= deadline else min(now + backoff(attempts), deadline)


def _give_up(app: Flask, row: WebhookDelivery) -> None:
    """3 days of failures: disable the endpoint and tell its owner (in the same transaction)."""
    webhook = db.session.get(Webhook, row.webhook_id)
    if webhook is None or webhook.disabled_at is not None:
        return
    db.session.refresh(row)  # the error the outbox just wrote, for the mail
    webhook.disabled_at = clock.now()
    webhook.disabled_reason = "Deliveries failed for 3 days."
    if webhook.user_id is not None:
        to = db.session.scalars(select(User.email).where(User.id == webhook.user_id)).all()
    else:
        to = db.session.scalars(select(User.email).join(Membership).where(
            Membership.organization_id == webhook.organization_id, Membership.role == "owner",
            User.is_active.is_(True))).all()
    for address in to:
        mail.queue(address, "webhook_disabled", url=webhook.url, since=row.created_at,
                   error=row.last_error or "", settings_url=mail.link("settings.webhooks_list"))


COURIER = outbox.Courier("webhook", WebhookDelivery, _deliver, _retry_at,
                         hopeless=lambda error: isinstance(error, EndpointDisabled),
                         on_give_up=_give_up)


def send_pending(app: Flask | None = None, *, limit: int = 1000) -> outbox.SendReport:
    """Send every delivery that is due (`keyvault webhooks send-pending`, the servers' sender)."""
    app = app or current_app._get_current_object()
    lease = timedelta(seconds=app.config["KEYVAULT_WEBHOOK_LEASE_SECONDS"])
    return outbox.send_pending(app, COURIER, lease, limit=limit)


def start_sender(app: Flask):
    """A thread that sends due deliveries every KEYVAULT_WEBHOOK_SEND_SECONDS; returns stop()."""
    return outbox.start_sender(app, app.config["KEYVAULT_WEBHOOK_SEND_SECONDS"],
                               lambda: send_pending(app), "webhook")
