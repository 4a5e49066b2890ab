"""The password-guessing limit (service.guessing): exact under parallel guesses on the real
server, per account across addresses, and never a lock-out of the owner's own browser."""

from __future__ import annotations

import re
import threading

import pytest
import requests

from keyvault.http.browser import DEVICE_COOKIE
from tests.conftest import PASSWORD, AuthActions


def client_at(app, address: str, **kwargs):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client, AuthActions(client)


def test_thirty_parallel_guesses_let_exactly_the_limit_through(live_server, user):
    """30 sessions post a wrong password at the same moment to `keyvault serve` (two workers,
    threads each): exactly KEYVAULT_LOGIN_MAX_FAILURES (10) are checked, the rest hear 429."""
    email, sessions = user.email, []
    for _ in range(30):
        session = requests.Session()
        page = session.get(f"{live_server.url}/login", timeout=10).text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        sessions.append((session, token))
    start = threading.Barrier(30)
    statuses: list[int] = []

    def guess(session, token):
        start.wait()
        response = session.post(f"{live_server.url}/login", timeout=30, allow_redirects=False,
                                data={"email": email, "password": "wrong guess",
                                      "csrf_token": token})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=guess, args=pair) for pair in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for session, _ in sessions:
        session.close()
    assert sorted(statuses) == [400] * 10 + [429] * 20


def test_the_owners_browser_is_never_locked_out(app, user):
    owner, owner_auth = client_at(app, "198.51.100.5")
    assert owner_auth.login().status_code == 302
    assert owner.get_cookie(DEVICE_COOKIE) is not None
    owner.post("/logout", data={"csrf_token": owner_auth.csrf("/settings/api-keys")})

    _, attacker = client_at(app, "198.51.100.5")  # the same address: a shared NAT
    for _ in range(10):
        assert attacker.login(password="guess").status_code == 400
    assert attacker.login().status_code == 429  # even the right password, without the cookie
    _, stranger = client_at(app, "203.0.113.80")
    assert stranger.login().status_code == 429  # the account is held for unknown browsers

    assert owner_auth.login().status_code == 302  # but the owner's browser goes in
    assert owner.get("/settings/api-keys").status_code == 200


def test_a_known_browser_guessing_stops_only_itself(app, user):
    device, device_auth = client_at(app, "198.51.100.5")
    assert device_auth.login().status_code == 302
    device.post("/logout", data={"csrf_token": device_auth.csrf("/settings/api-keys")})
    for _ in range(10):
        assert device_auth.login(password="guess").status_code == 400
    refused = device_auth.login()
    assert refused.status_code == 429
    assert "from this browser" in refused.get_data(as_text=True)
    _, elsewhere = client_at(app, "203.0.113.80")
    assert elsewhere.login().status_code == 302


def test_guesses_spread_over_addresses_still_stop_at_the_account(make_app, make_user):
    app = make_app(KEYVAULT_TRUSTED_PROXIES="1")
    with app.app_context():
        make_user("alice@example.com")
        make_user("bob@example.com")
    for n in range(10):
        client = app.test_client()
        client.environ_base["HTTP_X_FORWARDED_FOR"] = f"192.0.2.{n + 1}"
        assert AuthActions(client).login(password="guess").status_code == 400
    fresh = app.test_client()
    fresh.environ_base["HTTP_X_FORWARDED_FOR"] = "192.0.2.200"
    auth = AuthActions(fresh)
    assert auth.login(email="alice@example.com").status_code == 429
    assert auth.login(email="bob@example.com").status_code == 302  # other accounts are fine


def test_a_forged_device_cookie_is_ignored(app, user):
    _, attacker = client_at(app, "198.51.100.5")
    for _ in range(10):
        assert attacker.login(password="guess").status_code == 400
    attacker.client.set_cookie(DEVICE_COOKIE, f'[{user.id}, "made-up"].fake-signature')
    assert attacker.login().status_code == 429


@pytest.mark.parametrize("allowed", ["0", "3"])
def test_the_limit_follows_the_setting(make_app, make_user, allowed):
    app = make_app(KEYVAULT_LOGIN_MAX_FAILURES=allowed)
    with app.app_context():
        make_user("alice@example.com")
    _, auth = client_at(app, "198.51.100.5")
    for _ in range(3):
        assert auth.login(email="alice@example.com", password="guess").status_code == 400
    assert auth.login(email="alice@example.com", password=PASSWORD).status_code == (
        302 if allowed == "0" else 429)
