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
from ..service.scopes import FULL_ACCESS, READ_KEYS, READ_USER, VERIFY, WRITE_KEYS
from ..service.validation import PUBLIC_ID
from ..tokens import BODY_LENGTH, CHECKSUM_LENGTH
from .examples import (
    EXAMPLE_HOST,
    EXAMPLE_KEY_ID,
    _examples,
    example_expiry,
)
from .schemas import REQUEST_MODELS, RESPONSE_MODELS, VerifyResult

PROBLEM = "application/problem+json"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# Scope names (RFC 6750 scope-token characters), separated by spaces or commas.
SCOPE_LIST = "^[\\x21\\x23-\\x5b\\x5d-\\x7e ,]*$"
_REF = "#/components/schemas/{model}"


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


# ---------------------------------------------------------------- schemas


def _model_schemas() -> dict:
    """The request and response models' JSON Schemas (requests as they parse, responses as they
    serialize), named by class."""
    pairs = [(m, "validation") for m in REQUEST_MODELS] + [(m, "serialization")
                                                           for m in RESPONSE_MODELS]
    _, top = models_json_schema(pairs, ref_template=_REF)
    verify = VerifyResult.json_schema(ref_template=_REF, mode="serialization")
    return {**top["$defs"], **verify["$defs"], "VerifyResult": {"oneOf": verify["anyOf"]}}


def _schemas(scopes: list[str], prefix: str) -> dict:
    """The models' schemas, refined by this instance's configuration: the scopes a key may be
    given (the catalogue) and the shape of a key value (the prefix)."""
    schemas = copy.deepcopy(_model_schemas_cached())
    schemas["Scope"] = {"type": "string", "enum": [FULL_ACCESS, *scopes],
                        "description": "A scope of this instance's catalogue, or `*` (all)."}
    for name in ("CreateKey", "UpdateKey"):
        field = schemas[name]["properties"]["scopes"]
        for branch in field.get("anyOf", [field]):
            if branch.get("type") == "array":
                branch["items"] = _ref("schemas", "Scope")
    value = schemas["ApiKeyWithValue"]["properties"]["value"]
    value["pattern"] = f"^{prefix}_[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}$"
    value["description"] = (
        f"The key itself: `{prefix}_`, {BODY_LENGTH} random base62 characters and a "
        f"{CHECKSUM_LENGTH}-character CRC32 checksum. Shown in this response only; KeyVault "
        "keeps just a keyed digest of it.")
    mask = schemas["ApiKey"]["properties"]["mask_value"]
    mask["description"] = f"Display form, e.g. `{prefix}_…x9Qa`."
    schemas["ApiKeyWithValue"]["properties"]["mask_value"]["description"] = mask["description"]
    return schemas


_model_schemas_cached = functools.cache(_model_schemas)


def _media(value, summary: str | None = None, name: str = "example", **more) -> dict:
    """A media type's `examples`: one named example, or more given as name=(summary, value)."""
    examples = {name: {"summary": summary, "value": value} if summary else {"value": value}}
    for other, (other_summary, other_value) in more.items():
        examples[other] = {"summary": other_summary, "value": other_value}
    return examples


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


# ---------------------------------------------------------------- operations


def _security(scope: str | None, header_only: bool = False, basic: bool = False) -> list[dict]:
    roles = [scope] if scope else []
    if header_only:
        return [{"bearer": roles}]
    return [{"bearer": roles}, *([{"basic": roles}] if basic else []),
            {"personal_api_key": roles}]


def _operation(operation_id: str, tag: str, summary: str, description: str, scope: str | None,
               responses: dict, *, parameters: list | None = None, body: dict | None = None,
               errors: tuple[str, ...] = (), header_only: bool = False,
               basic: bool = False) -> dict:
    if scope:
        description += f"\n\nRequires scope `{scope}` (`*` grants every scope; " \
                       "`object:write` implies `object:read`)."
    else:
        description += "\n\nAny valid key may call this."
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "description": description,
        "x-required-scope": scope,
        "security": _security(scope, header_only, basic),
        "responses": dict(responses),
    }
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = body
    standard = ("BadRequest", "Unauthorized", "Forbidden", "PayloadTooLarge")
    codes = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403", "NotFound": "404",
             "Conflict": "409", "PayloadTooLarge": "413", "UnsupportedMediaType": "415"}
    for name in (*standard, *errors):
        operation["responses"][codes[name]] = _ref("responses", name)
    operation["responses"] = dict(sorted(operation["responses"].items()))
    return operation


def _json_body(schema: str, description: str, example: dict, form: str | None = None,
               required: bool = False) -> dict:
    content = {JSON: {"schema": _ref("schemas", schema), "examples": _media(example)}}
    if form:
        content[FORM] = {"schema": _ref("schemas", form)}
    return {"description": description, "required": required, "content": content}


def _json(schema: str, description: str, examples: dict, headers: dict | None = None) -> dict:
    response: dict[str, Any] = {"description": description, "content": {
        JSON: {"schema": _ref("schemas", schema), "examples": examples}}}
    if headers:
        response["headers"] = headers
    return response


def _paths(read_keys: str, write_keys: str, read_user: str, verify: str, ex: dict) -> dict:
    key_id = _ref("parameters", "KeyId")
    page = [_ref("parameters", "Limit"), _ref("parameters", "Cursor")]
    no_store = {"Cache-Control": _ref("headers", "NoStore")}
    keys_tag, users_tag = "Personal API keys", "Users"
    return {
        "/api/users/@me/": {"get": _operation(
            "getCurrentUser", users_tag, "The key's owner",
            "The user who owns the presenting key.", read_user,
            {"200": _json("User", "The owner.", _media(ex["user"]))},
        )},
        "/api/users/@me/security_log/": {"get": _operation(
            "listSecurityEvents", users_tag, "The owner's security log",
            "Key creations, rolls, edits and revocations, logins and failed logins, password "
            "changes, newest first, cursor-paginated. Each event keeps the key's label and mask "
            "as they were then, says what changed in words (`title`, `summary`) and names the "
            "API key that made an API change (`actor_key`); `key=` narrows the log to one key.",
            read_user,
            {"200": _json("SecurityEventPage", "One page of events.", _media(ex["event_page"]))},
            parameters=[*page, _ref("parameters", "EventKey")], errors=("NotFound",),
        )},
        "/api/personal_api_keys/": {
            "get": _operation(
                "listKeys", keys_tag, "List the owner's keys",
                "Newest first, cursor-paginated: follow `next` until it is null. Values are "
                "never listed.", read_keys,
                {"200": _json("ApiKeyPage", "One page of keys.", _media(ex["key_page"]))},
                parameters=[*page, _ref("parameters", "IncludeRevoked")],
            ),
            "post": _operation(
                "createKey", keys_tag, "Create a key",
                "Creates a key for the presenting key's owner. The response is the only one "
                "that ever carries the value: store it now. Without `scopes` the new key gets "
                "the presenting key's scopes.", write_keys,
                {"201": _json("ApiKeyWithValue", "The new key, with its value.",
                              _media(ex["created"]), {
                    **no_store,
                    "Location": {"required": True, "description": "The new key's URL.",
                                 "schema": {"type": "string"},
                                 "example": f"{EXAMPLE_HOST}/api/personal_api_keys/"
                                            f"{EXAMPLE_KEY_ID}/"},
                })},
                body=_json_body("CreateKey", "The new key's fields.", {
                    "label": "CI deploys", "description": "Publishes release notes.",
                    "scopes": [read_keys], "expires_at": ex["expires"]}, required=True),
                errors=("Conflict", "UnsupportedMediaType"),
            ),
        },
        "/api/personal_api_keys/@current/": {"get": _operation(
            "getCurrentKey", keys_tag, "The presenting key",
            "The key used for this request describes itself.", read_keys,
            {"200": _json("ApiKey", "The presenting key.", _media(ex["key"]))},
        )},
        "/api/personal_api_keys/{public_id}/": {
            "parameters": [key_id],
            "get": _operation(
                "getKey", keys_tag, "One key",
                "One of the owner's keys, revoked ones included.", read_keys,
                {"200": _json("ApiKey", "The key.", _media(ex["key"]))}, errors=("NotFound",),
            ),
            "patch": _operation(
                "updateKey", keys_tag, "Edit a key",
                "Change the label, the description, or narrow the scopes. Widening scopes needs "
                "the browser and a password; a revoked key cannot be edited (409).", write_keys,
                {"200": _json("ApiKey", "The key after the change.", _media(ex["updated"]))},
                body=_json_body("UpdateKey", "The fields to change.",
                                {"label": "CI deploys (production)"}),
                errors=("NotFound", "Conflict", "UnsupportedMediaType"),
            ),
            "delete": _operation(
                "revokeKey", keys_tag, "Revoke a key",
                "Revokes the key at once, in every worker and instance. It stays listed with "
                "`include_revoked=true`, and verify answers `revoked` for it. Revoking a "
                "revoked key is a no-op.", write_keys,
                {"204": {"description": "Revoked."}}, errors=("NotFound",),
            ),
        },
        "/api/personal_api_keys/{public_id}/roll/": {
            "parameters": [key_id],
            "post": _operation(
                "rollKey", keys_tag, "Give a key a new value",
                "Same id, label and scopes, new value (in this response only). The old value "
                "stops at once unless `grace_period_seconds` keeps it working for a while. The "
                "presenting key must hold every scope of the key it rolls; a revoked or expired "
                "key cannot be rolled (409).", write_keys,
                {"200": _json("ApiKeyWithValue", "The key with its new value.",
                              _media(ex["rolled"]), no_store)},
                body=_json_body("RollKey", "Optional.", {"grace_period_seconds": 3600},
                                form="FormCredential"),
                errors=("NotFound", "Conflict", "UnsupportedMediaType"),
            ),
        },
        "/api/verify/": {"post": _operation(
            "verifyKey", "Verification", "Is this key valid, and whose is it?",
            "For services: authenticate with your service's own key (which needs "
            "`key:verify`) and send the key you were handed. A well-formed request always "
            "answers 200 with `active` and a `code`: `valid`, `malformed` (checked without "
            "touching the database), `not_found`, `revoked`, `expired`, `user_inactive` or "
            "`insufficient_scope`; an active answer adds the key's facts. Revocation and expiry "
            "take effect on the very next call.\n\nRFC 7662 introspection clients may send a "
            "form body instead (`application/x-www-form-urlencoded`, the `VerifyForm` schema): "
            "`token=<key>`, optionally `scope=` with space- or comma-separated scopes. (It is "
            "not listed as a second body type because client generators mishandle a required "
            "body with two types.)", verify,
            {"200": _json("VerifyResult", "The verdict.", _media(
                ex["valid"], "A valid key that holds the scopes asked for", "valid",
                revoked=("A revoked key (any other code looks the same)", ex["revoked"])),
                no_store)},
            body=_json_body("VerifyRequest", "The key to check.",
                            {"key": ex["value"], "scopes": [read_keys]}, required=True),
            basic=True,
            errors=("UnsupportedMediaType",),
        )},
        "/api/forward_auth/": {"get": _operation(
            "forwardAuth", "Verification", "Gateway check (auth_request)",
            "For nginx `auth_request`, Traefik ForwardAuth or Caddy `forward_auth`: the key in "
            "the request's `Authorization` header (only there: gateways forward the client's "
            "query string, which must not carry keys) is checked, and a 200 carries who it is "
            "in headers. The scopes demanded are the union of the `scopes` parameter and the "
            "`X-KeyVault-Required-Scopes` header, so a client's own `?scopes=` can never "
            "replace what the gateway demands; a missing one is 403.", None,
            {"200": {"description": "The key is valid; its facts are in the headers.", "headers": {
                "X-KeyVault-User-Id": {"required": True, "schema": {"type": "string"},
                                       "example": "42"},
                "X-KeyVault-User-Email": {"required": True, "schema": {"type": "string"},
                                          "example": "ada@example.com"},
                "X-KeyVault-Key-Id": {"required": True, "schema": {"type": "string"},
                                      "example": EXAMPLE_KEY_ID},
                "X-KeyVault-Scopes": {"required": True, "schema": {"type": "string"},
                                      "description": "Space-separated.",
                                      "example": f"{read_keys} {read_user}"},
                **no_store,
            }}},
            parameters=[
                {"name": "scopes", "in": "query", "required": False,
                 "description": "Scopes the key must hold, space- or comma-separated.",
                 "schema": {"type": "string", "pattern": SCOPE_LIST}, "example": read_keys},
                {"name": "X-KeyVault-Required-Scopes", "in": "header", "required": False,
                 "description": "More scopes the key must hold, for gateways that can set "
                                "headers but not rewrite URLs; added to `scopes`.",
                 "schema": {"type": "string", "pattern": SCOPE_LIST}},
            ],
            header_only=True,
        )},
        "/api/schema/": {"get": {
            "operationId": "getSchema", "tags": ["Documentation"],
            "summary": "This document", "description": "The OpenAPI 3.1 document. No key needed.",
            "x-required-scope": None, "security": [],
            "responses": {"200": {"description": "The document.", "content": {JSON: {
                "schema": {"type": "object"},
                "examples": _media({"openapi": "3.1.0",
                                    "info": {"title": "KeyVault API", "version": "1"},
                                    "paths": {"/api/verify/": {"post": {"…": "…"}}}},
                                   "Abridged")}}}},
        }},
        "/api/docs/": {"get": {
            "operationId": "getDocs", "tags": ["Documentation"],
            "summary": "This document, for people",
            "description": "An HTML rendering of this document. No key needed.",
            "x-required-scope": None, "security": [],
            "responses": {"200": {"description": "The page.", "content": {"text/html": {
                "schema": {"type": "string"},
                "examples": _media("<!doctype html>\n<html lang=\"en\">\n…", "Abridged")}}}},
        }},
    }


def document() -> dict:
    """The OpenAPI 3.1 document describing every route of the API blueprint."""
    config = current_app.config
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
            {"name": "Verification", "description": "For services and gateways."},
            {"name": "Documentation", "description": "This document."},
        ],
        "paths": _paths(READ_KEYS, WRITE_KEYS, READ_USER, VERIFY, _examples(
            prefix, example_expiry(config["KEYVAULT_MAX_KEY_LIFETIME_DAYS"]))),
        "components": {
            "schemas": _schemas(scopes, prefix),
            "parameters": _parameters(),
            "responses": _responses(max_body, max_keys),
            "headers": _headers(),
            "securitySchemes": {
                "bearer": {
                    "type": "http", "scheme": "bearer", "bearerFormat": f"{prefix}_…",
                    "description": "`Authorization: Bearer <key>`: the preferred place.",
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
