"""Rolling a key: a new value for the same key, the old one kept for an optional grace period."""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime, timedelta

import pytest
import requests

from keyvault import service
from keyvault.extensions import db
from keyvault.models import ApiKey
from tests.conftest import T0, csrf_from, once_token, shown_key, verify

ORIGIN = service.Origin("127.0.0.1", "pytest")


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def reload(key: ApiKey) -> ApiKey:
    db.session.expire_all()
    return db.session.get(ApiKey, key.id)


# ---------------------------------------------------------------- in process, clock held still


@pytest.mark.parametrize("grace", [0, 3600])
def test_service_roll_gives_a_new_value_for_the_same_key(user, make_key, frozen, grace):
    """Rolling keeps the key's id, label and scopes and changes its value and mask."""
    key, old = make_key(user, label="deploys", scopes=["user:read"])
    rolled, new = service.roll_key(user, key.public_id, origin=ORIGIN,
                                   grace_period_seconds=grace)
    assert new != old and new.startswith("kv_")
    assert (rolled.id, rolled.public_id, rolled.label, rolled.scopes) == (
        key.id, key.public_id, "deploys", ["user:read"])
    assert rolled.mask == "kv_…" + new[-4:]
    assert rolled.last_rolled_at == T0
    assert service.verify_key(new).code == "valid"
    old_verdict = service.verify_key(old)
    if grace:
        assert (old_verdict.code, old_verdict.rolled) == ("valid", True)
        assert old_verdict.old_value_expires_at == T0 + timedelta(seconds=grace)
    else:
        assert old_verdict.code in ("not_found", "expired")


@pytest.mark.parametrize(("grace", "offset", "old_code"), [
    (0, timedelta(0), None),
    (3600, timedelta(0), "valid"),
    (3600, timedelta(minutes=59, seconds=59), "valid"),
    (3600, timedelta(hours=1), "expired"),
    (3600, timedelta(days=3), "expired"),
    (604800, timedelta(days=7, seconds=-1), "valid"),
    (604800, timedelta(days=7), "expired"),
])
def test_old_value_works_only_during_the_grace_period(client, user, make_key, verifier, frozen,
                                                      grace, offset, old_code):
    """Through the API: the old value verifies `valid` and `rolled` until the grace ends."""
    _, tool = make_key(user, label="tool", scopes=["personal_api_key:write", "user:read"])
    key, old = make_key(user, label="rolled", scopes=["user:read"])
    response = client.post(f"/api/personal_api_keys/{key.public_id}/roll/",
                           json={"grace_period_seconds": grace}, headers=bearer(tool))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    new = body["value"]
    assert (body["id"], body["mask_value"], body["last_rolled_at"]) == (
        key.public_id, "kv_…" + new[-4:], "2030-03-10T12:00:00Z")
    grace_end = (T0 + timedelta(seconds=grace)).isoformat().replace("+00:00", "Z")
    assert body["old_value_expires_at"] == (grace_end if grace else None)

    frozen.at = T0 + offset
    answer = verify(client, verifier, old)
    if old_code is None:
        assert answer["active"] is False and answer["code"] in ("not_found", "expired")
    elif old_code == "valid":
        assert answer["active"] is True
        assert (answer["rolled"], answer["old_value_expires_at"]) == (True, grace_end)
        assert answer["key_id"] == key.public_id
    else:
        assert answer == {"active": False, "code": "expired"}
    fresh = verify(client, verifier, new)
    assert fresh["code"] == "valid" and fresh["key_id"] == key.public_id
    assert (fresh["rolled"], fresh["old_value_expires_at"]) == (False, None)


def test_old_value_authenticates_the_api_during_grace_only(client, user, make_key, frozen):
    """A program still holding the old value keeps working until the grace period ends."""
    key, old = make_key(user, label="rolled", scopes=["user:read"])
    service.roll_key(user, key.public_id, origin=ORIGIN, grace_period_seconds=60)
    assert client.get("/api/users/@me/", headers=bearer(old)).status_code == 200
    frozen.at = T0 + timedelta(seconds=60)
    assert client.get("/api/users/@me/", headers=bearer(old)).status_code == 401


def test_revoking_during_grace_stops_both_values(client, user, make_key, verifier, frozen):
    """Revoking a freshly rolled key revokes its old value too, grace or not, and a service
    presenting the old value hears `revoked` (not `not_found`): it is the same key."""
    key, old = make_key(user, label="rolled")
    _, new = service.roll_key(user, key.public_id, origin=ORIGIN, grace_period_seconds=3600)
    service.revoke_key(user, key.public_id, ORIGIN)
    assert verify(client, verifier, new) == {"active": False, "code": "revoked"}
    assert verify(client, verifier, old) == {"active": False, "code": "revoked"}
    assert client.get("/api/users/@me/", headers=bearer(old)).status_code == 401
    assert service.get_key(user, key.public_id).previous_expires_at is None


@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_api_refuses_to_roll_a_dead_key(client, user, make_key, verifier, frozen, state):
    """A revoked or expired key cannot be brought back by rolling it: 409, no value."""
    _, tool = make_key(user, label="tool", scopes=["*"])
    key, value = make_key(user, label="dead", expires_at=T0 + timedelta(hours=1))
    if state == "revoked":
        service.revoke_key(user, key.public_id, ORIGIN)
    else:
        frozen.at = T0 + timedelta(hours=2)
    response = client.post(f"/api/personal_api_keys/{key.public_id}/roll/", json={},
                           headers=bearer(tool))
    assert response.status_code == 409
    assert "value" not in response.json
    assert reload(key).last_rolled_at is None
    assert verify(client, verifier, value)["code"] == state


@pytest.mark.parametrize("grace", [-1, 604801, "3600", 1.5, True, None])
def test_api_refuses_a_bad_grace_period(client, user, make_key, grace):
    """grace_period_seconds must be a whole number from 0 to 604800; anything else is 400."""
    _, tool = make_key(user, label="tool", scopes=["*"])
    key, value = make_key(user, label="target")
    response = client.post(f"/api/personal_api_keys/{key.public_id}/roll/",
                           json={"grace_period_seconds": grace}, headers=bearer(tool))
    assert response.status_code == 400
    assert response.json["field"] == "grace_period_seconds"
    assert service.verify_key(value).code == "valid"


def test_api_cannot_roll_a_key_it_could_not_have_created(client, user, make_key):
    """Rolling re-issues the key's scopes: a key lacking them gets 403 and nothing changes."""
    _, narrow = make_key(user, label="narrow", scopes=["personal_api_key:write"])
    key, value = make_key(user, label="full", scopes=["*"])
    response = client.post(f"/api/personal_api_keys/{key.public_id}/roll/", json={},
                           headers=bearer(narrow))
    assert response.status_code == 403
    assert service.verify_key(value).code == "valid"


def test_api_cannot_roll_another_users_key(client, user, make_user, make_key):
    """Someone else's key is indistinguishable from a missing one: 404."""
    _, tool = make_key(user, label="tool", scopes=["*"])
    theirs, value = make_key(make_user("mallory@example.com"), label="theirs")
    response = client.post(f"/api/personal_api_keys/{theirs.public_id}/roll/", json={},
                           headers=bearer(tool))
    assert response.status_code == 404
    assert service.verify_key(value).code == "valid"


# ---------------------------------------------------------------- the settings page


def roll_on_page(client, key: ApiKey, grace: str):
    """Open the roll step and POST its form; when it offers none (the key is not active), with
    a token as an older page would have carried."""
    step = client.get(f"/settings/api-keys/{key.public_id}/roll")
    page = step.get_data(as_text=True)
    if step.status_code == 200:
        once = once_token(page, "roll")
    else:
        page = client.get(f"/settings/api-keys/{key.public_id}").get_data(as_text=True)
        once = secrets.token_urlsafe(24)
    return client.post(f"/settings/api-keys/{key.public_id}/roll",
                       data={"grace": grace, "csrf_token": csrf_from(page), "once": once})


def grace_note(html: str, key: ApiKey) -> str | None:
    """The key page's note on the old value after a roll with a grace period."""
    assert f"/settings/api-keys/{key.public_id}/" in html  # this key's own page
    note = re.search(r'data-testid="grace">(.*?)</small>', html, re.DOTALL)
    return note.group(1) if note else None


def test_page_roll_shows_the_new_value_once_like_creation(client, auth, user, make_key, verifier,
                                                          frozen):
    """The page shows the rolled value once, with the never-again warning, sent no-store."""
    key, old = make_key(user, label="deploys")
    auth.login()
    response = roll_on_page(client, key, "3600")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    new = shown_key(html)
    assert new and new != old
    assert "It will never be shown again" in html
    assert 'data-copy-target="new-key-value"' in html
    assert verify(client, verifier, new)["code"] == "valid"
    assert verify(client, verifier, old)["rolled"] is True

    later = client.get("/settings/api-keys").get_data(as_text=True)
    assert new not in later and old not in later
    assert shown_key(later) is None


@pytest.mark.parametrize(("offset", "note"), [
    (timedelta(0), "Old value works until 2030-03-10 13:00 UTC (in 1 hour)"),
    (timedelta(minutes=30), "Old value works until 2030-03-10 13:00 UTC (in 30 minutes)"),
    (timedelta(hours=3), "Old value expired 2 hours ago"),
])
def test_page_shows_the_grace_state(client, auth, user, make_key, frozen, offset, note):
    """After a roll with a grace period the key page says until when the old value works."""
    key, _ = make_key(user, label="deploys")
    auth.login()
    roll_on_page(client, key, "3600")
    frozen.at = T0 + offset
    assert grace_note(client.get(f"/settings/api-keys/{key.public_id}").get_data(as_text=True),
                      key) == note


def test_page_roll_without_grace_stops_the_old_value_at_once(client, auth, user, make_key,
                                                             verifier):
    """Rolling with "None" as the grace period leaves no old value and no grace note."""
    key, old = make_key(user, label="deploys")
    auth.login()
    response = roll_on_page(client, key, "0")
    new = shown_key(response.get_data(as_text=True))
    assert verify(client, verifier, new)["code"] == "valid"
    assert verify(client, verifier, old)["active"] is False
    assert grace_note(client.get(f"/settings/api-keys/{key.public_id}").get_data(as_text=True),
                      key) is None


def test_page_refuses_to_roll_a_revoked_key(client, auth, user, make_key, verifier):
    """Rolling a revoked key from the page shows an error and issues no value."""
    key, value = make_key(user, label="gone")
    service.revoke_key(user, key.public_id, ORIGIN)
    auth.login()
    response = roll_on_page(client, key, "0")
    assert verify(client, verifier, value)["code"] == "revoked"
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "cannot be rolled" in page
    assert shown_key(page) is None
    assert reload(key).last_rolled_at is None


@pytest.mark.parametrize("grace", ["5", "", "-1"])
def test_page_refuses_a_grace_period_it_did_not_offer(client, auth, user, make_key, grace):
    """Only the offered grace periods (none, 1 hour, 24 hours, 7 days) are accepted."""
    key, value = make_key(user, label="deploys")
    auth.login()
    assert roll_on_page(client, key, grace).status_code == 400
    assert service.verify_key(value).code == "valid"
    assert reload(key).last_rolled_at is None


def test_page_cannot_roll_another_users_key(client, auth, user, make_user, make_key):
    """A key of someone else is 404 on the roll route, and keeps its value."""
    theirs, value = make_key(make_user("mallory@example.com"), label="theirs")
    auth.login()
    assert roll_on_page(client, theirs, "0").status_code == 404
    assert service.verify_key(value).code == "valid"


# ---------------------------------------------------------------- two server workers


def live_verify(server, verifier_value: str, value: str) -> dict:
    """One verify call on a fresh connection, so calls spread over the server's workers."""
    response = requests.post(f"{server.url}/api/verify/", json={"key": value}, timeout=10,
                             headers={**bearer(verifier_value), "Connection": "close"})
    assert response.status_code == 200, response.text
    return response.json()


def live_roll(server, tool: str, key: ApiKey, grace: int) -> dict:
    response = requests.post(f"{server.url}/api/personal_api_keys/{key.public_id}/roll/",
                             json={"grace_period_seconds": grace}, timeout=10,
                             headers={**bearer(tool), "Connection": "close"})
    assert response.status_code == 200, response.text
    return response.json()


ROUNDS = 20


def test_grace_period_holds_in_every_worker_then_ends(live_server, user, make_key, verifier):
    """Against two server workers: both values valid during a 2 s grace, old expired after."""
    _, tool = make_key(user, label="tool", scopes=["*"])
    key, old = make_key(user, label="rolled", scopes=["user:read"])
    body = live_roll(live_server, tool, key, 2)
    new = body["value"]
    grace_end = datetime.fromisoformat(body["old_value_expires_at"]).timestamp()

    during = 0
    while during < ROUNDS and time.time() < grace_end - 0.5:
        old_answer = live_verify(live_server, verifier, old)
        if time.time() < grace_end:  # answered, hence judged, inside the grace period
            assert (old_answer["code"], old_answer["rolled"]) == ("valid", True)
            assert old_answer["old_value_expires_at"] == body["old_value_expires_at"]
            during += 1
        assert live_verify(live_server, verifier, new)["code"] == "valid"
    assert during >= 2, "the machine was too slow to check inside the grace period"

    time.sleep(max(0.0, grace_end - time.time()) + 0.5)
    for _ in range(ROUNDS):
        assert live_verify(live_server, verifier, old) == {"active": False, "code": "expired"}
        assert live_verify(live_server, verifier, new)["code"] == "valid"


def test_roll_without_grace_stops_the_old_value_in_every_worker(live_server, user, make_key,
                                                                verifier):
    """Against two server workers: the old value is refused on every call right after a roll."""
    _, tool = make_key(user, label="tool", scopes=["*"])
    key, old = make_key(user, label="rolled", scopes=["user:read"])
    for _ in range(4):  # warm both workers up with the old value first
        assert live_verify(live_server, verifier, old)["code"] == "valid"
    new = live_roll(live_server, tool, key, 0)["value"]
    for _ in range(ROUNDS):
        assert live_verify(live_server, verifier, old)["active"] is False
        assert live_verify(live_server, verifier, new)["code"] == "valid"
