"""The look in a real browser: the landing page at /, the dark scheme, the account page's mail
controls, and the API reference's header and copy buttons."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import csp_violations
from tests.conftest import PASSWORD

# The relative luminance of a computed CSS colour (WCAG 2), in the browser.
LUMINANCE = """e => {
    const channel = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    const of = colour => { const [r, g, b] = colour.match(/[\\d.]+/g).map(Number);
        return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b); };
    const style = getComputedStyle(e);
    return [of(style.backgroundColor), of(style.color)];
}"""


def log_in(page, email: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_a_visitor_learns_what_it_is_and_finds_the_way_in(page, console, make_user):
    """/ says what KeyVault is, with Sign up and Log in; once logged in, / is the key list."""
    make_user("ada@example.com")
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Personal API keys")
    page.get_by_role("main").get_by_role("link", name="Sign up").click()
    page.wait_for_url("**/signup")
    page.go_back()
    page.get_by_role("main").get_by_role("link", name="Log in").click()
    page.wait_for_url("**/login")
    log_in(page, "ada@example.com")
    page.wait_for_url("**/settings/api-keys")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/settings/api-keys$"))
    page.get_by_role("link", name="KeyVault").click()  # the brand leads to / too
    expect(page).to_have_url(re.compile(r"/settings/api-keys$"))
    assert csp_violations(console) == []


@pytest.mark.parametrize(("scheme", "dark"), [("light", False), ("dark", True)])
def test_the_pages_follow_the_systems_colour_scheme(browser, live_server, scheme, dark):
    """prefers-color-scheme: dark gives light text on a dark page, cards and form fields
    included; light the reverse."""
    context = browser.new_context(base_url=live_server.url, color_scheme=scheme)
    page = context.new_page()
    page.goto("/login")
    for element in ("body", ".card", "input[type=email]"):
        background, text = page.locator(element).first.evaluate(LUMINANCE)
        assert (background < text) == dark, (element, background, text)
        assert abs(background - text) > 0.5, (element, background, text)
    context.close()


def test_account_mail_controls_sit_beside_their_labels_and_look_like_buttons(page, signed_up):
    """Account -> Mail: each checkbox on the line of its label (not centred on a line of its
    own), and the save button styled like the page's other main buttons."""
    page.goto("/settings/account")
    section = page.locator("section", has=page.get_by_role("heading", name="Mail"))
    for name in ("expires in 7 days", "still being presented"):
        box = section.get_by_label(re.compile(name))
        label = section.locator("label", has_text=re.compile(name))
        check, text = box.bounding_box(), label.bounding_box()
        assert check["x"] + check["width"] <= text["x"], name       # beside it, on its left
        assert check["x"] - section.bounding_box()["x"] < 40, name  # at the start of the line
        assert text["y"] <= check["y"] + check["height"] / 2 <= text["y"] + 30, name
    save = section.get_by_role("button", name="Save mail preferences")
    model = page.get_by_role("button", name="Change password")
    look = "b => { const s = getComputedStyle(b); return [s.backgroundColor, s.color, s.borderRadius]; }"
    assert save.evaluate(look) == model.evaluate(look)
    save.click()
    expect(page.get_by_role("status")).to_be_visible()


def test_the_reference_has_a_way_back_and_copy_buttons(page, console, signed_up):
    """/api/docs/: the header leads back to the keys; each code block's Copy button puts
    exactly the block's text on the clipboard, and says so."""
    page.goto("/api/docs/")
    curl = page.get_by_test_id("curl").first
    copy = curl.locator("xpath=..").locator("button.copy-code")  # its name changes
    expect(copy).to_have_accessible_name("Copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    expect(page.get_by_role("status")).to_have_text("Copied to the clipboard.")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == curl.text_content() and copied.startswith("curl ")
    assert page.locator(".docs-main pre").count() == page.locator(".docs-main .copy-code").count()
    page.get_by_role("link", name="Back to your API keys").click()
    page.wait_for_url("**/settings/api-keys")
    assert csp_violations(console) == []
