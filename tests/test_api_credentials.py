"""Where the API reads a key from: header, then body field, then query — the first one found only."""

from __future__ import annotations

import pytest

from keyvault import tokens
from tests.conftest import bad_checksum

# Every endpoint that takes a key, with a request that would succeed with the right one.
KEYED_ENDPOINTS = [
    ("GET", "/api/users/@me/", None),
    ("GET", "/api/users/@me/security_log/", None),
    ("GET", "/api/personal_api_keys/", None),
    ("POST", "/api/personal_api_keys/", {"label": "new", "scopes": ["user:read"]}),
    ("GET", "/api/personal_api_keys/@current/", None),
    ("GET", "/api/personal_api_keys/{id}/", None),
    ("PATCH", "/api/personal_api_keys/{id}/", {"label": "renamed"}),
    ("DELETE", "/api/personal_api_keys/{id}/", None),
    ("POST", "/api/personal_api_keys/{id}/roll/", None),
    ("POST", "/api/verify/", {"key": "kv_whatever"}),
    ("GET", "/api/forward_auth/", None),
]


@pytest.fixture
def keys(user, make_key):
    """A valid full-access key and a well-formed key KeyVault never issued."""
    _, valid = make_key(user, label="valid", scopes=["*"])
    return {"valid": valid, "wrong": tokens.generate()}


def present(places: dict[str, str], subject: str) -> dict:
    """Test-client arguments for POST /api/verify/ with keys in the given places."""
    kwargs: dict = {"headers": {}, "query_string": {}}
    if "header" in places:
        kwargs["headers"]["Authorization"] = f"Bearer {places['header']}"
    if "form" in places:
        kwargs["data"] = {"token": subject, "personal_api_key": places["form"]}
    elif "json" in places:
        kwargs["json"] = {"key": subject, "personal_api_key": places["json"]}
    else:
        kwargs["json"] = {"key": subject}
    if "query" in places:
        kwargs["query_string"]["personal_api_key"] = places["query"]
    return kwargs


@pytest.mark.parametrize(("places", "expected"), [
    ({"header": "valid"}, 200),
    ({"header": "wrong"}, 401),
    ({"json": "valid"}, 200),
    ({"json": "wrong"}, 401),
    ({"form": "valid"}, 200),
    ({"form": "wrong"}, 401),
    ({"query": "valid"}, 200),
    ({"query": "wrong"}, 401),
    # The first place found decides; a later place never rescues (or spoils) it.
    ({"header": "valid", "query": "wrong"}, 200),
    ({"header": "wrong", "query": "valid"}, 401),
    ({"header": "valid", "json": "wrong"}, 200),
    ({"header": "wrong", "json": "valid"}, 401),
    ({"header": "wrong", "form": "valid"}, 401),
    ({"json": "valid", "query": "wrong"}, 200),
    ({"json": "wrong", "query": "valid"}, 401),
    ({"form": "valid", "query": "wrong"}, 200),
    ({"form": "wrong", "query": "valid"}, 401),
], ids=lambda value: "+".join(f"{k}={v}" for k, v in value.items())
   if isinstance(value, dict) else str(value))
def test_precedence(client, keys, places, expected):
    """Only the first key found (header, body, query) is tried; never a fall-back."""
    kwargs = present({place: keys[which] for place, which in places.items()}, keys["valid"])
    response = client.post("/api/verify/", **kwargs)
    assert response.status_code == expected, response.get_data(as_text=True)
    if expected == 200:
        assert response.json["active"] is True
    else:
        assert response.mimetype == "application/problem+json"
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_authorization_header_without_bearer_is_not_rescued_by_the_query(client, keys):
    """A non-Bearer Authorization header is the credential found first: a right key in the
    query string does not rescue it, and the answer names the scheme to use
    (tests/test_wrong_scheme.py has every door)."""
    response = client.get("/api/users/@me/",
                          headers={"Authorization": f"Basic {keys['valid']}"},
                          query_string={"personal_api_key": keys["valid"]})
    assert response.status_code == 401
    assert "'Basic'" in response.json["detail"] and "Bearer" in response.json["detail"]


def test_bearer_scheme_is_case_insensitive(client, keys):
    """RFC 9110 auth schemes are case-insensitive: `bearer` works like `Bearer`."""
    response = client.get("/api/users/@me/", headers={"Authorization": f"bearer {keys['valid']}"})
    assert response.status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), KEYED_ENDPOINTS)
def test_no_key_is_a_bare_bearer_challenge(client, user, make_key, method, path, body):
    """No key at all: 401 problem+json, `WWW-Authenticate: Bearer` and no error= parameter."""
    key, _ = make_key(user)
    response = client.open(path.format(id=key.public_id), method=method, json=body)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert "error=" not in challenge
    assert response.json["status"] == 401


@pytest.mark.parametrize(("method", "path", "body"), KEYED_ENDPOINTS)
@pytest.mark.parametrize("wrong", ["unknown", "malformed", "revoked"])
def test_wrong_key_is_invalid_token(client, user, make_key, method, path, body, wrong):
    """A presented key that is not valid: 401 with error="invalid_token"."""
    from keyvault import service

    key, value = make_key(user)
    if wrong == "unknown":
        value = tokens.generate()
    elif wrong == "malformed":
        value = bad_checksum(value)
    else:
        service.revoke_key(user, key.public_id, service.Origin())
    response = client.open(path.format(id=key.public_id), method=method, json=body,
                           headers={"Authorization": f"Bearer {value}"})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_session_cookie_never_authenticates_the_api(client, auth, user):
    """A logged-in browser session gets 401 from the API: only keys authenticate it."""
    assert auth.login().status_code == 302
    assert client.get("/settings/api-keys").status_code == 200  # the session is live
    assert client.get("/api/users/@me/").status_code == 401
    created = client.post("/api/personal_api_keys/", json={"label": "via cookie"})
    assert created.status_code == 401
    assert "error=" not in created.headers["WWW-Authenticate"]


def test_api_posts_need_no_csrf_token(client, auth, keys):
    """A key-authenticated POST succeeds without a CSRF token, even with a session cookie,
    while the same app refuses a browser form post that lacks one."""
    assert auth.login().status_code == 302
    refused = client.post("/settings/api-keys", data={"label": "no token", "expiry": "30",
                                                      "preset": "full"})
    assert refused.status_code == 400  # CSRF is on for the pages
    response = client.post("/api/personal_api_keys/", json={"label": "no csrf", "scopes": ["*"]},
                           headers={"Authorization": f"Bearer {keys['valid']}"})
    assert response.status_code == 201, response.get_data(as_text=True)
