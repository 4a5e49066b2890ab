"""Administration: every user's keys (never values), revoking any key, deactivating users."""

from __future__ import annotations

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import select

from keyvault import clock, service
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent, User
from tests.conftest import AuthActions, csrf_from

ADMIN_ADDRESS = "192.0.2.10"
ORIGIN = service.Origin("127.0.0.1", "pytest")


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def events_of(user: User) -> list[SecurityEvent]:
    db.session.expire_all()
    return list(db.session.scalars(
        select(SecurityEvent).where(SecurityEvent.user_id == user.id).order_by(SecurityEvent.id)))


def is_active(user: User) -> bool:
    db.session.expire_all()
    return db.session.get(User, user.id).is_active


def listed_keys(html: str) -> set[str]:
    table = re.search(r'data-testid="admin-keys">(.*?)</table>', html, re.DOTALL).group(1)
    return set(re.findall(r'<tr data-key-id="([^"]+)"', table))


@pytest.fixture
def people(app, user, make_user, make_key):
    """An admin (with a verifier key), Alice with a live and a revoked key, Bob with one key."""
    admin = make_user("admin@example.com", is_admin=True)
    bob = make_user("bob@example.com")
    alice_live, alice_value = make_key(user, label="alice live", scopes=["user:read"])
    alice_gone, alice_gone_value = make_key(user, label="alice gone")
    service.revoke_key(user, alice_gone.public_id, ORIGIN)
    bob_key, bob_value = make_key(bob, label="bob live")
    _, verifier = make_key(admin, label="verifier", scopes=["key:verify"])
    return SimpleNamespace(
        admin=admin, alice=user, bob=bob, alice_live=alice_live, alice_value=alice_value,
        alice_gone=alice_gone, alice_gone_value=alice_gone_value, bob_key=bob_key,
        bob_value=bob_value, verifier=verifier,
        values=[alice_value, alice_gone_value, bob_value],
    )


@pytest.fixture
def admin_client(app, people):
    client = app.test_client()
    client.environ_base.update(REMOTE_ADDR=ADMIN_ADDRESS)
    AuthActions(client).login("admin@example.com")
    return client


def admin_post(client, path: str):
    token = csrf_from(client.get("/admin/keys").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token})


def verify(client, verifier: str, value: str) -> dict:
    response = client.post("/api/verify/", json={"key": value}, headers=bearer(verifier))
    assert response.status_code == 200
    return response.json


# ---------------------------------------------------------------- who may see the pages


@pytest.mark.parametrize("who", ["anonymous", "user"])
@pytest.mark.parametrize(("method", "route"), [
    ("GET", "/admin/keys"),
    ("GET", "/admin/keys?user=bob@example.com"),
    ("POST", "/admin/keys/{bob_key}/revoke"),
    ("POST", "/admin/users/{bob}/deactivate"),
    ("POST", "/admin/users/{bob}/activate"),
])
def test_admin_pages_do_not_exist_for_non_admins(client, auth, people, who, method, route):
    """A non-admin, or nobody, gets 404 on every admin route, and nothing changes."""
    token_page = "/login"
    if who == "user":
        auth.login()
        token_page = "/settings/api-keys"
    path = route.format(bob_key=people.bob_key.public_id, bob=people.bob.id)
    token = csrf_from(client.get(token_page).get_data(as_text=True))
    response = client.open(path, method=method, data={"csrf_token": token})
    assert response.status_code == 404
    assert "bob@example.com" not in response.get_data(as_text=True)
    assert service.verify_key(people.bob_value).code == "valid"
    assert is_active(people.bob)


def test_admin_link_shown_to_admins_only(client, auth, admin_client, people):
    """The navigation offers the admin page to admins and to nobody else."""
    assert 'href="/admin/keys"' in admin_client.get("/settings/api-keys").get_data(as_text=True)
    auth.login()
    assert 'href="/admin/keys"' not in client.get("/settings/api-keys").get_data(as_text=True)


# ---------------------------------------------------------------- listing


def test_admin_sees_every_users_keys_but_never_their_values(admin_client, people):
    """Every key of every user is listed with its owner and mask; no value or digest appears."""
    response = admin_client.get("/admin/keys")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert listed_keys(html) >= {people.alice_live.public_id, people.alice_gone.public_id,
                                 people.bob_key.public_id}
    for text in ("alice@example.com", "bob@example.com", "alice live", "bob live",
                 people.alice_live.mask, people.bob_key.mask):
        assert text in html
    for value in [*people.values, people.verifier]:
        assert value not in html
        assert value[3:] not in html
    for key in db.session.scalars(select(ApiKey)):
        assert key.digest not in html


@pytest.mark.parametrize(("query", "expected"), [
    ("user=alice@example.com", {"alice_live", "alice_gone"}),
    ("user=ALICE@Example.com", {"alice_live", "alice_gone"}),
    ("user=bob@example.com", {"bob_key"}),
    ("user=nobody@example.com", set()),
    ("status=revoked", {"alice_gone"}),
    ("status=active&user=alice@example.com", {"alice_live"}),
    ("status=revoked&user=bob@example.com", set()),
])
def test_admin_filters_by_user_and_status(admin_client, people, query, expected):
    """The user (email) and status filters narrow the list to exactly the matching keys."""
    html = admin_client.get(f"/admin/keys?{query}").get_data(as_text=True)
    assert listed_keys(html) == {getattr(people, name).public_id for name in expected}


def test_admin_status_filter_finds_expired_keys(admin_client, people, make_key, monkeypatch):
    """status=expired lists keys past their expiry that nobody revoked."""
    soon, _ = make_key(people.bob, label="short lived",
                       expires_at=clock.now() + timedelta(hours=1))
    later = clock.now() + timedelta(hours=2)
    monkeypatch.setattr(clock, "now", lambda: later)
    html = admin_client.get("/admin/keys?status=expired").get_data(as_text=True)
    assert listed_keys(html) == {soon.public_id}
    assert soon.public_id not in listed_keys(
        admin_client.get("/admin/keys?status=active").get_data(as_text=True))


def test_admin_refuses_an_unknown_status(admin_client):
    """A status that is not active, expired or revoked is a 400, not an empty list."""
    assert admin_client.get("/admin/keys?status=bogus").status_code == 400


# ---------------------------------------------------------------- revoking


def test_admin_revokes_any_key_and_the_owner_sees_it(admin_client, client, auth, people):
    """An admin's revoke stops the key at once and lands in the owner's log, marked as admin's."""
    before = {e.id for e in events_of(people.bob)}
    response = admin_post(admin_client, f"/admin/keys/{people.bob_key.public_id}/revoke")
    assert response.status_code == 302
    assert verify(client, people.verifier, people.bob_value)["code"] == "revoked"
    assert service.verify_key(people.alice_value).code == "valid"

    new = [e for e in events_of(people.bob) if e.id not in before]
    # ... and presenting the revoked key afterwards is logged too (events.note_refused_use)
    assert [(e.event, e.key_id, e.ip_address, e.details.get("by_admin")) for e in new] == [
        ("key.revoked", people.bob_key.id, ADMIN_ADDRESS, "admin@example.com"),
        ("key.revoked_use", people.bob_key.id, "127.0.0.1", None)]
    assert not any(e.event == "key.revoked" for e in events_of(people.admin))

    auth.login("bob@example.com")
    log = client.get("/settings/security-log").get_data(as_text=True)
    assert "key.revoked" in log and "by an administrator" in log and "bob live" in log


def test_admin_revoke_of_an_unknown_key_is_404(admin_client):
    """Revoking a key id that does not exist answers 404."""
    assert admin_post(admin_client, "/admin/keys/nosuchkey/revoke").status_code == 404


# ---------------------------------------------------------------- deactivating users


def test_deactivating_a_user_stops_all_their_keys_at_once(admin_client, client, people):
    """After deactivation every one of the user's live keys verifies `user_inactive`."""
    assert admin_post(admin_client, f"/admin/users/{people.alice.id}/deactivate"
                      ).status_code == 302
    assert not is_active(people.alice)
    assert verify(client, people.verifier, people.alice_value) == {
        "active": False, "code": "user_inactive"}
    assert verify(client, people.verifier, people.alice_gone_value)["code"] == "revoked"
    assert verify(client, people.verifier, people.bob_value)["code"] == "valid"
    response = client.get("/api/users/@me/", headers=bearer(people.alice_value))
    assert response.status_code == 401

    assert admin_post(admin_client, f"/admin/users/{people.alice.id}/activate"
                      ).status_code == 302
    assert verify(client, people.verifier, people.alice_value)["code"] == "valid"
    assert verify(client, people.verifier, people.alice_gone_value)["code"] == "revoked"
    assert client.get("/api/users/@me/", headers=bearer(people.alice_value)).status_code == 200


def test_deactivated_user_cannot_log_in_and_is_logged_out(admin_client, app, people):
    """A deactivated user's session ends and logging in fails; reactivation lets them back in."""
    alice = app.test_client()
    AuthActions(alice).login()
    assert alice.get("/settings/api-keys").status_code == 200

    admin_post(admin_client, f"/admin/users/{people.alice.id}/deactivate")
    response = alice.get("/settings/api-keys")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    attempt = AuthActions(app.test_client()).login()
    assert attempt.status_code == 400
    assert "Wrong email or password." in attempt.get_data(as_text=True)
    assert events_of(people.alice)[-1].event == "login.failed"

    admin_post(admin_client, f"/admin/users/{people.alice.id}/activate")
    stale = alice.get("/settings/api-keys")  # the session from before deactivation stays dead
    assert stale.status_code == 302 and "/login" in stale.headers["Location"]
    again = app.test_client()
    assert AuthActions(again).login().status_code == 302
    assert again.get("/settings/api-keys").status_code == 200


def test_deactivation_lands_in_the_users_log(admin_client, people):
    """Deactivating and reactivating each write one event in the affected user's log."""
    before = {e.id for e in events_of(people.alice)}
    admin_post(admin_client, f"/admin/users/{people.alice.id}/deactivate")
    admin_post(admin_client, f"/admin/users/{people.alice.id}/activate")
    new = [e for e in events_of(people.alice) if e.id not in before]
    assert [(e.event, e.ip_address, e.details.get("by_admin")) for e in new] == [
        ("user.deactivated", ADMIN_ADDRESS, "admin@example.com"),
        ("user.activated", ADMIN_ADDRESS, "admin@example.com")]


def test_admin_cannot_deactivate_themselves(admin_client, people):
    """An admin deactivating their own account is refused, so an admin always remains."""
    response = admin_post(admin_client, f"/admin/users/{people.admin.id}/deactivate")
    assert response.status_code == 302
    assert is_active(people.admin)
    assert "cannot deactivate your own account" in admin_client.get("/admin/keys").get_data(
        as_text=True)


def test_deactivation_applies_in_every_server_worker(live_server, admin_client, people):
    """Against two server workers: every call answers user_inactive right after deactivation."""

    def live(value):
        response = requests.post(f"{live_server.url}/api/verify/", json={"key": value},
                                 headers={**bearer(people.verifier), "Connection": "close"},
                                 timeout=10)
        assert response.status_code == 200
        return response.json()["code"]

    live_values = [people.alice_value]
    _, second_value = service.create_key(people.alice, label="alice second",
                                                    scopes=["*"], origin=ORIGIN)
    live_values.append(second_value)
    for _ in range(3):
        assert [live(v) for v in live_values] == ["valid", "valid"]

    admin_post(admin_client, f"/admin/users/{people.alice.id}/deactivate")
    for _ in range(10):
        assert [live(v) for v in live_values] == ["user_inactive", "user_inactive"]
        assert live(people.bob_value) == "valid"

    admin_post(admin_client, f"/admin/users/{people.alice.id}/activate")
    for _ in range(10):
        assert [live(v) for v in live_values] == ["valid", "valid"]


def test_a_deactivated_users_keys_are_not_listed_as_active(admin_client, app, people):
    """The admin list, its filter and the CLI agree with verify: user_inactive, not active."""
    admin_post(admin_client, f"/admin/users/{people.alice.id}/deactivate")
    row = f'data-key-id="{people.alice_live.public_id}"'
    active = admin_client.get("/admin/keys?status=active").get_data(as_text=True)
    assert row not in active and f'data-key-id="{people.bob_key.public_id}"' in active
    inactive = admin_client.get("/admin/keys?status=user_inactive").get_data(as_text=True)
    assert row in inactive and "badge-user_inactive" in inactive
    db.session.expire_all()  # the admin acted in its own request; forget this test's copies
    listing = app.test_cli_runner().invoke(args=["keys", "list", people.alice.email])
    assert "user_inactive" in listing.output and " active " not in listing.output
