"""Real-browser fixtures: Debian's Chromium driven by Playwright against the live `keyvault serve`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.conftest import PASSWORD, start_server, stop_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]


def pytest_collection_modifyitems(items):
    """Every test under tests/browser/ carries the `browser` marker."""
    for item in items:
        if Path(item.path).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's chromium, never a downloaded one; missing means the tests fail, not skip."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


@pytest.fixture
def browser_context_args(browser_context_args, live_server):
    """Per test, because the live server fixture is per test (it shares the test's database)."""
    return {**browser_context_args, "base_url": live_server.url,
            "permissions": ["clipboard-read", "clipboard-write"]}


@pytest.fixture
def console(page) -> list[str]:
    """Every console message and uncaught error the page produces, as 'type: text (url)'."""
    messages: list[str] = []
    page.on("console", lambda message: messages.append(
        f"{message.type}: {message.text} ({message.location.get('url', '')})"))
    page.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
    return messages


def csp_violations(messages: list[str]) -> list[str]:
    return [m for m in messages if "Content Security Policy" in m]


@pytest.fixture(scope="session")
def confirming_server(database_url, tmp_path_factory):
    """A second `keyvault serve` on the same database that asks new accounts to confirm their
    address (KEYVAULT_REQUIRE_EMAIL_CONFIRMATION, production's default). Like live_server it
    sends no mail: a test sends what it queued (tests.conftest.send_mail)."""
    server = start_server(database_url, tmp_path_factory.mktemp("confirming") / "serve.log",
                          extra_env={"KEYVAULT_REQUIRE_EMAIL_CONFIRMATION": "true"})
    yield server
    stop_server(server)


@pytest.fixture
def signed_up(page, console):
    """A person who signed up in this browser and landed on the API-keys page."""
    email = "browser@example.com"
    page.goto("/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/settings/api-keys")
    return email


@pytest.fixture
def verify(live_server, make_user, make_key):
    """Ask the live server, as a service with `key:verify` would, what it thinks of a value."""
    service_owner = make_user("service@example.com")
    _, service_key = make_key(service_owner, label="verifier", scopes=["key:verify"])

    def check(value: str) -> dict:
        response = requests.post(f"{live_server.url}/api/verify/", json={"key": value},
                                 headers={"Authorization": f"Bearer {service_key}"}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    return check


def mask_of(value: str) -> str:
    prefix = value.split("_", 1)[0]
    return f"{prefix}_…{value[-4:]}"


KEY_SHAPE = re.compile(r"^kv_[0-9A-Za-z]{46}$")
