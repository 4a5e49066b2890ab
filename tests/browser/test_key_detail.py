"""The key page and the create form's access choice, in a real Chromium."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from playwright.sync_api import expect
from sqlalchemy import func, select

from keyvault import service
from keyvault.extensions import db
from keyvault.models import ApiKey
from tests.browser.conftest import csp_violations
from tests.browser.test_content_security_policy import errors_in


def test_the_create_form_will_not_send_without_an_access_choice(page, console, signed_up):
    """Nothing is pre-selected; submitting without a choice sends no request, and the browser
    points at the access question; choosing one then creates the key."""
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url)
            if request.method == "POST" else None)
    radios = page.locator("input[type=radio][name=preset]")  # the access question's four
    expect(radios).to_have_count(4)
    for index in range(4):
        expect(radios.nth(index)).not_to_be_checked()
    page.get_by_label("Label").fill("undecided")
    page.get_by_role("button", name="Create key").click()
    page.wait_for_timeout(500)
    assert posts == []
    assert page.evaluate("document.querySelector('input[name=preset]').validationMessage")
    assert page.evaluate("document.querySelector('input[name=preset]:invalid') !== null")
    db.session.expire_all()
    assert db.session.scalar(select(func.count(ApiKey.id))) == 0

    page.get_by_role("radio", name="Verify keys for a service").check()
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("Your new key “undecided”")).to_be_visible()
    assert len(posts) == 1
    assert csp_violations(console) == []


def test_the_key_page_charts_its_uses(page, console, signed_up, live_server, verify):
    """Uses counted by the server's workers reach the key's chart within seconds: 30 marks,
    today's holding the verifications by outcome; the page loads without CSP errors."""
    page.get_by_label("Label").fill("charted")
    page.get_by_role("radio", name="Read only").check()
    page.get_by_role("button", name="Create key").click()
    value = page.get_by_test_id("new-key-value").input_value()
    for _ in range(6):
        assert verify(value)["code"] == "valid"

    page.goto("/settings/api-keys")
    page.get_by_role("link", name="charted").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("charted")
    chart = page.get_by_test_id("usage-chart")
    expect(chart).to_be_visible()
    days = chart.locator("g.day")
    expect(days).to_have_count(30)
    today = datetime.now(UTC).date().isoformat()
    deadline = time.monotonic() + 60  # each worker writes its counts every 5 seconds
    while chart.locator(f'g.day[data-day="{today}"]').get_attribute("data-total") != "6":
        assert time.monotonic() < deadline, "the uses never reached the chart"
        time.sleep(1)
        page.reload()
    mark = chart.locator(f'g.day[data-day="{today}"]')
    expect(mark.locator("rect.bar")).to_have_count(1)
    expect(mark.locator("rect.u-valid")).to_have_attribute("data-count", "6")
    assert days.last.get_attribute("data-day") == today
    box = mark.locator("rect.u-valid").bounding_box()
    assert box and box["height"] > 20  # drawn, not just listed
    expect(chart.locator("desc")).to_contain_text("6 uses")

    table = page.get_by_test_id("usage-table")
    expect(table).to_be_hidden()
    page.get_by_text("The numbers, day by day").click()
    expect(table.locator("tr", has_text=today)).to_contain_text("6")
    expect(page.get_by_test_id("last-used")).to_contain_text("from 127.0.0.1")
    assert errors_in(console) == []


def test_the_roll_step_loads_without_errors(page, console, signed_up):
    page.get_by_label("Label").fill("steady")
    page.get_by_role("radio", name="Read only").check()
    page.get_by_role("button", name="Create key").click()
    page.goto("/settings/api-keys")
    page.get_by_role("link", name="steady").click()
    page.get_by_role("link", name="Roll…").click()
    expect(page.get_by_label("Keep the old value working for")).to_have_value("0")
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("steady")
    page.get_by_role("link", name="Edit").click()
    page.get_by_role("link", name="Back to “steady”").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("steady")
    assert errors_in(console) == []


def test_a_key_for_chosen_services_is_offered_their_scopes_only(page, console, signed_up):
    """With "Only these services", the custom scopes show the instance-wide ones and those of
    the services ticked, not another service's; "All services" shows every scope again."""
    person = service.find_user(signed_up)
    origin = service.Origin("127.0.0.1", "test")
    org = service.organizations.create_organization(person, "Payments", origin).organization
    billing = service.services.create_service(
        person, org.public_id, origin, name="Billing", audience="billing", description="",
        scopes=[{"name": "invoice:read", "description": "Read invoices"}])
    service.services.create_service(
        person, org.public_id, origin, name="Search", audience="search", description="",
        scopes=[{"name": "doc:read", "description": "Read documents"}])
    db.session.commit()
    page.reload()
    page.get_by_role("radio", name="Choose scopes").check()
    invoice, doc = (page.locator(f'input[name="scopes"][value="{name}"]')
                    for name in ("invoice:read", "doc:read"))
    instance_wide = page.locator('input[name="scopes"][value="user:read"]')
    expect(invoice).to_be_visible()
    expect(doc).to_be_visible()

    page.get_by_role("radio", name="Only these services").check()
    page.locator(f'input[name="services"][value="{billing.public_id}"]').check()
    expect(invoice).to_be_visible()
    expect(doc).to_be_hidden()
    expect(instance_wide).to_be_visible()

    page.get_by_role("radio", name="All services").check()
    expect(doc).to_be_visible()
    assert csp_violations(console) == []
