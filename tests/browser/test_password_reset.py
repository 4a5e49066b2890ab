"""Forgot password, in a real browser: the login page's link, the mail a real SMTP server
receives, the link in it followed, a new password set; every old session ends, the old password
is refused and the new one works; the link works once."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import csp_violations
from tests.browser.test_account import log_in
from tests.conftest import PASSWORD, send_mail, text_of

NEW_PASSWORD = "a reset-by-mail passphrase"


def test_forgot_password_mail_link_sets_a_new_password(page, console, signed_up, browser,
                                                       live_server, app, smtp_server):
    elsewhere = browser.new_context(base_url=live_server.url)
    other = elsewhere.new_page()  # a session that must not survive the reset
    log_in(other, signed_up, PASSWORD)
    other.wait_for_url("**/settings/api-keys")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")

    page.get_by_role("link", name="Forgot password?").click()
    page.get_by_label("Email").fill(signed_up)
    page.get_by_role("button", name="Mail me a reset link").click()
    expect(page.get_by_role("status")).to_contain_text(f"If {signed_up} belongs to an account")

    assert send_mail(app).sent == 1  # the shared live server leaves sending to the tests
    [message] = smtp_server.wait_for(1)
    assert message["To"] == signed_up
    link = re.search(r"^(\S*/password/reset\?token=\S+)$", text_of(message), re.M).group(1)

    page.goto(link)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set new password").click()
    page.wait_for_url("**/login")
    expect(page.get_by_role("status")).to_contain_text("Your password has been reset")

    other.goto("/settings/api-keys")
    other.wait_for_url("**/login**")  # the old session ended
    elsewhere.close()

    log_in(page, signed_up, PASSWORD)
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    log_in(page, signed_up, NEW_PASSWORD)
    page.wait_for_url("**/settings/api-keys")

    page.goto(link)  # once only
    expect(page.get_by_role("heading", name=re.compile("Reset link not valid"))).to_be_visible()
    expect(page.get_by_text("already used")).to_be_visible()
    assert csp_violations(console) == []
