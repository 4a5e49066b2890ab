"""Create and roll act once, in a real Chromium (DESIGN §3): reload, Back and a double click
never make a second key or a second roll, and say that the value was already shown.

With script (the usual case) the page that shows a value turns its history entry into a GET
that says so; without script the reload really posts the form again and its one-time token
refuses it. Both are tested.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.browser.conftest import KEY_SHAPE, csp_violations
from tests.conftest import PASSWORD

ALREADY_SHOWN = "was shown once"


def key_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(ApiKey.id)))


def event_count(name: str) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(SecurityEvent.id))
                             .where(SecurityEvent.event == name))


def create(page, label: str, click: str = "click", scripted: bool = True) -> str:
    """Fill the create form (read-only access) and send it; the value shown."""
    page.get_by_label("Label").fill(label)
    page.get_by_role("radio", name="Read only").check()
    getattr(page.get_by_role("button", name="Create key"), click)()
    return shown_value(page, scripted)


def shown_value(page, scripted: bool) -> str:
    """The value the page shows, once the page has loaded (with script: its history entry is
    then the GET that says the value was shown)."""
    value = page.get_by_test_id("new-key-value").input_value()
    assert KEY_SHAPE.match(value), value
    page.wait_for_load_state("load")
    if scripted:
        try:
            page.wait_for_url("**shown=*", timeout=5000)
        except Exception as error:  # noqa: BLE001 - say where the page was instead
            raise AssertionError(f"script did not replace the entry: {page.url}") from error
    return value


def roll(page, label: str, click: str = "click", scripted: bool = True) -> str:
    """From the list: open the key, take the roll step (no grace) and roll; the value shown."""
    page.goto("/settings/api-keys")
    page.get_by_role("link", name=label).click()
    page.get_by_role("link", name="Roll…").click()
    page.get_by_label("Keep the old value working for").select_option("0")
    getattr(page.get_by_role("button", name="Roll key"), click)()
    return shown_value(page, scripted)


def expect_already_shown(page, value: str) -> None:
    assert "shown=" in page.url, page.url
    expect(page.get_by_text(ALREADY_SHOWN)).to_be_visible()
    expect(page.get_by_test_id("new-key-value")).to_have_count(0)
    assert value not in page.content()


def test_reload_back_and_double_click_after_create_make_one_key(page, console, signed_up,
                                                                verify):
    value = create(page, "once")
    assert key_count() == 2  # this one and the verify fixture's service key
    page.reload()
    expect_already_shown(page, value)
    assert key_count() == 2

    page.get_by_role("link", name="once").click()
    page.go_back()
    expect_already_shown(page, value)
    page.go_forward()
    page.go_back()
    expect_already_shown(page, value)
    assert key_count() == 2
    assert verify(value)["code"] == "valid"  # the value shown is the key's

    second = create(page, "double", click="dblclick")
    expect(page.get_by_text("Your new key “double”")).to_be_visible()
    assert key_count() == 3
    assert verify(second)["label"] == "double"
    assert csp_violations(console) == []


def test_reload_back_and_double_click_after_roll_roll_once(page, console, signed_up, verify):
    first = create(page, "rolled")
    rolled = roll(page, "rolled")
    assert event_count("key.rolled") == 1
    page.reload()
    expect_already_shown(page, rolled)
    page.get_by_role("link", name="All API keys").click()
    page.go_back()
    expect_already_shown(page, rolled)
    assert event_count("key.rolled") == 1
    assert verify(rolled)["code"] == "valid"  # the value shown is the one that works
    assert verify(first)["active"] is False

    again = roll(page, "rolled", click="dblclick")
    assert event_count("key.rolled") == 2  # the double click rolled once
    assert verify(again)["code"] == "valid" and verify(rolled)["active"] is False
    assert key_count() == 2
    assert csp_violations(console) == []


@pytest.fixture
def no_script(browser, live_server):
    """A page in a browser with JavaScript off, signed up and on the API-keys page."""
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    page = context.new_page()
    page.goto("/signup")
    page.get_by_label("Email").fill("noscript@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/settings/api-keys")
    yield page
    context.close()


def test_without_script_a_reload_posts_again_and_is_refused(no_script, verify):
    """Reload re-sends the POST; Back reaches the browser's resubmission page, and resending
    from there is refused too: one key, one roll, each repeat told why."""
    page = no_script
    value = create(page, "plain", scripted=False)
    page.reload()  # the same POST again
    expect(page.get_by_text("This form was already submitted")).to_be_visible()
    expect(page.get_by_text("shown once, in that answer")).to_be_visible()
    assert value not in page.content()
    assert key_count() == 2

    rolled = roll(page, "plain", scripted=False)
    page.reload()
    expect(page.get_by_text("This form was already submitted")).to_be_visible()
    assert rolled not in page.content()
    assert event_count("key.rolled") == 1
    assert verify(rolled)["code"] == "valid"
