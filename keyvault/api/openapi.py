"""The OpenAPI 3.1 document for /api/, built from the running app's configuration.

The scope catalogue, key prefix and size limits come from the app, so the document always
describes the instance that serves it. Every operation states the scope it needs twice: in its
security requirement (OpenAPI 3.1 allows role names for non-OAuth schemes) and as
`x-required-scope`, which the docs page shows.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from flask import current_app
from pydantic.json_schema import models_json_schema

from ..service.pagination import DEFAULT_LIMIT, MAX_LIMIT
from ..service.scopes import (
    FULL_ACCESS,
    READ_KEYS,
    READ_ORGS,
    READ_USER,
    READ_WEBHOOKS,
    VERIFY,
    WRITE_KEYS,
    WRITE_ORGS,
    WRITE_WEBHOOKS,
)
from ..service.validation import PUBLIC_ID
from ..tokens import BODY_LENGTH, CHECKSUM_LENGTH
from . import (
    org_operations,
    org_schemas,
    service_operations,
    service_schemas,
    stream_operations,
    webhook_operations,
    webhook_schemas,
)
from .examples import EXAMPLE_KEY_ID, _examples, example_expiry
from .leak_schemas import FoundTokens, TokenLabels
from .operations import _REF, PROBLEM, _media, _ref, paths
from .schemas import REQUEST_MODELS, RESPONSE_MODELS, VerifyResult

# ---------------------------------------------------------------- schemas


def _model_schemas() -> dict:
    """The request and response models' JSON Schemas (requests as they parse, responses as they
    serialize), named by class."""
    pairs = [(m, "validation") for m in (*REQUEST_MODELS, *org_schemas.REQUEST_MODELS,
                                         *webhook_schemas.REQUEST_MODELS,
                                         *service_schemas.REQUEST_MODELS)] + [
        (m, "serialization") for m in (*RESPONSE_MODELS, *org_schemas.RESPONSE_MODELS,
                                       *webhook_schemas.RESPONSE_MODELS,
                                       *service_schemas.RESPONSE_MODELS)]
    _, top = models_json_schema(pairs, ref_template=_REF)
    verify = VerifyResult.json_schema(ref_template=_REF, mode="serialization")
    report = FoundTokens.json_schema(ref_template=_REF, mode="validation")
    labels = TokenLabels.json_schema(ref_template=_REF, mode="serialization")
    return {**top["$defs"], **verify["$defs"], "VerifyResult": {"oneOf": verify["anyOf"]},
            **report.pop("$defs"), "LeakReport": report, **labels.pop("$defs"),
            "TokenLabels": labels}


def _schemas(scopes: list[str], prefix: str) -> dict:
    """The models' schemas, refined by this instance's configuration: the scopes a key may be
    given (the catalogue) and the shape of a key value (the prefix)."""
    schemas = copy.deepcopy(_model_schemas_cached())
    schemas["Scope"] = {"type": "string", "enum": [FULL_ACCESS, *scopes],
                        "description": "A scope of this instance's catalogue, or `*` (all). "
                                       "The scopes registered services define are accepted too: "
                                       "see `GET /api/organizations/{org_id}/services/`."}
    for name, field_name in (("CreateKey", "scopes"), ("UpdateKey", "scopes"),
                             ("UpdateOrganization", "allowed_scopes")):
        field = schemas[name]["properties"][field_name]
        for branch in field.get("anyOf", [field]):
            if branch.get("type") == "array":
                branch["items"] = _ref("schemas", "Scope")
    for name in ("ApiKeyWithValue", "ServiceAccountKeyWithValue"):
        value = schemas[name]["properties"]["value"]
        value["pattern"] = f"^{prefix}_[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}$"
        value["description"] = (
            f"The key itself: `{prefix}_`, {BODY_LENGTH} random base62 characters and a "
            f"{CHECKSUM_LENGTH}-character CRC32 checksum. Shown in this response only; KeyVault "
            "keeps just a keyed digest of it.")
    for name in ("ApiKey", "ApiKeyWithValue", "ServiceAccountKey", "ServiceAccountKeyWithValue"):
        schemas[name]["properties"]["mask_value"]["description"] = (
            f"Display form, e.g. `{prefix}_…x9Qa`.")
    return schemas


_model_schemas_cached = functools.cache(_model_schemas)


# ---------------------------------------------------------------- parameters and responses


def _parameters() -> dict:
    return {
        "KeyId": {
            "name": "public_id", "in": "path", "required": True,
            "description": "The key's public id. Another user's key answers 404, like a "
                           "missing one.",
            "schema": {"type": "string", "pattern": f"^{PUBLIC_ID.pattern}$"},
            "example": EXAMPLE_KEY_ID,
        },
        "Limit": {
            "name": "limit", "in": "query", "required": False,
            "description": f"Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                       "default": DEFAULT_LIMIT},
            "example": 20,
        },
        "Cursor": {
            "name": "cursor", "in": "query", "required": False,
            "description": "Opaque; copy it from a `next` or `previous` link. Pages stay stable "
                           "when keys are created or deleted between fetches.",
            "schema": {"type": "string"},
        },
        "EventKey": {
            "name": "key", "in": "query", "required": False,
            "description": "Only the events of this key (its public id): those about it, and "
                           "those it made through the API. Another user's key answers 404, "
                           "like a missing one.",
            "schema": {"type": "string", "pattern": f"^{PUBLIC_ID.pattern}$"},
        },
        **org_operations.parameters(),
        **webhook_operations.parameters(),
        **service_operations.parameters(),
        "IncludeRevoked": {
            "name": "include_revoked", "in": "query", "required": False,
            "description": "Also list revoked keys (`true`/`false`, `1`/`0`).",
            "schema": {"type": "boolean", "default": False},
        },
    }


def _problem(description: str, example: dict, headers: dict | None = None) -> dict:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM: {"schema": _ref("schemas", "Problem"), "examples": _media(
            {"type": "about:blank", **example})}},
    }
    if headers:
        response["headers"] = headers
    return response


def _responses(max_body: int, max_keys: int) -> dict:
    challenge = "A Bearer challenge (RFC 6750)"
    return {
        "BadRequest": _problem("Malformed JSON, a field of the wrong type, an unknown field, an "
                               "unknown scope (named in `detail`) or a bad query parameter.",
                               {"title": "Invalid input", "status": 400,
                                "detail": "Unknown field(s): colour.", "field": "colour"}),
        "Unauthorized": _problem(
            "No key was presented, or the presented key is malformed, unknown, revoked, expired "
            "or belongs to a deactivated user. A session cookie never authenticates the API.",
            {"title": "Unauthorized", "status": 401,
             "detail": "This endpoint needs an API key: send it as 'Authorization: Bearer <key>'."},
            {"WWW-Authenticate": {
                "required": True,
                "description": f'{challenge}: `Bearer realm="keyvault"` when no key was sent, '
                               'plus `error="invalid_token"` when the key was wrong.',
                "schema": {"type": "string"}, "example": 'Bearer realm="keyvault"',
            }},
        ),
        "Forbidden": _problem(
            "The key lacks the scope this operation needs (`code: insufficient_scope`), or it "
            "tried to grant a scope it does not hold itself.",
            {"title": "Insufficient scope", "status": 403,
             "detail": f"This key lacks the scope '{WRITE_KEYS}' that this request needs.",
             "code": "insufficient_scope", "required_scope": WRITE_KEYS},
            {"WWW-Authenticate": {
                "description": f'{challenge} with `error="insufficient_scope"` and the needed '
                               "`scope`, when the presenting key lacks it.",
                "schema": {"type": "string"},
                "example": f'Bearer realm="keyvault", error="insufficient_scope", '
                           f'scope="{WRITE_KEYS}"',
            }},
        ),
        "NotFound": _problem("No key with this id belongs to the key's owner.",
                             {"title": "Not found", "status": 404, "detail": "No such API key."}),
        "MethodNotAllowed": _problem(
            "The path exists but not with this method.",
            {"title": "Method Not Allowed", "status": 405,
             "detail": "The method is not allowed for the requested URL."},
            {"Allow": {"required": True, "description": "The methods the path accepts.",
                       "schema": {"type": "string"}}},
        ),
        "Conflict": _problem(f"The owner already has {max_keys} live keys (the limit), or the "
                             "key is revoked or expired and cannot be changed.",
                             {"title": "Conflict", "status": 409,
                              "detail": f"You already have {max_keys} active keys, the most "
                                        "allowed. Revoke one to create another."}),
        "PayloadTooLarge": _problem(f"The request body is larger than {max_body} bytes.",
                                    {"title": "Request Entity Too Large", "status": 413,
                                     "detail": "The request body is larger than the limit of "
                                               f"{max_body} bytes."}),
        "UnsupportedMediaType": _problem(
            "The body is neither JSON (`application/json`) nor a form.",
            {"title": "Unsupported Media Type", "status": 415,
             "detail": "Send a JSON object with Content-Type: application/json."}),
    }


def _headers() -> dict:
    return {
        "NoStore": {"required": True, "description": "`no-store`: the answer holds a secret or "
                                                     "a live verdict.",
                    "schema": {"type": "string", "const": "no-store"}, "example": "no-store"},
    }


def _paths(prefix: str, max_days: int | None) -> dict:
    """Every operation: the personal keys', verification's, the organisations' and webhooks'
    (listed after the people's own), documentation last."""
    examples = _examples(prefix, example_expiry(max_days))
    personal = paths(READ_KEYS, WRITE_KEYS, READ_USER, VERIFY, examples)
    personal.update(stream_operations.paths())
    service_operations.extend(personal)
    teams = {**org_operations.paths(READ_ORGS, WRITE_ORGS, examples),
             **service_operations.paths(READ_ORGS, WRITE_ORGS, examples)}
    hooks = webhook_operations.paths(READ_WEBHOOKS, WRITE_WEBHOOKS)
    first = [path for path in personal if not path.startswith(("/api/verify", "/api/forward",
                                                                "/api/secret", "/api/schema",
                                                                "/api/docs"))]
    return {**{p: personal[p] for p in first}, **teams, **hooks,
            **{p: v for p, v in personal.items() if p not in first}}


def document() -> dict:
    """The OpenAPI 3.1 document describing every route of the API blueprint."""
    config = current_app.config
    # The instance-wide catalogue: the document depends on configuration only, never on the
    # database; the scopes services register are accepted too (listed by their services' routes).
    scopes = list(config["KEYVAULT_SCOPES"])
    prefix = config["KEYVAULT_KEY_PREFIX"]
    max_body = config["MAX_CONTENT_LENGTH"]
    max_keys = config["KEYVAULT_MAX_KEYS_PER_USER"]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "KeyVault API",
            "version": "1",
            "summary": "Personal API keys: manage them, and verify them from your services.",
            "description": (
                "Authenticate with a personal API key, presented in one of three places, tried "
                "in this order: `Authorization: Bearer <key>`, a `personal_api_key` field of a "
                "JSON or form body, a `personal_api_key` query parameter. Only the first one "
                "found is used — a wrong key is never rescued by a later place. A session "
                "cookie never authenticates the API, and the API needs no CSRF token.\n\n"
                f"Scopes: {', '.join(f'`{s}`' for s in scopes)}; `*` grants all of them and "
                "`object:write` implies `object:read`.\n\n"
                "Every error is `application/problem+json` (RFC 9457: `type`, `title`, "
                "`status`, `detail`): 400 for malformed JSON, wrong types or unknown fields; "
                "401 with `WWW-Authenticate: Bearer` (plus `error=\"invalid_token\"` when a key "
                "was presented and was wrong); 403 `insufficient_scope`; 404 for unknown ids "
                "and paths; 405 with an `Allow` header for a method a path does not take; 409 "
                f"for conflicts; 413 for bodies over {max_body} bytes; 415 for bodies that are "
                "neither JSON nor a form."
            ),
        },
        "tags": [
            {"name": "Users", "description": "The owner of the presenting key."},
            {"name": "Personal API keys", "description": "The owner's keys."},
            {"name": org_operations.ORGS_TAG, "description": (
                "Teams: members and roles, invitations, policy and the log.")},
            {"name": org_operations.SA_TAG, "description": (
                "An organisation's non-human identities and their keys, which outlive any "
                "person.")},
            {"name": webhook_operations.TAG,
             "description": webhook_operations.TAG_DESCRIPTION},
            {"name": service_operations.SERVICES_TAG, "description": (
                "What an organisation runs behind KeyVault: audiences, scopes, verify keys.")},
            {"name": "Verification", "description": "For services and gateways."},
            {"name": "Leaked keys", "description": "For secret scanners that find keys in "
                                                  "public (GitHub's partner program)."},
            {"name": "Documentation", "description": "This document."},
        ],
        "paths": _paths(prefix, config["KEYVAULT_MAX_KEY_LIFETIME_DAYS"]),
        "components": {
            "schemas": _schemas(scopes, prefix),
            "parameters": _parameters(),
            "responses": _responses(max_body, max_keys),
            "headers": _headers(),
            "securitySchemes": {
                "bearer": {
                    "type": "http", "scheme": "bearer", "bearerFormat": f"{prefix}_…",
                    "description": "`Authorization: Bearer <key>`: the preferred place. Any "
                                   "other scheme (`Token <key>`) is 401 naming the one to use.",
                },
                "basic": {
                    "type": "http", "scheme": "basic",
                    "description": "Verify only, for RFC 7662 clients that authenticate with "
                                   "client credentials (§2.1): any user name, the service's "
                                   "key as the password.",
                },
                "personal_api_key": {
                    "type": "apiKey", "in": "query", "name": "personal_api_key",
                    "description": "The key as a `personal_api_key` query parameter (scrubbed "
                                   "from access logs), or as a field of the same name in a "
                                   "JSON or form body, which is tried first. Used only when "
                                   "there is no Authorization header.",
                },
            },
        },
    }
