"""The OpenAPI 3.1 document for /api/, built from the running app's configuration.

The scope catalogue, key prefix and size limits come from the app, so the document always
describes the instance that serves it. Every operation states the scope it needs twice: in its
security requirement (OpenAPI 3.1 allows role names for non-OAuth schemes) and as
`x-required-scope`, which the docs page shows.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from ..service import DESCRIPTION_MAX, FULL_ACCESS, GRACE_MAX_SECONDS, LABEL_MAX
from ..tokens import BODY_LENGTH, CHECKSUM_LENGTH
from .views import DEFAULT_LIMIT, MAX_LIMIT, READ_KEYS, READ_USER, VERIFY, WRITE_KEYS

VERIFY_CODES = ("valid", "malformed", "not_found", "revoked", "expired", "user_inactive",
                "insufficient_scope")
PROBLEM = "application/problem+json"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# What the service accepts as text, as JSON Schema (ECMA 262) regular expressions. `\s` is
# avoided because Python, ECMA 262 and Rust disagree on it: BLANK is exactly what str.strip()
# trims besides control characters, and CONTROL is Unicode category Cc, refused in labels (in
# descriptions all but tab and line breaks, which strip() trims too).
CONTROL = "\\u0000-\\u001F\\u007F-\\u009F"
CONTROL_BUT_LINE_BREAKS = "\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F"
LINE_BREAKS = "\\t\\n\\r"
BLANK = "\\u0020\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000"


def _trimmed_text(most: int, blank: str, refused: str, required: bool) -> str:
    """Text whose part between surrounding blanks is 1 (or 0) to `most` characters long."""
    edge, inner = f"[^{refused}{blank}]", f"[^{refused}]"
    core = f"(?:{edge}|{edge}{inner}{{0,{most - 2}}}{edge})"
    return f"^[{blank}]*{core}{'' if required else '?'}[{blank}]*$"


# Scope names (RFC 6750 scope-token characters), separated by spaces or commas.
SCOPE_LIST = "^[\\x21\\x23-\\x5b\\x5d-\\x7e ,]*$"


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _nullable_time(description: str) -> dict:
    return {"type": ["string", "null"], "format": "date-time", "description": description}


# ---------------------------------------------------------------- schemas


def _schemas(scopes: list[str], prefix: str) -> dict:
    grantable = {"type": "string", "enum": [FULL_ACCESS, *scopes]}
    key_value = {
        "type": "string",
        "pattern": f"^{prefix}_[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}$",
        "description": f"The key itself: `{prefix}_`, {BODY_LENGTH} random base62 characters and "
                       f"a {CHECKSUM_LENGTH}-character CRC32 checksum. Shown in this response "
                       "only; KeyVault keeps just a keyed digest of it.",
    }
    label = {"type": "string",
             "pattern": _trimmed_text(LABEL_MAX, BLANK, CONTROL, required=True),
             "description": f"1 to {LABEL_MAX} characters once surrounding spaces are "
                            "trimmed; no control characters."}
    description = {"type": ["string", "null"],
                   "pattern": _trimmed_text(DESCRIPTION_MAX, BLANK + LINE_BREAKS,
                                            CONTROL_BUT_LINE_BREAKS, required=False),
                   "description": f"Free text, at most {DESCRIPTION_MAX} characters once "
                                  "trimmed; tabs and line breaks are the only control "
                                  "characters allowed."}
    credential_field = {
        "description": "Alternative place for the caller's key (a string). Read only when "
                       "there is no Authorization header, and then anything but the right key "
                       "is a 401; never a fall-back when the header's key is wrong.",
    }
    api_key_properties = {
        "id": {"type": "string", "description": "Public id, random; not derived from the key."},
        "label": {"type": "string"},
        "description": {"type": "string"},
        "mask_value": {"type": "string", "description": f"Display form, e.g. `{prefix}_…x9Qa`."},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string", "enum": ["active", "revoked", "user_inactive", "expired"]},
        "created_at": {"type": "string", "format": "date-time"},
        "last_used_at": _nullable_time("Last authenticated use, to the minute."),
        "expires_at": _nullable_time("When the key stops working; null for never."),
        "revoked_at": _nullable_time("When the key was revoked; null while it is not."),
        "last_rolled_at": _nullable_time("When the key last got a new value."),
        "old_value_expires_at": _nullable_time(
            "After a roll with a grace period: when the previous value stops working."),
    }
    return {
        "Problem": {
            "type": "object",
            "description": "An error, as RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "description": "Always `about:blank`."},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string", "description": "What went wrong, for people."},
                "code": {"type": "string", "description": "`insufficient_scope` on scope "
                                                          "refusals."},
                "required_scope": {"type": "string",
                                   "description": "The scope the request needed."},
                "field": {"type": "string", "description": "The input field at fault."},
            },
        },
        "User": {
            "type": "object",
            "required": ["id", "email", "is_admin", "created_at", "last_login_at"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "integer"},
                "email": {"type": "string"},
                "is_admin": {"type": "boolean"},
                "created_at": {"type": "string", "format": "date-time"},
                "last_login_at": _nullable_time("Last login in the browser."),
            },
        },
        "ApiKey": {
            "type": "object",
            "description": "A personal API key, without its value.",
            "required": list(api_key_properties),
            "additionalProperties": False,
            "properties": api_key_properties,
        },
        "ApiKeyWithValue": {
            "type": "object",
            "description": "A key as returned by create and roll: the only responses that carry "
                           "its value.",
            "required": [*api_key_properties, "value"],
            "additionalProperties": False,
            "properties": {**api_key_properties, "value": key_value},
        },
        "ApiKeyPage": {
            "type": "object",
            "required": ["next", "previous", "results"],
            "additionalProperties": False,
            "properties": {
                "next": {"type": ["string", "null"], "format": "uri",
                         "description": "The next (older) page, or null at the end."},
                "previous": {"type": ["string", "null"], "format": "uri",
                             "description": "The previous (newer) page, or null at the start."},
                "results": {"type": "array", "items": _ref("schemas", "ApiKey"),
                            "description": "Newest first."},
            },
        },
        "SecurityEvent": {
            "type": "object",
            "required": ["id", "event", "key_id", "created_at", "ip_address", "user_agent",
                         "details"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "integer"},
                "event": {"type": "string",
                          "description": "e.g. `key.created`, `key.rolled`, `key.updated`, "
                                         "`key.revoked`, `login.succeeded`, `login.failed`, "
                                         "`sudo.failed`, `login.throttled`."},
                "key_id": {"type": ["string", "null"]},
                "created_at": {"type": "string", "format": "date-time"},
                "ip_address": {"type": ["string", "null"]},
                "user_agent": {"type": ["string", "null"]},
                "details": {"type": "object"},
            },
        },
        "SecurityEventPage": {
            "type": "object",
            "required": ["next", "previous", "results"],
            "additionalProperties": False,
            "properties": {
                "next": {"type": ["string", "null"], "format": "uri"},
                "previous": {"type": ["string", "null"], "format": "uri"},
                "results": {"type": "array", "items": _ref("schemas", "SecurityEvent"),
                            "description": "Newest first."},
            },
        },
        "CreateKey": {
            "type": "object",
            "required": ["label"],
            "additionalProperties": False,
            "properties": {
                "label": label,
                "description": description,
                "scopes": {
                    "type": ["array", "null"], "items": grantable, "minItems": 1,
                    "description": "Scopes from the catalogue. Omitted: the presenting key's own "
                                   "scopes. A key can never grant a scope it lacks (403).",
                },
                "expires_at": {
                    "type": ["string", "null"], "format": "date-time",
                    "description": "ISO 8601, in the future; omitted or null for no expiry "
                                   "(refused when the instance caps key lifetimes). A presenting "
                                   "key that expires cannot create one that outlives it (400); "
                                   "omitted or null, the new key ends when it does.",
                },
                "personal_api_key": credential_field,
            },
        },
        "UpdateKey": {
            "type": "object",
            "description": "Only the fields given change; null leaves a field as it is.",
            "additionalProperties": False,
            "properties": {
                "label": {**label, "type": ["string", "null"]},
                "description": description,
                "scopes": {
                    "type": ["array", "null"], "items": grantable, "minItems": 1,
                    "description": "Narrowing only: the API cannot add scopes to a key (403).",
                },
                "personal_api_key": credential_field,
            },
        },
        "RollKey": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "grace_period_seconds": {
                    "type": "integer", "minimum": 0, "maximum": GRACE_MAX_SECONDS, "default": 0,
                    "description": "How long the old value keeps working; 0 stops it at once.",
                },
                "personal_api_key": credential_field,
            },
        },
        "FormCredential": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"personal_api_key": credential_field},
        },
        "VerifyRequest": {
            "type": "object",
            "description": "`key` (or `token`, as in RFC 7662): the key your service was "
                           "handed. Other fields are ignored.",
            "anyOf": [{"required": ["key"]}, {"required": ["token"]}],
            "properties": {
                "key": {"type": "string"},
                "token": {"type": "string", "description": "Used when `key` is absent."},
                "scopes": {"type": ["array", "null"], "items": {"type": "string"},
                           "description": "Scopes the key must hold, else `insufficient_scope`."},
                "personal_api_key": credential_field,
            },
        },
        "VerifyForm": {
            "type": "object",
            "description": "RFC 7662 style: `token=` (or `key=`), scopes space- or "
                           "comma-separated.",
            "anyOf": [{"required": ["token"]}, {"required": ["key"]}],
            "properties": {
                "token": {"type": "string"},
                "key": {"type": "string", "description": "Used when `token` is absent."},
                "scopes": {"type": "string"},
                "scope": {"type": "string", "description": "Used when `scopes` is absent."},
                "personal_api_key": credential_field,
            },
        },
        "VerifyResult": {
            "oneOf": [_ref("schemas", "ActiveKey"), _ref("schemas", "InactiveKey")],
        },
        "ActiveKey": {
            "type": "object",
            "required": ["active", "code", "key_id", "label", "scopes", "expires_at",
                         "created_at", "user"],
            "additionalProperties": False,
            "properties": {
                "active": {"const": True},
                "code": {"const": "valid"},
                "key_id": {"type": "string"},
                "label": {"type": "string"},
                "scopes": {"type": "array", "items": {"type": "string"}},
                "expires_at": _nullable_time("When the key stops working; null for never."),
                "created_at": {"type": "string", "format": "date-time"},
                "user": {
                    "type": "object", "required": ["id", "email"], "additionalProperties": False,
                    "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
                },
                "rolled": {"const": True,
                           "description": "Present when this is a rolled key's old value, still "
                                          "inside its grace period."},
                "old_value_expires_at": _nullable_time("When that old value stops working."),
            },
        },
        "InactiveKey": {
            "type": "object",
            "required": ["active", "code"],
            "additionalProperties": False,
            "properties": {
                "active": {"const": False},
                "code": {"type": "string", "enum": list(VERIFY_CODES[1:])},
            },
        },
    }


# ---------------------------------------------------------------- parameters and responses


def _parameters() -> dict:
    return {
        "KeyId": {
            "name": "public_id", "in": "path", "required": True,
            "description": "The key's public id. Another user's key answers 404, like a "
                           "missing one.",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"},
        },
        "Limit": {
            "name": "limit", "in": "query", "required": False,
            "description": f"Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                       "default": DEFAULT_LIMIT},
        },
        "Cursor": {
            "name": "cursor", "in": "query", "required": False,
            "description": "Opaque; copy it from a `next` or `previous` link. Pages stay stable "
                           "when keys are created or deleted between fetches.",
            "schema": {"type": "string"},
        },
        "IncludeRevoked": {
            "name": "include_revoked", "in": "query", "required": False,
            "description": "Also list revoked keys (`true`/`false`, `1`/`0`).",
            "schema": {"type": "boolean", "default": False},
        },
    }


def _problem(description: str, headers: dict | None = None) -> dict:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM: {"schema": _ref("schemas", "Problem")}},
    }
    if headers:
        response["headers"] = headers
    return response


def _responses(max_body: int, max_keys: int) -> dict:
    challenge = "A Bearer challenge (RFC 6750)"
    return {
        "BadRequest": _problem("Malformed JSON, a field of the wrong type, an unknown field, an "
                               "unknown scope (named in `detail`) or a bad query parameter."),
        "Unauthorized": _problem(
            "No key was presented, or the presented key is malformed, unknown, revoked, expired "
            "or belongs to a deactivated user. A session cookie never authenticates the API.",
            {"WWW-Authenticate": {
                "required": True,
                "description": f'{challenge}: `Bearer realm="keyvault"` when no key was sent, '
                               'plus `error="invalid_token"` when the key was wrong.',
                "schema": {"type": "string"},
            }},
        ),
        "Forbidden": _problem(
            "The key lacks the scope this operation needs (`code: insufficient_scope`), or it "
            "tried to grant a scope it does not hold itself.",
            {"WWW-Authenticate": {
                "description": f'{challenge} with `error="insufficient_scope"` and the needed '
                               "`scope`, when the presenting key lacks it.",
                "schema": {"type": "string"},
            }},
        ),
        "NotFound": _problem("No key with this id belongs to the key's owner."),
        "MethodNotAllowed": _problem(
            "The path exists but not with this method.",
            {"Allow": {"required": True, "description": "The methods the path accepts.",
                       "schema": {"type": "string"}}},
        ),
        "Conflict": _problem(f"The owner already has {max_keys} live keys (the limit), or the "
                             "key is revoked or expired and cannot be changed."),
        "PayloadTooLarge": _problem(f"The request body is larger than {max_body} bytes."),
        "UnsupportedMediaType": _problem(
            "The body is neither JSON (`application/json`) nor a form."),
    }


def _headers() -> dict:
    return {
        "NoStore": {"required": True, "description": "`no-store`: the answer holds a secret or "
                                                     "a live verdict.",
                    "schema": {"type": "string", "const": "no-store"}},
    }


# ---------------------------------------------------------------- operations


def _security(scope: str | None) -> list[dict]:
    roles = [scope] if scope else []
    return [{"bearer": roles}, {"personal_api_key": roles}]


def _operation(operation_id: str, tag: str, summary: str, description: str, scope: str | None,
               responses: dict, *, parameters: list | None = None, body: dict | None = None,
               errors: tuple[str, ...] = ()) -> dict:
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
        "security": _security(scope),
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


def _json_body(schema: str, description: str, form: str | None = None,
               required: bool = False) -> dict:
    content = {JSON: {"schema": _ref("schemas", schema)}}
    if form:
        content[FORM] = {"schema": _ref("schemas", form)}
    return {"description": description, "required": required, "content": content}


def _json(schema: str, description: str, headers: dict | None = None) -> dict:
    response: dict[str, Any] = {"description": description,
                                "content": {JSON: {"schema": _ref("schemas", schema)}}}
    if headers:
        response["headers"] = headers
    return response


def _paths(read_keys: str, write_keys: str, read_user: str, verify: str) -> dict:
    key_id = _ref("parameters", "KeyId")
    page = [_ref("parameters", "Limit"), _ref("parameters", "Cursor")]
    no_store = {"Cache-Control": _ref("headers", "NoStore")}
    keys_tag, users_tag = "Personal API keys", "Users"
    return {
        "/api/users/@me/": {"get": _operation(
            "getCurrentUser", users_tag, "The key's owner",
            "The user who owns the presenting key.", read_user,
            {"200": _json("User", "The owner.")},
        )},
        "/api/users/@me/security_log/": {"get": _operation(
            "listSecurityEvents", users_tag, "The owner's security log",
            "Key creations, rolls, edits and revocations, logins and failed logins, newest "
            "first, cursor-paginated.", read_user,
            {"200": _json("SecurityEventPage", "One page of events.")}, parameters=page,
        )},
        "/api/personal_api_keys/": {
            "get": _operation(
                "listKeys", keys_tag, "List the owner's keys",
                "Newest first, cursor-paginated: follow `next` until it is null. Values are "
                "never listed.", read_keys,
                {"200": _json("ApiKeyPage", "One page of keys.")},
                parameters=[*page, _ref("parameters", "IncludeRevoked")],
            ),
            "post": _operation(
                "createKey", keys_tag, "Create a key",
                "Creates a key for the presenting key's owner. The response is the only one "
                "that ever carries the value: store it now. Without `scopes` the new key gets "
                "the presenting key's scopes.", write_keys,
                {"201": _json("ApiKeyWithValue", "The new key, with its value.", {
                    **no_store,
                    "Location": {"required": True, "description": "The new key's URL.",
                                 "schema": {"type": "string"}},
                })},
                body=_json_body("CreateKey", "The new key's fields.", required=True),
                errors=("Conflict", "UnsupportedMediaType"),
            ),
        },
        "/api/personal_api_keys/@current/": {"get": _operation(
            "getCurrentKey", keys_tag, "The presenting key",
            "The key used for this request describes itself.", read_keys,
            {"200": _json("ApiKey", "The presenting key.")},
        )},
        "/api/personal_api_keys/{public_id}/": {
            "parameters": [key_id],
            "get": _operation(
                "getKey", keys_tag, "One key",
                "One of the owner's keys, revoked ones included.", read_keys,
                {"200": _json("ApiKey", "The key.")}, errors=("NotFound",),
            ),
            "patch": _operation(
                "updateKey", keys_tag, "Edit a key",
                "Change the label, the description, or narrow the scopes. Widening scopes needs "
                "the browser and a password; a revoked key cannot be edited (409).", write_keys,
                {"200": _json("ApiKey", "The key after the change.")},
                body=_json_body("UpdateKey", "The fields to change."),
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
                {"200": _json("ApiKeyWithValue", "The key with its new value.", no_store)},
                body=_json_body("RollKey", "Optional.", form="FormCredential"),
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
            "take effect on the very next call.", verify,
            {"200": _json("VerifyResult", "The verdict.", no_store)},
            body=_json_body("VerifyRequest", "The key to check.", form="VerifyForm",
                            required=True),
            errors=("UnsupportedMediaType",),
        )},
        "/api/forward_auth/": {"get": _operation(
            "forwardAuth", "Verification", "Gateway check (auth_request)",
            "For nginx `auth_request`, Traefik ForwardAuth or Caddy `forward_auth`: the key in "
            "the request is checked, and a 200 carries who it is in headers. Scopes to demand "
            "come from the `scopes` parameter or the `X-KeyVault-Required-Scopes` header; a "
            "missing one is 403.", None,
            {"200": {"description": "The key is valid; its facts are in the headers.", "headers": {
                "X-KeyVault-User-Id": {"required": True, "schema": {"type": "string"}},
                "X-KeyVault-User-Email": {"required": True, "schema": {"type": "string"}},
                "X-KeyVault-Key-Id": {"required": True, "schema": {"type": "string"}},
                "X-KeyVault-Scopes": {"required": True, "schema": {"type": "string"},
                                      "description": "Space-separated."},
                **no_store,
            }}},
            parameters=[
                {"name": "scopes", "in": "query", "required": False,
                 "description": "Scopes the key must hold, space- or comma-separated.",
                 "schema": {"type": "string", "pattern": SCOPE_LIST}},
                {"name": "X-KeyVault-Required-Scopes", "in": "header", "required": False,
                 "description": "Same as `scopes`, for gateways that can set headers but not "
                                "rewrite URLs; used when `scopes` is empty.",
                 "schema": {"type": "string", "pattern": SCOPE_LIST}},
            ],
        )},
        "/api/schema/": {"get": {
            "operationId": "getSchema", "tags": ["Documentation"],
            "summary": "This document", "description": "The OpenAPI 3.1 document. No key needed.",
            "x-required-scope": None, "security": [],
            "responses": {"200": {"description": "The document.",
                                  "content": {JSON: {"schema": {"type": "object"}}}}},
        }},
        "/api/docs/": {"get": {
            "operationId": "getDocs", "tags": ["Documentation"],
            "summary": "This document, for people",
            "description": "An HTML rendering of this document. No key needed.",
            "x-required-scope": None, "security": [],
            "responses": {"200": {"description": "The page.",
                                  "content": {"text/html": {"schema": {"type": "string"}}}}},
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
        "paths": _paths(READ_KEYS, WRITE_KEYS, READ_USER, VERIFY),
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
