"""The account-settings pages in a real browser: create, copy once, see only the mask, open the
key's page, revoke it there."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import KEY_SHAPE, csp_violations, mask_of


def test_create_copy_once_then_revoke(page, console, signed_up, verify):
    """A new key is shown once with a working copy button, then only its mask; revoking it asks
    first, and dismissing the question keeps it working while accepting stops it at once."""
    page.get_by_label("Label").fill("CI deploys")
    page.get_by_role("radio", name="Full access").check()
    page.get_by_role("button", name="Create key").click()

    shown = page.get_by_test_id("new-key-value")
    value = shown.input_value()
    assert KEY_SHAPE.match(value), value
    expect(page.get_by_text("It will never be shown again")).to_be_visible()
    expect(page.get_by_label("Label")).to_have_value("")  # a second click must not make a twin

    page.get_by_test_id("copy-button").click()
    expect(page.get_by_text("Copied!")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == value

    page.goto("/settings/api-keys")
    assert value not in page.content()
    row = page.locator("tr", has_text="CI deploys")
    expect(row.locator("code.mask")).to_have_text(mask_of(value))
    expect(row.get_by_test_id("status")).to_have_text("active")
    expect(row.get_by_role("button")).to_have_count(0)  # no controls on the list's rows
    answer = verify(value)
    assert (answer["active"], answer["code"], answer["label"]) == (True, "valid", "CI deploys")

    row.get_by_role("link", name="CI deploys").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("CI deploys")
    key_page = page.url
    dialogs: list[str] = []

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Revoke").click()
    assert len(dialogs) == 1 and "Revoke “CI deploys”" in dialogs[0]
    page.goto(key_page)
    expect(page.get_by_test_id("status")).to_have_text("active")
    assert verify(value)["code"] == "valid"

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke").click()
    page.wait_for_url("**/settings/api-keys")
    expect(page.get_by_text("Revoked “CI deploys”")).to_be_visible()
    expect(page.get_by_test_id("keys-table")).to_have_count(0)  # no live key left
    revoked = page.get_by_test_id("revoked-keys")
    revoked_row = revoked.locator("tr", has_text="CI deploys")
    expect(revoked_row).to_be_hidden()  # collapsed until asked for
    revoked.locator("summary").click()
    expect(revoked_row.get_by_test_id("status")).to_have_text("revoked")
    expect(revoked_row).not_to_contain_text("expires")
    assert verify(value) == {"active": False, "code": "revoked"}
    page.goto(key_page)
    expect(page.get_by_role("button", name="Revoke")).to_have_count(0)

    assert csp_violations(console) == []
