"""A key's own page (/settings/api-keys/<id>): what the key is, what it may do, how it has been
used (a server-drawn chart), its events, and the roll step that asks for the grace period."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from keyvault import clock, service
from keyvault.extensions import db
from keyvault.models import KeyUsageDay
from keyvault.service import usage
from tests.conftest import AuthActions, csrf_from, once_token, shown_key, verify

PAGE = "/settings/api-keys"


@pytest.fixture
def logged_in(auth, user):
    assert auth.login().status_code == 302
    return user


def key_page(client, key) -> str:
    response = client.get(f"{PAGE}/{key.public_id}")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_data(as_text=True)


def details(html: str) -> dict[str, str]:
    """The page's facts (<dt>/<dd> pairs) as plain text."""
    block = re.search(r'<dl class="facts".*?</dl>', html, re.DOTALL).group(0)
    pairs = re.findall(r"<dt>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>", block, re.DOTALL)
    return {name: " ".join(re.sub(r"<[^>]+>", " ", value).split()) for name, value in pairs}


def chart_days(html: str) -> list[tuple[str, int, dict[str, int]]]:
    """(day, total, {outcome: count}) for each mark of the chart, oldest first."""
    svg = re.search(r'<svg class="usage-chart".*?</svg>', html, re.DOTALL).group(0)
    marks = re.findall(r'<g class="day" data-day="([^"]+)" data-total="(\d+)">(.*?)</g>', svg,
                       re.DOTALL)
    return [(day, int(total), {o: int(n) for o, n in re.findall(
        r'data-outcome="([^"]+)" data-count="(\d+)"', body)}) for day, total, body in marks]


def test_the_page_says_what_the_key_is(client, logged_in, make_key):
    key, value = make_key(logged_in, label="deploys", description="used by CI",
                          scopes=["personal_api_key:read", "key:verify"],
                          expires_at=clock.now() + timedelta(days=30))
    html = key_page(client, key)
    facts = details(html)
    assert "<h1" in html and "deploys" in html
    assert facts["Description"] == "used by CI"
    assert facts["Key"] == key.mask
    assert "personal_api_key:read See your API keys" in facts["Scopes"]
    assert "key:verify Ask KeyVault whether a key" in facts["Scopes"]
    assert facts["Created"] == key.created_at.strftime("%Y-%m-%d %H:%M UTC")
    assert facts["Last used"] == "Never"
    assert facts["Expires"].startswith("expires in 30 days")
    assert value not in html
    assert f'href="{PAGE}/{key.public_id}/edit"' in html
    assert f'href="{PAGE}/{key.public_id}/roll"' in html
    assert f'action="{PAGE}/{key.public_id}/revoke"' in html
    assert 'data-testid="status">active<' in html


def test_the_page_shows_the_keys_own_events(client, logged_in, make_key):
    key, _ = make_key(logged_in, label="eventful")
    other, _ = make_key(logged_in, label="other")
    service.update_key(logged_in, key.public_id, label="renamed", origin=service.Origin(
        "192.0.2.4", "pytest"))
    html = key_page(client, key)
    table = re.search(r'data-testid="key-events">.*?</table>', html, re.DOTALL).group(0)
    assert re.findall(r'data-event="([a-z_.]+)"', table) == ["key.updated", "key.created"]
    assert "Renamed from “eventful” to “renamed”." in table
    assert "192.0.2.4" in table


def test_a_revoked_key_has_no_actions_left(client, logged_in, make_key):
    key, _ = make_key(logged_in, label="gone", expires_at=clock.now() + timedelta(days=60))
    service.revoke_key(logged_in, key.public_id, service.Origin())
    html = key_page(client, key)
    assert "/revoke" not in html and "/roll" not in html and "/edit" not in html
    assert details(html)["Revoked"].startswith("Revoked")
    assert "expires in" not in html


def test_the_chart_has_a_mark_for_each_of_the_last_30_days(app, client, logged_in, make_key,
                                                           verifier):
    """One mark per day, oldest first, ending today; counted verifies show on today's, by
    outcome; written days before show on theirs; older than 30 days is left out."""
    key, value = make_key(logged_in, label="charted", scopes=["user:read"])
    for _ in range(4):
        assert verify(client, verifier, value)["code"] == "valid"
    response = client.post("/api/verify/", json={"key": value, "scopes": ["key:verify"]},
                           headers={"Authorization": f"Bearer {verifier}"})
    assert response.json["code"] == "insufficient_scope"
    today = clock.now().date()
    for days_ago, number in ((3, 7), (30, 99)):
        db.session.add(KeyUsageDay(key_id=key.id, day=today - timedelta(days=days_ago),
                                   outcome="valid", count=number))
    db.session.commit()
    html = key_page(client, key)
    # Today's five are still counted in memory; the 99 are 30 days old, one day too many.
    assert [total for _, total, _ in chart_days(html)] == [0] * 26 + [7, 0, 0, 0]
    usage.flush(app)
    marks = chart_days(key_page(client, key))
    assert len(marks) == 30
    assert marks[-1][0] == today.isoformat()
    assert marks[0][0] == (today - timedelta(days=29)).isoformat()
    assert marks[-1][1:] == (5, {"valid": 4, "insufficient_scope": 1})
    assert marks[-4][1:] == (7, {"valid": 7})
    assert sum(total for _, total, _ in marks) == 12


def test_the_chart_reads_without_script_or_style(app, client, logged_in, make_key, verifier):
    """A title and a description for screen readers, a text summary and a table of the numbers;
    only classes and geometry, no style attribute and no script (the CSP forbids them)."""
    key, value = make_key(logged_in, label="readable")
    for _ in range(3):
        verify(client, verifier, value)
    usage.flush(app)
    html = key_page(client, key)
    svg = re.search(r'<svg class="usage-chart".*?</svg>', html, re.DOTALL).group(0)
    assert 'role="img"' in svg and "<title" in svg and "<desc" in svg
    assert "style=" not in html and "<script>" not in html and " on" + "click" not in html
    assert "3 uses from" in svg and "3 valid" in svg
    table = re.search(r'data-testid="usage-table">.*?</table>', html, re.DOTALL).group(0)
    today = clock.now().date().isoformat()
    row = re.search(rf"<tr><th scope=\"row\"[^>]*><time datetime=\"{today}\">.*?</tr>", table,
                    re.DOTALL).group(0)
    assert re.findall(r'data-label="(Valid|Total)">(\d+)<', row) == [("Valid", "3"),
                                                                     ("Total", "3")]


def test_the_page_says_where_the_key_was_last_used_from(app, client, logged_in, make_key,
                                                        verifier):
    key, value = make_key(logged_in, label="where")
    client.post("/api/verify/", json={"key": value}, environ_base={"REMOTE_ADDR": "203.0.113.5"},
                headers={"Authorization": f"Bearer {verifier}"})
    usage.flush(app)
    db.session.expire_all()
    assert "from 203.0.113.5" in details(key_page(client, key))["Last used"]


# ---------------------------------------------------------------- the roll step


def test_the_roll_step_asks_for_the_grace_period(client, logged_in, make_key, verifier):
    """GET …/roll asks how long the old value should keep working; POST rolls with that."""
    key, old = make_key(logged_in, label="rolling")
    step = client.get(f"{PAGE}/{key.public_id}/roll")
    assert step.status_code == 200
    html = step.get_data(as_text=True)
    assert re.search(r'<label for="grace">Keep the old value working for</label>', html)
    assert re.findall(r'<option[^>]*value="(\d+)"', html) == ["0", "3600", "86400", "604800"]
    answer = client.post(f"{PAGE}/{key.public_id}/roll", data={
        "grace": "86400", "csrf_token": csrf_from(html), "once": once_token(html, "roll")})
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    new = shown_key(answer.get_data(as_text=True))
    assert new and new != old
    assert verify(client, verifier, new)["code"] == "valid"
    assert verify(client, verifier, old)["rolled"] is True  # works for the day chosen


def test_the_roll_step_of_a_key_that_cannot_roll_says_so(client, logged_in, make_key):
    key, _ = make_key(logged_in, label="done")
    service.revoke_key(logged_in, key.public_id, service.Origin())
    step = client.get(f"{PAGE}/{key.public_id}/roll")
    assert step.status_code == 303
    assert step.headers["Location"] == f"{PAGE}/{key.public_id}"
    assert "cannot be rolled" in client.get(step.headers["Location"]).get_data(as_text=True)


def test_a_bad_grace_choice_is_said_in_words(client, logged_in, make_key):
    key, value = make_key(logged_in, label="graceless")
    html = client.get(f"{PAGE}/{key.public_id}/roll").get_data(as_text=True)
    answer = client.post(f"{PAGE}/{key.public_id}/roll", data={
        "grace": "5", "csrf_token": csrf_from(html), "once": once_token(html, "roll")})
    assert answer.status_code == 400
    assert "Choose how long the old value should keep working." in answer.get_data(as_text=True)
    assert service.verify_key(value).code == "valid"


def test_operators_scope_descriptions_show_where_scopes_are_chosen(make_app, make_user):
    """KEYVAULT_SCOPES entries may carry a description after '=': the create form and the key
    page show it; a scope without one gets a plain reading of its name."""
    app = make_app(KEYVAULT_SCOPES="feature_flag:read=See which feature flags are on,"
                                   "billing:write")
    owner = make_user("ops@example.com")
    client = app.test_client()
    actions = AuthActions(client)
    assert actions.login("ops@example.com").status_code == 302
    form = client.get(PAGE).get_data(as_text=True)
    for scope, words in (("feature_flag:read", "See which feature flags are on"),
                         ("billing:write", "Change billing (and read it)")):
        item = re.search(rf'type="checkbox" value="{scope}".*?</li>', form, re.DOTALL).group(0)
        assert words in item
    with app.app_context():
        key, _ = service.create_key(owner, label="flags", scopes=["feature_flag:read"],
                                    origin=service.Origin())
        public_id = key.public_id
    page = client.get(f"{PAGE}/{public_id}").get_data(as_text=True)
    assert "See which feature flags are on" in page
