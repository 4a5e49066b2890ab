"""Two-factor, continued: wrong codes are limited like passwords, turning it off needs sudo, an
administrator (or the command line) resets it, and KEYVAULT_REQUIRE_2FA_FOR_ADMINS holds admins."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from keyvault import service
from keyvault.extensions import db
from keyvault.factor_models import RecoveryCode, TotpCredential
from tests.conftest import PASSWORD, AuthActions, csrf_from
from tests.two_factor_steps import code_at, enrol, events, second_step

# ---------------------------------------------------------------- guessing


def test_wrong_codes_are_limited_like_passwords(app_with, make_user, frozen):
    app = app_with(KEYVAULT_LOGIN_MAX_FAILURES=3)
    with app.app_context():
        alice = make_user("alice@example.com")
        client = app.test_client()
        auth = AuthActions(client)
        auth.login()
        secret, _ = enrol(client, frozen)
        auth.logout()
        frozen.at += timedelta(minutes=1)
        # a fresh browser (no device cookie), someone who knows the password
        thief = app.test_client()
        thief.environ_base["REMOTE_ADDR"] = "203.0.113.7"
        AuthActions(thief).login()
        right = code_at(secret, frozen.at)
        wrong = f"{(int(right) + 1) % 1_000_000:06d}"
        for _ in range(3):
            assert second_step(thief, wrong).status_code == 400
        refused = second_step(thief, right)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "900"
        assert "Too many wrong two-factor codes" in refused.get_data(as_text=True)
        assert thief.get("/settings/api-keys").status_code == 302
        # counted per account: another address with the password is held up too
        other = app.test_client()
        other.environ_base["REMOTE_ADDR"] = "198.51.100.9"
        AuthActions(other).login()
        assert second_step(other, right).status_code == 429
        assert len(events(alice, "2fa.failed")) == 3
        assert len(events(alice, "2fa.throttled")) == 1
        # the owner's own browser has its own count
        assert auth.login().status_code == 302
        assert second_step(client, right).status_code == 302


def test_wrong_codes_do_not_count_as_wrong_passwords(app_with, make_user, frozen):
    app = app_with(KEYVAULT_LOGIN_MAX_FAILURES=2)
    with app.app_context():
        make_user("alice@example.com")
        client = app.test_client()
        auth = AuthActions(client)
        auth.login()
        enrol(client, frozen)
        auth.logout()
        fresh = app.test_client()
        for _ in range(2):
            AuthActions(fresh).login()
            second_step(fresh, "000000")
        assert AuthActions(fresh).login().status_code == 302  # the password is still checked


# ---------------------------------------------------------------- turning it off


def test_turning_it_off_needs_a_recent_password_and_is_logged(client, auth, user, enrolled,
                                                             frozen):
    secret, _ = enrolled
    auth.login()
    second_step(client, code_at(secret, frozen.at))
    frozen.at += timedelta(hours=3)
    page = client.get("/settings/account").get_data(as_text=True)
    asked = client.post("/settings/two-factor/disable", data={"csrf_token": csrf_from(page)})
    assert asked.status_code == 200
    assert "Confirm your password" in asked.get_data(as_text=True)
    assert service.second_factor.methods(user) == ["totp"]

    done = client.post("/settings/two-factor/disable", data={
        "csrf_token": csrf_from(page), "sudo_password": PASSWORD})
    assert done.status_code == 303
    assert service.second_factor.methods(user) == []
    assert db.session.scalar(select(RecoveryCode.id)) is None
    assert len(events(user, "2fa.disabled")) == 1
    auth.logout()
    assert auth.login().headers["Location"].endswith("/settings/api-keys")


# ---------------------------------------------------------------- administrators


def test_an_admin_resets_a_second_factor_and_it_is_logged(client, app, make_user, user,
                                                          enrolled, frozen):
    make_user("root@example.com", is_admin=True)
    admin = AuthActions(client)
    admin.login("root@example.com")
    page = client.get("/admin/keys").get_data(as_text=True)
    assert f"/admin/users/{user.id}/reset-2fa" in page
    response = client.post(f"/admin/users/{user.id}/reset-2fa",
                           data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303
    assert service.second_factor.methods(user) == []
    [reset] = events(user, "2fa.reset_by_admin")
    assert reset.details == {"by_admin": "root@example.com"}
    assert service.describe(reset).summary.startswith("Reset by an administrator.")
    alice = AuthActions(app.test_client())
    assert alice.login().headers["Location"].endswith("/settings/api-keys")


def test_a_user_cannot_reset_anothers_second_factor(client, auth, make_user, user, enrolled):
    make_user("mallory@example.com")
    auth.login("mallory@example.com")
    response = client.post(f"/admin/users/{user.id}/reset-2fa",
                           data={"csrf_token": auth.csrf("/settings/account")})
    assert response.status_code == 404
    assert service.second_factor.methods(user) == ["totp"]


def test_the_command_line_resets_a_second_factor(app, user, enrolled):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "reset-2fa", "alice@example.com"])
    assert result.exit_code == 0, result.output
    assert "Reset the two-factor authentication of alice@example.com" in result.output
    assert service.second_factor.methods(user) == []
    [reset] = events(user, "2fa.reset_by_admin")
    assert service.performed_by(reset) == "The command line"
    again = runner.invoke(args=["users", "reset-2fa", "alice@example.com"])
    assert "nothing changed" in again.output
    unknown = runner.invoke(args=["users", "reset-2fa", "nobody@example.com"])
    assert unknown.exit_code == 1


def test_admins_must_enrol_when_required(app_with, make_user, frozen):
    app = app_with(KEYVAULT_REQUIRE_2FA_FOR_ADMINS=True)
    with app.app_context():
        make_user("root@example.com", is_admin=True)
        make_user("bob@example.com")
        client = app.test_client()
        auth = AuthActions(client)
        response = auth.login("root@example.com")
        assert response.headers["Location"].endswith("/settings/two-factor/setup")
        for path in ("/admin/keys", "/settings/api-keys", "/settings/account"):
            blocked = client.get(path)
            assert blocked.status_code == 303, path
            assert blocked.headers["Location"].endswith("/settings/two-factor/setup")
        enrol(client, frozen)
        assert client.get("/admin/keys").status_code == 200
        assert client.get("/settings/api-keys").status_code == 200
        # people who are not administrators are not asked
        bob = AuthActions(app.test_client())
        assert bob.login("bob@example.com").headers["Location"].endswith("/settings/api-keys")


def test_admins_are_not_held_by_default(client, auth, make_user):
    make_user("root@example.com", is_admin=True)
    assert auth.login("root@example.com").headers["Location"].endswith("/settings/api-keys")
    assert client.get("/admin/keys").status_code == 200


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(("raw", "expected"), [
    (None, False), ("", False), ("true", True), ("1", True), ("Yes", True), ("off", False)])
def test_require_2fa_for_admins_setting(tmp_path, raw, expected):
    from keyvault import config

    env = {"KEYVAULT_SECRET_KEY": "s" * 40, "KEYVAULT_KEY_PEPPER": "p" * 40}
    if raw is not None:
        env["KEYVAULT_REQUIRE_2FA_FOR_ADMINS"] = raw
    assert config.load(tmp_path, env)["KEYVAULT_REQUIRE_2FA_FOR_ADMINS"] is expected


def test_require_2fa_for_admins_refuses_a_word_it_does_not_know(tmp_path):
    from keyvault import config

    with pytest.raises(config.ConfigError, match="KEYVAULT_REQUIRE_2FA_FOR_ADMINS"):
        config.load(tmp_path, {"KEYVAULT_SECRET_KEY": "s" * 40, "KEYVAULT_KEY_PEPPER": "p" * 40,
                               "KEYVAULT_REQUIRE_2FA_FOR_ADMINS": "sometimes"})


def test_an_account_with_two_factor_can_be_deleted(client, auth, user, enrolled, frozen):
    secret, _ = enrolled
    auth.login()
    second_step(client, code_at(secret, frozen.at))
    page = client.get("/settings/account").get_data(as_text=True)
    assert client.post("/settings/account/delete",
                       data={"csrf_token": csrf_from(page)}).status_code == 302
    assert db.session.scalar(select(RecoveryCode.id)) is None
    assert db.session.scalar(select(TotpCredential.id)) is None
