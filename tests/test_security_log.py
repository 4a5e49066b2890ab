"""The security log: one event per change, none for a refused change, each person sees only theirs."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from keyvault import service
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import PASSWORD, AuthActions, FreshContextClient, csrf_from, once_token

ADDRESS = "198.51.100.23"
AGENT = "SecLogTest/2.0 (+https://example.com)"
ORIGIN = service.Origin("127.0.0.1", "pytest")


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def all_events() -> list[SecurityEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(SecurityEvent).order_by(SecurityEvent.id)))


def latest_key() -> ApiKey:
    db.session.expire_all()
    return db.session.scalars(select(ApiKey).order_by(ApiKey.id.desc())).first()


@pytest.fixture
def from_somewhere(client):
    """Requests from this client come from a known address and user agent."""
    client.environ_base.update(REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=AGENT)
    return client


def page_token(client) -> str:
    return csrf_from(client.get("/settings/api-keys").get_data(as_text=True))


# The actions of the table below: each does one thing and returns the key its event names.
def create_on_page(client, key, tool):
    assert AuthActions(client).create_key("made on page").status_code == 200
    return latest_key()


def create_by_api(client, key, tool):
    response = client.post("/api/personal_api_keys/", json={"label": "made by api", "scopes": ["user:read"]},
                           headers=bearer(tool))
    assert response.status_code == 201
    return latest_key()


def roll_on_page(client, key, tool):
    page = client.get(f"/settings/api-keys/{key.public_id}/roll").get_data(as_text=True)
    response = client.post(f"/settings/api-keys/{key.public_id}/roll",
                           data={"grace": "3600", "csrf_token": csrf_from(page),
                                 "once": once_token(page, "roll")})
    assert response.status_code == 200
    return key


def roll_by_api(client, key, tool):
    response = client.post(f"/api/personal_api_keys/{key.public_id}/roll/", json={},
                           headers=bearer(tool))
    assert response.status_code == 200
    return key


def edit_on_page(client, key, tool):
    response = client.post(f"/settings/api-keys/{key.public_id}/edit", data=MultiDict(
        [("label", "renamed"), ("description", ""), ("scopes", "user:read"),
         ("csrf_token", page_token(client))]))
    assert response.status_code == 302
    return key


def edit_by_api(client, key, tool):
    response = client.patch(f"/api/personal_api_keys/{key.public_id}/",
                            json={"label": "renamed", "scopes": ["user:read"]},
                            headers=bearer(tool))
    assert response.status_code == 200
    return key


def revoke_on_page(client, key, tool):
    response = client.post(f"/settings/api-keys/{key.public_id}/revoke",
                           data={"csrf_token": page_token(client)})
    assert response.status_code == 302
    return key


def revoke_by_api(client, key, tool):
    assert client.delete(f"/api/personal_api_keys/{key.public_id}/",
                         headers=bearer(tool)).status_code == 204
    return key


def log_in(client, key, tool):
    assert AuthActions(client).login().status_code == 302


def log_in_wrongly(client, key, tool):
    assert AuthActions(client).login(password="not the password").status_code == 400


@pytest.mark.parametrize(("action", "logged_in", "event"), [
    (create_on_page, True, "key.created"),
    (create_by_api, False, "key.created"),
    (roll_on_page, True, "key.rolled"),
    (roll_by_api, False, "key.rolled"),
    (edit_on_page, True, "key.updated"),
    (edit_by_api, False, "key.updated"),
    (revoke_on_page, True, "key.revoked"),
    (revoke_by_api, False, "key.revoked"),
    (log_in, False, "login.succeeded"),
    (log_in_wrongly, False, "login.failed"),
])
def test_each_action_writes_exactly_one_event(from_somewhere, user, make_key, action, logged_in,
                                              event):
    """One action, one event: the right name, key, user, address and user agent."""
    client = from_somewhere
    key, _ = make_key(user, label="target", scopes=["user:read", "key:verify"])
    _, tool = make_key(user, label="tool", scopes=["*"])
    if logged_in:
        AuthActions(client).login()
    tool_key = latest_key()
    before = {e.id for e in all_events()}
    expected_key = action(client, key, tool)
    new = [e for e in all_events() if e.id not in before]
    assert [(e.event, e.user_id, e.key_id, e.ip_address, e.user_agent) for e in new] == [
        (event, user.id, expected_key.id if expected_key else None, ADDRESS, AGENT)]
    by_api = action.__name__.endswith("_by_api")
    assert new[0].actor_key_id == (tool_key.id if by_api else None)
    assert (new[0].actor_label, new[0].actor_mask) == (
        ("tool", tool_key.mask) if by_api else (None, None))
    if expected_key is not None:
        assert new[0].key_label == expected_key.label and new[0].key_mask == expected_key.mask


@pytest.fixture
def limited(make_app, user, make_key):
    """A client of an app allowing 4 live keys, the user holding exactly 4 of them."""
    app = make_app(KEYVAULT_MAX_KEYS_PER_USER=4)
    app.test_client_class = FreshContextClient
    gone, _ = make_key(user, label="gone", scopes=["user:read"])
    service.revoke_key(user, gone.public_id, ORIGIN)
    keys = SimpleNamespace(
        client=app.test_client(), gone=gone,
        tool=make_key(user, label="tool", scopes=["personal_api_key:write", "user:read"])[1],
        narrow=make_key(user, label="narrow", scopes=["user:read"])[0],
        same=make_key(user, label="same", scopes=["user:read"])[0],
        spare=make_key(user, label="spare")[0],
    )
    AuthActions(keys.client).login()
    return keys


def api(method, path, body):
    return lambda k: k.client.open(path.format(k=k), method=method, json=body,
                                   headers=bearer(k.tool))


@pytest.mark.parametrize(("attempt", "status"), [
    (lambda k: AuthActions(k.client).create_key("x" * 41), 400),
    (lambda k: AuthActions(k.client).create_key("one too many"), 400),
    (api("POST", "/api/personal_api_keys/", {"label": "x" * 41}), 400),
    (api("POST", "/api/personal_api_keys/", {"label": "one too many", "scopes": ["user:read"]}), 409),
    (api("POST", "/api/personal_api_keys/", {"label": "wider", "scopes": ["*"]}), 403),
    (api("PATCH", "/api/personal_api_keys/{k.narrow.public_id}/", {"scopes": ["*"]}), 403),
    (api("PATCH", "/api/personal_api_keys/{k.same.public_id}/", {"label": "x" * 41}), 400),
    (api("PATCH", "/api/personal_api_keys/{k.same.public_id}/", {"label": "same"}), 200),
    (api("PATCH", "/api/personal_api_keys/{k.gone.public_id}/", {"label": "back"}), 409),
    (api("POST", "/api/personal_api_keys/{k.gone.public_id}/roll/", {}), 409),
    (api("POST", "/api/personal_api_keys/{k.same.public_id}/roll/",
         {"grace_period_seconds": -5}), 400),
    (api("DELETE", "/api/personal_api_keys/nosuchkey/", None), 404),
])
def test_a_refused_or_empty_change_writes_no_event(limited, attempt, status):
    """Too long, over the key limit, an escalation, a dead key or no change at all: no event."""
    before = len(all_events())
    response = attempt(limited)
    assert response.status_code == status, response.get_data(as_text=True)
    assert len(all_events()) == before


def test_other_peoples_events_are_never_shown(client, auth, user, make_user, make_key):
    """Alice's page and API list only Alice's events, never Bob's."""
    bob = make_user("bob@example.com")
    bob_key, _ = make_key(bob, label="bobs secret project")
    service.revoke_key(bob, bob_key.public_id, service.Origin("192.0.2.99", "bob-agent/1"))
    AuthActions(client).login("bob@example.com", "wrong password!")
    alice_key, alice_value = make_key(user, label="alices key", scopes=["user:read"])
    auth.login()

    page = client.get("/settings/security-log").get_data(as_text=True)
    page = page[page.index('data-testid="events-table"'):]  # the log, not the filter's choices
    assert "alices key" in page and "Logged in" in page
    for leak in ("bobs secret project", bob_key.mask, "192.0.2.99", "bob-agent/1",
                 "Failed login"):
        assert leak not in page
    assert client.get(f"/settings/security-log?key={bob_key.public_id}").status_code == 404

    response = client.get("/api/users/@me/security_log/", headers=bearer(alice_value))
    assert response.status_code == 200
    results = response.json["results"]
    assert {r["key_id"] for r in results} <= {alice_key.public_id, None}
    assert {r["event"] for r in results} == {"user.created", "key.created", "login.succeeded"}
    assert "192.0.2.99" not in response.get_data(as_text=True)

    mine = {e.id for e in all_events() if e.user_id == user.id}
    assert {r["id"] for r in results} == mine


@pytest.mark.parametrize(("scopes", "status"), [
    (["user:read"], 200),
    (["*"], 200),
    (["personal_api_key:read"], 403),
    (["key:verify"], 403),
])
def test_api_log_needs_user_read(client, user, make_key, scopes, status):
    """GET /api/users/@me/security_log/ needs the user:read scope."""
    _, value = make_key(user, label="caller", scopes=scopes)
    response = client.get("/api/users/@me/security_log/", headers=bearer(value))
    assert response.status_code == status


def test_api_log_ignores_the_session_cookie(client, auth, user):
    """Being logged in to the page does not open the API log: 401 without a key."""
    auth.login()
    response = client.get("/api/users/@me/security_log/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_api_log_is_paginated_newest_first(client, user, make_key):
    """limit and cursors walk the whole log, newest first, each event once; previous goes back."""
    _, value = make_key(user, label="reader", scopes=["user:read"])
    for n in range(5):
        key, _ = make_key(user, label=f"key {n}")
        service.revoke_key(user, key.public_id, ORIGIN)
    expected = [e.id for e in reversed(all_events()) if e.user_id == user.id]
    assert len(expected) == 12

    seen, pages, url = [], [], "/api/users/@me/security_log/?limit=5"
    while url:
        response = client.get(url, headers=bearer(value))
        assert response.status_code == 200
        body = response.json
        pages.append(body)
        seen += [r["id"] for r in body["results"]]
        url = body["next"]
    assert seen == expected
    assert [len(p["results"]) for p in pages] == [5, 5, 2]
    assert pages[0]["previous"] is None
    back = client.get(pages[2]["previous"], headers=bearer(value)).json
    assert [r["id"] for r in back["results"]] == expected[5:10]

    first = pages[0]["results"][0]
    assert set(first) >= {"id", "event", "key_id", "created_at", "ip_address", "user_agent"}


def test_page_shows_time_address_and_agent(from_somewhere, user):
    """The security-log page lists each event with its address and user agent."""
    client = from_somewhere
    AuthActions(client).login(password="wrong password!")
    AuthActions(client).login()
    AuthActions(client).create_key("shown in log")
    page = client.get("/settings/security-log").get_data(as_text=True)
    for text in ("Failed login", "Wrong password.", "Logged in", "Key created", "shown in log",
                 ADDRESS, "SecLogTest/2.0 (+https://example.com)"):
        assert text in page
    assert PASSWORD not in page


# ---------------------------------------------------------------- a log worth reading


def visible_text(html: str) -> str:
    """What a person reads on the page: the text, without tags and attributes."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def rows_of(html: str) -> list[str]:
    """The log table's rows, newest first, as the text a person reads."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [visible_text(row).strip() for row in body.split("</tr>") if row.strip()]


def test_events_keep_the_label_and_mask_of_their_time_and_say_what_changed(client, auth, user,
                                                                           make_key):
    """Renamed and rolled afterwards, a key's old events still show the label and mask it had
    then; each event says in words what happened: titles, never codes like `key.rolled`."""
    auth.login()
    key, first_value = make_key(user, label="ci", scopes=["user:read"])
    first_mask = key.mask
    service.update_key(user, key.public_id, label="deploy",
                       scopes=["user:read", "personal_api_key:read"], may_widen=True,
                       origin=ORIGIN)
    service.roll_key(user, key.public_id, origin=ORIGIN, grace_period_seconds=3600)
    service.update_key(user, key.public_id, scopes=["user:read"], origin=ORIGIN)
    latest = latest_key()
    rows = rows_of(client.get("/settings/security-log").get_data(as_text=True))
    narrowed, rolled, renamed, created = rows[:4]
    assert "Key changed" in narrowed and "Scopes removed: personal_api_key:read." in narrowed
    assert f"deploy {latest.mask}" in narrowed
    assert "Key rolled" in rolled and "Rolled; old value valid for 1 hour." in rolled
    assert f"deploy {latest.mask}" in rolled
    assert "Renamed from “ci” to “deploy”." in renamed
    assert "Scopes granted: personal_api_key:read." in renamed
    assert f"deploy {first_mask}" in renamed
    assert "Key created" in created and "Scopes granted: user:read." in created
    assert f"ci {first_mask}" in created
    page_text = " ".join(rows)
    for code in ("key.created", "key.updated", "key.rolled", "login.succeeded", "user.created"):
        assert code not in page_text
    assert first_value not in page_text


def test_api_changes_name_the_key_that_made_them(client, user, make_key):
    """When key A creates, edits, rolls and revokes key B through the API, each event names A,
    with its label and mask, on the page and in the API; B's label and mask are kept too."""
    tool, tool_value = make_key(user, label="automation",
                                scopes=["personal_api_key:write", "user:read"])
    created = client.post("/api/personal_api_keys/",
                          json={"label": "made by a key", "scopes": ["user:read"]},
                          headers=bearer(tool_value))
    assert created.status_code == 201
    made = created.json["id"]
    assert client.patch(f"/api/personal_api_keys/{made}/", json={"label": "renamed by a key"},
                        headers=bearer(tool_value)).status_code == 200
    assert client.post(f"/api/personal_api_keys/{made}/roll/", json={},
                       headers=bearer(tool_value)).status_code == 200
    assert client.delete(f"/api/personal_api_keys/{made}/",
                         headers=bearer(tool_value)).status_code == 204

    log = client.get(f"/api/users/@me/security_log/?key={made}", headers=bearer(tool_value))
    assert log.status_code == 200
    results = log.json["results"]
    assert [r["event"] for r in results] == ["key.revoked", "key.rolled", "key.updated",
                                             "key.created"]
    assert [r["title"] for r in results] == ["Key revoked", "Key rolled", "Key changed",
                                             "Key created"]
    assert results[2]["summary"] == "Renamed from “made by a key” to “renamed by a key”."
    assert results[1]["summary"] == "Rolled; the old value stopped working at once."
    for result in results:
        assert result["actor_key"] == {"id": tool.public_id, "label": "automation",
                                       "mask_value": tool.mask}
        assert result["key"]["id"] == made
    assert results[3]["key"]["label"] == "made by a key"
    assert results[0]["key"]["label"] == "renamed by a key"
    assert results[3]["key"]["mask_value"] == created.json["mask_value"]
    assert results[0]["key"]["mask_value"] != created.json["mask_value"]  # rolled since

    AuthActions(client).login()
    rows = rows_of(client.get("/settings/security-log").get_data(as_text=True))
    assert all(f"API key “automation” ({tool.mask})" in row for row in rows[1:5])


def test_the_log_filters_by_key_on_the_page_and_in_the_api(client, auth, user, make_key):
    """`?key=` keeps one key's events (about it or made by it), on the page, in the API and
    across pages; a key of someone else, or none, is a 404."""
    reader, reader_value = make_key(user, label="reader", scopes=["*"])
    other, _ = make_key(user, label="other")
    service.revoke_key(user, other.public_id, ORIGIN)
    made = client.post("/api/personal_api_keys/", json={"label": "child", "scopes": ["user:read"]},
                       headers=bearer(reader_value)).json["id"]
    auth.login()
    page = client.get(f"/settings/security-log?key={other.public_id}").get_data(as_text=True)
    assert [row.split(" UTC ")[1].split(" other ")[0] for row in rows_of(page)] == [
        "Key revoked", "Key created Scopes granted: * (full access). Never expires."]
    assert "Showing the events of “other”" in visible_text(page)
    rows = rows_of(client.get(f"/settings/security-log?key={reader.public_id}").get_data(True))
    assert len(rows) == 2 and "Key created" in rows[0] and "child" in rows[0]
    assert "API key “reader”" in rows[0]

    api = client.get(f"/api/users/@me/security_log/?key={other.public_id}&limit=1",
                     headers=bearer(reader_value))
    assert [r["event"] for r in api.json["results"]] == ["key.revoked"]
    assert f"key={other.public_id}" in api.json["next"]
    older = client.get(api.json["next"], headers=bearer(reader_value)).json
    assert [r["event"] for r in older["results"]] == ["key.created"]
    assert older["next"] is None
    assert {r["key_id"] for r in client.get(
        f"/api/users/@me/security_log/?key={made}", headers=bearer(reader_value)
    ).json["results"]} == {made}

    for missing in ("nosuchkey", "bad key!"):
        answer = client.get(f"/api/users/@me/security_log/?key={missing}",
                            headers=bearer(reader_value))
        assert answer.status_code == 404
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert client.get(f"/settings/security-log?key={missing}").status_code == 404


def test_events_for_key_is_the_key_pages_listing(user, make_user, make_key):
    """service.events_for_key: one key's events, newest first, paginated; only the owner's."""
    key, _ = make_key(user, label="listed")
    for n in range(3):
        service.update_key(user, key.public_id, label=f"listed {n}", origin=ORIGIN)
    make_key(user, label="unrelated")
    first = service.events_for_key(user, key.public_id, limit=3)
    assert [e.event for e in first.results] == ["key.updated"] * 3
    assert [e.key_label for e in first.results] == ["listed 2", "listed 1", "listed 0"]
    rest = service.events_for_key(user, key.public_id, limit=3, cursor=first.next_cursor)
    assert [(e.event, e.key_label) for e in rest.results] == [("key.created", "listed")]
    with pytest.raises(service.KeyNotFound):
        service.events_for_key(make_user("mallory@example.com"), key.public_id)


def test_command_line_changes_say_so(app, client, auth, user, make_key):
    """Changes made on the command line are logged as such, and the page says so in words."""
    key, _ = make_key(user, label="ops")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["keys", "revoke", key.public_id]).exit_code == 0
    assert runner.invoke(args=["users", "set-password", user.email, "--password-stdin"],
                         input="changed on the server\n").exit_code == 0
    assert auth.login(password="changed on the server").status_code == 302
    rows = rows_of(client.get("/settings/security-log").get_data(as_text=True))
    assert "Password changed Every session was logged out. The command line" in rows[1]
    assert "Key revoked" in rows[2] and "The command line" in rows[2]


def test_the_api_reference_documents_the_filter_and_the_new_fields(client):
    """The OpenAPI document states `key=`, its 404, and the event's words, key and actor key."""
    spec = client.get("/api/schema/").json
    operation = spec["paths"]["/api/users/@me/security_log/"]["get"]
    names = [spec["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]["name"]
             for p in operation["parameters"]]
    assert names == ["limit", "cursor", "key"]
    assert "404" in operation["responses"]
    event = spec["components"]["schemas"]["SecurityEvent"]
    assert {"title", "summary", "key", "actor_key"} <= set(event["required"])
    assert set(spec["components"]["schemas"]["EventKey"]["properties"]) == {
        "id", "label", "mask_value"}


def test_a_page_of_the_log_costs_the_same_queries_however_many_keys_it_names(client, user,
                                                                              make_key):
    """The keys a page's events name are loaded together, not one query per event."""
    from sqlalchemy import event

    _, reader = make_key(user, label="reader", scopes=["user:read"])

    def queries_for_one_page() -> int:
        statements: list[str] = []

        def count(*args):
            statements.append(args[2])

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            response = client.get("/api/users/@me/security_log/?limit=100",
                                  headers=bearer(reader))
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert response.status_code == 200
        return len(statements)

    few = queries_for_one_page()
    for n in range(8):
        key, _ = make_key(user, label=f"key {n}")
        service.update_key(user, key.public_id, label=f"renamed {n}", origin=ORIGIN)
    assert queries_for_one_page() == few
