"""Key expiry: the exact boundary, the page's wording, the form's choices and the lifetime cap."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from keyvault import service
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import T0, AuthActions, FreshContextClient, shown_key, verify


def key_row(html: str, key: ApiKey) -> tuple[str, str]:
    """(class attribute, inner HTML) of the settings table row of `key`."""
    match = re.search(rf'<tr data-key-id="{key.public_id}" class="([^"]*)">(.*?)</tr>', html, re.DOTALL)
    assert match, f"no row for {key.public_id}"
    return match.group(1), match.group(2)


def expired_use_events(key: ApiKey) -> list[SecurityEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.key_id == key.id, SecurityEvent.event == "key.expired_use")))


def key_count() -> int:
    return db.session.scalar(select(func.count(ApiKey.id)))


def latest_key() -> ApiKey:
    db.session.expire_all()
    return db.session.scalars(select(ApiKey).order_by(ApiKey.id.desc())).first()


# ---------------------------------------------------------------- the boundary


@pytest.mark.parametrize(("offset", "code"), [
    (timedelta(days=-1), "valid"),
    (timedelta(seconds=-1), "valid"),
    (timedelta(0), "expired"),
    (timedelta(seconds=1), "expired"),
    (timedelta(days=400), "expired"),
])
def test_key_verifies_until_the_instant_it_expires(client, user, make_key, verifier, frozen,
                                                   offset, code):
    """A key expiring at T is valid at T-1s and expired at exactly T and ever after."""
    expires = T0 + timedelta(days=2)
    _, value = make_key(user, expires_at=expires)
    frozen.at = expires + offset
    answer = verify(client, verifier, value)
    assert (answer["code"], answer["active"]) == (code, code == "valid")
    if code == "valid":
        assert answer["expires_at"] == "2030-03-12T12:00:00Z"
    else:
        assert "user" not in answer and "key_id" not in answer


def test_expired_key_no_longer_authenticates_the_api(client, user, make_key, frozen):
    """The API accepts a key one second before its expiry and answers 401 at the instant."""
    expires = T0 + timedelta(hours=1)
    _, value = make_key(user, scopes=["user:read"], expires_at=expires)
    headers = {"Authorization": f"Bearer {value}"}
    frozen.at = expires - timedelta(seconds=1)
    assert client.get("/api/users/@me/", headers=headers).status_code == 200
    frozen.at = expires
    response = client.get("/api/users/@me/", headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert "expired" in response.json["detail"]


def test_use_of_an_expired_key_is_logged_at_most_once_an_hour(client, user, make_key, verifier,
                                                              frozen):
    """Each try with an expired key is noted in the owner's log, but not more than once an hour."""
    expires = T0 + timedelta(hours=1)
    key, value = make_key(user, scopes=["user:read"], expires_at=expires)
    client.environ_base.update(REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="old-cron/1.0")
    frozen.at = expires - timedelta(seconds=1)
    assert verify(client, verifier, value)["code"] == "valid"
    assert expired_use_events(key) == []

    frozen.at = expires
    assert client.get("/api/users/@me/", headers={"Authorization": f"Bearer {value}"}
                      ).status_code == 401
    events = expired_use_events(key)
    assert [(e.user_id, e.ip_address, e.user_agent) for e in events] == [
        (user.id, "203.0.113.9", "old-cron/1.0")]

    for later in (timedelta(minutes=10), timedelta(minutes=59)):
        frozen.at = expires + later
        assert verify(client, verifier, value)["code"] == "expired"
    assert len(expired_use_events(key)) == 1

    frozen.at = expires + timedelta(minutes=61)
    assert verify(client, verifier, value)["code"] == "expired"
    assert len(expired_use_events(key)) == 2


# ---------------------------------------------------------------- the settings page


@pytest.mark.parametrize(("expires_in", "text", "soon"), [
    (timedelta(days=3, hours=1), "expires in 3 days", True),
    (timedelta(hours=5), "expires in 5 hours", True),
    (timedelta(days=7), "expires in 7 days", True),
    (timedelta(days=7, minutes=1), "expires in 7 days", False),
    (timedelta(days=30), "expires in 30 days", False),
    (timedelta(days=30) - timedelta(seconds=1), "expires in 30 days", False),  # made a second ago
    (timedelta(days=29, hours=13), "expires in 30 days", False),  # the nearest day; date beside
    (None, "Never", False),
])
def test_page_says_when_a_key_expires_and_highlights_the_soon_ones(client, auth, user, make_key,
                                                                   frozen, expires_in, text, soon):
    """The list says "expires in N days" and marks keys expiring within 7 days."""
    key, _ = make_key(user, expires_at=T0 + expires_in if expires_in else None)
    auth.login()
    classes, row = key_row(client.get("/settings/api-keys").get_data(as_text=True), key)
    expiry_cell = re.search(r'<td data-label="Expires" class="expiry">(.*?)</td>', row,
                            re.DOTALL).group(1)
    assert expiry_cell.startswith(text)
    assert ("expiring-soon" in classes.split()) is soon
    assert "status-active" in classes.split()


def test_a_revoked_key_does_not_say_when_it_would_have_expired(client, auth, user, make_key,
                                                              frozen):
    """A revoked key is listed with the revoked ones, with when it was revoked, never as
    "expires in N days"."""
    key, _ = make_key(user, expires_at=T0 + timedelta(days=60))
    service.revoke_key(user, key.public_id, service.Origin())
    auth.login()
    html = client.get("/settings/api-keys").get_data(as_text=True)
    classes, row = key_row(html, key)
    assert "status-revoked" in classes.split()
    assert "expires" not in row and "Revoked" in html
    key_page = client.get(f"/settings/api-keys/{key.public_id}").get_data(as_text=True)
    assert "expires in" not in key_page


def test_page_marks_an_expired_key_expired(client, auth, user, make_key, frozen):
    """A key past its expiry shows as expired, not as expiring soon, and cannot be rolled."""
    frozen.at = T0 - timedelta(hours=3)
    key, _ = make_key(user, expires_at=T0 - timedelta(hours=2))
    frozen.at = T0
    auth.login()
    classes, row = key_row(client.get("/settings/api-keys").get_data(as_text=True), key)
    assert "status-expired" in classes.split()
    assert "expiring-soon" not in classes.split()
    assert "expired 2 hours ago" in row
    assert 'data-testid="status">expired<' in row
    assert "/roll" not in row


# ---------------------------------------------------------------- the create form's choices


@pytest.mark.parametrize(("fields", "expected"), [
    ({"expiry": "7"}, T0 + timedelta(days=7)),
    ({"expiry": "30"}, T0 + timedelta(days=30)),
    ({"expiry": "60"}, T0 + timedelta(days=60)),
    ({"expiry": "90"}, T0 + timedelta(days=90)),
    ({"expiry": "custom", "expires_on": "2030-04-01"}, datetime(2030, 4, 1, 23, 59, 59, tzinfo=UTC)),
    ({"expiry": "none"}, None),
])
def test_form_expiry_choice_sets_expires_at(auth, user, frozen, fields, expected):
    """Each choice of the create form gives the key the matching expiry (or none)."""
    auth.login()
    response = auth.create_key("expiring", **fields)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert shown_key(response.get_data(as_text=True))
    assert latest_key().expires_at == expected


def test_custom_date_is_valid_through_that_whole_day(client, auth, user, verifier, frozen):
    """A key given the custom date 2030-04-01 verifies all that day (UTC) and not after."""
    auth.login()
    value = shown_key(auth.create_key("custom", expiry="custom", expires_on="2030-04-01")
                      .get_data(as_text=True))
    frozen.at = datetime(2030, 4, 1, 23, 59, 58, tzinfo=UTC)
    assert verify(client, verifier, value)["code"] == "valid"
    frozen.at = datetime(2030, 4, 2, 0, 0, 0, tzinfo=UTC)
    assert verify(client, verifier, value)["code"] == "expired"


@pytest.mark.parametrize(("fields", "message"), [
    ({"expiry": "custom"}, "Pick a date for the custom expiry."),
    ({"expiry": "custom", "expires_on": "2030-03-01"}, "Pick a date from today on."),
    ({"expiry": "custom", "expires_on": "not a date"},
     "Enter the custom expiry date as a date, e.g. 2031-01-31."),
    ({"expiry": "45"}, "Choose how long the key should work."),
])
def test_form_refuses_a_bad_expiry(auth, user, frozen, fields, message):
    """A missing, past, garbled or unoffered expiry is one form error in the person's words
    (no field name such as expires_at, no library default) and creates nothing."""
    auth.login()
    response = auth.create_key("bad expiry", **fields)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert re.findall(r'<p class="error" role="alert">([^<]*)</p>', html) == [message]
    assert "expires_at" not in html and "Not a valid" not in html
    assert shown_key(response.get_data(as_text=True)) is None
    assert key_count() == 0


# ---------------------------------------------------------------- the lifetime cap


@pytest.fixture
def capped(make_app):
    """A client of an app whose keys may live at most 30 days."""
    app = make_app(KEYVAULT_MAX_KEY_LIFETIME_DAYS="30")
    app.test_client_class = FreshContextClient
    return app.test_client()


def test_capped_form_offers_no_never_and_nothing_beyond_the_cap(capped, user, frozen):
    """With a 30-day cap the form offers 7 days, 30 days and a custom date, nothing else."""
    AuthActions(capped).login()
    html = capped.get("/settings/api-keys").get_data(as_text=True)
    select_html = re.search(r'<select[^>]*name="expiry".*?</select>', html, re.DOTALL).group(0)
    assert re.findall(r'value="([^"]+)"', select_html) == ["7", "30", "custom"]
    assert "No expiry" not in select_html
    assert "at most 30 days" in html


@pytest.mark.parametrize(("fields", "created"), [
    ({"expiry": "7"}, True),
    ({"expiry": "30"}, True),
    ({"expiry": "custom", "expires_on": "2030-04-08"}, True),   # 29 days away
    ({"expiry": "custom", "expires_on": "2030-04-09"}, True),   # the cap's own day: until the cap
    ({"expiry": "none"}, False),
    ({"expiry": "60"}, False),
    ({"expiry": "90"}, False),
    ({"expiry": "custom", "expires_on": "2030-04-10"}, False),  # 31 days away
    ({"expiry": "custom", "expires_on": "2031-01-01"}, False),
])
def test_capped_form_refuses_lifetimes_beyond_the_cap(capped, user, frozen, fields, created):
    """Posting "no expiry", a longer choice or a later custom date is refused with a form error."""
    auth = AuthActions(capped)
    auth.login()
    response = auth.create_key("capped", **fields)
    html = response.get_data(as_text=True)
    if created:
        assert response.status_code == 200, html
        assert latest_key().expires_at <= T0 + timedelta(days=30)
    else:
        assert response.status_code == 400
        assert 'class="error" role="alert"' in html
        assert shown_key(html) is None
        assert key_count() == 0


@pytest.mark.parametrize(("expires_at", "status"), [
    (None, 400),
    ("2030-04-10T12:00:00Z", 400),            # 31 days
    ("2030-04-09T12:02:00+00:00", 400),       # 30 days and 2 minutes
    ("2030-04-09T12:00:00Z", 201),            # exactly 30 days
    ("2030-03-17T12:00:00Z", 201),            # 7 days
])
def test_capped_api_refuses_lifetimes_beyond_the_cap(capped, user, make_key, frozen,
                                                    expires_at, status):
    """The API enforces the cap too: no expiry, or one beyond it, is 400; within it, 201."""
    _, full = make_key(user, label="admin tool", scopes=["*"])
    body = {"label": "from api", "scopes": ["user:read"]}
    if expires_at is not None:
        body["expires_at"] = expires_at
    response = capped.post("/api/personal_api_keys/", json=body,
                           headers={"Authorization": f"Bearer {full}"})
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 400:
        assert response.json["field"] == "expires_at"
        assert "value" not in response.json
        assert key_count() == 1
    else:
        assert response.json["expires_at"] == expires_at
        assert response.json["value"].startswith("kv_")


def test_uncapped_api_accepts_no_expiry(client, user, make_key, frozen):
    """Without a cap, a key created through the API may have no expiry at all."""
    _, full = make_key(user, label="admin tool", scopes=["*"])
    response = client.post("/api/personal_api_keys/", json={"label": "forever", "scopes": ["*"]},
                           headers={"Authorization": f"Bearer {full}"})
    assert response.status_code == 201
    assert response.json["expires_at"] is None

