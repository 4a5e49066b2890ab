"""A key's limits in a real browser: set a rate and a monthly quota on the create form, see
them on the key's page, and see the count go down after a use."""

from __future__ import annotations

from playwright.sync_api import expect

from keyvault import clock


def test_set_a_quota_and_see_it_on_the_key_page(page, console, signed_up, verify):
    page.get_by_label("Label").fill("Trial partner")
    page.get_by_role("radio", name="Read only").check()
    page.get_by_test_id("limit-fields").locator("summary").click()
    expect(page.get_by_text("How many times the key may be used in all")).to_be_visible()
    page.get_by_label("Requests allowed").fill("100")
    page.get_by_label("in each window of (seconds)").fill("60")
    page.get_by_label("Uses allowed").fill("1000")
    page.get_by_label("Refilled").select_option("monthly")
    page.get_by_label("on day of the month").fill("1")
    page.get_by_role("button", name="Create key").click()
    value = page.get_by_test_id("new-key-value").input_value()

    page.goto("/settings/api-keys")
    page.get_by_role("link", name="Trial partner").click()
    expect(page.get_by_test_id("rate-limit")).to_have_text("100 requests a minute")
    first = clock.now().date().replace(day=1)
    refill = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    expect(page.get_by_test_id("usage-limit")).to_have_text(
        f"1,000 of 1,000 left, refills on 1 {refill:%b}"
        + (f" {refill.year}" if refill.year != first.year else ""))

    answer = verify(value)
    assert (answer["code"], answer["usage"]["remaining"]) == ("valid", 999)
    page.reload()
    expect(page.get_by_test_id("usage-limit")).to_contain_text("999 of 1,000 left")
    assert console == []
