"""`/` tells a visitor what KeyVault is and how to get in; a logged-in person goes to their keys."""

from __future__ import annotations

import re

from tests.conftest import AuthActions


def test_a_visitor_gets_the_landing_page(client):
    answer = client.get("/")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert "<h1" in page and "Personal API keys" in page
    main = re.search(r"<main>(.*)</main>", page, re.S).group(1)
    assert '<a class="button primary" href="/signup">Sign up</a>' in main
    assert '<a class="button" href="/login">Log in</a>' in main
    assert 'href="/api/docs/"' in main
    # the same address answers a logged-in person differently: no cache may mix them up
    assert "Cookie" in answer.vary


def test_a_logged_in_person_is_sent_to_their_keys(client, user):
    assert AuthActions(client).login().status_code == 302
    answer = client.get("/")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/settings/api-keys"
    assert "Cookie" in answer.vary


def test_after_logging_out_the_landing_page_is_back(client, user):
    auth = AuthActions(client)
    auth.login()
    assert client.get("/").status_code == 302
    auth.logout()
    assert client.get("/").status_code == 200
