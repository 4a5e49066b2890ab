"""Key lifecycle in a real browser: a short-lived read-only key, rolled with a grace period."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import expect

from tests.browser.conftest import KEY_SHAPE, csp_violations, mask_of

READ_ONLY_SCOPES = ["personal_api_key:read", "user:read", "organization:read", "webhook:read"]


def test_read_only_seven_day_key_rolled_with_one_hour_grace(page, console, signed_up, verify):
    """A 7-day "Read only" key shows its scopes and is highlighted as expiring soon; rolling it
    from its page, with a 1-hour grace chosen in the roll step, shows the new value once and
    keeps the old one working, marked rolled."""
    page.get_by_label("Label").fill("dashboard")
    page.get_by_label("Expiration").select_option("7")  # its text names the date it means
    chosen = page.get_by_label("Expiration").evaluate("s => s.selectedOptions[0].textContent")
    assert chosen.startswith("7 days (until ") and chosen.endswith(" UTC)"), chosen
    page.get_by_role("radio", name="Read only").check()
    page.get_by_role("button", name="Create key").click()
    old_value = page.get_by_test_id("new-key-value").input_value()
    assert KEY_SHAPE.match(old_value), old_value

    row = page.locator("tr", has_text="dashboard")
    expect(row.locator("code.scope")).to_have_text(READ_ONLY_SCOPES)
    expect(row.locator("td.expiry")).to_contain_text("expires in 7 days")
    expect(row).to_have_class(re.compile(r"\bexpiring-soon\b"))

    row.get_by_role("link", name="dashboard").click()
    page.get_by_role("link", name="Roll…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Roll “dashboard”")
    page.get_by_label("Keep the old value working for").select_option(label="1 hour")
    rolled_at = datetime.now(UTC)
    page.get_by_role("button", name="Roll key").click()
    expect(page.get_by_text("It will never be shown again")).to_be_visible()
    new_value = page.get_by_test_id("new-key-value").input_value()
    assert KEY_SHAPE.match(new_value) and new_value != old_value

    details = page.get_by_test_id("key-details")
    expect(details.locator("code.mask").first).to_have_text(mask_of(new_value))
    expect(page.get_by_test_id("grace")).to_contain_text("Old value works until")
    expect(page.get_by_test_id("grace")).to_contain_text(
        re.compile(r"in (59|60) minutes|in 1 hour"))
    expect(page.get_by_test_id("status")).to_have_text("active")

    page.reload()
    html = page.content()
    assert old_value not in html and new_value not in html
    expect(page.get_by_test_id("grace")).to_contain_text("Old value works until")

    old, new = verify(old_value), verify(new_value)
    assert (old["active"], old["code"], old["rolled"]) == (True, "valid", True)
    assert (new["active"], new["code"], new["rolled"]) == (True, "valid", False)
    assert old["key_id"] == new["key_id"]
    assert old["scopes"] == new["scopes"] == READ_ONLY_SCOPES
    old_until = datetime.fromisoformat(old["old_value_expires_at"])
    assert rolled_at + timedelta(minutes=59) < old_until < rolled_at + timedelta(minutes=61)

    assert csp_violations(console) == []
