"""The OpenAPI document's webhook operations (keyvault.api.webhooks), their path parameters and
examples; keyvault.api.openapi merges them into the document."""

from __future__ import annotations

from .operations import _json, _json_body, _media, _operation, _ref

TAG = "Webhooks"
EXAMPLE_WEBHOOK_ID = "Wh5Tq8LmZs2Kx9Pb"
EXAMPLE_DELIVERY_ID = "Dl3Rw7NcX1vBq4Ye"
_WHEN = "2026-11-02T09:41:27Z"
TAG_DESCRIPTION = (
    "Endpoints that hear of your keys' changes (an organisation's owners and admins: of its "
    "service accounts' keys), signed as the Standard Webhooks specification says: headers "
    "`webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,` and the base64 "
    "HMAC-SHA256 of `id.timestamp.body` under the secret's base64 part). The body is "
    "`{\"type\", \"timestamp\", \"data\"}`; `data` names the key by id, label and mask, never its "
    "value. Delivered at least once (drop repeats by `webhook-id`), retried with exponential "
    "backoff for 3 days on anything but a 2xx within 10 s (redirects are not followed), then "
    "the endpoint is disabled and its owner mailed.")


def parameters() -> dict:
    text = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}
    return {
        "WebhookId": {"name": "webhook_id", "in": "path", "required": True, "schema": text,
                      "description": "The webhook's id. Another person's answers 404.",
                      "example": EXAMPLE_WEBHOOK_ID},
        "DeliveryId": {"name": "delivery_id", "in": "path", "required": True, "schema": text,
                       "description": "The delivery's id.", "example": EXAMPLE_DELIVERY_ID},
    }


def _examples() -> dict:
    hook = {"id": EXAMPLE_WEBHOOK_ID, "url": "https://ci.example.com/keyvault-events",
            "events": ["key.revoked", "key.leaked", "key.expiring"],
            "description": "Tell CI when its keys die.", "organization_id": None,
            "enabled": True, "disabled_reason": None, "previous_secret_expires_at": None,
            "created_at": _WHEN}
    delivery = {"id": EXAMPLE_DELIVERY_ID, "message_id": "msg_2Lk9xQe7TgVb0WmA3sRn5yPc",
                "event": "key.revoked", "state": "sent", "attempts": 1, "status_code": 204,
                "duration_ms": 38, "response_body": "", "last_error": None, "created_at": _WHEN,
                "next_attempt_at": None, "sent_at": _WHEN}
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    return {"webhook": hook, "with_secret": {**hook, "secret": secret},
            "page": {"next": None, "previous": None, "results": [hook]},
            "delivery": delivery,
            "queued": {**delivery, "id": "Dl9Kq2XcV5bNm8Za", "state": "pending", "attempts": 0,
                       "status_code": None, "duration_ms": None, "response_body": None,
                       "next_attempt_at": _WHEN, "sent_at": None},
            "deliveries": {"next": None, "previous": None, "results": [delivery]}}


def paths(read: str, write: str) -> dict:
    ex = _examples()
    hook, delivery = _ref("parameters", "WebhookId"), _ref("parameters", "DeliveryId")
    page = [_ref("parameters", "Limit"), _ref("parameters", "Cursor")]
    no_store = {"Cache-Control": _ref("headers", "NoStore")}
    person = " A person's key only (a service account's key is 403)."

    def op(operation_id, summary, description, scope, responses, **more):
        more.setdefault("errors", ("NotFound",))
        return _operation(operation_id, TAG, summary, description + person, scope, responses,
                          **more)

    return {
        "/api/webhooks/": {
            "get": op("listWebhooks", "Your webhooks",
                      "Yours, and those of the organisations where you are an owner or admin, "
                      "newest first; never their secrets.", read,
                      {"200": _json("WebhookPage", "One page.", _media(ex["page"]))},
                      parameters=page, errors=()),
            "post": op("createWebhook", "Add a webhook",
                       "At most 10 per owner (409). The URL is refused (400, naming why) when "
                       "its host resolves to a private, loopback, link-local, multicast or "
                       "cloud metadata address, or is plain http where only https is taken.",
                       write, {"201": _json("WebhookWithSecret", "The endpoint, with its signing "
                                            "secret (this once).", _media(ex["with_secret"]),
                                            {**no_store, "Location": {
                                                "required": True, "schema": {"type": "string"},
                                                "description": "The webhook's URL."}})},
                       body=_json_body("CreateWebhook", "Where, and which events.", {
                           "url": "https://ci.example.com/keyvault-events",
                           "events": ["key.revoked", "key.leaked", "key.expiring"],
                           "description": "Tell CI when its keys die."}, required=True),
                       errors=("NotFound", "Conflict", "UnsupportedMediaType")),
        },
        "/api/webhooks/{webhook_id}/": {
            "parameters": [hook],
            "get": op("getWebhook", "One webhook", "", read,
                      {"200": _json("Webhook", "The endpoint.", _media(ex["webhook"]))}),
            "patch": op("updateWebhook", "Change a webhook",
                        "URL (checked as when added), events, description, or `enabled`.", write,
                        {"200": _json("Webhook", "After the change.", _media(ex["webhook"]))},
                        body=_json_body("UpdateWebhook", "The fields to change.",
                                        {"enabled": True}),
                        errors=("NotFound", "Conflict", "UnsupportedMediaType")),
            "delete": op("deleteWebhook", "Remove a webhook",
                         "Its pending deliveries go with it.", write,
                         {"204": {"description": "Done."}}, errors=("NotFound", "Conflict")),
        },
        "/api/webhooks/{webhook_id}/roll_secret/": {"parameters": [hook], "post": op(
            "rollWebhookSecret", "Give a webhook a new signing secret",
            "Without a body, at once: the old secret signs nothing more. With "
            "`grace_period_seconds` (up to 7 days) the old secret signs every delivery beside the "
            "new one until then (`webhook-signature` holds both `v1,` signatures), so the "
            "receiver can switch without refusing an event. Logged as `webhook.secret_rolled`.",
            write,
            {"200": _json("WebhookWithSecret", "The endpoint with its new secret (this once).",
                          _media({**ex["with_secret"],
                                  "previous_secret_expires_at": "2026-11-03T09:41:27Z"}),
                          no_store)},
            body=_json_body("RollWebhookSecret", "Optional.", {"grace_period_seconds": 86400}),
            errors=("NotFound", "Conflict", "UnsupportedMediaType"))},
        "/api/webhooks/{webhook_id}/deliveries/": {"parameters": [hook], "get": op(
            "listWebhookDeliveries", "Its deliveries",
            "Newest first: event, state, attempts, the latest status, time and answer (1 KiB).",
            read, {"200": _json("DeliveryPage", "One page.", _media(ex["deliveries"]))},
            parameters=page)},
        "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver/": {
            "parameters": [hook, delivery], "post": op(
                "redeliverWebhook", "Send a delivery again",
                "Queues a new delivery of the same body with the same `webhook-id`.", write,
                {"202": _json("Delivery", "The new delivery, queued.", _media(ex["queued"]))},
                errors=("NotFound", "Conflict"))},
        "/api/webhooks/{webhook_id}/test/": {"parameters": [hook], "post": op(
            "sendWebhookTest", "Send a test event",
            "Queues a `webhook.test` event, whatever events the endpoint asked for.", write,
            {"202": _json("Delivery", "The test delivery, queued.", _media(
                {**ex["queued"], "event": "webhook.test"}))},
            errors=("NotFound", "Conflict"))},
    }
