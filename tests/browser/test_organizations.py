"""Organisations in Chromium: create one, invite by mail and accept through the mailed link,
change a role, a member sees no manage controls, a service account's key shown once, rolled and
revoked, and the policy's caps shown where keys are made."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from keyvault import service
from tests.browser.conftest import KEY_SHAPE, csp_violations
from tests.conftest import PASSWORD, send_mail, text_of

ORIGIN = service.Origin("127.0.0.1", "pytest")


def _log_in(page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/settings/api-keys")


def test_an_organisation_from_creation_to_a_new_member(page, console, app, make_user,
                                                       smtp_server, signed_up, verify):
    page.get_by_role("link", name="Organisations").click()
    page.get_by_label("Name").fill("Acme")
    page.get_by_role("button", name="Create organisation").click()
    expect(page.get_by_test_id("my-role")).to_have_text("owner")
    org_url = page.url

    # invite by mail; the link in the mail, opened signed out, signs up on the spot
    page.locator("#invitations").get_by_label("Email").fill("newcomer@example.com")
    page.locator("#invitations").get_by_label("Role").select_option("member")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_test_id("invitations-table")).to_contain_text("newcomer@example.com")
    send_mail(app)
    mail = next(m for m in smtp_server.messages if m["To"] == "newcomer@example.com")
    link = re.search(r"(/organizations/invitations/\S+)", text_of(mail)).group(1)
    page.get_by_role("button", name="Log out").click()
    page.goto(link)
    page.get_by_role("link", name="Sign up to accept").click()
    expect(page.get_by_label("Email")).to_have_value("newcomer@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("button", name="Accept").click()
    page.wait_for_url(org_url)
    expect(page.get_by_test_id("my-role")).to_have_text("member")

    # a member sees the organisation, and no control that changes it
    for control in ("Change role", "Send invitation", "Create service account", "Save",
                    "Delete organisation"):
        expect(page.get_by_role("button", name=control)).to_have_count(0)
    page.goto(link)
    expect(page.locator("h1")).to_contain_text("410")  # used once, never twice

    # the owner makes the newcomer an admin
    page.get_by_role("button", name="Log out").click()
    _log_in(page, signed_up)
    page.goto(org_url)
    row = page.locator('tr[data-member="newcomer@example.com"]')
    row.get_by_label("Role of newcomer@example.com").select_option("admin")
    row.get_by_role("button", name="Change role").click()
    expect(row.get_by_test_id("member-role")).to_have_text("admin")
    assert csp_violations(console) == []


def test_a_service_accounts_key_shown_once_rolled_and_revoked(page, console, signed_up, verify):
    owner = service.find_user(signed_up)
    org = service.organizations.create_organization(owner, "Acme", ORIGIN).organization
    page.goto(f"/settings/organizations/{org.public_id}")
    page.get_by_label("Longest key lifetime (days)").fill("7")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("policy-summary")).to_contain_text("at most 7 days")
    page.locator("#service-accounts").get_by_label("Name").fill("deploy-bot")
    page.get_by_role("button", name="Create service account").click()
    expect(page.locator("h1")).to_contain_text("deploy-bot")
    expect(page.get_by_test_id("policy-caps")).to_contain_text("at most 7 days")
    assert "30 days" not in page.get_by_label("Expiration").inner_text()

    page.get_by_label("Label").fill("ci")
    page.locator('input[name="preset"][value="verify"]').check()
    page.get_by_role("button", name="Create key").click()
    value = page.get_by_test_id("new-key-value").input_value()
    assert KEY_SHAPE.match(value)
    answer = verify(value)
    assert answer["active"] and answer["owner"]["type"] == "service_account"
    page.reload()
    expect(page.get_by_test_id("new-key-value")).to_have_count(0)  # shown once

    page.get_by_role("link", name="ci").click()
    page.get_by_role("link", name="Roll…").click()
    page.get_by_role("button", name="Roll key").click()
    rolled = page.get_by_test_id("new-key-value").input_value()
    assert rolled != value and verify(rolled)["active"] and not verify(value)["active"]
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash-success")).to_contain_text("Revoked “ci”")
    assert verify(rolled)["code"] == "revoked"
    assert csp_violations(console) == []
