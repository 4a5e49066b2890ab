"""Cursor pagination of the key list: limits, opaque cursors, and stability under change."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from keyvault import clock, service
from tests.conftest import FreshContextClient

ORIGIN = service.Origin("127.0.0.1", "pytest")


@pytest.fixture
def roomy(make_app):
    """An app whose users may hold many keys, with its context held for service calls."""
    app = make_app(KEYVAULT_MAX_KEYS_PER_USER="2000")
    app.test_client_class = FreshContextClient
    with app.app_context():
        yield app


class Owner:
    """A user with a full-access key; `add` makes keys one second apart, so order is known."""

    def __init__(self, app, monkeypatch):
        self.client = app.test_client()
        self.monkeypatch = monkeypatch
        self.tick = clock.now() - timedelta(days=1)
        self.user = service.sign_up("pager@example.com", "correct horse battery", ORIGIN)
        self.caller_key, value = self._create("caller")
        self.headers = {"Authorization": f"Bearer {value}"}
        self.created = [self.caller_key.public_id]  # oldest first

    def _create(self, label):
        self.tick += timedelta(seconds=1)
        self.monkeypatch.setattr(clock, "now", lambda at=self.tick: at)
        key, value = service.create_key(self.user, label=label, scopes=["*"], origin=ORIGIN)
        self.monkeypatch.setattr(clock, "now", lambda at=self.tick: at + timedelta(seconds=1))
        return key, value

    def add(self, count: int) -> None:
        for number in range(count):
            key, _ = self._create(f"key {len(self.created) + number}")
            self.created.append(key.public_id)

    def get(self, url="/api/personal_api_keys/", **params):
        response = self.client.get(url, headers=self.headers, query_string=params or None)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.json


@pytest.fixture
def owner(roomy, monkeypatch):
    return Owner(roomy, monkeypatch)


def ids(page) -> list[str]:
    return [key["id"] for key in page["results"]]


def test_default_limit_is_100(owner):
    """Without limit a page holds 100 keys and links to the rest."""
    owner.add(100)  # 101 with the caller's key
    first = owner.get()
    assert len(first["results"]) == 100
    assert first["next"] is not None
    rest = owner.get(first["next"])
    assert ids(rest) == [owner.created[0]]
    assert rest["next"] is None


def test_limit_up_to_1000(owner):
    """limit=1000 is allowed and returns everything when there is less."""
    owner.add(4)
    page = owner.get(limit=1000)
    assert ids(page) == owner.created[::-1]
    assert page["next"] is None and page["previous"] is None


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "abc", "1.5", ""])
def test_bad_limits_are_400(owner, limit):
    """limit outside 1..1000 or not a whole number is a 400 naming limit."""
    response = owner.client.get("/api/personal_api_keys/", headers=owner.headers,
                                query_string={"limit": limit})
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.json["field"] == "limit"


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "abc", "!!!!", _b64("not json"), _b64("[]"), _b64(json.dumps({"a": 1})),
    _b64(json.dumps(["2030-01-01T00:00:00", 1, "n"])),  # no time zone
    _b64(json.dumps(["2030-01-01T00:00:00+00:00", "1", "n"])),  # id not a number
    _b64(json.dumps(["2030-01-01T00:00:00+00:00", 1, "sideways"])),
    _b64(json.dumps(["yesterday", 1, "n"])),
])
def test_bad_cursors_are_400(owner, cursor):
    """A cursor the API did not issue is a 400 naming cursor, never a 500."""
    response = owner.client.get("/api/personal_api_keys/", headers=owner.headers,
                                query_string={"cursor": cursor})
    assert response.status_code == 400
    assert response.json["field"] == "cursor"


def flat(pages: list[list[str]]) -> list[str]:
    return [key_id for page in pages for key_id in page]


def walk(owner, url: str, direction: str = "next", **params) -> list[list[str]]:
    pages, page = [], owner.get(url, **params)
    while True:
        pages.append(ids(page))
        if page[direction] is None:
            return pages
        page = owner.get(page[direction])


def test_walk_forward_sees_each_key_once_newest_first(owner):
    """25 keys at limit=10: pages of 10, 10, 5, together exactly the keys, newest first."""
    owner.add(24)
    pages = walk(owner, "/api/personal_api_keys/", limit=10)
    assert [len(page) for page in pages] == [10, 10, 5]
    assert flat(pages) == owner.created[::-1]


def test_links_keep_the_query(owner):
    """next/previous links carry limit and include_revoked along with the cursor."""
    owner.add(5)
    page = owner.get(limit=2, include_revoked="true")
    query = parse_qs(urlsplit(page["next"]).query)
    assert query["limit"] == ["2"]
    assert query["include_revoked"] == ["true"]
    assert "cursor" in query
    assert urlsplit(page["next"]).path == "/api/personal_api_keys/"


def test_previous_links_go_back(owner):
    """From the last page, following previous retraces the same pages in reverse."""
    owner.add(24)
    forward, page = [], owner.get(limit=10)
    assert page["previous"] is None
    forward.append(ids(page))
    while page["next"]:
        page = owner.get(page["next"])
        forward.append(ids(page))
    backward = [ids(page)]
    while page["previous"]:
        page = owner.get(page["previous"])
        backward.append(ids(page))
    assert backward == forward[::-1]
    assert page["previous"] is None  # back at the start


def test_stable_when_keys_are_created_between_fetches(owner):
    """A key created mid-walk neither repeats nor hides a key that was there all along."""
    owner.add(24)
    before = owner.created[::-1]
    first = owner.get(limit=10)
    owner.add(3)  # newer than everything: belongs before page one
    second = owner.get(first["next"])
    third = owner.get(second["next"])
    assert ids(first) + ids(second) + ids(third) == before
    assert third["next"] is None


def test_stable_when_keys_are_revoked_between_fetches(owner):
    """Revoking keys mid-walk — even the one the cursor points at — skips no other key."""
    owner.add(24)
    before = owner.created[::-1]
    first = owner.get(limit=10)
    gone = {ids(first)[-1], before[12], before[20]}  # the cursor's own key, and two ahead
    for key_id in gone:
        service.revoke_key(owner.user, key_id, ORIGIN)
    seen = ids(first)
    page = first
    while page["next"]:
        page = owner.get(page["next"])
        seen += ids(page)
    assert len(seen) == len(set(seen))
    assert seen == [key_id for key_id in before if key_id not in gone - set(ids(first))]


def test_revoked_keys_page_only_with_include_revoked(owner):
    """include_revoked=true pages through revoked keys too, in the same order."""
    owner.add(6)
    revoked = owner.created[2]
    service.revoke_key(owner.user, revoked, ORIGIN)
    live = flat(walk(owner, "/api/personal_api_keys/", limit=3))
    everything = flat(walk(owner, "/api/personal_api_keys/", limit=3, include_revoked="true"))
    assert revoked not in live
    assert everything == owner.created[::-1]
