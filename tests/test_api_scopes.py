"""Scopes: each endpoint demands its own, `*` grants all, write implies read, no escalation."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from keyvault import service
from keyvault.config import DEFAULT_SCOPES
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent

READ_KEYS, WRITE_KEYS = "personal_api_key:read", "personal_api_key:write"
READ_USER, VERIFY = "user:read", "key:verify"

# (method, path, body, scope it needs, status on success). {id} is a key of the same owner
# holding only personal_api_key:read, so any key-writing key may roll it.
ENDPOINTS = [
    ("GET", "/api/users/@me/", None, READ_USER, 200),
    ("GET", "/api/users/@me/security_log/", None, READ_USER, 200),
    ("GET", "/api/personal_api_keys/", None, READ_KEYS, 200),
    ("POST", "/api/personal_api_keys/", {"label": "new", "scopes": [READ_KEYS]}, WRITE_KEYS, 201),
    ("GET", "/api/personal_api_keys/@current/", None, READ_KEYS, 200),
    ("GET", "/api/personal_api_keys/{id}/", None, READ_KEYS, 200),
    ("PATCH", "/api/personal_api_keys/{id}/", {"label": "renamed"}, WRITE_KEYS, 200),
    ("DELETE", "/api/personal_api_keys/{id}/", None, WRITE_KEYS, 204),
    ("POST", "/api/personal_api_keys/{id}/roll/", None, WRITE_KEYS, 200),
    ("POST", "/api/verify/", {"key": "kv_anything"}, VERIFY, 200),
]

UNRELATED = {READ_USER: WRITE_KEYS, READ_KEYS: READ_USER, WRITE_KEYS: VERIFY, VERIFY: READ_USER}


def grant_table():
    """(endpoint, scopes the presenting key holds, allowed?) for every endpoint."""
    for method, path, body, needed, status in ENDPOINTS:
        endpoint = pytest.param(method, path, body, needed, status, id=f"{method} {path}")
        obj, _, action = needed.partition(":")
        cases = [([needed], True), (["*"], True), ([UNRELATED[needed]], False)]
        if action == "read" and f"{obj}:write" in DEFAULT_SCOPES:
            cases.append(([f"{obj}:write"], True))
        if action == "write":
            cases.append(([f"{obj}:read"], False))
        for scopes, allowed in cases:
            yield pytest.param(*endpoint.values, scopes, allowed,
                               id=f"{method} {path} with {'+'.join(scopes)}")


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


@pytest.mark.parametrize(("method", "path", "body", "needed", "status", "scopes", "allowed"),
                         list(grant_table()))
def test_scope_table(client, user, make_key, method, path, body, needed, status, scopes,
                     allowed):
    """A key with the needed scope (or `*`, or write for read) passes; any other gets 403."""
    target, _ = make_key(user, label="target", scopes=[READ_KEYS])
    _, value = make_key(user, label="caller", scopes=scopes)
    response = client.open(path.format(id=target.public_id), method=method, json=body,
                           headers=bearer(value))
    if allowed:
        assert response.status_code == status, response.get_data(as_text=True)
        return
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "insufficient_scope"
    assert response.json["required_scope"] == needed
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert f'scope="{needed}"' in challenge


@pytest.fixture
def counts():
    """Rows of keys and security events, to show a refused change left no trace."""
    def snapshot():
        db.session.expire_all()
        return (db.session.scalar(select(func.count()).select_from(ApiKey)),
                db.session.scalar(select(func.count()).select_from(SecurityEvent)))
    return snapshot


@pytest.mark.parametrize(("requested", "expected"), [
    ([READ_USER], 403),
    (["*"], 403),
    ([WRITE_KEYS, READ_USER], 403),
    ([READ_KEYS], 201),  # implied by the caller's write
    ([WRITE_KEYS], 201),
])
def test_create_cannot_escalate(client, user, make_key, counts, requested, expected):
    """A key can only create keys with scopes it holds itself."""
    _, value = make_key(user, scopes=[WRITE_KEYS])
    before = counts()
    response = client.post("/api/personal_api_keys/", json={"label": "new", "scopes": requested},
                           headers=bearer(value))
    assert response.status_code == expected, response.get_data(as_text=True)
    if expected == 403:
        assert response.mimetype == "application/problem+json"
        assert response.json["code"] == "insufficient_scope"
        assert counts() == before
    else:
        assert response.json["scopes"] == requested


@pytest.mark.parametrize("requested", [[READ_USER], ["*"]])
def test_patch_cannot_escalate(client, user, make_key, counts, requested):
    """A key cannot give another key (even a `*` key being narrowed) scopes it lacks itself."""
    target, _ = make_key(user, label="target", scopes=["*"])
    _, value = make_key(user, scopes=[WRITE_KEYS])
    before = counts()
    response = client.patch(f"/api/personal_api_keys/{target.public_id}/",
                            json={"scopes": requested}, headers=bearer(value))
    assert response.status_code == 403
    assert response.json["code"] == "insufficient_scope"
    assert counts() == before
    db.session.expire_all()
    assert db.session.get(ApiKey, target.id).scopes == ["*"]


def test_patch_cannot_widen_even_within_own_scopes(client, user, make_key):
    """Through the API scopes only narrow: adding one needs a person and their password."""
    target, _ = make_key(user, label="target", scopes=[READ_KEYS])
    _, value = make_key(user, scopes=["*"])
    response = client.patch(f"/api/personal_api_keys/{target.public_id}/",
                            json={"scopes": [READ_KEYS, READ_USER]}, headers=bearer(value))
    assert response.status_code == 403
    narrowed = client.patch(f"/api/personal_api_keys/{target.public_id}/",
                            json={"scopes": [READ_KEYS]}, headers=bearer(value))
    assert narrowed.status_code == 200


def test_roll_cannot_reissue_scopes_the_caller_lacks(client, user, make_key, counts):
    """Rolling re-issues a key's scopes, so the caller must hold every one of them."""
    target, old_value = make_key(user, label="target", scopes=[READ_USER])
    _, value = make_key(user, scopes=[WRITE_KEYS])
    before = counts()
    response = client.post(f"/api/personal_api_keys/{target.public_id}/roll/",
                           headers=bearer(value))
    assert response.status_code == 403
    assert response.json["code"] == "insufficient_scope"
    assert "value" not in response.json
    assert counts() == before
    assert service.verify_key(old_value).active  # not rolled


@pytest.mark.parametrize(("method", "path_suffix", "body"), [
    ("POST", "", {"label": "new", "scopes": ["billing:read"]}),
    ("POST", "", {"label": "new", "scopes": [READ_KEYS, "nope"]}),
    ("PATCH", "{id}/", {"scopes": ["billing:read"]}),
])
def test_unknown_scope_is_400_naming_it(client, user, make_key, counts, method, path_suffix,
                                        body):
    """A scope outside the catalogue is refused with 400, and the answer names it."""
    target, value = make_key(user, scopes=["*"])
    before = counts()
    response = client.open(f"/api/personal_api_keys/{path_suffix.format(id=target.public_id)}",
                           method=method, json=body, headers=bearer(value))
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    bad = body["scopes"][-1]
    assert bad in response.json["detail"]
    assert response.json["field"] == "scopes"
    assert counts() == before


def test_catalogue_comes_from_configuration(make_app, make_key, user):
    """KEYVAULT_SCOPES adds services' scopes, which keys may then carry and verify demands."""
    from tests.conftest import FreshContextClient

    app = make_app(KEYVAULT_SCOPES="feature_flag:read,feature_flag:write")
    app.test_client_class = FreshContextClient
    client = app.test_client()
    _, value = make_key(user, scopes=["*"])
    created = client.post("/api/personal_api_keys/", headers=bearer(value),
                          json={"label": "flags", "scopes": ["feature_flag:write", VERIFY]})
    assert created.status_code == 201, created.get_data(as_text=True)
    flags = created.json["value"]
    for demanded, active in [(["feature_flag:read"], True), (["feature_flag:write"], True),
                             ([READ_USER], False)]:
        answer = client.post("/api/verify/", json={"key": flags, "scopes": demanded},
                             headers=bearer(value)).json
        assert answer["active"] is active
        assert answer["code"] == ("valid" if active else "insufficient_scope")


@pytest.mark.parametrize("caller_scopes", [[WRITE_KEYS, READ_USER], [WRITE_KEYS], ["*"]])
@pytest.mark.parametrize("scopes", ["absent", None])
def test_create_without_scopes_is_400_naming_the_choices(client, user, make_key, caller_scopes,
                                                         scopes):
    """Least privilege on every door: the API no longer copies the presenting key's scopes (often
    `*`); the caller must choose, as on the page and the command line, and hears the choices
    the page offers, with their scopes."""
    _, value = make_key(user, scopes=caller_scopes)
    before = db.session.scalar(select(func.count()).select_from(ApiKey))
    body = {"label": "inherits"} if scopes == "absent" else {"label": "inherits", "scopes": None}
    response = client.post("/api/personal_api_keys/", json=body, headers=bearer(value))
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    problem = response.json
    assert problem["field"] == "scopes"
    for words in ('read only: ["personal_api_key:read", "user:read", "organization:read", '
                  '"webhook:read"]',
                  'verify keys for a service: ["key:verify"]', 'full access: ["*"]',
                  "personal_api_key:write"):
        assert words in problem["detail"]
    assert db.session.scalar(select(func.count()).select_from(ApiKey)) == before


def test_the_contract_says_create_needs_scopes(client):
    """The OpenAPI document marks `scopes` required and says what its absence answers."""
    document = client.get("/api/schema/").json
    create = document["components"]["schemas"]["CreateKey"]
    assert set(create["required"]) == {"label", "scopes"}
    assert "Omitted: 400" in create["properties"]["scopes"]["description"]
    operation = document["paths"]["/api/personal_api_keys/"]["post"]
    assert "`scopes` is required" in operation["description"]
    assert "presenting key's scopes" not in str(document)
