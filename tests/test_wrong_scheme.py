"""`Authorization: Token <key>` (any scheme a door does not read) is 401 naming the scheme to use,
on every door that reads the header: the API, verify (both the fast lane and the Flask view),
forward_auth and /metrics. Not "malformed key": the key may be right; only the scheme is wrong.
"""

from __future__ import annotations

import base64

import pytest
import requests

# (method, path, extra request arguments, whether the door also reads Basic)
DOORS = [
    ("GET", "/api/users/@me/", {}, False),
    ("POST", "/api/personal_api_keys/", {"json": {"label": "x", "scopes": ["user:read"]}}, False),
    ("POST", "/api/verify/", {"json": {"key": "kv_whatever"}}, True),         # the fast lane
    ("POST", "/api/verify/", {"data": {"token": "kv_whatever"}}, True),       # the Flask view
    ("GET", "/api/forward_auth/", {}, False),
    ("GET", "/metrics", {}, False),
]


@pytest.fixture
def admin_key(make_user, make_key):
    """A key that would be let in at every door, so only the scheme can be what is wrong."""
    admin = make_user("root@example.com", is_admin=True)
    return make_key(admin, scopes=["*"])[1]


def _check(status: int, headers, body: dict, scheme: str, basic: bool) -> None:
    assert status == 401
    assert body["status"] == 401
    detail = body["detail"]
    assert f"'{scheme}'" in detail, detail
    assert "Authorization: Bearer <key>" in detail
    assert ("(or Basic" in detail) is basic
    assert "malformed" not in detail.lower()
    # RFC 6750 §3.1: no bearer token was presented, so the challenge carries no error code
    assert headers["WWW-Authenticate"] == 'Bearer realm="keyvault"'


@pytest.mark.parametrize(("method", "path", "extra", "basic"), DOORS)
@pytest.mark.parametrize("scheme", ["Token", "token", "ApiKey", "Digest"])
def test_a_wrong_scheme_is_named(client, admin_key, method, path, extra, basic, scheme):
    response = client.open(path, method=method, headers={"Authorization": f"{scheme} {admin_key}"},
                           **extra)
    assert response.mimetype == "application/problem+json"
    _check(response.status_code, response.headers, response.json, scheme, basic)
    assert admin_key not in response.get_data(as_text=True)


@pytest.mark.parametrize(("method", "path", "extra", "basic"), DOORS)
def test_a_bare_key_with_no_scheme_is_not_echoed(client, admin_key, method, path, extra, basic):
    """`Authorization: <key>` (no scheme): told to use Bearer, and the key never comes back."""
    response = client.open(path, method=method, headers={"Authorization": admin_key}, **extra)
    assert response.status_code == 401
    assert "no scheme this endpoint reads" in response.json["detail"]
    assert admin_key not in response.get_data(as_text=True)
    assert admin_key not in str(response.headers)


def test_bearer_and_basic_still_work_where_accepted(client, admin_key):
    """The right schemes are unchanged: Bearer everywhere, Basic (key as password) at verify."""
    assert client.get("/api/users/@me/",
                      headers={"Authorization": f"Bearer {admin_key}"}).status_code == 200
    basic = base64.b64encode(f"any-client:{admin_key}".encode()).decode()
    answer = client.post("/api/verify/", json={"key": admin_key},
                         headers={"Authorization": f"Basic {basic}"})
    assert answer.status_code == 200 and answer.json["active"] is True
    refused = client.get("/api/users/@me/", headers={"Authorization": f"Basic {basic}"})
    _check(refused.status_code, refused.headers, refused.json, "Basic", False)


def test_the_wrong_scheme_leaves_no_trace_on_the_key(client, admin_key, app):
    """No key was presented: the key's last use stays as it was."""
    from keyvault import service

    client.get("/api/users/@me/", headers={"Authorization": f"Token {admin_key}"})
    with app.app_context():
        key = service.list_keys(service.find_user("root@example.com"))[0]
        assert key.last_used_at is None


def test_every_door_on_the_wire(live_server, admin_key):
    """The same answers from `keyvault serve`, whose bridge answers verify on its event loop."""
    for method, path, extra, basic in DOORS:
        response = requests.request(method, f"{live_server.url}{path}", timeout=10,
                                    headers={"Authorization": f"Token {admin_key}"}, **extra)
        assert response.headers["Content-Type"].startswith("application/problem+json"), path
        _check(response.status_code, response.headers, response.json(), "Token", basic)
