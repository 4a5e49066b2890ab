"""/api/webhooks/: webhook endpoints, their deliveries, redeliver and a test event, on the API
blueprint. Views are thin: the rules (who owns an endpoint, which URLs) are service.webhooks'.
A person's key only: a service account has no webhooks of its own."""

from __future__ import annotations

from flask import Response, g, jsonify, request, url_for

from .. import service
from ..service.scopes import READ_WEBHOOKS, WRITE_WEBHOOKS
from .inputs import parse
from .views import _acting_origin, _limit, _links, body_fields, bp, no_store, requires
from .webhook_schemas import (
    CreateWebhook,
    Delivery,
    DeliveryPage,
    RollWebhookSecret,
    UpdateWebhook,
    Webhook,
    WebhookPage,
    WebhookWithSecret,
)

webhooks = service.webhooks


@bp.get("/webhooks/")
@requires(READ_WEBHOOKS)
def list_webhooks():
    limit = _limit()
    page = webhooks.page_webhooks(g.api_user, limit, request.args.get("cursor"))
    return jsonify(WebhookPage(**_links(page, limit=limit),
                               results=[Webhook.of(row) for row in page.results]))


@bp.post("/webhooks/")
@requires(WRITE_WEBHOOKS)
def create_webhook():
    body = parse(CreateWebhook, body_fields())
    created = webhooks.create_webhook(g.api_user, body.url, body.events, body.description,
                                      origin=_acting_origin(), organization=body.organization_id)
    response = no_store(jsonify(WebhookWithSecret.of(created.webhook, created.secret)))
    response.status_code = 201
    response.headers["Location"] = url_for(".webhook", webhook_id=created.webhook.public_id)
    return response


@bp.get("/webhooks/<webhook_id>/")
@requires(READ_WEBHOOKS)
def webhook(webhook_id: str):
    return jsonify(Webhook.of(webhooks.get_webhook(g.api_user, webhook_id)))


@bp.patch("/webhooks/<webhook_id>/")
@requires(WRITE_WEBHOOKS)
def update_webhook(webhook_id: str):
    body = parse(UpdateWebhook, body_fields())
    changes = {name: getattr(body, name) for name in body.model_fields_set
               if name != "personal_api_key" and getattr(body, name) is not None}
    return jsonify(Webhook.of(webhooks.update_webhook(g.api_user, webhook_id,
                                                      origin=_acting_origin(), **changes)))


@bp.delete("/webhooks/<webhook_id>/")
@requires(WRITE_WEBHOOKS)
def delete_webhook(webhook_id: str):
    webhooks.delete_webhook(g.api_user, webhook_id, origin=_acting_origin())
    return Response(status=204)


@bp.post("/webhooks/<webhook_id>/roll_secret/")
@requires(WRITE_WEBHOOKS)
def roll_webhook_secret(webhook_id: str):
    body = parse(RollWebhookSecret, body_fields())
    rolled = webhooks.roll_secret(g.api_user, webhook_id, origin=_acting_origin(),
                                  grace_period_seconds=body.grace_period_seconds)
    return no_store(jsonify(WebhookWithSecret.of(rolled.webhook, rolled.secret)))


@bp.get("/webhooks/<webhook_id>/deliveries/")
@requires(READ_WEBHOOKS)
def webhook_deliveries(webhook_id: str):
    limit = _limit()
    page = webhooks.page_deliveries(g.api_user, webhook_id, limit, request.args.get("cursor"))
    return jsonify(DeliveryPage(**_links(page, limit=limit, webhook_id=webhook_id),
                                results=[Delivery.of(row) for row in page.results]))


@bp.post("/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver/")
@requires(WRITE_WEBHOOKS)
def redeliver(webhook_id: str, delivery_id: str):
    row = webhooks.redeliver(g.api_user, webhook_id, delivery_id)
    response = jsonify(Delivery.of(row))
    response.status_code = 202
    return response


@bp.post("/webhooks/<webhook_id>/test/")
@requires(WRITE_WEBHOOKS)
def send_test_event(webhook_id: str):
    row = webhooks.send_test(g.api_user, webhook_id)
    response = jsonify(Delivery.of(row))
    response.status_code = 202
    return response
