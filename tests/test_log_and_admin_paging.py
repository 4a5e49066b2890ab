"""The security log page and the admin tables, a page at a time, with filters their links keep."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest

from keyvault import clock, service
from keyvault.extensions import db
from keyvault.models import KEY_STATUSES
from tests.conftest import AuthActions

ORIGIN = service.Origin("127.0.0.1", "pytest")


def rows(html: str, attribute: str) -> list[str]:
    return re.findall(rf'<tr {attribute}="([^"]+)"', html)


def link(html: str, words: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)">{words}</a>', html)
    return unescape(found.group(1)) if found else None


# ---------------------------------------------------------------- the security log


@pytest.fixture
def busy_log(app, client, auth, user, make_key, frozen):
    """Sixty keys made over sixty days, every other one revoked: 90 key events and a login."""
    app.config["KEYVAULT_MAX_KEYS_PER_USER"] = 100
    made = []
    for number in range(60):
        key, _ = make_key(user, label=f"key {number}", scopes=["user:read"])
        made.append(key)
        if number % 2:
            service.revoke_key(user, key.public_id, ORIGIN)
        frozen.at += timedelta(days=1)
    auth.login()
    return made


def test_the_log_pages_keep_the_filter(client, busy_log):
    first = client.get("/settings/security-log?kind=key.created").get_data(as_text=True)
    assert rows(first, "data-event") == ["key.created"] * 50
    older = link(first, "Older →")
    assert "kind=key.created" in older
    second = client.get(older).get_data(as_text=True)
    assert rows(second, "data-event") == ["key.created"] * 10
    assert link(second, "Older →") is None
    assert "kind=key.created" in link(second, "← Newer")


def test_the_log_filters_by_key_and_by_day(client, busy_log, frozen):
    key = busy_log[3]  # made, then revoked
    html = client.get(f"/settings/security-log?key={key.public_id}").get_data(as_text=True)
    assert rows(html, "data-event") == ["key.revoked", "key.created"]
    day = key.created_at.date().isoformat()
    html = client.get(f"/settings/security-log?since={day}&until={day}").get_data(as_text=True)
    assert sorted(rows(html, "data-event")) == ["key.created", "key.revoked"]
    html = client.get(f"/settings/security-log?since={day}&until={day}&kind=key.revoked"
                      ).get_data(as_text=True)
    assert rows(html, "data-event") == ["key.revoked"]
    today = clock.now().date().isoformat()
    html = client.get(f"/settings/security-log?since={today}").get_data(as_text=True)
    assert rows(html, "data-event") == ["login.succeeded"]


@pytest.mark.parametrize("query, words, status", [
    ("kind=key.exploded", "Choose a kind of event from the list.", 400),
    ("since=yesterday", "Enter days as dates", 400),
    ("since=2030-02-01&until=2030-01-01", "The first day comes after the last", 400),
    ("until=9999-12-31", "before the year 9999", 400),
    ("cursor=not-ours", "That page link was not made by this API", 400),
])
def test_a_filter_the_log_cannot_use_is_a_400_that_says_why(client, auth, user, query, words,
                                                           status):
    auth.login()
    response = client.get(f"/settings/security-log?{query}")
    assert response.status_code == status
    assert words in unescape(response.get_data(as_text=True))


# ---------------------------------------------------------------- the admin tables


@pytest.fixture
def admin_client(app, make_user):
    make_user("root@example.com", is_admin=True)
    client = app.test_client()
    assert AuthActions(client).login("root@example.com").status_code == 302
    return client


def test_the_admin_keys_table_pages_and_keeps_its_filters(app, admin_client, make_user, make_key,
                                                         frozen):
    app.config["KEYVAULT_MAX_KEYS_PER_USER"] = 100
    owner = make_user("many@example.com")
    for number in range(55):
        make_key(owner, label=f"key {number}", scopes=["user:read"])
        frozen.at += timedelta(seconds=1)
    first = admin_client.get("/admin/keys?user=many@example.com").get_data(as_text=True)
    assert len(rows(first, "data-key-id")) == 50
    older = link(first, "Older →")
    assert "user=many%40example.com" in older or "user=many@example.com" in older
    second = admin_client.get(older).get_data(as_text=True)
    assert len(rows(second, "data-key-id")) == 5
    seen = rows(first, "data-key-id") + rows(second, "data-key-id")
    assert len(set(seen)) == 55


def test_the_status_filter_agrees_with_each_keys_status(admin_client, make_user, make_key,
                                                       frozen):
    """The filter runs in SQL now (so it can page); it must say what key_status says."""
    alive, gone = make_user("alive@example.com"), make_user("gone@example.com")
    made = [make_key(alive, label="active", scopes=["user:read"])[0],
            make_key(alive, label="expires", scopes=["user:read"],
                     expires_at=clock.now() + timedelta(hours=1))[0],
            make_key(alive, label="revoked", scopes=["user:read"])[0],
            make_key(gone, label="inactive", scopes=["user:read"])[0],
            make_key(gone, label="inactive and revoked", scopes=["user:read"])[0]]
    service.revoke_key(alive, made[2].public_id, ORIGIN)
    service.revoke_key(gone, made[4].public_id, ORIGIN)
    service.set_user_active(None, gone.id, False, ORIGIN)
    frozen.at += timedelta(hours=2)
    db.session.expire_all()
    for status in KEY_STATUSES:
        html = admin_client.get(f"/admin/keys?status={status}").get_data(as_text=True)
        expected = {key.public_id for key in made if key.status() == status}
        assert set(rows(html, "data-key-id")) == expected, status
        assert expected  # every status has a key here


def test_the_users_table_pages_and_searches(admin_client, make_user, frozen):
    for number in range(52):
        make_user(f"person{number:02d}@example.org")
        frozen.at += timedelta(seconds=1)
    html = admin_client.get("/admin/keys").get_data(as_text=True)
    assert len(rows(html, "data-user-id")) == 50
    older = link(html, "Older →")
    assert "users_cursor=" in older
    html = admin_client.get(older).get_data(as_text=True)
    assert len(rows(html, "data-user-id")) == 3  # two people and the administrator
    html = admin_client.get("/admin/keys?email=PERSON07").get_data(as_text=True)
    html = html.replace("<wbr>", "")  # the break opportunities in long emails
    assert re.findall(r'data-label="Email">([^<]+)<', html) == ["person07@example.org"]


@pytest.mark.parametrize("query, words", [
    ("status=sleeping", "Choose a status from the list"),
    ("keys_cursor=forged", "That page link was not made by this API"),
    ("users_cursor=forged", "That page link was not made by this API"),
])
def test_an_admin_query_it_cannot_use_is_a_400(admin_client, query, words):
    response = admin_client.get(f"/admin/keys?{query}")
    assert response.status_code == 400
    assert words in response.get_data(as_text=True)
