"""Passkeys in Chromium with a virtual authenticator (the DevTools protocol's WebAuthn domain):
add one, log in with it instead of the password, and the refusals a passkey login can meet.

WebAuthn needs a secure context and a relying-party id that is a domain: the pages are opened on
http://localhost (secure for browsers; an IP address cannot be a relying-party id), and the
server, with no KEYVAULT_BASE_URL in development, binds passkeys to the host they came to.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import csp_violations
from tests.conftest import PASSWORD, csrf_from

EMAIL = "passkeys@example.com"


@pytest.fixture
def browser_context_args(browser_context_args, live_server):
    return {**browser_context_args, "base_url": live_server.url.replace("127.0.0.1", "localhost")}


@pytest.fixture
def authenticator(page):
    """A platform authenticator that keeps discoverable credentials and verifies its user."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True, "automaticPresenceSimulation": True,
    }})

    def credentials() -> list[dict]:
        return cdp.send("WebAuthn.getCredentials",
                        {"authenticatorId": added["authenticatorId"]})["credentials"]

    return credentials


def sign_up(page) -> None:
    page.goto("/signup")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/settings/api-keys")


def add_passkey(page, name: str) -> None:
    page.goto("/settings/account")
    page.get_by_role("link", name="Add a passkey").click()
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create passkey").click()


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")


def passkey_rows(page):
    return page.locator("table.passkeys tbody tr")


def test_add_a_passkey_log_in_with_it_and_remove_it(page, console, live_server, authenticator):
    """A new account adds a passkey (its login is recent: sudo), logs out, and logs in by the
    passkey alone, no email or password typed; the account page shows when it was last used;
    removed, it no longer logs in. The security log tells each step in words."""
    sign_up(page)
    add_passkey(page, "Work laptop")
    page.wait_for_url("**/settings/account")
    expect(page.get_by_role("status")).to_contain_text("Added the passkey “Work laptop”")
    expect(passkey_rows(page)).to_have_count(1)
    expect(passkey_rows(page).first).to_contain_text("Never")
    [credential] = authenticator()
    assert credential["isResidentCredential"] is True  # discoverable: no email needed to log in

    log_out(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url("**/settings/api-keys")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text(EMAIL)
    assert authenticator()[0]["signCount"] >= 1

    page.goto("/settings/account")
    row = passkey_rows(page).first
    expect(row).to_contain_text("Work laptop")
    expect(row).not_to_contain_text("Never")
    expect(row.locator("td").nth(2)).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$"))

    page.on("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Remove").click()
    page.wait_for_url("**/settings/account")
    expect(page.get_by_role("status")).to_contain_text("Removed the passkey “Work laptop”")
    expect(page.get_by_text("You have no passkeys yet.")).to_be_visible()

    page.goto("/settings/security-log")
    for title in ("Passkey added", "Logged in", "Passkey removed"):
        expect(page.locator("table").get_by_text(title, exact=True).first).to_be_visible()
    expect(page.get_by_text("With the passkey “Work laptop”, instead of the password.")
           ).to_be_visible()

    log_out(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.get_by_role("alert")).to_contain_text("KeyVault does not know this passkey")
    expect(page).to_have_url(re.compile(r"/login$"))
    assert csp_violations(console) == []


def test_the_same_authenticator_cannot_add_a_second_passkey(page, live_server, authenticator):
    """excludeCredentials lists the account's passkeys: the authenticator that holds one refuses
    to make another, and the page says so; the account keeps one passkey."""
    sign_up(page)
    add_passkey(page, "Phone")
    page.wait_for_url("**/settings/account")
    add_passkey(page, "Phone again")
    expect(page.get_by_role("alert")).to_contain_text("already holds a passkey for your account")
    page.goto("/settings/account")
    expect(passkey_rows(page)).to_have_count(1)
    assert len(authenticator()) == 1


def test_a_deactivated_account_does_not_log_in_with_its_passkey(page, live_server, app,
                                                              authenticator):
    from keyvault import service
    from keyvault.service.admin import set_user_active

    sign_up(page)
    add_passkey(page, "Laptop")
    page.wait_for_url("**/settings/account")
    log_out(page)
    set_user_active(None, service.find_user(EMAIL).id, False, service.Origin.system())

    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.get_by_role("alert")).to_have_text("This account is deactivated.")
    page.goto("/settings/account")
    page.wait_for_url("**/login**")  # not logged in


def test_an_answer_counts_once(page, live_server, authenticator):
    """The answer the browser posted to log in, posted again (same cookies, a valid CSRF token),
    is refused: its challenge was used up by the first."""
    sign_up(page)
    add_passkey(page, "Laptop")
    page.wait_for_url("**/settings/account")
    log_out(page)

    posted = []
    page.route("**/login/passkey", lambda route: (posted.append(route.request.post_data),
                                                 route.continue_()))
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url("**/settings/api-keys")
    [body] = posted
    assert json.loads(body)["credential"]["response"]["signature"]

    token = csrf_from(page.request.get("/settings/account").text())
    again = page.request.post("/login/passkey", data=body, headers={
        "Content-Type": "application/json", "X-CSRFToken": token})
    assert again.status == 400
    assert again.headers["content-type"] == "application/problem+json"
    assert "expired or was already used" in again.json()["detail"]


def test_without_javascript_the_login_page_is_the_password_form(browser, live_server, make_user):
    """The passkey button needs the script: without JavaScript it stays hidden, and the
    password logs in as ever."""
    make_user(EMAIL)
    context = browser.new_context(base_url=live_server.url.replace("127.0.0.1", "localhost"),
                                  java_script_enabled=False)
    page = context.new_page()
    page.goto("/login")
    expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_hidden()
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/settings/api-keys")
    context.close()


def log_in_with_password(page) -> None:
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_a_passkey_answers_the_second_step_once_two_factor_is_on(page, console, live_server,
                                                                 app, authenticator):
    """Passkeys alone leave the password login as it was; with two-factor on, the step after
    the password offers "Use a passkey" next to the app's code, and the passkey logs in."""
    import pyotp

    from keyvault import service
    from keyvault.service import second_factor

    sign_up(page)
    add_passkey(page, "Laptop")
    page.wait_for_url("**/settings/account")
    log_out(page)
    log_in_with_password(page)
    page.wait_for_url("**/settings/api-keys")  # no second factor yet: the password is enough
    log_out(page)

    person = service.find_user(EMAIL)
    secret = second_factor.pending_secret(person)
    second_factor.enable(person, pyotp.TOTP(secret).now(), service.Origin.system())
    log_in_with_password(page)
    page.wait_for_url("**/login/two-factor")
    expect(page.get_by_label("Authentication code")).to_be_visible()
    page.get_by_role("button", name="Use a passkey").click()
    page.wait_for_url("**/settings/api-keys")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text(EMAIL)

    page.goto("/settings/security-log")
    expect(page.get_by_text("With the passkey “Laptop” after the password.")).to_be_visible()
    assert csp_violations(console) == []
