"""The OpenAPI document's examples: one made-up person and key, so that every example tells one
story. The docs page builds each operation's curl command and example answer from them
(keyvault.api.reference); tests check each against its schema."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from .. import clock
from ..service.scopes import READ_KEYS
from ..tokens import checksum, mask

# One made-up person and key, used by every example so that they tell one story. The docs page
# builds each operation's curl command and example answer from these (keyvault.api.reference).
EXAMPLE_HOST = "https://keyvault.example.com"
EXAMPLE_KEY_ID = "Q2xYh7vN4bWk9sRe"
_EXAMPLE_BODY = "3fTq9ZbW0LmR7xKc2VhN8sDj4GpA6uYe1QoIiEtB"  # 40 base62 characters
_SCOPE = READ_KEYS
_CREATED = "2026-11-02T09:41:27Z"
EXAMPLE_LIFETIME_DAYS = 90


def example_expiry(max_days: int | None) -> str:
    """The examples' expiry: a midnight 90 days ahead (fewer if the instance caps lifetimes), so
    the create example stays one the instance accepts."""
    days = min(EXAMPLE_LIFETIME_DAYS, max_days or EXAMPLE_LIFETIME_DAYS)
    day = (clock.now() + timedelta(days=days)).date()
    return f"{day.isoformat()}T00:00:00Z"


def example_value(prefix: str, body: str = _EXAMPLE_BODY) -> str:
    """A well-formed key value (right prefix, length and checksum) that no instance issued."""
    return f"{prefix}_{body}{checksum(body)}"


def _example_key(prefix: str, expires: str, **changes) -> dict:
    return {
        "id": EXAMPLE_KEY_ID, "label": "CI deploys", "description": "Publishes release notes.",
        "mask_value": mask(example_value(prefix)), "scopes": [_SCOPE], "status": "active",
        "created_at": _CREATED, "last_used_at": "2026-11-30T17:05:00Z",
        "expires_at": expires, "revoked_at": None, "last_rolled_at": None,
        "old_value_expires_at": None, "allowed_ips": ["203.0.113.0/24"], **changes,
    }


def _examples(prefix: str, expires: str) -> dict:
    """Example values by name, with the instance's key prefix."""
    value = example_value(prefix)
    rolled_value = example_value(prefix, _EXAMPLE_BODY[::-1])
    user = {"id": 42, "email": "ada@example.com", "is_admin": False,
            "created_at": "2026-03-02T10:15:00Z", "last_login_at": "2026-11-30T08:02:11Z"}
    key = _example_key(prefix, expires)
    rolled = _example_key(prefix, expires, mask_value=mask(rolled_value),
                          last_rolled_at="2026-12-01T12:00:00Z",
                          old_value_expires_at="2026-12-01T13:00:00Z")
    return {
        "value": value,
        "expires": expires,
        "user": user,
        "key": key,
        "created": {**_example_key(prefix, expires, last_used_at=None), "value": value},
        "updated": _example_key(prefix, expires, label="CI deploys (production)"),
        "rolled": {**rolled, "value": rolled_value},
        "key_page": {"next": f"{EXAMPLE_HOST}/api/personal_api_keys/?limit=20&cursor="
                             "MjAyNi0xMS0wMlQwOTo0MToyN1p8MTI",
                     "previous": None, "results": [key]},
        "event_page": {"next": None, "previous": None, "results": [
            {"id": 982, "event": "key.rolled", "title": "Key rolled",
             "summary": "Rolled; old value valid for 1 hour.", "key_id": EXAMPLE_KEY_ID,
             "key": {"id": EXAMPLE_KEY_ID, "label": "CI deploys",
                     "mask_value": mask(example_value(prefix))},
             "actor_key": {"id": "Yt7pQm2KcV9sWd4F", "label": "automation",
                           "mask_value": mask(rolled_value)},
             "created_at": "2026-12-01T12:00:00Z", "ip_address": "203.0.113.7",
             "user_agent": "curl/8.5.0", "request_id": "deploy-42",
             "details": {"grace_period_seconds": 3600}},
            {"id": 981, "event": "key.created", "title": "Key created",
             "summary": f"Scopes granted: {_SCOPE}.", "key_id": EXAMPLE_KEY_ID,
             "key": {"id": EXAMPLE_KEY_ID, "label": "CI deploys",
                     "mask_value": mask(example_value(prefix))},
             "actor_key": None, "created_at": _CREATED, "ip_address": "203.0.113.7",
             "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "request_id": "4f9a1c2e00000007",
             "details": {"label": "CI deploys", "scopes": [_SCOPE]}},
        ]},
        "valid": {
            "active": True, "code": "valid", "key_id": EXAMPLE_KEY_ID, "label": "CI deploys",
            "scopes": [_SCOPE], "expires_at": expires, "created_at": _CREATED,
            "user": {"id": 42, "email": "ada@example.com"},
            "owner": {"type": "user", "id": 42, "email": "ada@example.com"}, "rolled": False,
            "old_value_expires_at": None, "sub": "42", "username": "ada@example.com",
            "scope": _SCOPE, "token_type": "bearer",
            "exp": int(datetime.fromisoformat(expires).timestamp()),
            "iat": int(datetime.fromisoformat(_CREATED).timestamp()),
        },
        "revoked": {"active": False, "code": "revoked"},
        "report": [{"token": value, "type": "keyvault_personal_api_key",
                    "url": "https://github.com/octocat/deploy-scripts/blob/5f2a1c0/.env",
                    "source": "content"}],
        "labels": [{"token_hash": hashlib.sha256(value.encode()).hexdigest(),
                    "token_type": "keyvault_personal_api_key", "label": "true_positive"}],
    }
