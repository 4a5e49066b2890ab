"""A key's expiry after creation: earlier any time, later only after the password (the page) and
never through the API, within KEYVAULT_MAX_KEY_LIFETIME_DAYS, logged with the old and new."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from keyvault import clock, service
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import PASSWORD, AuthActions, csrf_from
from tests.test_sudo import is_prompt, make_stale, replay


def reload(key: ApiKey) -> ApiKey:
    db.session.expire_all()
    return db.session.get(ApiKey, key.id)


def updates_of(key: ApiKey) -> list[dict]:
    db.session.expire_all()
    return [event.details for event in db.session.scalars(
        select(SecurityEvent).where(SecurityEvent.key_id == key.id,
                                    SecurityEvent.event == "key.updated"))]


def post_expiry(client, key: ApiKey, expiry: str, expires_on: str = ""):
    path = f"/settings/api-keys/{key.public_id}/edit"
    token = csrf_from(client.get(path).get_data(as_text=True))
    return client.post(path, data=MultiDict(
        [("label", key.label), ("description", ""), ("csrf_token", token), ("expiry", expiry),
         ("expires_on", expires_on)] + [("scopes", s) for s in key.scopes]))


def near(moment: datetime | None, expected: datetime) -> bool:
    return moment is not None and abs(moment - expected) < timedelta(minutes=1)


def test_the_edit_page_offers_each_expiry_with_the_date_it_means(client, auth, user, make_key):
    expires = clock.now() + timedelta(days=60)
    key, _ = make_key(user, label="dated", scopes=["user:read"], expires_at=expires)
    auth.login()
    page = client.get(f"/settings/api-keys/{key.public_id}/edit").get_data(as_text=True)
    assert f"Keep as it is ({clock.format_datetime(expires)})" in page
    in_7_days = clock.format_datetime(clock.now() + timedelta(days=7))
    assert f"7 days (until {in_7_days})" in page


def test_shortening_needs_no_password_and_is_logged(client, auth, app, user, make_key):
    """An earlier expiry only takes power away: no prompt, saved at once, old and new logged."""
    old = clock.now() + timedelta(days=90)
    key, _ = make_key(user, label="long", scopes=["user:read"], expires_at=old)
    auth.login()
    make_stale(client, app)
    response = post_expiry(client, key, "7")
    assert response.status_code == 302 and not is_prompt(response)
    assert near(reload(key).expires_at, clock.now() + timedelta(days=7))
    [details] = updates_of(key)
    assert details["fields"] == ["expires_at"]
    assert datetime.fromisoformat(details["expires_from"]) == old
    assert near(datetime.fromisoformat(details["expires_to"]), clock.now() + timedelta(days=7))
    log = client.get("/settings/security-log").get_data(as_text=True)
    assert f"Expiry changed from {clock.format_datetime(old)} to" in log


def test_extending_when_stale_asks_for_the_password_first(client, auth, app, user, make_key):
    key, _ = make_key(user, label="short", scopes=["user:read"],
                      expires_at=clock.now() + timedelta(days=3))
    auth.login()
    make_stale(client, app)
    action = f"/settings/api-keys/{key.public_id}/edit"
    prompt = post_expiry(client, key, "90")
    assert prompt.status_code == 200 and is_prompt(prompt)
    assert near(reload(key).expires_at, clock.now() + timedelta(days=3))
    assert updates_of(key) == []

    assert replay(client, prompt, action, "not my password").status_code == 400
    assert near(reload(key).expires_at, clock.now() + timedelta(days=3))

    assert replay(client, prompt, action, PASSWORD).status_code == 302
    assert near(reload(key).expires_at, clock.now() + timedelta(days=90))
    assert [d["fields"] for d in updates_of(key)] == [["expires_at"]]


def test_removing_the_expiry_is_an_extension(client, auth, app, user, make_key):
    key, _ = make_key(user, label="short", scopes=["user:read"],
                      expires_at=clock.now() + timedelta(days=3))
    auth.login()
    make_stale(client, app)
    assert is_prompt(post_expiry(client, key, "none"))
    with client.session_transaction() as session:  # as after typing the password
        session["auth_at"] = int(time.time())
    assert post_expiry(client, key, "none").status_code == 302
    assert reload(key).expires_at is None
    assert updates_of(key)[-1]["expires_to"] is None


def test_extending_obeys_the_maximum_lifetime(make_app, make_user, make_key):
    app = make_app(KEYVAULT_MAX_KEY_LIFETIME_DAYS=30)
    owner = make_user("capped@example.com")
    key, _ = make_key(owner, label="capped", scopes=["user:read"],
                      expires_at=clock.now() + timedelta(days=3))
    client = app.test_client()
    assert AuthActions(client).login("capped@example.com").status_code == 302
    page = client.get(f"/settings/api-keys/{key.public_id}/edit").get_data(as_text=True)
    assert '<option value="60"' not in page and '<option value="none"' not in page  # not offered
    assert post_expiry(client, key, "60").status_code == 400  # not a choice on offer
    too_far = (clock.now() + timedelta(days=45)).date().isoformat()
    refused = post_expiry(client, key, "custom", too_far)
    assert refused.status_code == 400
    assert "Keys may live at most 30 days" in refused.get_data(as_text=True)
    assert near(reload(key).expires_at, clock.now() + timedelta(days=3))
    with app.app_context(), pytest.raises(service.InvalidInput, match="at most 30 days"):
        service.update_key(owner, key.public_id, origin=service.Origin(),
                           expires_at=clock.now() + timedelta(days=31), may_widen=True)
    assert post_expiry(client, key, "30").status_code == 302
    assert near(reload(key).expires_at, clock.now() + timedelta(days=30))


def test_an_expired_keys_expiry_cannot_change(client, auth, user, make_key, frozen):
    key, _ = make_key(user, label="gone", scopes=["user:read"],
                      expires_at=clock.now() + timedelta(days=1))
    frozen.at += timedelta(days=2)
    with pytest.raises(service.KeyNotLive, match="expired"):
        service.update_key(user, key.public_id, origin=service.Origin(),
                           expires_at=clock.now() + timedelta(days=5), may_widen=True)


# ---------------------------------------------------------------- the API


def patch(client, key: ApiKey, value: str, body: dict):
    return client.patch(f"/api/personal_api_keys/{key.public_id}/", json=body,
                        headers={"Authorization": f"Bearer {value}"})


def test_the_api_brings_an_expiry_forward(client, user, make_key):
    key, value = make_key(user, label="api", scopes=["*"],
                          expires_at=clock.now() + timedelta(days=60))
    sooner = (clock.now() + timedelta(days=10)).replace(microsecond=0)
    response = patch(client, key, value, {"expires_at": sooner.isoformat().replace("+00:00", "Z")})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["expires_at"] == sooner.isoformat().replace("+00:00", "Z")
    assert reload(key).expires_at == sooner
    assert updates_of(key)[-1]["expires_to"] == sooner.isoformat()


def test_the_api_gives_a_key_without_expiry_one(client, user, make_key):
    key, value = make_key(user, label="forever", scopes=["*"])
    sooner = (clock.now() + timedelta(days=10)).replace(microsecond=0)
    assert patch(client, key, value, {"expires_at": sooner.isoformat()}).status_code == 200
    assert reload(key).expires_at == sooner


@pytest.mark.parametrize("days", [61, 3650])
def test_the_api_cannot_extend_a_key(client, user, make_key, days):
    """Extending gives a key more power: like adding scopes, it needs the password (403)."""
    old = clock.now() + timedelta(days=60)
    key, value = make_key(user, label="api", scopes=["*"], expires_at=old)
    later = (clock.now() + timedelta(days=days)).isoformat()
    response = patch(client, key, value, {"expires_at": later})
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert "password" in response.json["detail"]
    assert near(reload(key).expires_at, old)
    assert updates_of(key) == []


@pytest.mark.parametrize("expires_at, words", [
    ("2001-01-01T00:00:00Z", "already passed"),
    ("next tuesday", "ISO 8601"),
])
def test_the_api_refuses_an_expiry_it_cannot_use(client, user, make_key, expires_at, words):
    key, value = make_key(user, label="api", scopes=["*"],
                          expires_at=clock.now() + timedelta(days=60))
    response = patch(client, key, value, {"expires_at": expires_at})
    assert response.status_code == 400
    assert words in response.json["detail"]
    assert updates_of(key) == []


def test_the_api_cannot_change_an_expired_keys_expiry(client, user, make_key):
    key, value = make_key(user, label="api", scopes=["*"])
    dead, _ = make_key(user, label="dead", scopes=["user:read"],
                       expires_at=clock.now() + timedelta(days=1))
    dead.expires_at = datetime(2001, 1, 1, tzinfo=UTC)
    db.session.commit()
    sooner = (clock.now() + timedelta(days=1)).isoformat()
    response = patch(client, dead, value, {"expires_at": sooner})
    assert response.status_code == 409
    assert "expired" in response.json["detail"]
