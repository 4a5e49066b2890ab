"""A key's limits in the browser (issue 25): set on the create and edit forms, explained there,
shown on the key's page ("842 of 1,000 left, refills on 1 Jan"); lowering one is at once,
raising or removing one asks for the password; the usage chart shows refused days."""

from __future__ import annotations

import time

import pytest
from werkzeug.datastructures import MultiDict

from keyvault import service
from keyvault.extensions import db
from keyvault.service.limit_terms import RateTerms, UsageTerms
from tests.conftest import PASSWORD, csrf_from, shown_key
from tests.test_sudo import is_prompt, make_stale, replay


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def edit(client, key, **fields):
    path = f"/settings/api-keys/{key.public_id}/edit"
    token = csrf_from(page(client, path))
    data = {"label": key.label, "description": "", "scopes": list(key.scopes),
            "expiry": "keep", "csrf_token": token, "rate_window": "60", "refill_day": "1",
            "rate_limit": "", "quota": "", "refill": "", **fields}
    return client.post(path, data=MultiDict([(k, v) for k, vs in data.items()
                                             for v in (vs if isinstance(vs, list) else [vs])]))


def limits_of(key):
    db.session.expire_all()
    held = service.get_key(key.user, key.public_id).limits
    return None if held is None else (held.rate_limit, held.rate_window, held.remaining,
                                      held.refill_interval, held.refill_day)


def test_the_create_form_sets_limits_and_the_key_page_shows_them(client, auth, user, frozen):
    auth.login()
    form = page(client, "/settings/api-keys")
    assert "How many times the key may be used in all" in form  # the plain-words explanation
    created = auth.create_key(label="trial", rate_limit="100", rate_window="60", quota="1000",
                              refill="monthly", refill_day="1")
    assert created.status_code == 200 and shown_key(created.get_data(as_text=True))
    [key] = service.list_keys(user)
    assert limits_of(key) == (100, 60, 1000, "monthly", 1)
    shown = page(client, f"/settings/api-keys/{key.public_id}")
    assert "100 requests a minute" in shown
    assert "1,000 of 1,000 left, refills on 1 Apr" in shown  # T0 is 10 March 2030


@pytest.mark.parametrize(("fields", "message"), [
    ({"rate_limit": "0"}, "Enter a whole number of requests from 1"),
    ({"rate_limit": "ten"}, "Enter a whole number of requests from 1"),
    ({"rate_limit": "5", "rate_window": "86401"}, "Enter the window in seconds"),
    ({"quota": "-3"}, "Enter a whole number of uses from 0"),
    ({"quota": "5", "refill": "weekly"}, "Choose when the uses refill."),
    ({"quota": "5", "refill": "monthly", "refill_day": "31"}, "Enter a day of the month"),
])
def test_bad_limits_are_refused_beside_their_field(client, auth, user, fields, message):
    auth.login()
    refused = auth.create_key(label="x", **fields)
    assert refused.status_code == 400 and message in refused.get_data(as_text=True)
    assert service.list_keys(user) == []


def test_lowering_is_at_once_raising_or_removing_asks_for_the_password(app, client, auth, user,
                                                                       make_key):
    key = make_key(user, rate_limit=RateTerms(100, 60), usage_limit=UsageTerms(50))[0]
    auth.login()
    assert 'value="100"' in page(client, f"/settings/api-keys/{key.public_id}/edit")
    make_stale(client, app)
    lowered = edit(client, key, rate_limit="10", quota="50")
    assert lowered.status_code == 302 and limits_of(key)[:3] == (10, 60, 50)
    for raise_ in ({"rate_limit": "20", "quota": "50"}, {"rate_limit": "10", "quota": "60"},
                   {"rate_limit": "", "quota": "50"}, {"rate_limit": "10", "quota": ""}):
        asked = edit(client, key, **raise_)
        assert is_prompt(asked), raise_
        assert limits_of(key)[:3] == (10, 60, 50)
    done = replay(client, asked, f"/settings/api-keys/{key.public_id}/edit", PASSWORD)
    assert done.status_code == 302 and limits_of(key) == (10, 60, None, None, None)


def test_an_edit_that_keeps_the_quota_keeps_its_count(client, auth, user, make_key, verifier):
    key, value = make_key(user, usage_limit=UsageTerms(10, 10, "daily"))
    for _ in range(3):
        service.verify_key(value)
    auth.login()
    assert edit(client, key, label="renamed", quota="10", refill="daily").status_code == 302
    assert limits_of(key)[2] == 7


def test_the_chart_shows_rate_limited_and_used_up_days(app, client, auth, user, make_key):
    key, value = make_key(user, rate_limit=RateTerms(2, 1), usage_limit=UsageTerms(3))
    time.sleep(1 - time.time() % 1)  # at the start of a one-second window
    codes = [service.verify_key(value).code for _ in range(3)]
    time.sleep(1 - time.time() % 1)  # the next window: the quota answers
    codes += [service.verify_key(value).code for _ in range(2)]
    assert codes == ["valid", "valid", "rate_limited", "valid", "usage_exceeded"]
    service.usage.flush(app)
    auth.login()
    shown = page(client, f"/settings/api-keys/{key.public_id}")
    assert 'data-outcome="rate_limited" data-count="1"' in shown
    assert 'data-outcome="usage_exceeded" data-count="1"' in shown
    assert "Over its rate: 1" in shown and "Quota used up: 1" in shown
    assert "0 of 3 left, never refilled" in shown
