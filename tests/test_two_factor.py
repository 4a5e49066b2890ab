"""Two-factor authentication (service.second_factor): set-up needs a right code, the login asks
for a code after the password, codes and recovery codes work once (more: test_two_factor_limits)."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import unquote

import pyotp
import pytest
from sqlalchemy import select

from keyvault import service
from keyvault.extensions import db
from keyvault.factor_models import RecoveryCode, TotpCredential
from keyvault.http.browser import DEVICE_COOKIE
from keyvault.models import SecurityEvent, User
from tests.conftest import AuthActions, csrf_from
from tests.two_factor_steps import (
    code_at,
    enrol,
    events,
    recovery_codes_on,
    second_step,
    secret_on,
)

# ---------------------------------------------------------------- set-up


def test_setup_turns_on_only_with_a_right_code(client, auth, user, frozen):
    auth.login()
    page = client.get("/settings/two-factor/setup")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    text = page.get_data(as_text=True)
    secret = secret_on(text)
    assert 'src="data:image/svg+xml' in text  # the QR code, made on the server
    right = code_at(secret, frozen.at)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    refused = client.post("/settings/two-factor/setup",
                          data={"code": wrong, "csrf_token": csrf_from(text)})
    assert refused.status_code == 400
    assert "That code is not right" in refused.get_data(as_text=True)
    assert service.second_factor.methods(user) == []
    assert secret_on(refused.get_data(as_text=True)) == secret  # the same secret, still pending

    done = client.post("/settings/two-factor/setup",
                       data={"code": right, "csrf_token": csrf_from(text)})
    assert done.status_code == 200
    assert done.headers["Cache-Control"] == "no-store"
    codes = recovery_codes_on(done.get_data(as_text=True))
    assert len(set(codes)) == 10
    assert 'download="keyvault-recovery-codes.txt"' in done.get_data(as_text=True)
    download = re.search(r'href="data:text/plain;charset=utf-8,([^"]+)"',
                         done.get_data(as_text=True)).group(1)
    assert all(code in unquote(html.unescape(download)) for code in codes)
    assert service.second_factor.methods(user) == ["totp"]
    assert len(events(user, "2fa.enabled")) == 1
    account = client.get("/settings/account").get_data(as_text=True)
    assert "10 of 10 recovery codes left" in account
    log = client.get("/settings/security-log").get_data(as_text=True)
    assert "Two-factor authentication turned on" in log
    assert secret not in log and codes[0] not in log


def test_the_secret_is_never_in_the_form_the_cookie_or_the_database_in_clear(
        client, auth, user, frozen):
    auth.login()
    page = client.get("/settings/two-factor/setup").get_data(as_text=True)
    secret = secret_on(page)
    start = page.index('<form method="post" action="/settings/two-factor/setup"')
    form = page[start:page.index("</form>", start)]
    assert "code" in form and secret not in form.replace(" ", "")
    cookie = client.get_cookie("session")
    assert secret not in (cookie.value if cookie else "")
    stored = db.session.scalar(select(TotpCredential.secret_encrypted))
    assert secret not in stored
    _, codes = enrol(client, frozen)
    digests = list(db.session.scalars(select(RecoveryCode.digest)))
    assert len(digests) == 10
    assert not {c.replace("-", "") for c in codes} & set(digests)


def test_a_form_cannot_choose_the_secret(client, auth, user, frozen):
    """A code for a secret of the poster's choosing does not turn two-factor on."""
    auth.login()
    page = client.get("/settings/two-factor/setup").get_data(as_text=True)
    mine = pyotp.random_base32()
    response = client.post("/settings/two-factor/setup", data={
        "code": code_at(mine, frozen.at), "secret": mine, "csrf_token": csrf_from(page)})
    assert response.status_code == 400
    assert service.second_factor.methods(user) == []


def test_setup_needs_a_recent_password(client, auth, user, frozen):
    auth.login()
    frozen.at += timedelta(hours=3)  # past KEYVAULT_SUDO_MINUTES
    response = client.get("/settings/two-factor/setup")
    assert response.status_code == 302
    assert "/confirm" in response.headers["Location"]


# ---------------------------------------------------------------- the login's second step


def test_login_asks_for_the_code_and_a_right_one_logs_in(client, auth, user, enrolled, frozen):
    secret, _ = enrolled
    client.delete_cookie(DEVICE_COOKIE)
    response = auth.login(next_url="/settings/security-log")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/login/two-factor")
    assert client.get_cookie(DEVICE_COOKIE) is None  # only after the whole login
    assert client.get("/settings/api-keys").status_code == 302  # not logged in yet

    done = second_step(client, code_at(secret, frozen.at))
    assert done.status_code == 302
    assert done.headers["Location"].endswith("/settings/security-log")
    assert client.get_cookie(DEVICE_COOKIE) is not None
    assert client.get("/settings/api-keys").status_code == 200
    last = db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.event == "login.succeeded").order_by(SecurityEvent.id.desc())).first()
    assert last.details == {"second_factor": "totp"}
    assert service.describe(last).summary == "With a code from the authenticator app."


def test_a_wrong_code_does_not_log_in(client, auth, user, enrolled, frozen):
    secret, _ = enrolled
    auth.login()
    right = code_at(secret, frozen.at)
    response = second_step(client, f"{(int(right) + 1) % 1_000_000:06d}")
    assert response.status_code == 400
    assert "That code is not right" in response.get_data(as_text=True)
    assert client.get("/settings/api-keys").status_code == 302
    assert len(events(user, "2fa.failed")) == 1


@pytest.mark.parametrize("steps", [-1, 1])
def test_a_code_one_step_off_is_accepted(client, auth, user, enrolled, frozen, steps):
    secret, _ = enrolled
    auth.login()
    assert second_step(client, code_at(secret, frozen.at, steps)).status_code == 302


def test_a_code_two_steps_off_is_refused(client, auth, user, enrolled, frozen):
    secret, _ = enrolled
    auth.login()
    assert second_step(client, code_at(secret, frozen.at, -2)).status_code == 400


def test_a_used_code_cannot_be_replayed(client, app, auth, user, enrolled, frozen):
    secret, _ = enrolled
    code = code_at(secret, frozen.at)
    auth.login()
    assert second_step(client, code).status_code == 302
    auth.logout()
    frozen.at += timedelta(seconds=10)  # the same step
    other = app.test_client()
    AuthActions(other).login()
    assert second_step(other, code).status_code == 400
    # nor the step before it
    assert second_step(other, code_at(secret, frozen.at, -1)).status_code == 400


def test_the_enrolment_code_cannot_log_in(client, auth, user, frozen):
    auth.login()
    page = client.get("/settings/two-factor/setup").get_data(as_text=True)
    secret = secret_on(page)
    code = code_at(secret, frozen.at)
    client.post("/settings/two-factor/setup", data={"code": code, "csrf_token": csrf_from(page)})
    auth.logout()
    auth.login()
    assert second_step(client, code).status_code == 400


def test_a_recovery_code_works_once(client, app, auth, user, enrolled, frozen):
    _, codes = enrolled
    auth.login()
    done = second_step(client, codes[3].upper().replace("-", " "))  # typed loosely
    assert done.status_code == 302
    assert "9 left" in client.get("/settings/api-keys").get_data(as_text=True)
    assert "9 of 10 recovery codes left" in client.get("/settings/account").get_data(as_text=True)
    used = events(user, "2fa.recovery_used")
    assert len(used) == 1
    assert service.describe(used[0]).summary == "9 recovery codes left."
    auth.logout()
    auth.login()
    assert second_step(client, codes[3]).status_code == 400
    assert second_step(client, codes[4]).status_code == 302


def test_new_recovery_codes_void_the_old_ones(client, auth, user, enrolled, frozen):
    _, old = enrolled
    auth.login()
    second_step(client, old[0])
    page = client.get("/settings/account").get_data(as_text=True)
    response = client.post("/settings/two-factor/recovery-codes",
                           data={"csrf_token": csrf_from(page)})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    new = recovery_codes_on(response.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    assert len(events(user, "2fa.recovery_regenerated")) == 1
    auth.logout()
    auth.login()
    assert second_step(client, old[1]).status_code == 400
    assert second_step(client, new[0]).status_code == 302


def test_regenerating_needs_a_recent_password(client, auth, user, enrolled, frozen):
    secret, old = enrolled
    auth.login()
    second_step(client, code_at(secret, frozen.at))
    frozen.at += timedelta(hours=3)
    page = client.get("/settings/account").get_data(as_text=True)
    response = client.post("/settings/two-factor/recovery-codes",
                           data={"csrf_token": csrf_from(page)})
    assert response.status_code == 200
    assert "Confirm your password" in response.get_data(as_text=True)
    assert recovery_codes_on(response.get_data(as_text=True)) == []
    assert events(user, "2fa.recovery_regenerated") == []


def test_the_pending_login_expires(client, auth, user, enrolled, frozen):
    secret, _ = enrolled
    auth.login()
    frozen.at += timedelta(minutes=5, seconds=1)
    response = client.post("/login/two-factor", data={
        "code": code_at(secret, frozen.at), "csrf_token": auth.csrf("/login")})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/login")
    assert client.get("/settings/api-keys").status_code == 302


def test_the_pending_login_ends_when_the_password_changes(client, app, auth, user, enrolled,
                                                         frozen):
    secret, _ = enrolled
    auth.login()
    service.set_password(db.session.get(User, user.id), "another long password",
                         service.Origin.system())
    assert client.get("/login/two-factor").status_code == 303


@pytest.mark.parametrize("path", ["/settings/api-keys", "/settings/account",
                                  "/settings/security-log", "/settings/two-factor/setup",
                                  "/admin/keys"])
def test_a_pending_login_reaches_no_settings_page(client, auth, user, enrolled, path):
    db.session.get(User, user.id).is_admin = True
    db.session.commit()
    auth.login()
    response = client.get(path)
    assert response.status_code in (302, 404)
    assert "/login" in response.headers.get("Location", "/login")


def test_no_second_step_without_a_password(client):
    response = client.get("/login/two-factor")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/login")


# ---------------------------------------------------------------- the log in words


@pytest.mark.parametrize("event", ["2fa.enabled", "2fa.disabled", "2fa.failed",
                                   "2fa.recovery_used", "2fa.recovery_regenerated",
                                   "2fa.reset_by_admin", "2fa.throttled"])
def test_every_two_factor_event_has_words(event):
    text = service.describe(SecurityEvent(event=event, details={}))
    assert "2fa" not in text.title and "." not in text.title
