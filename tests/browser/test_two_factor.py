"""Two-factor in a real browser: set up from the secret the page shows, then log in with
password and code; the QR code renders under the Content-Security-Policy."""

from __future__ import annotations

import time

import pyotp
from playwright.sync_api import expect

from tests.browser.conftest import csp_violations
from tests.browser.test_content_security_policy import errors_in
from tests.conftest import PASSWORD


def test_set_up_two_factor_then_log_in_with_a_code(page, console, signed_up):
    page.goto("/settings/account")
    expect(page.get_by_test_id("two-factor-status")).to_contain_text("Off.")
    page.get_by_role("link", name="Set up two-factor authentication").click()
    page.wait_for_url("**/settings/two-factor/setup")

    qr = page.get_by_test_id("totp-qr")
    expect(qr).to_be_visible()
    assert page.evaluate("document.querySelector('[data-testid=totp-qr]').naturalWidth") > 0
    secret = page.get_by_test_id("totp-secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)

    page.get_by_label("Code from your app").fill("000000" if totp.now() != "000000" else "111111")
    page.get_by_role("button", name="Turn on two-factor authentication").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")

    page.get_by_label("Code from your app").fill(totp.now())
    page.get_by_role("button", name="Turn on two-factor authentication").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    codes = page.get_by_test_id("recovery-codes").locator("code").all_inner_texts()
    assert len(codes) == 10
    expect(page.get_by_role("link", name="Download as a text file")).to_have_attribute(
        "download", "keyvault-recovery-codes.txt")
    page.get_by_role("link", name="back to my account").click()
    expect(page.get_by_test_id("two-factor-status")).to_contain_text("10 of 10 recovery codes")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    page.get_by_label("Email").fill(signed_up)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/login/two-factor")
    page.goto("/settings/api-keys")  # the password alone does not log in
    page.wait_for_url("**/login**")
    page.goto("/login/two-factor")  # the pending login waits
    # the next step's code: the set-up already used this step's
    page.get_by_label("Authentication code").fill(totp.at(time.time() + 30))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/settings/api-keys")
    assert csp_violations(console) == []
    wrong_code = [m for m in errors_in(console) if "status of 400" in m]  # the refused code
    assert len(wrong_code) == 1 and "/settings/two-factor/setup" in wrong_code[0]
    assert [m for m in errors_in(console) if m not in wrong_code] == []


def test_the_set_up_page_renders_under_the_policy(page, console, signed_up):
    response = page.goto("/settings/two-factor/setup")
    assert response.status == 200
    assert "img-src 'self' data:" in response.header_value("Content-Security-Policy")
    expect(page.get_by_test_id("totp-qr")).to_be_visible()
    assert page.evaluate("document.querySelector('[data-testid=totp-qr]').complete")
    assert page.evaluate("document.querySelector('[data-testid=totp-qr]').naturalHeight") > 100
    assert csp_violations(console) == []
    assert errors_in(console) == []
