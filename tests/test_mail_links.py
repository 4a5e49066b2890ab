"""Links in mails are absolute wherever KeyVault can know the address: on KEYVAULT_BASE_URL; in
development without it, on where `keyvault serve` listens, so the mail written to the log has a
link to click; in production without it, a path (KeyVault never guesses an address there), and
never on a request's Host."""

from __future__ import annotations

import re
import time

import pytest
import requests

from keyvault.links import external_url
from keyvault.server.supervisor import url_to_open
from keyvault.service import mail
from tests.conftest import TEST_PEPPER, TEST_SECRET_KEY, csrf_from, start_server, stop_server

SERVING = "http://localhost:5123"
PRODUCTION = {"KEYVAULT_ENV": "production", "KEYVAULT_SECRET_KEY": TEST_SECRET_KEY,
              "KEYVAULT_KEY_PEPPER": TEST_PEPPER}


@pytest.mark.parametrize(("host", "port", "expected"), [
    ("127.0.0.1", 5000, "http://localhost:5000"),   # make run: the name passkeys accept
    ("0.0.0.0", 8000, "http://localhost:8000"),     # every address: this machine opens localhost
    ("::", 5000, "http://localhost:5000"),
    ("::1", 5000, "http://localhost:5000"),
    ("192.0.2.10", 5000, "http://192.0.2.10:5000"),  # one address: only it answers
    ("2001:db8::1", 5000, "http://[2001:db8::1]:5000"),
    ("keys.internal", 8080, "http://keys.internal:8080"),
])
def test_the_address_to_open_for_a_bind(host, port, expected):
    assert url_to_open(host, port) == expected


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"KEYVAULT_SERVE_URL": SERVING}, f"{SERVING}/settings/account"),
    ({"KEYVAULT_SERVE_URL": SERVING, "KEYVAULT_BASE_URL": "https://keys.example.com"},
     "https://keys.example.com/settings/account"),          # the operator's address wins
    ({}, "/settings/account"),                               # a command: nobody listens
    ({"KEYVAULT_SERVE_URL": SERVING, **PRODUCTION}, "/settings/account"),  # never guessed
    ({"KEYVAULT_SERVE_URL": SERVING, "KEYVAULT_BASE_URL": "https://keys.example.com",
      **PRODUCTION}, "https://keys.example.com/settings/account"),
])
def test_where_a_mail_link_points(make_app, overrides, expected):
    app = make_app(**overrides)
    with app.app_context():
        assert mail.link("settings.account") == expected
    with app.test_request_context("/password/forgot", headers={"Host": "evil.example"}):
        assert mail.link("settings.account") == expected


def test_pagination_links_stay_relative_in_development(make_app):
    """Only mail gets the serving address: an API answer's links stay relative, resolved by the
    client against the URL it called, whichever name it used."""
    app = make_app(KEYVAULT_SERVE_URL=SERVING)
    with app.test_request_context("/api/personal_api_keys/"):
        assert external_url("api.list_keys") == "/api/personal_api_keys/"


def test_a_development_server_logs_mail_with_a_link_to_click(database_url, tmp_path, make_user):
    """`keyvault serve` in development, no SMTP server, no KEYVAULT_BASE_URL: the reset mail in
    the log links to http://localhost:PORT, and that link opens the reset form."""
    make_user("ada@example.com")
    server = start_server(database_url, tmp_path / "serve.log", workers=1,
                          extra_env={"KEYVAULT_MAIL_SEND_SECONDS": "1"})
    try:
        port = server.url.rsplit(":", 1)[1]
        browser = requests.Session()
        form = browser.get(f"{server.url}/password/forgot", timeout=10).text
        answer = browser.post(f"{server.url}/password/forgot", timeout=10, data={
            "email": "ada@example.com", "csrf_token": csrf_from(form)})
        assert answer.status_code == 200
        link = None
        deadline = time.monotonic() + 20
        while link is None and time.monotonic() < deadline:
            found = re.search(r"^(\S+/password/reset\?token=\S+)$", server.log(), re.M)
            link = found and found.group(1)
            time.sleep(0.2)
        assert link is not None, server.log()
        assert link.startswith(f"http://localhost:{port}/password/reset?token=")
        assert f"links in mails are on http://localhost:{port}" in server.log()
        page = requests.get(link, timeout=10)
        assert page.status_code == 200 and "Choose a new password" in page.text
    finally:
        stop_server(server)
