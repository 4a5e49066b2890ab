"""Accounts through the browser pages: sign-up, log-in, log-out, with real CSRF tokens."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from keyvault import passwords
from keyvault.extensions import db
from keyvault.models import SecurityEvent, User
from tests.conftest import PASSWORD, TEST_PEPPER, TEST_SECRET_KEY, AuthActions, csrf_from

HOME = "/settings/api-keys"


def errors_in(html: str) -> list[str]:
    """The form error messages a page shows."""
    return re.findall(r'<p class="error" role="alert">([^<]*)</p>', html)


def events(name: str | None = None) -> list[SecurityEvent]:
    db.session.expire_all()
    stmt = select(SecurityEvent).order_by(SecurityEvent.id)
    if name:
        stmt = stmt.where(SecurityEvent.event == name)
    return list(db.session.scalars(stmt))


def stored_user(email: str) -> User | None:
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.email == email))


# ---------------------------------------------------------------- sign-up


def test_signup_creates_a_logged_in_account(auth, client):
    """Signing up stores a lower-cased email and an argon2id hash, and logs the person in."""
    response = auth.signup("Bob@Example.COM")
    assert response.status_code == 302
    assert response.headers["Location"] == HOME
    user = stored_user("bob@example.com")
    assert user is not None and user.is_active and not user.is_admin
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert client.get(HOME).status_code == 200
    assert [e.user_id for e in events("user.created")] == [user.id]


def test_signup_with_a_taken_email_is_a_form_error(auth, user):
    """An email already registered, in any letter case, is refused on the form."""
    response = auth.signup("ALICE@example.com")
    assert response.status_code == 400
    assert "An account with this email already exists." in errors_in(response.get_data(True))
    db.session.expire_all()
    assert len(db.session.scalars(select(User)).all()) == 1


@pytest.mark.parametrize(("email", "password", "confirm", "message"), [
    ("not-an-email", PASSWORD, PASSWORD, "Enter a valid email address, such as name@example.com."),
    ("bob@example.com", "short", "short", "Too short: use at least 8 characters."),
    ("bob@example.com", "x" * 1025, "x" * 1025, "Too long: use at most 1024 characters."),
    ("bob@example.com", PASSWORD, PASSWORD + "x",
     "The two passwords differ: type the same one twice."),
    ("", PASSWORD, PASSWORD, "Enter your email address."),
    ("bob@example.com", "", "", "Choose a password. At least 8 characters."),
])
def test_signup_form_errors(auth, client, email, password, confirm, message):
    """Bad sign-up input is shown next to the form, in words that match the hint beside the
    field (never WTForms' own), one message per problem, and creates no account."""
    token = auth.csrf("/signup")
    response = client.post("/signup", data={"email": email, "password": password,
                                             "confirm": confirm, "csrf_token": token})
    assert response.status_code == 400
    page = response.get_data(True)
    assert message in errors_in(page)
    assert errors_in(page).count(message) == 1
    assert "At least 8 characters." in page  # the hint beside the password field
    for default in ("This field is required.", "Field must be", "Invalid email address."):
        assert default not in page
    db.session.expire_all()
    assert db.session.scalars(select(User)).all() == []


def test_signup_without_csrf_is_rejected(client):
    """A sign-up post without the form's token is refused and creates nothing."""
    response = client.post("/signup", data={"email": "bob@example.com", "password": PASSWORD,
                                            "confirm": PASSWORD})
    assert response.status_code == 400
    assert stored_user("bob@example.com") is None


# ---------------------------------------------------------------- log-in and log-out


def test_login_success(auth, client, user):
    """Right email and password: redirected home, logged in, login.succeeded recorded."""
    response = auth.login("Alice@Example.com")
    assert response.status_code == 302
    assert response.headers["Location"] == HOME
    assert client.get(HOME).status_code == 200
    succeeded = events("login.succeeded")
    assert len(succeeded) == 1
    assert succeeded[0].user_id == user.id
    assert succeeded[0].ip_address == "127.0.0.1"
    assert events("login.failed") == []
    assert stored_user("alice@example.com").last_login_at is not None


def test_login_failure_says_the_same_for_unknown_email_and_wrong_password(auth, client, user):
    """Whether the account exists or not, the answer is the same error and no session."""
    unknown = auth.login("nobody@example.com", PASSWORD)
    wrong = auth.login("alice@example.com", "wrong password!")
    for response, typed in ((unknown, PASSWORD), (wrong, "wrong password!")):
        assert response.status_code == 400
        assert errors_in(response.get_data(True)) == ["Wrong email or password."]
        assert typed not in response.get_data(as_text=True)  # never echoed back
    assert client.get(HOME).status_code == 302  # still logged out

    failed = events("login.failed")
    assert [(e.user_id, e.details["reason"]) for e in failed] == [
        (None, "unknown_email"), (user.id, "wrong_password")]
    assert events("login.succeeded") == []


def test_login_without_csrf_is_rejected(client, user):
    """A login post without the form's token is refused before the password is checked."""
    response = client.post("/login", data={"email": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get(HOME).status_code == 302
    assert events("login.succeeded") == []


def test_settings_need_login(client):
    """An anonymous visitor is sent to the login page, with the way back in `next`."""
    response = client.get(HOME)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fsettings%2Fapi-keys"


def test_logout(auth, client, user):
    """Logging out ends the session: the settings page asks for a login again."""
    auth.login()
    assert client.get(HOME).status_code == 200
    response = auth.logout()
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert client.get(HOME).status_code == 302


def test_logout_needs_csrf(auth, client, user):
    """Another site cannot log a person out: the logout post needs the form's token."""
    auth.login()
    assert client.post("/logout").status_code == 400
    assert client.get(HOME).status_code == 200


def test_inactive_user_cannot_log_in(auth, client, user):
    """A deactivated account gets the usual error and no session."""
    user.is_active = False
    db.session.commit()
    response = auth.login()
    assert response.status_code == 400
    assert errors_in(response.get_data(True)) == ["Wrong email or password."]
    assert client.get(HOME).status_code == 302
    assert [e.details["reason"] for e in events("login.failed")] == ["inactive"]


def test_deactivating_ends_an_existing_session(auth, client, user):
    """A session of an account deactivated later stops working on the next request."""
    auth.login()
    assert client.get(HOME).status_code == 200
    user.is_active = False
    db.session.commit()
    assert client.get(HOME).status_code == 302


# ---------------------------------------------------------------- redirects after login


@pytest.mark.parametrize(("next_url", "expected"), [
    ("/settings/security-log", "/settings/security-log"),
    ("/settings/api-keys", "/settings/api-keys"),
    ("/settings/account?tab=1", "/settings/account?tab=1"),
    ("", HOME),
    ("http://evil.example", HOME),
    ("https://evil.example/settings/api-keys", HOME),
    ("//evil.example", HOME),
    ("///evil.example", HOME),
    ("/\\evil.example", HOME),
    ("\\\\evil.example", HOME),
    ("javascript:alert(1)", HOME),
    ("settings/api-keys", HOME),
    ("/\tevil.example", HOME),
])
def test_next_is_followed_only_to_local_paths(auth, user, next_url, expected):
    """After login, `next` is followed only when it is a path on this site."""
    response = auth.login(next_url=next_url)
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def test_next_from_the_query_string_survives_the_login_form(client, user):
    """The `next` of /login?next=… is carried through the form and followed after login."""
    page = client.get("/login?next=/settings/security-log").get_data(as_text=True)
    assert 'value="/settings/security-log"' in page
    response = client.post("/login", data={"email": "alice@example.com", "password": PASSWORD,
                                           "next": "/settings/security-log",
                                           "csrf_token": csrf_from(page)})
    assert response.headers["Location"] == "/settings/security-log"


# ---------------------------------------------------------------- cookies


def test_session_cookie_is_httponly_and_samesite_lax(auth, client, user):
    """Scripts cannot read the session cookie and other sites' posts do not carry it."""
    response = auth.login()
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Secure" not in header  # plain http in development
    cookie = client.get_cookie("session")
    assert cookie.http_only and cookie.same_site == "Lax"


def test_session_cookie_is_secure_in_production(make_app, user):
    """With KEYVAULT_ENV=production (and its secrets) the session cookie is Secure too."""
    app = make_app(KEYVAULT_ENV="production", KEYVAULT_SECRET_KEY=TEST_SECRET_KEY,
                   KEYVAULT_KEY_PEPPER=TEST_PEPPER)
    client = app.test_client()
    response = AuthActions(client).login()
    assert response.status_code == 302
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header


# ---------------------------------------------------------------- password upgrades


def test_password_is_rehashed_at_login_when_parameters_change(make_app, user):
    """Logging in under stronger argon2 parameters replaces the stored hash, which still works."""
    before = stored_user("alice@example.com").password_hash
    assert "m=1024,t=1,p=1" in before
    stronger = {"time_cost": 2, "memory_cost": 2048, "parallelism": 1}
    app = make_app(KEYVAULT_ARGON2=stronger)
    assert AuthActions(app.test_client()).login().status_code == 302

    after = stored_user("alice@example.com").password_hash
    assert after != before
    assert "m=2048,t=2,p=1" in after
    hasher = passwords.make_hasher(**stronger)
    assert passwords.verify_password(hasher, after, PASSWORD)
    assert not passwords.needs_rehash(hasher, after)


def test_password_is_not_rehashed_when_parameters_are_unchanged(auth, user):
    """Without a parameter change the stored hash stays as it is."""
    before = stored_user("alice@example.com").password_hash
    assert auth.login().status_code == 302
    assert stored_user("alice@example.com").password_hash == before
