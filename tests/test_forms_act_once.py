"""Create and roll forms act once per submission (DESIGN §3): a reload (the same POST again),
Back and resubmit, or a double click never creates or rolls twice, and the second submission
says why. The value itself is shown only in the answer to the first."""

from __future__ import annotations

import re
import threading

import requests
from sqlalchemy import func, select

from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import PASSWORD, csrf_from, once_token, shown_key, verify


def key_count(user) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(ApiKey.id)).where(ApiKey.user_id == user.id))


def events(name: str) -> int:
    return db.session.scalar(select(func.count(SecurityEvent.id))
                             .where(SecurityEvent.event == name))


def create_form(client, label: str = "once") -> dict:
    page = client.get("/settings/api-keys").get_data(as_text=True)
    return {"label": label, "expiry": "30", "preset": "full", "csrf_token": csrf_from(page),
            "once": once_token(page)}


def test_resubmitting_a_create_form_creates_nothing_more(client, auth, user):
    auth.login()
    form = create_form(client)
    first = client.post("/settings/api-keys", data=form)
    value = shown_key(first.get_data(as_text=True))
    assert first.status_code == 200 and value
    again = client.post("/settings/api-keys", data=form)  # reload, or Back and submit
    assert again.status_code == 303
    assert again.headers["Cache-Control"].startswith("no-store")
    page = client.get(again.headers["Location"]).get_data(as_text=True)
    assert "already submitted" in page and "shown once" in page
    assert shown_key(page) is None and value not in page
    assert key_count(user) == 1 and events("key.created") == 1


def test_a_refused_create_does_not_use_up_its_form(client, auth, user):
    """A form sent back with an error (here: no label) acts when it is fixed and sent again."""
    auth.login()
    form = create_form(client, label="")
    refused = client.post("/settings/api-keys", data=form)
    assert refused.status_code == 400 and key_count(user) == 0
    token = once_token(refused.get_data(as_text=True))
    assert token == form["once"]  # the same submission, still to act
    fixed = client.post("/settings/api-keys", data={**form, "label": "fixed"})
    assert fixed.status_code == 200 and shown_key(fixed.get_data(as_text=True))
    assert key_count(user) == 1


def test_a_form_without_its_token_acts_not(client, auth, user):
    auth.login()
    form = create_form(client)
    for once in ("", "short", "x" * 65):
        response = client.post("/settings/api-keys", data={**form, "once": once})
        assert response.status_code == 303
        assert "reload the page" in client.get(response.headers["Location"]).get_data(True)
    assert key_count(user) == 0


def test_resubmitting_a_roll_form_rolls_once(client, auth, user, make_key, verifier):
    key, old = make_key(user, label="rolled once")
    auth.login()
    page = client.get(f"/settings/api-keys/{key.public_id}/roll").get_data(as_text=True)
    form = {"grace": "0", "csrf_token": csrf_from(page), "once": once_token(page, "roll")}
    first = client.post(f"/settings/api-keys/{key.public_id}/roll", data=form)
    new = shown_key(first.get_data(as_text=True))
    assert first.status_code == 200 and new
    again = client.post(f"/settings/api-keys/{key.public_id}/roll", data=form)
    assert again.status_code == 303
    assert again.headers["Location"] == f"/settings/api-keys/{key.public_id}"
    back = client.get(again.headers["Location"]).get_data(True)
    assert "already submitted" in back and shown_key(back) is None and new not in back
    assert verify(client, verifier, new)["active"] is True  # the value shown is the one that works
    assert verify(client, verifier, old)["active"] is False
    assert events("key.rolled") == 1


def test_the_page_after_a_create_carries_a_fresh_form(client, auth, user, make_key):
    """The answer that shows the new value has a new token: its create form acts."""
    make_key(user, label="existing")
    auth.login()
    form = create_form(client)
    shown = client.post("/settings/api-keys", data=form).get_data(as_text=True)
    assert once_token(shown) != form["once"]
    again = client.post("/settings/api-keys", data={**form, "once": once_token(shown),
                                                   "csrf_token": csrf_from(shown)})
    assert again.status_code == 200 and key_count(user) == 3


def test_each_visit_to_the_roll_step_carries_a_fresh_form(client, auth, user, make_key):
    """Rolling twice on purpose works: each roll step has its own token."""
    key, _ = make_key(user, label="rolled twice")
    auth.login()
    tokens = []
    for _ in range(2):
        page = client.get(f"/settings/api-keys/{key.public_id}/roll").get_data(as_text=True)
        tokens.append(once_token(page, "roll"))
        answer = client.post(f"/settings/api-keys/{key.public_id}/roll", data={
            "grace": "0", "csrf_token": csrf_from(page), "once": tokens[-1]})
        assert answer.status_code == 200 and shown_key(answer.get_data(as_text=True))
    assert tokens[0] != tokens[1] and events("key.rolled") == 2


def test_a_double_click_creates_one_key(live_server, user):
    """Two submissions of one form at the same moment, to the real server's two workers."""
    with requests.Session() as browser:
        login_page = browser.get(f"{live_server.url}/login", timeout=10).text
        assert browser.post(f"{live_server.url}/login", timeout=10, data={
            "email": user.email, "password": PASSWORD, "csrf_token": csrf_from(login_page)},
            allow_redirects=False).status_code == 302
        page = browser.get(f"{live_server.url}/settings/api-keys", timeout=10).text
        form = {"label": "double click", "expiry": "30", "preset": "full",
                "csrf_token": csrf_from(page), "once": once_token(page)}
        cookies = browser.cookies.get_dict()
    start, answers = threading.Barrier(2), []

    def click():
        with requests.Session() as tab:
            tab.cookies.update(cookies)
            start.wait()
            answers.append(tab.post(f"{live_server.url}/settings/api-keys", data=form,
                                    timeout=15, allow_redirects=False))

    clicks = [threading.Thread(target=click) for _ in range(2)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join()
    assert sorted(answer.status_code for answer in answers) == [200, 303]
    shown = [re.search(r'id="new-key-value"[^>]*value="([^"]+)"', a.text) for a in answers]
    assert len([match for match in shown if match]) == 1
    assert key_count(user) == 1
