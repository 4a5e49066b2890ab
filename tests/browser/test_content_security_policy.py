"""The Content-Security-Policy blocks nothing KeyVault's own pages need: styles and script load."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import csp_violations

PAGES = ["/settings/api-keys", "/settings/security-log", "/settings/account", "/api/docs/"]


def errors_in(console: list[str]) -> list[str]:
    """Errors the page caused: a failed load (a favicon 404 included), a refused script..."""
    return [m for m in console if m.startswith(("error", "pageerror"))]


def assert_page_assets_loaded(page) -> None:
    """The stylesheet applied (it gives the top bar its dark background)."""
    background = page.evaluate(
        "getComputedStyle(document.querySelector('.topbar')).backgroundColor")
    assert background == "rgb(17, 24, 39)"


@pytest.mark.parametrize("path", PAGES)
def test_signed_in_pages_load_without_csp_errors(page, console, signed_up, path):
    """Each page a signed-in person sees renders with its stylesheet and logs no errors."""
    response = page.goto(path)
    assert response.status == 200
    assert "script-src 'self'" in response.header_value("Content-Security-Policy")
    assert_page_assets_loaded(page)
    assert errors_in(console) == []


def test_signup_page_loads_without_csp_errors(page, console):
    """The page a new visitor sees first renders with its stylesheet and logs no errors."""
    page.goto("/signup")
    assert_page_assets_loaded(page)
    assert errors_in(console) == []


def test_create_form_script_runs_under_the_policy(page, console, signed_up):
    """app.js runs: it hides the scope list until "Choose scopes" and warns only on full access
    (which is never pre-selected)."""
    scope_list = page.locator(".scope-list")
    warning = page.locator(".full-access-warning")
    expect(page.get_by_role("radio", name="Full access")).not_to_be_checked()
    expect(scope_list).to_be_hidden()
    expect(warning).to_be_hidden()

    page.get_by_role("radio", name="Full access").check()
    expect(warning).to_be_visible()

    page.get_by_role("radio", name="Choose scopes").check()
    expect(scope_list).to_be_visible()
    expect(warning).to_be_hidden()

    page.get_by_role("radio", name="Read only").check()
    expect(scope_list).to_be_hidden()
    assert csp_violations(console) == []


def test_inline_script_is_refused_and_reported(page, console, signed_up):
    """The policy is enforced, and a violation shows up where the tests above look for one."""
    with page.expect_console_message(lambda m: "Content Security Policy" in m.text):
        page.evaluate("""() => {
            const script = document.createElement('script');
            script.textContent = 'window.injected = true';
            document.body.appendChild(script);
        }""")
    assert page.evaluate("window.injected === undefined")
    assert len(csp_violations(console)) == 1
