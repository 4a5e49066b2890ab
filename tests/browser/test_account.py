"""Account care in a real browser: changing the password, then logging in with the new one."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import csp_violations
from tests.conftest import PASSWORD, send_mail, text_of

NEW_PASSWORD = "a browser-typed new passphrase"


def log_in(page, email: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def test_change_password_then_log_in_with_the_new_one(page, console, signed_up, browser,
                                                      live_server):
    """The account page changes the password: a wrong current one is refused beside its field,
    the right one changes it, this browser stays logged in and another one is logged out; after
    logging out, the old password is refused and the new one lets the person in."""
    elsewhere = browser.new_context(base_url=live_server.url)
    other = elsewhere.new_page()
    log_in(other, signed_up, PASSWORD)
    other.wait_for_url("**/settings/api-keys")

    page.goto("/settings/account")
    page.get_by_label("Current password").fill("not the password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_have_text("Your current password is not right.")

    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    page.wait_for_url("**/settings/account")
    expect(page.get_by_role("status")).to_contain_text("Your password has been changed")

    page.goto("/settings/api-keys")  # this browser is still logged in
    expect(page).to_have_url(re.compile(r"/settings/api-keys$"))
    other.goto("/settings/api-keys")  # the other one is not
    other.wait_for_url("**/login**")
    elsewhere.close()

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    log_in(page, signed_up, PASSWORD)
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    log_in(page, signed_up, NEW_PASSWORD)
    page.wait_for_url("**/settings/api-keys")
    assert csp_violations(console) == []


def test_sign_up_confirm_by_mail_then_log_in(page, console, confirming_server, smtp_server,
                                             app, make_user):
    """With confirmation on: a new and a taken address see the same "Check your mail" page; the
    new one's mail holds a link whose page takes the sign-up password and logs the person in."""
    make_user("taken@example.com")
    answers = {}
    for email in ("taken@example.com", "fresh@example.com"):
        page.context.clear_cookies()
        page.goto(f"{confirming_server.url}/signup")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Repeat password").fill(PASSWORD)
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
        answers[email] = page.locator("main").inner_text().replace(email, "EMAIL")
    assert answers["taken@example.com"] == answers["fresh@example.com"]

    send_mail(app)
    mails = {m["To"]: m for m in smtp_server.wait_for(2)}
    assert mails["taken@example.com"]["Subject"] == "You already have a KeyVault account"
    link = re.search(r"https?://\S+/signup/confirm\?token=\S+|/signup/confirm\?token=\S+",
                     text_of(mails["fresh@example.com"]))[0]
    if link.startswith("/"):
        link = confirming_server.url + link

    page.goto(link)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Confirm and log in").click()
    expect(page.get_by_role("alert")).to_contain_text("That password is not right")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm and log in").click()
    page.wait_for_url("**/settings/api-keys")
    expect(page.get_by_text("Your address is confirmed.")).to_be_visible()
    assert csp_violations(console) == []
