"""The account-settings key page: create, list and revoke keys, the value shown exactly once."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from keyvault import service, tokens
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import TEST_PEPPER, AuthActions, csrf_from, shown_key

PAGE = "/settings/api-keys"


def keys_of(owner) -> list[ApiKey]:
    db.session.expire_all()
    return list(db.session.scalars(select(ApiKey).where(ApiKey.user_id == owner.id)
                                   .order_by(ApiKey.id)))


def event_names() -> list[str]:
    db.session.expire_all()
    return list(db.session.scalars(select(SecurityEvent.event).order_by(SecurityEvent.id)))


def errors_in(html: str) -> list[str]:
    return re.findall(r'<p class="error" role="alert">([^<]*)</p>', html)


def session_contents(app, client) -> str:
    """The decoded session cookie (flashes live there), as text to search."""
    cookie = client.get_cookie("session")
    if cookie is None:
        return ""
    serializer = app.session_interface.get_signing_serializer(app)
    return repr(serializer.loads(cookie.value))


def assert_nowhere_but_the_body(value: str, app, client, response) -> None:
    """The value is in no header (Location, Set-Cookie, …) and not in the session's flashes."""
    for name, header in response.headers.items():
        assert value not in header, name
    assert value not in session_contents(app, client)


@pytest.fixture
def logged_in(auth, user):
    assert auth.login().status_code == 302
    return user


def revoke(client, public_id: str, token: str | None):
    data = {} if token is None else {"csrf_token": token}
    return client.post(f"{PAGE}/{public_id}/revoke", data=data)


# ---------------------------------------------------------------- create, list, revoke


def test_create_shows_the_value_once_then_only_the_mask(app, auth, client, logged_in):
    """The create response shows the key with the never-again warning; the next visit does not."""
    response = auth.create_key("CI deploys", description="used by the deploy job")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    value = shown_key(html)
    assert value is not None and tokens.is_well_formed(value)
    assert html.count(value) == 1
    assert "It will never be shown again." in html
    assert 'data-copy-target="new-key-value"' in html
    assert response.headers["Cache-Control"] == "no-store"
    assert_nowhere_but_the_body(value, app, client, response)

    (key,) = keys_of(logged_in)
    assert key.label == "CI deploys"
    assert key.description == "used by the deploy job"
    assert key.mask == tokens.mask(value)
    assert key.scopes == ["*"]

    again = client.get(PAGE)
    later = again.get_data(as_text=True)
    assert value not in later
    assert value[3:] not in later and value[3:43] not in later
    assert shown_key(later) is None
    assert key.mask in later
    assert again.headers["Cache-Control"] == "no-store"
    assert_nowhere_but_the_body(value, app, client, again)


def test_the_list_shows_label_mask_dates_and_status(auth, client, logged_in, make_key):
    """Each row links its label to the key's page and has the mask, when it was last used, its
    expiry and its status; the key's page has when it was created."""
    key, value = make_key(logged_in, label="reporting")
    html = client.get(PAGE).get_data(as_text=True)
    row = re.search(rf'<tr data-key-id="{key.public_id}".*?</tr>', html, re.DOTALL).group(0)
    assert f'<a href="{PAGE}/{key.public_id}">reporting</a>' in row
    assert f'<code class="mask">{key.mask}</code>' in row
    assert 'data-label="Last used">Never<' in row  # not used yet
    assert 'data-testid="status">active<' in row
    assert value not in html
    page = client.get(f"{PAGE}/{key.public_id}").get_data(as_text=True)
    assert key.created_at.strftime("%Y-%m-%d %H:%M UTC") in page
    assert value not in page


def test_a_created_key_works_and_revoking_stops_it_at_once(app, auth, client, logged_in):
    """A key made on the page verifies; after revoking on the page it answers `revoked`."""
    value = shown_key(auth.create_key("short-lived").get_data(as_text=True))
    assert service.verify_key(value).code == "valid"
    (key,) = keys_of(logged_in)

    page = client.get(f"{PAGE}/{key.public_id}").get_data(as_text=True)
    assert f'action="{PAGE}/{key.public_id}/revoke"' in page
    response = revoke(client, key.public_id, csrf_from(page))
    assert response.status_code == 302
    assert response.headers["Location"] == PAGE
    assert service.verify_key(value).code == "revoked"
    assert keys_of(logged_in)[0].revoked_at is not None

    html = client.get(PAGE).get_data(as_text=True)
    assert f"Revoked “short-lived” ({key.mask}). It no longer works." in html
    revoked = re.search(r'<details class="revoked-keys".*?</details>', html, re.DOTALL).group(0)
    row = re.search(rf'<tr data-key-id="{key.public_id}".*?</tr>', revoked, re.DOTALL).group(0)
    assert 'data-testid="status">revoked<' in row
    assert "expires" not in row
    key_page = client.get(f"{PAGE}/{key.public_id}").get_data(as_text=True)
    assert "/revoke" not in key_page  # no button to revoke it twice
    assert_nowhere_but_the_body(value, app, client, response)


def test_label_is_trimmed_and_forty_characters_are_allowed(auth, logged_in):
    """Surrounding spaces are dropped; exactly 40 characters is a valid label."""
    assert auth.create_key("  padded  ").status_code == 200
    assert auth.create_key("x" * 40).status_code == 200
    assert [k.label for k in keys_of(logged_in)] == ["padded", "x" * 40]


@pytest.mark.parametrize(("label", "message"), [
    ("", "Give the key a label."),
    ("   ", "Give the key a label."),
    ("x" * 41, "Keep the label to 40 characters or fewer; this one has 41."),
])
def test_bad_label_is_a_form_error_and_creates_nothing(auth, logged_in, label, message):
    """An empty, blank or too-long label is refused on the form; no key, no event."""
    events_before = event_names()
    response = auth.create_key(label)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in errors_in(html)
    assert shown_key(html) is None
    assert keys_of(logged_in) == []
    assert event_names() == events_before


def test_too_long_description_is_a_form_error(auth, logged_in):
    """Descriptions are at most 1000 characters."""
    response = auth.create_key("ok", description="d" * 1001)
    assert response.status_code == 400
    assert ("Keep the description to 1000 characters or fewer; this one has 1001."
            in errors_in(response.get_data(True)))
    assert keys_of(logged_in) == []


# ---------------------------------------------------------------- the per-user limit


def test_the_eleventh_live_key_is_refused(auth, logged_in, make_key):
    """Ten live keys is the default limit; the eleventh gets a clear message and is not made."""
    for number in range(10):
        make_key(logged_in, label=f"key {number}")
    events_before = event_names()
    response = auth.create_key("one too many")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert errors_in(html) == [  # said once, not once above the form and once in it
        "You already have 10 active keys, the most allowed. Revoke one to create another."]
    assert shown_key(html) is None
    assert len(keys_of(logged_in)) == 10
    assert event_names() == events_before


def test_the_limit_is_a_setting(make_app, make_user):
    """With KEYVAULT_MAX_KEYS_PER_USER=2 the third key is refused."""
    app = make_app(KEYVAULT_MAX_KEYS_PER_USER=2)
    owner = make_user("carol@example.com")
    actions = AuthActions(app.test_client())
    actions.login("carol@example.com")
    assert actions.create_key("one").status_code == 200
    assert actions.create_key("two").status_code == 200
    response = actions.create_key("three")
    assert response.status_code == 400
    assert "You already have 2 active keys" in response.get_data(as_text=True)
    assert [k.label for k in keys_of(owner)] == ["one", "two"]


def test_revoked_keys_do_not_count_toward_the_limit(auth, client, logged_in, make_key):
    """Revoking one of ten live keys makes room for a new one."""
    made = [make_key(logged_in, label=f"key {n}")[0] for n in range(10)]
    assert auth.create_key("blocked").status_code == 400
    revoke(client, made[0].public_id, auth.csrf(PAGE))
    response = auth.create_key("fits now")
    assert response.status_code == 200
    assert shown_key(response.get_data(as_text=True))
    assert len(keys_of(logged_in)) == 11


# ---------------------------------------------------------------- security log


def test_each_create_and_revoke_writes_exactly_one_event(auth, client, logged_in):
    """One key.created per create and one key.revoked per revoke, naming the key."""
    before = event_names()
    auth.create_key("logged")
    (key,) = keys_of(logged_in)
    created = event_names()[len(before):]
    assert created == ["key.created"]

    revoke(client, key.public_id, auth.csrf(PAGE))
    revoke(client, key.public_id, auth.csrf(PAGE))  # a second click changes nothing
    assert event_names()[len(before):] == ["key.created", "key.revoked"]
    db.session.expire_all()
    rows = db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.event.in_(["key.created", "key.revoked"]))).all()
    assert {(e.user_id, e.key_id, e.ip_address) for e in rows} == {
        (logged_in.id, key.id, "127.0.0.1")}


# ---------------------------------------------------------------- other people's keys


@pytest.fixture
def alices_key(user, make_key):
    return make_key(user, label="alice's secret thing")


@pytest.fixture
def as_mallory(make_user, auth):
    mallory = make_user("mallory@example.com")
    assert auth.login("mallory@example.com").status_code == 302
    return mallory


def test_another_user_does_not_see_my_key(client, alices_key, as_mallory):
    """Mallory's page lists none of Alice's keys."""
    key, _ = alices_key
    html = client.get(PAGE).get_data(as_text=True)
    assert key.public_id not in html
    assert key.mask not in html
    assert "alice&#39;s secret thing" not in html and "alice's secret thing" not in html


@pytest.mark.parametrize(("method", "suffix"), [
    ("post", "revoke"), ("get", "edit"), ("post", "edit"), ("post", "roll"), ("get", "roll"),
    ("get", ""),
])
def test_another_users_key_is_404_not_403(auth, client, alices_key, as_mallory, method, suffix):
    """Seeing, revoking, editing or rolling someone else's key answers 404, as for a key that
    never was."""
    key, value = alices_key
    data = {"csrf_token": auth.csrf(PAGE), "label": "pwned", "grace": "0"}
    response = getattr(client, method)(f"{PAGE}/{key.public_id}/{suffix}".rstrip("/"), data=data)
    assert response.status_code == 404
    assert "alice" not in response.get_data(as_text=True)
    missing = getattr(client, method)(f"{PAGE}/no-such-key/{suffix}".rstrip("/"), data=data)
    assert missing.status_code == 404
    db.session.expire_all()
    stored = db.session.get(ApiKey, key.id)
    assert stored.revoked_at is None and stored.label == "alice's secret thing"
    assert stored.digest == tokens.digest_of(value, TEST_PEPPER.encode())
    assert service.verify_key(value).code == "valid"


# ---------------------------------------------------------------- CSRF


@pytest.fixture
def foreign_token(make_app):
    """A real CSRF token, but from another browser's session."""
    other = make_app().test_client()
    return csrf_from(other.get("/login").get_data(as_text=True))


@pytest.mark.parametrize("token", ["missing", "garbage", "other-session"])
def test_create_without_a_valid_csrf_token_is_rejected(client, logged_in, foreign_token, token):
    """A create post with a missing or forged token is refused (400) and makes no key."""
    tokens_by_kind = {"missing": None, "garbage": "forged-token", "other-session": foreign_token}
    data = {"label": "forged", "expiry": "30", "preset": "full"}
    if tokens_by_kind[token] is not None:
        data["csrf_token"] = tokens_by_kind[token]
    response = client.post(PAGE, data=data)
    assert response.status_code == 400
    assert shown_key(response.get_data(as_text=True)) is None
    assert keys_of(logged_in) == []
    assert "key.created" not in event_names()


@pytest.mark.parametrize("token", ["missing", "garbage", "other-session"])
def test_revoke_without_a_valid_csrf_token_is_rejected(client, logged_in, make_key,
                                                       foreign_token, token):
    """A revoke post with a missing or forged token is refused (400) and the key keeps working."""
    key, value = make_key(logged_in)
    chosen = {"missing": None, "garbage": "forged-token", "other-session": foreign_token}[token]
    assert revoke(client, key.public_id, chosen).status_code == 400
    assert service.verify_key(value).code == "valid"
    assert "key.revoked" not in event_names()
