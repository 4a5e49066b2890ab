"""Password guessing is refused for a while (429), on every instance alike: attempts are counted
in the shared database, per address, per account and per known browser (service.guessing)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from keyvault.extensions import db
from keyvault.models import SecurityEvent
from tests.conftest import PASSWORD, AuthActions

GUESSER = "198.51.100.23"


def events() -> list[str]:
    db.session.expire_all()
    return [e.event for e in db.session.scalars(select(SecurityEvent).order_by(SecurityEvent.id))]


def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client, AuthActions(client)


def fail_logins(auth: AuthActions, times: int, email: str = "alice@example.com") -> None:
    for _ in range(times):
        assert auth.login(email=email, password="wrong guess").status_code == 400


def test_the_eleventh_try_is_refused_even_with_the_right_password(app, user, frozen):
    client, auth = from_address(app, GUESSER)
    fail_logins(auth, 5)
    fail_logins(auth, 5, email="nobody@example.com")  # unknown accounts count alike
    refused = auth.login()
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "900"
    assert "Too many wrong passwords" in refused.get_data(as_text=True)
    assert client.get("/settings/api-keys").status_code == 302  # not logged in
    assert events()[-11:] == ["login.failed"] * 10 + ["login.throttled"]
    for _ in range(5):  # refusals cost no argon2: they must not fill the log either
        assert auth.login().status_code == 429
    assert events().count("login.throttled") == 1

    other_client, other = from_address(app, "203.0.113.50")
    assert other.login().status_code == 302  # another address is not affected

    frozen.at += timedelta(minutes=15, seconds=1)
    assert auth.login().status_code == 302  # the window has passed


def test_refusal_does_not_tell_whether_an_account_exists(app, user):
    _, auth = from_address(app, GUESSER)
    fail_logins(auth, 10)
    known = auth.login(password="wrong again")
    unknown = auth.login(email="nobody@example.com", password="wrong again")
    assert known.status_code == unknown.status_code == 429

    def page(response, email: str) -> str:
        """The page without what differs by design: the email typed, and the CSRF token, in
        the form and on the passkey button (it carries a timestamp with one-second
        resolution, so two pages may differ there)."""
        text = response.get_data(as_text=True).replace(email, "X")
        text = re.sub(r'data-csrf-token="[^"]+"', "CSRF", text)
        return re.sub(r'name="csrf_token"( type="hidden")? value="[^"]+"', "CSRF", text)

    assert page(known, "alice@example.com") == page(unknown, "nobody@example.com")


def test_failed_sudo_prompts_count_and_the_prompt_is_refused_too(app, user):
    client, auth = from_address(app, GUESSER)
    assert auth.login().status_code == 302
    with client.session_transaction() as session:
        session["auth_at"] = 0  # long ago: create asks for the password
    token = auth.csrf("/settings/api-keys")
    form = {"label": "k", "expiry": "30", "preset": "full", "csrf_token": token}
    for _ in range(10):
        assert client.post("/settings/api-keys",
                           data={**form, "sudo_password": "guess"}).status_code == 400
    refused = client.post("/settings/api-keys", data={**form, "sudo_password": PASSWORD})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "900"
    assert "Too many wrong passwords" in refused.get_data(as_text=True)
    assert events().count("sudo.failed") == 10 and events()[-1] == "login.throttled"
    empty = client.post("/settings/api-keys", data={**form, "sudo_password": ""})
    assert empty.status_code == 429  # an empty password gets the same answer


@pytest.mark.parametrize("allowed", ["0", "3"])
def test_the_limit_follows_the_setting(make_app, make_user, allowed):
    app = make_app(KEYVAULT_LOGIN_MAX_FAILURES=allowed)
    with app.app_context():
        make_user("alice@example.com")
    _, auth = from_address(app, GUESSER)
    fail_logins(auth, 3)
    assert auth.login().status_code == (302 if allowed == "0" else 429)
