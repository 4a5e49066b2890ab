"""The webhooks API's request and response models (keyvault.api.webhooks): endpoints and their
deliveries. They parse what comes in, shape what goes out and generate the OpenAPI document's
components; the rules (which URLs, which events) are service.webhooks'."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from .. import clock
from ..service.validation import GRACE_MAX_SECONDS, clean_grace_period
from ..service.webhook_delivery import EVENTS, TEST_EVENT
from ..service.webhooks import URL_MAX, organization_of
from .inputs import Credential, Description, _Request
from .schemas import _NEXT, _PREVIOUS, _Response

EVENT_LIST = ", ".join(f"`{name}` ({meaning[:-1].lower()})" for name, meaning in EVENTS.items())
Url = Annotated[str, Field(max_length=URL_MAX, json_schema_extra={"format": "uri"}, description=(
    "Where events are POSTed: https (plain http only where the instance allows it). Refused "
    "(400) when its host resolves to a loopback, private, link-local, multicast, reserved or "
    "cloud metadata address; checked again before every delivery."))]
Events = Annotated[list[str], Field(min_length=1, json_schema_extra={
    "items": {"type": "string", "enum": list(EVENTS)}}, description=f"One or more of {EVENT_LIST}.")]


class CreateWebhook(_Request):
    url: Url
    events: Events
    description: Description = None
    organization_id: str | None = Field(None, description=(
        "An organisation's public id: the endpoint hears of its service accounts' keys (its "
        "owners and admins only). Omitted: the endpoint hears of the caller's own keys."))
    personal_api_key: Credential = None


class UpdateWebhook(_Request):
    """Only the fields given change."""

    url: Url | None = None
    events: Events | None = None
    description: Description = None
    enabled: bool | None = Field(None, description=(
        "`true` turns a disabled endpoint on again (its failed deliveries can be redelivered); "
        "`false` stops deliveries to it."))
    personal_api_key: Credential = None


class RollWebhookSecret(_Request):
    grace_period_seconds: Annotated[int, BeforeValidator(clean_grace_period)] = Field(
        0, ge=0, le=GRACE_MAX_SECONDS, description=(
            "How long the previous secret keeps signing every delivery beside the new one (two "
            "`v1,` signatures), so the receiver can switch secrets without refusing an event; "
            "0 stops it at once."))
    personal_api_key: Credential = None


class Webhook(_Response):
    id: str = Field(description="Public id, random.")
    url: str
    events: list[str]
    description: str
    organization_id: str | None = Field(description=(
        "The organisation whose service accounts' keys it hears of; null for the owner's own."))
    enabled: bool = Field(description="False once disabled: by its owner, or after 3 days of "
                                      "failed deliveries (its owner is mailed).")
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None = Field(description=(
        "After a roll with a grace period: until when the previous secret signs deliveries "
        "too. Null when only the current secret signs."))
    created_at: datetime

    @classmethod
    def of(cls, webhook) -> Webhook:
        organization = organization_of(webhook)
        return cls(id=webhook.public_id, url=webhook.url, events=list(webhook.events),
                   description=webhook.description,
                   organization_id=organization.public_id if organization else None,
                   enabled=webhook.disabled_at is None, disabled_reason=webhook.disabled_reason,
                   previous_secret_expires_at=_still_ahead(webhook.previous_secret_expires_at),
                   created_at=webhook.created_at)


def _still_ahead(moment: datetime | None) -> datetime | None:
    return moment if moment is not None and moment > clock.now() else None


class WebhookWithSecret(Webhook):
    secret: str = Field(pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$", description=(
        "The signing secret (Standard Webhooks: `whsec_` and base64). Shown in this answer only; "
        "roll it to get a new one."))

    @classmethod
    def of(cls, webhook, secret: str = "") -> WebhookWithSecret:
        return cls(**Webhook.of(webhook).model_dump(), secret=secret)


class WebhookPage(_Response):
    next: str | None = Field(description=_NEXT, json_schema_extra={"format": "uri-reference"})
    previous: str | None = Field(description=_PREVIOUS,
                                 json_schema_extra={"format": "uri-reference"})
    results: list[Webhook] = Field(description="Newest first.")


class Delivery(_Response):
    id: str = Field(description="This delivery's id (for redeliver).")
    message_id: str = Field(description="The `webhook-id` header: the same for a redelivery.")
    event: str = Field(description=f"An event name, or `{TEST_EVENT}`.")
    state: Literal["pending", "sent", "failed"] = Field(description=(
        "`pending` until a 2xx answer (`sent`) or the last retry (`failed`)."))
    attempts: int
    status_code: int | None = Field(description="The latest attempt's HTTP status, if any.")
    duration_ms: int | None = Field(description="How long the latest attempt took.")
    response_body: str | None = Field(description="The start (at most 1 KiB) of its answer.")
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="When it is tried next, while pending.")
    sent_at: datetime | None

    @classmethod
    def of(cls, row) -> Delivery:
        state = "sent" if row.sent_at else "failed" if row.gave_up_at else "pending"
        return cls(id=row.public_id, message_id=row.message_id, event=row.event, state=state,
                   attempts=row.attempts, status_code=row.status_code,
                   duration_ms=row.duration_ms, response_body=row.response_body,
                   last_error=row.last_error, created_at=row.created_at,
                   next_attempt_at=row.next_attempt_at if state == "pending" else None,
                   sent_at=row.sent_at)


class DeliveryPage(_Response):
    next: str | None = Field(description=_NEXT, json_schema_extra={"format": "uri-reference"})
    previous: str | None = Field(description=_PREVIOUS,
                                 json_schema_extra={"format": "uri-reference"})
    results: list[Delivery] = Field(description="Newest first.")


REQUEST_MODELS = (CreateWebhook, UpdateWebhook, RollWebhookSecret)
RESPONSE_MODELS = (Webhook, WebhookWithSecret, WebhookPage, Delivery, DeliveryPage)
