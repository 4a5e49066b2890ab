"""Against the real server (`keyvault serve`, 2 workers): revocation reaches every worker at once."""

from __future__ import annotations

import time

import pytest
import requests

from keyvault import service

CALLS = 50


@pytest.fixture
def http():
    """A client that opens a new connection per request, so calls spread over the workers."""
    with requests.Session() as session:
        session.headers["Connection"] = "close"
        yield session


@pytest.fixture
def verifier(live_server, http, make_user, make_key):
    """verify(value) -> the JSON answer, called as a service with its own key:verify key."""
    _, service_value = make_key(make_user("service@example.com"), scopes=["key:verify"])

    def verify(value: str) -> dict:
        response = http.post(f"{live_server.url}/api/verify/", json={"key": value},
                             headers={"Authorization": f"Bearer {service_value}"}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    return verify


def test_revocation_reaches_every_worker(live_server, http, verifier, user, make_key):
    """Once a key is revoked through the API, 50 verify calls in a row all answer revoked."""
    key, value = make_key(user, scopes=["*"])
    assert all(verifier(value)["active"] for _ in range(10))  # every worker has seen it valid
    revoked = http.delete(f"{live_server.url}/api/personal_api_keys/{key.public_id}/",
                          headers={"Authorization": f"Bearer {value}"}, timeout=10)
    assert revoked.status_code == 204
    answers = [verifier(value) for _ in range(CALLS)]
    assert answers == [{"active": False, "code": "revoked"}] * CALLS


def test_revocation_through_the_service_reaches_every_worker(live_server, verifier, user,
                                                             make_key):
    """A revocation made outside the server (CLI, admin, another instance) counts at once too."""
    key, value = make_key(user)
    assert all(verifier(value)["active"] for _ in range(10))
    service.revoke_key(user, key.public_id, service.Origin())
    answers = [verifier(value) for _ in range(CALLS)]
    assert answers == [{"active": False, "code": "revoked"}] * CALLS


def test_deactivating_the_user_reaches_every_worker(live_server, verifier, user, make_user,
                                                    make_key):
    """When an admin deactivates the owner, 50 verify calls in a row answer user_inactive."""
    admin = make_user("admin@example.com", is_admin=True)
    _, value = make_key(user)
    assert all(verifier(value)["active"] for _ in range(10))
    service.set_user_active(admin, user.id, False, service.Origin())
    answers = [verifier(value) for _ in range(CALLS)]
    assert answers == [{"active": False, "code": "user_inactive"}] * CALLS


def test_query_string_keys_never_reach_the_access_log(live_server, http, user, make_key):
    """A key sent as ?personal_api_key= works, and the access log shows it redacted."""
    _, value = make_key(user, scopes=["*"])
    marker = f"/api/users/@me/?probe={time.monotonic_ns()}"
    response = http.get(f"{live_server.url}{marker}&personal_api_key={value}", timeout=10)
    assert response.status_code == 200
    deadline = time.monotonic() + 10
    while marker not in live_server.log() and time.monotonic() < deadline:
        time.sleep(0.05)  # the server writes the access line just after the response
    log = live_server.log()
    assert marker in log
    assert value not in log
    assert "personal_api_key=[redacted]" in log
