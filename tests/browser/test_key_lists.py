"""The keys page's list controls and bulk revoke in Chromium, on a phone and a desktop: the query
lands in the address (so links keep it), the list answers it, and several keys go at once after
one confirmation that names them."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from keyvault import clock
from tests.browser.conftest import csp_violations, mask_of
from tests.conftest import PASSWORD

EMAIL = "lists@example.com"


@pytest.fixture
def person(page, live_server, make_user, make_key):
    """A person with four keys of different scopes and lifetimes, logged in at `page`."""
    owner = make_user(EMAIL)
    values = {}
    for label, scopes, days in (("Deploy bot", ["personal_api_key:write"], 30),
                                ("Grafana reader", ["user:read"], None),
                                ("Deploy staging", ["user:read"], 7),
                                ("Verifier", ["key:verify"], 90)):
        expires = clock.now() + timedelta(days=days) if days else None
        _, values[label] = make_key(owner, label=label, scopes=scopes, expires_at=expires)
    page.goto("/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/settings/api-keys")
    return values


def labels(page) -> list[str]:
    return page.get_by_test_id("keys-table").locator("tbody th[scope=row]").all_inner_texts()


@pytest.mark.parametrize("width", [390, 1280])
def test_search_filter_and_sort_live_in_the_address(page, console, person, width):
    page.set_viewport_size({"width": width, "height": 800})
    controls = page.get_by_test_id("list-controls")
    controls.get_by_label("Search").fill("deploy")
    controls.get_by_label("Order").select_option("label")
    controls.get_by_role("button", name="Show").click()
    page.wait_for_url("**/settings/api-keys?*")
    assert parse_qs(urlparse(page.url).query) == {"q": ["deploy"], "sort": ["label"]}
    assert labels(page) == ["Deploy bot", "Deploy staging"]

    controls = page.get_by_test_id("list-controls")
    expect(controls.get_by_label("Search")).to_have_value("deploy")  # kept on the page
    controls.get_by_label("Scope").select_option("user:read")
    controls.get_by_role("button", name="Show").click()
    page.wait_for_url("**scope=user*")
    assert labels(page) == ["Deploy staging"]

    page.reload()  # a link to this page shows the same list
    assert labels(page) == ["Deploy staging"]
    page.get_by_role("link", name="Clear").click()
    assert sorted(labels(page)) == ["Deploy bot", "Deploy staging", "Grafana reader", "Verifier"]
    assert csp_violations(console) == []


@pytest.mark.parametrize("width", [390, 1280])
def test_bulk_revoke_confirms_the_named_keys_then_revokes_them(page, console, person, verify,
                                                              width):
    page.set_viewport_size({"width": width, "height": 800})
    page.get_by_label("Select “Deploy bot”").check()
    page.get_by_label("Select “Verifier”").check()
    page.get_by_test_id("bulk-revoke").click()
    page.wait_for_url("**/settings/api-keys/revoke?*")
    expect(page.get_by_role("heading", level=1)).to_have_text("Revoke 2 keys?")
    named = page.get_by_test_id("revoke-list").locator("li").all_inner_texts()
    assert sorted(named) == [f"Deploy bot {mask_of(person['Deploy bot'])}",
                             f"Verifier {mask_of(person['Verifier'])}"]
    assert verify(person["Deploy bot"])["code"] == "valid"  # asking changed nothing

    page.get_by_role("button", name="Revoke 2 keys").click()
    page.wait_for_url("**/settings/api-keys")
    expect(page.get_by_role("status")).to_contain_text("Revoked 2 keys: ")
    assert sorted(labels(page)) == ["Deploy staging", "Grafana reader"]
    assert verify(person["Deploy bot"])["code"] == "revoked"
    assert verify(person["Verifier"])["code"] == "revoked"
    assert verify(person["Grafana reader"])["code"] == "valid"

    page.go_back()  # the confirmation again (never cached): nothing left to do
    expect(page.get_by_role("heading", level=1)).to_have_text("Nothing to revoke")
    expect(page.get_by_test_id("already-revoked")).to_contain_text("Deploy bot")
    expect(page.get_by_role("button", name="Revoke 2 keys")).to_have_count(0)
    assert csp_violations(console) == []
