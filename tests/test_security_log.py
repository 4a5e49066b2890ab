"""The security log: one event per change, none for a refused change, each person sees only theirs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from keyvault import service
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import PASSWORD, AuthActions, FreshContextClient, csrf_from, once_token

ADDRESS = "198.51.100.23"
AGENT = "SecLogTest/2.0 (+https://example.com)"
ORIGIN = service.Origin("127.0.0.1", "pytest")


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def all_events() -> list[SecurityEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(SecurityEvent).order_by(SecurityEvent.id)))


def latest_key() -> ApiKey:
    db.session.expire_all()
    return db.session.scalars(select(ApiKey).order_by(ApiKey.id.desc())).first()


@pytest.fixture
def from_somewhere(client):
    """Requests from this client come from a known address and user agent."""
    client.environ_base.update(REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=AGENT)
    return client


def page_token(client) -> str:
    return csrf_from(client.get("/settings/api-keys").get_data(as_text=True))


# The actions of the table below: each does one thing and returns the key its event names.
def create_on_page(client, key, tool):
    assert AuthActions(client).create_key("made on page").status_code == 200
    return latest_key()


def create_by_api(client, key, tool):
    response = client.post("/api/personal_api_keys/", json={"label": "made by api"},
                           headers=bearer(tool))
    assert response.status_code == 201
    return latest_key()


def roll_on_page(client, key, tool):
    page = client.get(f"/settings/api-keys/{key.public_id}/roll").get_data(as_text=True)
    response = client.post(f"/settings/api-keys/{key.public_id}/roll",
                           data={"grace": "3600", "csrf_token": csrf_from(page),
                                 "once": once_token(page, "roll")})
    assert response.status_code == 200
    return key


def roll_by_api(client, key, tool):
    response = client.post(f"/api/personal_api_keys/{key.public_id}/roll/", json={},
                           headers=bearer(tool))
    assert response.status_code == 200
    return key


def edit_on_page(client, key, tool):
    response = client.post(f"/settings/api-keys/{key.public_id}/edit", data=MultiDict(
        [("label", "renamed"), ("description", ""), ("scopes", "user:read"),
         ("csrf_token", page_token(client))]))
    assert response.status_code == 302
    return key


def edit_by_api(client, key, tool):
    response = client.patch(f"/api/personal_api_keys/{key.public_id}/",
                            json={"label": "renamed", "scopes": ["user:read"]},
                            headers=bearer(tool))
    assert response.status_code == 200
    return key


def revoke_on_page(client, key, tool):
    response = client.post(f"/settings/api-keys/{key.public_id}/revoke",
                           data={"csrf_token": page_token(client)})
    assert response.status_code == 302
    return key


def revoke_by_api(client, key, tool):
    assert client.delete(f"/api/personal_api_keys/{key.public_id}/",
                         headers=bearer(tool)).status_code == 204
    return key


def log_in(client, key, tool):
    assert AuthActions(client).login().status_code == 302


def log_in_wrongly(client, key, tool):
    assert AuthActions(client).login(password="not the password").status_code == 400


@pytest.mark.parametrize(("action", "logged_in", "event"), [
    (create_on_page, True, "key.created"),
    (create_by_api, False, "key.created"),
    (roll_on_page, True, "key.rolled"),
    (roll_by_api, False, "key.rolled"),
    (edit_on_page, True, "key.updated"),
    (edit_by_api, False, "key.updated"),
    (revoke_on_page, True, "key.revoked"),
    (revoke_by_api, False, "key.revoked"),
    (log_in, False, "login.succeeded"),
    (log_in_wrongly, False, "login.failed"),
])
def test_each_action_writes_exactly_one_event(from_somewhere, user, make_key, action, logged_in,
                                              event):
    """One action, one event: the right name, key, user, address and user agent."""
    client = from_somewhere
    key, _ = make_key(user, label="target", scopes=["user:read", "key:verify"])
    _, tool = make_key(user, label="tool", scopes=["*"])
    if logged_in:
        AuthActions(client).login()
    before = {e.id for e in all_events()}
    expected_key = action(client, key, tool)
    new = [e for e in all_events() if e.id not in before]
    assert [(e.event, e.user_id, e.key_id, e.ip_address, e.user_agent) for e in new] == [
        (event, user.id, expected_key.id if expected_key else None, ADDRESS, AGENT)]


@pytest.fixture
def limited(make_app, user, make_key):
    """A client of an app allowing 4 live keys, the user holding exactly 4 of them."""
    app = make_app(KEYVAULT_MAX_KEYS_PER_USER=4)
    app.test_client_class = FreshContextClient
    gone, _ = make_key(user, label="gone", scopes=["user:read"])
    service.revoke_key(user, gone.public_id, ORIGIN)
    keys = SimpleNamespace(
        client=app.test_client(), gone=gone,
        tool=make_key(user, label="tool", scopes=["personal_api_key:write", "user:read"])[1],
        narrow=make_key(user, label="narrow", scopes=["user:read"])[0],
        same=make_key(user, label="same", scopes=["user:read"])[0],
        spare=make_key(user, label="spare")[0],
    )
    AuthActions(keys.client).login()
    return keys


def api(method, path, body):
    return lambda k: k.client.open(path.format(k=k), method=method, json=body,
                                   headers=bearer(k.tool))


@pytest.mark.parametrize(("attempt", "status"), [
    (lambda k: AuthActions(k.client).create_key("x" * 41), 400),
    (lambda k: AuthActions(k.client).create_key("one too many"), 400),
    (api("POST", "/api/personal_api_keys/", {"label": "x" * 41}), 400),
    (api("POST", "/api/personal_api_keys/", {"label": "one too many"}), 409),
    (api("POST", "/api/personal_api_keys/", {"label": "wider", "scopes": ["*"]}), 403),
    (api("PATCH", "/api/personal_api_keys/{k.narrow.public_id}/", {"scopes": ["*"]}), 403),
    (api("PATCH", "/api/personal_api_keys/{k.same.public_id}/", {"label": "x" * 41}), 400),
    (api("PATCH", "/api/personal_api_keys/{k.same.public_id}/", {"label": "same"}), 200),
    (api("PATCH", "/api/personal_api_keys/{k.gone.public_id}/", {"label": "back"}), 409),
    (api("POST", "/api/personal_api_keys/{k.gone.public_id}/roll/", {}), 409),
    (api("POST", "/api/personal_api_keys/{k.same.public_id}/roll/",
         {"grace_period_seconds": -5}), 400),
    (api("DELETE", "/api/personal_api_keys/nosuchkey/", None), 404),
])
def test_a_refused_or_empty_change_writes_no_event(limited, attempt, status):
    """Too long, over the key limit, an escalation, a dead key or no change at all: no event."""
    before = len(all_events())
    response = attempt(limited)
    assert response.status_code == status, response.get_data(as_text=True)
    assert len(all_events()) == before


def test_other_peoples_events_are_never_shown(client, auth, user, make_user, make_key):
    """Alice's page and API list only Alice's events, never Bob's."""
    bob = make_user("bob@example.com")
    bob_key, _ = make_key(bob, label="bobs secret project")
    service.revoke_key(bob, bob_key.public_id, service.Origin("192.0.2.99", "bob-agent/1"))
    AuthActions(client).login("bob@example.com", "wrong password!")
    alice_key, alice_value = make_key(user, label="alices key", scopes=["user:read"])
    auth.login()

    page = client.get("/settings/security-log").get_data(as_text=True)
    assert "alices key" in page and "login.succeeded" in page
    for leak in ("bobs secret project", bob_key.mask, "192.0.2.99", "bob-agent/1",
                 "login.failed"):
        assert leak not in page

    response = client.get("/api/users/@me/security_log/", headers=bearer(alice_value))
    assert response.status_code == 200
    results = response.json["results"]
    assert {r["key_id"] for r in results} <= {alice_key.public_id, None}
    assert {r["event"] for r in results} == {"user.created", "key.created", "login.succeeded"}
    assert "192.0.2.99" not in response.get_data(as_text=True)

    mine = {e.id for e in all_events() if e.user_id == user.id}
    assert {r["id"] for r in results} == mine


@pytest.mark.parametrize(("scopes", "status"), [
    (["user:read"], 200),
    (["*"], 200),
    (["personal_api_key:read"], 403),
    (["key:verify"], 403),
])
def test_api_log_needs_user_read(client, user, make_key, scopes, status):
    """GET /api/users/@me/security_log/ needs the user:read scope."""
    _, value = make_key(user, label="caller", scopes=scopes)
    response = client.get("/api/users/@me/security_log/", headers=bearer(value))
    assert response.status_code == status


def test_api_log_ignores_the_session_cookie(client, auth, user):
    """Being logged in to the page does not open the API log: 401 without a key."""
    auth.login()
    response = client.get("/api/users/@me/security_log/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_api_log_is_paginated_newest_first(client, user, make_key):
    """limit and cursors walk the whole log, newest first, each event once; previous goes back."""
    _, value = make_key(user, label="reader", scopes=["user:read"])
    for n in range(5):
        key, _ = make_key(user, label=f"key {n}")
        service.revoke_key(user, key.public_id, ORIGIN)
    expected = [e.id for e in reversed(all_events()) if e.user_id == user.id]
    assert len(expected) == 12

    seen, pages, url = [], [], "/api/users/@me/security_log/?limit=5"
    while url:
        response = client.get(url, headers=bearer(value))
        assert response.status_code == 200
        body = response.json
        pages.append(body)
        seen += [r["id"] for r in body["results"]]
        url = body["next"]
    assert seen == expected
    assert [len(p["results"]) for p in pages] == [5, 5, 2]
    assert pages[0]["previous"] is None
    back = client.get(pages[2]["previous"], headers=bearer(value)).json
    assert [r["id"] for r in back["results"]] == expected[5:10]

    first = pages[0]["results"][0]
    assert set(first) >= {"id", "event", "key_id", "created_at", "ip_address", "user_agent"}


def test_page_shows_time_address_and_agent(from_somewhere, user):
    """The security-log page lists each event with its address and user agent."""
    client = from_somewhere
    AuthActions(client).login(password="wrong password!")
    AuthActions(client).login()
    AuthActions(client).create_key("shown in log")
    page = client.get("/settings/security-log").get_data(as_text=True)
    for text in ("login.failed", "login.succeeded", "key.created", "shown in log", ADDRESS,
                 "SecLogTest/2.0 (+https://example.com)"):
        assert text in page
    assert PASSWORD not in page
