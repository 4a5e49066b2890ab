"""The account page: changing one's password, which ends every other session."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from keyvault import passwords
from keyvault.extensions import db
from keyvault.models import SecurityEvent, User
from tests.conftest import CHEAP_ARGON2, PASSWORD, AuthActions, FreshContextClient, csrf_from

NEW_PASSWORD = "a new and longer passphrase"
ADDRESS = "198.51.100.7"


def logged_in(app, address: str = ADDRESS):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    assert AuthActions(client).login().status_code == 302
    return client


def change(client, current=PASSWORD, new=NEW_PASSWORD, confirm=None, **extra):
    token = csrf_from(client.get("/settings/account").get_data(as_text=True))
    data = {"current_password": current, "new_password": new,
            "confirm": new if confirm is None else confirm, "csrf_token": token, **extra}
    return client.post("/settings/account/password", data=data)


def errors_in(html: str) -> list[str]:
    return re.findall(r'<p class="error" role="alert">([^<]*)</p>', html)


def stored(email="alice@example.com") -> User:
    db.session.expire_all()
    return db.session.scalar(select(User).filter_by(email=email))


def events(name: str) -> list[SecurityEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(SecurityEvent).filter_by(event=name)))


def can_log_in(app, password: str) -> bool:
    return AuthActions(app.test_client()).login(password=password).status_code == 302


def test_changing_the_password_keeps_this_session_and_ends_the_others(app, user):
    """The new password works and the old one no longer does; this browser stays logged in,
    another one (a second session of the same person) is logged out; one event is logged."""
    here, elsewhere = logged_in(app), logged_in(app, "203.0.113.9")
    assert elsewhere.get("/settings/api-keys").status_code == 200

    response = change(here)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/settings/account")
    page = here.get("/settings/account")
    assert page.status_code == 200
    assert "Your password has been changed" in page.get_data(as_text=True)
    assert here.get("/settings/api-keys").status_code == 200
    assert elsewhere.get("/settings/api-keys").status_code == 302  # sent to the login page

    hasher = passwords.make_hasher(**CHEAP_ARGON2)
    assert passwords.verify_password(hasher, stored().password_hash, NEW_PASSWORD)
    assert stored().password_hash.startswith("$argon2id$")
    assert not can_log_in(app, PASSWORD)
    assert can_log_in(app, NEW_PASSWORD)
    [event] = events("password.changed")
    assert (event.user_id, event.ip_address) == (user.id, ADDRESS)
    assert NEW_PASSWORD not in str(event.details) and PASSWORD not in str(event.details)


def test_the_session_stays_in_sudo_mode(app, user):
    """Changing the password proves who one is: a sensitive action right after needs no prompt."""
    here = logged_in(app)
    assert change(here).status_code == 303
    assert AuthActions(here).create_key("after the change").status_code == 200


@pytest.mark.parametrize(("current", "new", "confirm", "field_error", "status"), [
    ("not my password", NEW_PASSWORD, None, "Your current password is not right.", 400),
    ("", NEW_PASSWORD, None, "Enter your password.", 400),
    (PASSWORD, "short", None, "Too short: use at least 8 characters.", 400),
    (PASSWORD, "", None, "Choose a password. At least 8 characters.", 400),
    (PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "!",
     "The two passwords differ: type the same one twice.", 400),
    (PASSWORD, PASSWORD, None, "Choose a new password that differs from the current one.", 400),
])
def test_refusals_change_nothing(app, user, current, new, confirm, field_error, status):
    """A wrong current password, a bad or mismatched new one: one clear message beside the
    form, the password unchanged, and every session still logged in."""
    here, elsewhere = logged_in(app), logged_in(app, "203.0.113.9")
    before = stored().password_hash
    response = change(here, current, new, confirm)
    assert response.status_code == status
    page = response.get_data(as_text=True)
    assert errors_in(page) == [field_error]
    for typed in filter(None, (current, new)):  # a password is never echoed back
        assert f'value="{typed}"' not in page
    assert stored().password_hash == before
    assert events("password.changed") == []
    assert elsewhere.get("/settings/api-keys").status_code == 200
    assert here.get("/settings/api-keys").status_code == 200


def test_wrong_current_passwords_count_toward_the_guessing_limit(make_app, make_user):
    """Someone holding a session cannot guess the password through this form: wrong current
    passwords count with failed logins and sudo prompts, and past the limit even the right one
    is refused with 429 until the window passes."""
    app = make_app(KEYVAULT_LOGIN_MAX_FAILURES=3)
    app.test_client_class = FreshContextClient
    make_user("alice@example.com")
    here = logged_in(app)
    for _ in range(3):
        assert change(here, current="a wrong guess").status_code == 400
    refused = change(here)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "900"
    assert "Too many wrong passwords" in refused.get_data(as_text=True)
    other_address = AuthActions(app.test_client())  # 127.0.0.1, not ADDRESS: not refused
    assert other_address.login().status_code == 302
    with app.app_context():
        assert len(events("password.change_failed")) == 3
        assert events("password.changed") == []
        hasher = passwords.make_hasher(**CHEAP_ARGON2)
        assert passwords.verify_password(hasher, stored().password_hash, PASSWORD)


def test_the_form_needs_its_csrf_token_and_a_login(app, user):
    here = logged_in(app)
    response = here.post("/settings/account/password", data={
        "current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 400
    anonymous = app.test_client()
    token = csrf_from(anonymous.get("/login").get_data(as_text=True))
    response = anonymous.post("/settings/account/password", data={
        "current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
        "csrf_token": token})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert events("password.changed") == []


def test_the_page_states_the_rule_beside_the_field(app, user):
    page = logged_in(app).get("/settings/account").get_data(as_text=True)
    assert "Change password" in page and "At least 8 characters." in page
    assert 'autocomplete="current-password"' in page and 'autocomplete="new-password"' in page
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "two forms on one page must not repeat an element id"
