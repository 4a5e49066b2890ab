"""The keys page's list: search, filter and sort as query parameters; revoking several keys
with one confirmation; the count, the limit and the create form's expiry and presets."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from keyvault import clock, service
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import csrf_from

PAGE = "/settings/api-keys"
ORIGIN = service.Origin("127.0.0.1", "pytest")


def listed(client, query: str = "") -> list[str]:
    """The labels of the keys the page lists, in order (live ones, then revoked ones)."""
    html = client.get(f"{PAGE}{query}").get_data(as_text=True)
    return re.findall(r'<th scope="row" data-label="Label"><a [^>]*>([^<]*)</a>', html)


@pytest.fixture
def keys(client, auth, user, make_key, frozen):
    """Five keys of alice's, made a minute apart: two active, one expired, one revoked, one
    used recently; `auth` is logged in."""
    made = {}
    for label, scopes, days in (("Deploy bot", ["personal_api_key:write"], 30),
                                ("grafana reader", ["user:read"], None),
                                ("Old deploy", ["*"], 1),
                                ("Laptop", ["key:verify"], 90),
                                ("CI 100%_done", ["user:read"], 7)):
        expires = clock.now() + timedelta(days=days) if days else None
        made[label], _ = make_key(user, label=label, scopes=scopes, expires_at=expires)
        frozen.at += timedelta(minutes=1)
    service.revoke_key(user, made["Laptop"].public_id, ORIGIN)
    made["grafana reader"].last_used_at = clock.now()
    db.session.commit()
    frozen.at += timedelta(days=2)  # "Old deploy" has expired
    auth.login()
    return made


@pytest.mark.parametrize("query, labels", [
    ("", ["CI 100%_done", "Old deploy", "grafana reader", "Deploy bot", "Laptop"]),
    ("?q=deploy", ["Old deploy", "Deploy bot"]),
    ("?q=100%25_", ["CI 100%_done"]),  # % and _ are searched for, not wildcards
    ("?q=_", ["CI 100%_done"]),
    ("?status=active", ["CI 100%_done", "grafana reader", "Deploy bot"]),
    ("?status=expired", ["Old deploy"]),
    ("?status=revoked", ["Laptop"]),
    # a scope is matched by the keys that grant it: `*` and write-implies-read count
    ("?scope=personal_api_key:read", ["Old deploy", "Deploy bot"]),
    ("?scope=user:read", ["CI 100%_done", "Old deploy", "grafana reader"]),
    ("?scope=*", ["Old deploy"]),
    ("?sort=oldest", ["Deploy bot", "grafana reader", "Old deploy", "CI 100%_done", "Laptop"]),
    ("?sort=label", ["CI 100%_done", "Deploy bot", "grafana reader", "Old deploy", "Laptop"]),
    ("?sort=last_used", ["grafana reader", "CI 100%_done", "Old deploy", "Deploy bot", "Laptop"]),
    ("?sort=expires", ["Old deploy", "CI 100%_done", "Deploy bot", "grafana reader", "Laptop"]),
    ("?q=DEPLOY&status=active&sort=label", ["Deploy bot"]),
])
def test_the_list_is_searched_filtered_and_sorted_by_its_query(client, keys, query, labels):
    assert listed(client, query) == labels


def test_the_controls_show_the_query_they_answer(client, keys):
    html = client.get(f"{PAGE}?q=deploy&status=active&scope=user:read&sort=label").get_data(
        as_text=True)
    assert 'name="q" value="deploy"' in html
    assert '<option value="active" selected>' in html
    assert '<option value="user:read" selected>' in html
    assert '<option value="label" selected>' in html
    assert 'data-testid="no-match"' in html  # nothing is both "deploy" and user:read


@pytest.mark.parametrize("query, words", [
    ("?status=sleeping", "Choose a status from the list"),
    ("?scope=nope:read", "Choose a scope from the list"),
    ("?sort=colour", "Choose an order from the list"),
    ("?q=" + "x" * 41, "at most 40 characters"),
])
def test_a_query_the_list_cannot_answer_is_a_400_that_says_why(client, keys, query, words):
    response = client.get(f"{PAGE}{query}")
    assert response.status_code == 400
    assert words in response.get_data(as_text=True)


# ---------------------------------------------------------------- bulk revoke


def revoked_events() -> list[int]:
    db.session.expire_all()
    return [e.key_id for e in db.session.scalars(
        select(SecurityEvent).where(SecurityEvent.event == "key.revoked"))]


def confirm(client, *public_ids: str):
    return client.get(f"{PAGE}/revoke?" + "&".join(f"key={p}" for p in public_ids))


def submit(client, page_html: str):
    """Post the confirmation page's form as the browser would."""
    fields = re.findall(r'<input[^>]*name="(keys|once)"[^>]*value="([^"]+)"', page_html)
    fields = [(name, value) for name, value in fields]
    once = re.search(r'id="revoke-once" name="once" type="hidden" value="([^"]+)"', page_html)
    data = [pair for pair in fields if pair[0] == "keys"] + [("once", once.group(1)),
                                                               ("csrf_token", csrf_from(page_html))]
    return client.post(f"{PAGE}/revoke", data=MultiDict(data))


def test_bulk_revoke_names_the_keys_then_revokes_them_once(client, keys):
    chosen = [keys["Deploy bot"], keys["grafana reader"]]
    page = confirm(client, *(k.public_id for k in chosen))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Revoke 2 keys?" in html
    for key in chosen:
        assert key.label in html and key.mask in html
    assert keys["CI 100%_done"].label not in html
    before = len(revoked_events())
    assert all(k.revoked_at is None for k in chosen)  # the confirmation changed nothing

    done = submit(client, html)
    assert done.status_code == 303
    db.session.expire_all()
    assert all(db.session.get(ApiKey, k.id).revoked_at is not None for k in chosen)
    assert db.session.get(ApiKey, keys["CI 100%_done"].id).revoked_at is None
    assert sorted(revoked_events()[before:]) == sorted(k.id for k in chosen)
    listing = client.get(PAGE).get_data(as_text=True)
    assert "Revoked 2 keys: “Deploy bot”" in listing

    again = submit(client, html)  # Back, then the same form once more
    assert again.status_code == 303
    assert len(revoked_events()) == before + 2
    assert "already submitted" in client.get(PAGE).get_data(as_text=True)


def test_a_key_that_is_not_yours_revokes_nothing(client, keys, make_user, make_key):
    bob = make_user("bob@example.com")
    bobs, _ = make_key(bob, label="bob's", scopes=["user:read"])
    assert confirm(client, keys["Deploy bot"].public_id, bobs.public_id).status_code == 404
    html = confirm(client, keys["Deploy bot"].public_id).get_data(as_text=True)
    forged = html.replace(f'name="keys" value="{keys["Deploy bot"].public_id}"',
                          f'name="keys" value="{keys["Deploy bot"].public_id}">'
                          f'<input type="hidden" name="keys" value="{bobs.public_id}"')
    before = len(revoked_events())
    assert submit(client, forged).status_code == 404
    assert len(revoked_events()) == before  # all or none
    db.session.expire_all()
    assert db.session.get(ApiKey, keys["Deploy bot"].id).revoked_at is None
    assert db.session.get(ApiKey, bobs.id).revoked_at is None


def test_revoking_none_says_to_tick_some(client, keys):
    response = client.get(f"{PAGE}/revoke")
    assert response.status_code == 303
    assert "Tick the keys to revoke first." in client.get(PAGE).get_data(as_text=True)


def test_the_confirmation_sets_already_revoked_keys_apart(client, keys):
    html = confirm(client, keys["Laptop"].public_id, keys["Deploy bot"].public_id).get_data(
        as_text=True)
    assert "Revoke 1 key?" in html
    assert 'data-testid="already-revoked"' in html and "Laptop" in html


# ---------------------------------------------------------------- the count, the limit, the form


def test_the_count_is_unambiguous_and_the_form_says_the_limit_before_filling_it(
        client, auth, user, make_key):
    for number in range(9):
        make_key(user, label=f"key {number}", scopes=["user:read"])
    auth.login()
    html = client.get(PAGE).get_data(as_text=True)
    assert "(9 active keys, limit 10)" in html
    assert re.search(r'<fieldset class="plain">', html)  # not disabled
    make_key(user, label="key 9", scopes=["user:read"])
    html = client.get(PAGE).get_data(as_text=True)
    assert "(10 active keys, limit 10)" in html
    assert '<fieldset class="plain" disabled aria-describedby="limit-reason">' in html
    assert re.search(r'id="limit-reason"[^>]*><p class="error" role="alert">You already have 10 '
                     r'active keys, the most allowed', html)


def test_each_expiry_choice_names_its_date_and_each_preset_its_scopes(client, auth, user, frozen):
    auth.login()
    html = client.get(PAGE).get_data(as_text=True)
    for days in (7, 30, 60, 90):
        until = clock.format_datetime(clock.now() + timedelta(days=days))
        assert re.search(rf'<option[^>]* value="{days}">{days} days \(until {until}\)</option>',
                         html)
    read_only = re.search(r'data-testid="preset-scopes-read_only">(.*?)</span>', html).group(1)
    assert re.findall(r'<code class="scope">([^<]+)</code>', read_only) == [
        "personal_api_key:read", "user:read", "organization:read", "webhook:read"]
    verify = re.search(r'data-testid="preset-scopes-verify">(.*?)</span>', html).group(1)
    assert "key:verify" in verify
    assert 'data-testid="preset-scopes-custom"' not in html
