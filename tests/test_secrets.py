"""Plaintext never stored: a key's value reaches no database row, file or log line."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from keyvault import service, tokens
from keyvault.extensions import db
from keyvault.models import ApiKey
from tests.conftest import TEST_PEPPER, bad_checksum, shown_key


def database_contents(database_url: str) -> bytes:
    """Everything the database holds for our data, as bytes to search.

    SQLite: the raw bytes of the database file and its write-ahead log, free pages included.
    PostgreSQL: every column of every row of every table, each row cast to text by the server.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database)
        files = [path, Path(f"{path}-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            chunks = []
            for table in inspect(conn).get_table_names():
                rows = conn.execute(text(f'SELECT CAST(t AS text) FROM "{table}" AS t'))
                chunks.extend(row[0] for row in rows)
    finally:
        engine.dispose()
    return "\n".join(chunks).encode()


def secret_forms(value: str) -> list[bytes]:
    """The key, its random body and body+checksum: none of them may be stored."""
    return [value.encode(), value[3:].encode(), value[3:43].encode()]


def test_the_database_holds_the_digest_never_the_value(database_url, auth, client, user):
    """After creating and using a key through the page, the database has its digest only."""
    auth.login()
    value = shown_key(auth.create_key("stored?").get_data(as_text=True))
    assert value and tokens.is_well_formed(value)
    used = client.get("/api/users/@me/", headers={"Authorization": f"Bearer {value}"})
    assert used.status_code == 200

    digest = tokens.digest_of(value, TEST_PEPPER.encode())
    db.session.expire_all()
    assert db.session.scalar(select(ApiKey.digest)) == digest

    contents = database_contents(database_url)
    assert digest.encode() in contents  # the search does see what is stored
    for form in secret_forms(value):
        assert form not in contents


def test_no_log_line_contains_the_value(caplog, auth, client, user):
    """At DEBUG on every logger (SQL with its parameters included) the value never appears."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):  # some (sqlalchemy) were set to WARN
        caplog.set_level(logging.DEBUG, logger=name)
    auth.login()
    value = shown_key(auth.create_key("logged?").get_data(as_text=True))
    assert value
    client.get("/api/users/@me/", headers={"Authorization": f"Bearer {value}"})
    client.get(f"/api/users/@me/?personal_api_key={value}")
    client.post("/api/verify/", json={"key": value}, headers={"Authorization": f"Bearer {value}"})
    client.get(f"/api/users/@me/?personal_api_key={value[:-1]}x")  # a mistyped copy
    (key,) = db.session.scalars(select(ApiKey)).all()
    client.post(f"/settings/api-keys/{key.public_id}/revoke",
                data={"csrf_token": auth.csrf("/settings/api-keys")})
    client.get("/api/users/@me/", headers={"Authorization": f"Bearer {value}"})  # revoked

    logged = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    # SQL statements and their parameters were captured, the digest among them:
    assert tokens.digest_of(value, TEST_PEPPER.encode()) in logged
    for form in secret_forms(value):
        assert form.decode() not in logged


@pytest.mark.parametrize("case", ["mistyped", "revoked"])
def test_error_answers_do_not_echo_a_presented_key(client, user, make_key, case):
    """A wrong or revoked key sent to the API is never repeated back in the answer."""
    key, value = make_key(user)
    if case == "mistyped":
        value = bad_checksum(value)
    else:
        service.revoke_key(user, key.public_id, service.Origin())
    response = client.get(f"/api/users/@me/?personal_api_key={value}")
    assert response.status_code == 401
    answer = response.get_data(as_text=True) + repr(list(response.headers.items()))
    assert value not in answer and value[3:43] not in answer


def wait_for_line(server, marker: str) -> str:
    """The server log line holding `marker` (the server writes the access log after answering)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        lines = [line for line in server.log().splitlines() if marker in line]
        if lines:
            return lines[0]
        time.sleep(0.1)
    raise AssertionError(f"{marker} never reached the server log:\n{server.log()[-2000:]}")


def test_the_access_log_redacts_a_key_in_the_query_string(live_server, user, make_key):
    """A key sent as ?personal_api_key= works, and the access log shows [redacted] instead."""
    _, value = make_key(user)
    probe = uuid.uuid4().hex
    response = requests.get(f"{live_server.url}/api/users/@me/",
                            params={"personal_api_key": value, "probe": probe}, timeout=10)
    assert response.status_code == 200
    assert response.json()["email"] == "alice@example.com"

    line = wait_for_line(live_server, probe)
    assert "personal_api_key=[redacted]" in line
    log = live_server.log()
    for form in secret_forms(value):
        assert form.decode() not in log


def test_a_key_in_the_user_agent_is_neither_logged_nor_stored(live_server, user, make_key):
    """A careless client that puts its key in the User-Agent: the request still works, but the
    access log, the security log and the security-log API never show the key."""
    key, value = make_key(user, scopes=["*"])
    probe = uuid.uuid4().hex
    agent = f"my-script/1.0 (key={value}; {value}) {probe}"
    headers = {"Authorization": f"Bearer {value}", "User-Agent": agent}
    assert requests.get(f"{live_server.url}/api/users/@me/", headers=headers,
                        timeout=10).status_code == 200
    created = requests.post(f"{live_server.url}/api/personal_api_keys/", headers=headers,
                            json={"label": "made by a script", "scopes": ["user:read"]}, timeout=10)
    assert created.status_code == 201
    line = wait_for_line(live_server, probe)
    assert "[redacted]" in line
    stored = db.session.scalars(select(text("user_agent")).select_from(text("security_events"))
                                .where(text("user_agent IS NOT NULL"))).all()
    assert any(probe in agent for agent in stored)
    api_log = requests.get(f"{live_server.url}/api/users/@me/security_log/", headers=headers,
                           timeout=10).text
    for form in secret_forms(value):
        assert form.decode() not in live_server.log()
        assert all(form.decode() not in agent for agent in stored)
        assert form.decode() not in api_log
