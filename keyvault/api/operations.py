"""The OpenAPI document's operations: what each /api/ route takes and answers, and the helpers
that write an operation (keyvault.api.openapi puts them into the document with the schemas,
parameters and responses they refer to)."""

from __future__ import annotations

from typing import Any

from .examples import EXAMPLE_HOST, EXAMPLE_KEY_ID
from .signatures import (
    CHALLENGE,
    HEADER_MAX,
    IDENTIFIER_HEADER,
    RETRY_AFTER_SECONDS,
    SIGNATURE_HEADER,
)

PROBLEM = "application/problem+json"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# Scope names (RFC 6750 scope-token characters), separated by spaces or commas.
SCOPE_LIST = "^[\\x21\\x23-\\x5b\\x5d-\\x7e ,]*$"
_REF = "#/components/schemas/{model}"


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _media(value, summary: str | None = None, name: str = "example", **more) -> dict:
    """A media type's `examples`: one named example, or more given as name=(summary, value)."""
    examples = {name: {"summary": summary, "value": value} if summary else {"value": value}}
    for other, (other_summary, other_value) in more.items():
        examples[other] = {"summary": other_summary, "value": other_value}
    return examples


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


def paths(read_keys: str, write_keys: str, read_user: str, verify: str, ex: dict) -> dict:
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
                "that ever carries the value: store it now. `scopes` is required, as on the "
                "page and the command line: without it the answer is 400 naming the page's "
                "choices (read only, verify keys for a service, full access).", write_keys,
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
                    "scopes": [read_keys], "expires_at": ex["expires"],
                    "allowed_ips": ["203.0.113.0/24"]}, required=True),
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
                "Change the label, the description, narrow the scopes or bring the expiry "
                "forward. Widening scopes or extending the expiry needs the browser and a "
                "password (403); a revoked key cannot be edited, nor an expired key's expiry "
                "changed (409). Logged as `key.updated` with the old and new expiry.",
                write_keys,
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
            "touching the database), `not_found`, `revoked`, `expired`, `user_inactive`, "
            "`wrong_service`, `ip_not_allowed` (a key restricted by `allowed_ips`, with "
            "`client_ip` outside them or absent) or `insufficient_scope`; an active answer adds "
            "the key's facts. Revocation and expiry take effect on the very next call.\n\nRFC 7662 "
            "introspection clients may send a form body instead "
            "(`application/x-www-form-urlencoded`, the `VerifyForm` schema): `token=<key>`, "
            "optionally `scope=` with space- or comma-separated scopes. (It is "
            "not listed as a second body type because client generators mishandle a required "
            "body with two types.)", verify,
            {"200": _json("VerifyResult", "The verdict.", _media(
                ex["valid"], "A valid key that holds the scopes asked for", "valid",
                revoked=("A revoked key (any other code looks the same)", ex["revoked"])),
                no_store)},
            body=_json_body("VerifyRequest", "The key to check.",
                            {"key": ex["value"], "scopes": [read_keys],
                             "client_ip": "203.0.113.7"}, required=True),
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
            "replace what the gateway demands; a missing one is 403, as is a key restricted by "
            "address used from outside its ranges (the client address the gateway forwards).", None,
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
        "/api/secret_scanning/": {"post": _secret_scanning(ex)},
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


_SIGNATURE_HEADERS = (" and ".join(f"`{h}`" for h in (IDENTIFIER_HEADER, SIGNATURE_HEADER)))


def _signature_problem(status: int, title: str, description: str, detail: str,
                       headers: dict | None = None) -> dict:
    response: dict[str, Any] = {"description": description, "content": {PROBLEM: {
        "schema": _ref("schemas", "Problem"), "examples": _media(
            {"type": "about:blank", "title": title, "status": status, "detail": detail})}}}
    if headers:
        response["headers"] = headers
    return response


def _secret_scanning(ex: dict) -> dict:
    """POST /api/secret_scanning/: authenticated by its signature, not by a key."""
    return {
        "operationId": "reportLeakedKeys", "tags": ["Leaked keys"],
        "summary": "Report keys found in public",
        "description": (
            "For GitHub's secret scanning partner program (and any reporter that uses its "
            "format): a JSON list of matches found in public. Every one that is a live key of "
            "this instance is revoked at once, its owner's security log gets `key.leaked` with "
            "the URL, and each match is answered `true_positive` (a key this instance issued, "
            "revoked now or before) or `false_positive`, identified by the SHA-256 of the "
            "token. A rolled key's old value still inside its grace period revokes the whole "
            "key.\n\nNo API key: the request is authenticated by its signature, "
            f"{_SIGNATURE_HEADERS}: ECDSA P-256 with SHA-256 over the raw body, DER, base64, "
            "by a key the operator trusts (KEYVAULT_SECRET_SCANNING_KEYS, GitHub's "
            "public_keys document). Anything unsigned or wrongly signed is 401 and changes "
            "nothing; the body is read only after its signature checks out. Off (404) unless "
            "the operator set KEYVAULT_SECRET_SCANNING_KEYS."),
        "x-required-scope": None, "security": [],
        "parameters": [
            {"name": IDENTIFIER_HEADER, "in": "header", "required": True,
             "description": "The `key_identifier` of the public key that signed the body.",
             "schema": {"type": "string", "maxLength": HEADER_MAX},
             "example": "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c"},
            {"name": SIGNATURE_HEADER, "in": "header", "required": True,
             "description": "The signature of the raw request body: ECDSA P-256 with SHA-256, "
                            "DER-encoded, base64.",
             "schema": {"type": "string", "maxLength": HEADER_MAX},
             "example": "MEUCIQDaMKqrGnE27S0kgMrEK0eYBmyG0LeZismAEz/BgZyt7AIgXt9fErtRS4XaeSt/"
                        "AO1RtBY66YcAdjxji410VQV4xg=="},
        ],
        "requestBody": {"description": "The matches, as the reporter signed them.",
                        "required": True, "content": {JSON: {
                            "schema": _ref("schemas", "LeakReport"),
                            "examples": _media(ex["report"])}}},
        "responses": {
            "200": _json("TokenLabels", "One label per match, in the order sent.",
                         _media(ex["labels"]),
                         {"Cache-Control": _ref("headers", "NoStore")}),
            "400": _ref("responses", "BadRequest"),
            "401": _signature_problem(
                401, "Unauthorized", "The signature headers are missing, name a key the "
                "server does not trust, or do not match the body.",
                "The signature does not match the request body.",
                {"WWW-Authenticate": {
                    "required": True, "schema": {"type": "string"}, "example": CHALLENGE,
                    "description": "A challenge naming the two signature headers (HTTP "
                                   "requires one with every 401; no key is involved)."}}),
            "404": _signature_problem(
                404, "Not Found", "The intake is off: KEYVAULT_SECRET_SCANNING_KEYS is not set.",
                "The requested URL was not found on the server."),
            "413": _ref("responses", "PayloadTooLarge"),
            "415": _ref("responses", "UnsupportedMediaType"),
            "503": _signature_problem(
                503, "Service Unavailable", "The trusted public keys cannot be read (their "
                "URL is unreachable, or the file is unreadable); nothing was decided.",
                "The keys that sign reports cannot be read right now; nothing was decided. "
                "Try again later.",
                {"Retry-After": {"required": True, "description": "Seconds to wait.",
                                 "schema": {"type": "string"},
                                 "example": str(RETRY_AFTER_SECONDS)}}),
        },
    }

