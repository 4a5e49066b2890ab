"""GET /api/forward_auth/: the verify check for gateways, answered in headers."""

from __future__ import annotations

import pytest

from keyvault import service
from tests.conftest import bad_checksum


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def ask_gate(client, value: str, where: str, required: str):
    """GET /api/forward_auth/ with the required scopes in the query or in the header."""
    if where == "query":
        return client.get("/api/forward_auth/", query_string={"scopes": required},
                          headers=bearer(value))
    return client.get("/api/forward_auth/",
                      headers={**bearer(value), "X-KeyVault-Required-Scopes": required})


def test_a_valid_key_is_let_through_with_its_identity(client, user, make_key):
    """200 and the X-KeyVault-* headers a gateway passes on to the upstream."""
    key, value = make_key(user, scopes=["user:read", "key:verify"])
    response = client.get("/api/forward_auth/", headers=bearer(value))
    assert response.status_code == 200
    assert response.headers["X-KeyVault-User-Id"] == str(user.id)
    assert response.headers["X-KeyVault-User-Email"] == "alice@example.com"
    assert response.headers["X-KeyVault-Key-Id"] == key.public_id
    assert response.headers["X-KeyVault-Scopes"] == "user:read key:verify"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("required", "where", "status"), [
    ("user:read", "query", 200),
    ("user:read,key:verify", "query", 200),
    ("user:read", "header", 200),
    ("personal_api_key:write", "query", 403),
    ("personal_api_key:write user:read", "header", 403),
])
def test_required_scopes_come_from_the_query_or_a_header(client, user, make_key, required,
                                                         where, status):
    """The gateway names the scopes a location needs; a key without them is 403."""
    _, value = make_key(user, scopes=["user:read", "key:verify"])
    response = ask_gate(client, value, where, required)
    assert response.status_code == status
    if status == 403:
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
        assert "X-KeyVault-User-Id" not in response.headers


@pytest.mark.parametrize("state", ["missing", "malformed", "unknown", "revoked", "user_inactive"])
def test_anything_but_a_live_key_is_401(client, user, make_key, make_user, state):
    """No identity headers ever leave with a refusal."""
    key, value = make_key(user)
    headers = bearer(value)
    if state == "missing":
        headers = {}
    elif state == "malformed":
        headers = bearer(bad_checksum(value))
    elif state == "unknown":
        from keyvault import tokens

        headers = bearer(tokens.generate())
    elif state == "revoked":
        service.revoke_key(user, key.public_id, service.Origin())
    else:
        admin = make_user("root@example.com", is_admin=True)
        service.set_user_active(admin, user.id, False, service.Origin())
    response = client.get("/api/forward_auth/", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "X-KeyVault-User-Id" not in response.headers


@pytest.mark.parametrize(("where", "required"), [
    ("header", "\x1f"), ("header", "user:read\x0cuser:read"), ("query", "user:read\tkey:verify"),
    ("query", "\x1c"),
])
def test_control_characters_are_not_scope_separators(client, user, make_key, where, required):
    """Only spaces and commas separate scopes: a string that is all control characters is not an
    empty (anything goes) list, it is a malformed one, refused with 400."""
    _, value = make_key(user, scopes=["user:read", "key:verify"])
    response = ask_gate(client, value, where, required)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert "X-KeyVault-User-Id" not in response.headers


@pytest.mark.parametrize(("query", "header", "status"), [
    ("user:read", "personal_api_key:write", 403),   # a client's ?scopes= cannot replace it
    ("personal_api_key:write", "user:read", 403),   # nor the other way round
    ("", "personal_api_key:write", 403),
    ("user:read", "key:verify", 200),               # both held: both demanded
    ("user:read,key:verify", "user:read", 200),
])
def test_required_scopes_are_the_union_of_query_and_header(client, user, make_key, query, header,
                                                           status):
    """A gateway forwards the client's own query string: the scopes it demands in a header must
    hold whatever `?scopes=` the client adds."""
    _, value = make_key(user, scopes=["user:read", "key:verify"])
    response = client.get("/api/forward_auth/", query_string={"scopes": query},
                          headers={**bearer(value), "X-KeyVault-Required-Scopes": header})
    assert response.status_code == status
    if status == 403:
        assert "personal_api_key:write" in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("where", ["query", "form body", "json body"])
def test_the_key_is_read_from_the_authorization_header_only(client, user, make_key, where):
    """A key elsewhere in the forwarded request (where it would sit in the upstream's URL and
    logs) is not a credential here: 401, as for no key at all, and nothing is stamped."""
    key, value = make_key(user, scopes=["user:read"])
    request = {"query": dict(query_string={"personal_api_key": value}),
               "form body": dict(data={"personal_api_key": value}),
               "json body": dict(json={"personal_api_key": value})}[where]
    response = client.get("/api/forward_auth/", **request)
    assert response.status_code == 401
    assert 'error="invalid_token"' not in response.headers["WWW-Authenticate"]
    assert "X-KeyVault-User-Id" not in response.headers
    assert client.get("/api/forward_auth/", headers=bearer(value)).status_code == 200
