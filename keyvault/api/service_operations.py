"""The OpenAPI document's services operations (keyvault.api.services), their path parameter and
examples; keyvault.api.openapi merges them beside the organisations' ones."""

from __future__ import annotations

from .operations import _json, _json_body, _media, _operation, _ref
from .org_operations import EXAMPLE_ORG_ID, RULES

EXAMPLE_SERVICE_ID = "Svc5Tq8WmN2kLpRz"
SERVICES_TAG = "Services"
_WHEN = "2026-11-02T09:41:27Z"


def parameters() -> dict:
    return {"ServiceId": {
        "name": "service_id", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"},
        "description": "The service's public id.", "example": EXAMPLE_SERVICE_ID}}


def extend(paths: dict) -> None:
    """What services add to verify's and forward_auth's operations."""
    paths["/api/verify/"]["post"]["description"] += (
        "\n\nWhen the caller is a service's own verify key, the answer is for that service: "
        "`aud` (its audience), only its scopes and the instance-wide ones, `wrong_service` for a "
        "key restricted elsewhere (and for a restricted key asked by a caller that is no "
        "service), the owner's e-mail only for a key restricted to it or its organisation.")
    forward = paths["/api/forward_auth/"]["get"]
    forward["description"] += (
        "\n\nIn front of a registered service, the gateway names it (`X-KeyVault-Service`) "
        "and authenticates as it (`X-KeyVault-Service-Key`, one of its verify keys): the key is "
        "judged as verify judges it for that service, and the 200 adds `X-KeyVault-Audience`. "
        "A named service without its own key is 401; with another service's key, 403.")
    text = {"type": "string"}
    forward["parameters"] += [
        {"name": "X-KeyVault-Service", "in": "header", "required": False, "schema": text,
         "description": "The audience of the service the gateway stands in front of."},
        {"name": "X-KeyVault-Service-Key", "in": "header", "required": False, "schema": text,
         "description": "A verify key of that service: the gateway authenticates as it."}]


def paths(read: str, write: str, ex: dict) -> dict:
    org, one = _ref("parameters", "OrgId"), _ref("parameters", "ServiceId")
    key_id, page = _ref("parameters", "KeyId"), [_ref("parameters", "Limit"),
                                                  _ref("parameters", "Cursor")]
    scopes = [{"name": "invoice:read", "description": "Read invoices"},
              {"name": "invoice:write", "description": "Issue and void invoices"}]
    billing = {"id": EXAMPLE_SERVICE_ID, "organization_id": EXAMPLE_ORG_ID, "name": "Billing",
               "audience": "billing", "description": "Invoices and payments.",
               "scopes": scopes, "created_at": _WHEN, "keys_restricted": 3,
               "keys_restricted_to_organization": 1}
    verify_key = {**ex["key"], "label": "billing verify", "scopes": ["key:verify"]}
    created = {**ex["created"], "label": "billing verify", "scopes": ["key:verify"]}
    gone = {"204": {"description": "Done."}}

    def op(operation_id, summary, description, scope, responses, **more):
        more.setdefault("errors", ("NotFound",))
        return _operation(operation_id, SERVICES_TAG, summary, description + RULES, scope,
                          responses, **more)

    base = "/api/organizations/{org_id}/services/"
    return {
        base: {
            "parameters": [org],
            "get": op("listServices", "Services", "Newest first.", read,
                      {"200": _json("ServicePage", "One page.", _media(
                          {"next": None, "previous": None, "results": [billing]}))},
                      parameters=page),
            "post": op("createService", "Register a service",
                       "Owners and admins. Name and audience are unique on the instance, and "
                       "so is each scope name: its scopes join the catalogue keys choose "
                       "from. 409 when one is taken.", write,
                       {"201": _json("Service", "The new service.", _media(billing))},
                       body=_json_body("CreateService", "The service.", {
                           "name": "Billing", "audience": "billing",
                           "description": "Invoices and payments.", "scopes": scopes},
                           required=True),
                       errors=("NotFound", "Conflict", "UnsupportedMediaType")),
        },
        base + "{service_id}/": {
            "parameters": [org, one],
            "get": op("getService", "One service", "", read,
                      {"200": _json("Service", "It.", _media(billing))}),
            "patch": op("updateService", "Change a service",
                        "`scopes` replaces the list. Removing a scope that keys carry is 409 "
                        "(`code: scope_in_use`) naming them, unless `narrow` is true: then "
                        "those keys lose it, each change in the log.", write,
                        {"200": _json("Service", "After the change.", _media(billing))},
                        body=_json_body("UpdateService", "The fields to change.",
                                        {"description": "Invoices, payments and refunds."}),
                        errors=("NotFound", "Conflict", "UnsupportedMediaType")),
            "delete": op("deleteService", "Delete a service",
                         "Its scopes and verify keys go with it (they answer `not_found`). "
                         "Keys carrying its scopes: 409 unless `?narrow=true`. Keys restricted "
                         "to it stay restricted, so work nowhere it was.", write, gone,
                         parameters=[{"name": "narrow", "in": "query", "required": False,
                                      "schema": {"type": "boolean", "default": False},
                                      "description": "Narrow the keys carrying its scopes."}],
                         errors=("NotFound", "Conflict")),
        },
        base + "{service_id}/keys/": {
            "parameters": [org, one],
            "get": op("listServiceKeys", "The service's verify keys",
                      "Newest first; values are never listed.", read,
                      {"200": _json("ServiceKeyPage", "One page.", _media(
                          {"next": None, "previous": None, "results": [verify_key]}))},
                      parameters=[*page, _ref("parameters", "IncludeRevoked")]),
            "post": op("createServiceKey", "Create a verify key of the service",
                       "It carries `key:verify` only. When it calls verify, KeyVault knows "
                       "which service asks: `aud`, that service's scopes only, and "
                       "`wrong_service` for keys restricted elsewhere. The value is in this "
                       "answer only.", write,
                       {"201": _json("ApiKeyWithValue", "The new key, with its value.",
                                     _media(created),
                                     {"Cache-Control": _ref("headers", "NoStore")})},
                       body=_json_body("CreateServiceKey", "Its label.",
                                       {"label": "billing verify"}, required=True),
                       errors=("NotFound", "Conflict", "UnsupportedMediaType")),
        },
        base + "{service_id}/keys/{public_id}/": {
            "parameters": [org, one, key_id],
            "get": op("getServiceKey", "One verify key", "", read,
                      {"200": _json("ApiKey", "It.", _media(verify_key))}),
            "delete": op("revokeServiceKey", "Revoke a verify key", "At once.", write, gone),
        },
        base + "{service_id}/keys/{public_id}/roll/": {
            "parameters": [org, one, key_id],
            "post": op("rollServiceKey", "Roll a verify key",
                       "A new value; the old one works for the grace period.", write,
                       {"200": _json("ApiKeyWithValue", "The key with its new value.",
                                     _media(created),
                                     {"Cache-Control": _ref("headers", "NoStore")})},
                       body=_json_body("RollKey", "The grace period.",
                                       {"grace_period_seconds": 3600}),
                       errors=("NotFound", "Conflict", "UnsupportedMediaType")),
        },
    }
