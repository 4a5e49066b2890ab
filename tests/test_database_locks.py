"""Against the real server (`keyvault serve`): a writer holding the database's lock never holds
up a verdict, and a write that cannot get the lock in time answers 503, never 500."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest
import requests
from sqlalchemy import create_engine, text

from keyvault.extensions import db
from keyvault.models import ApiKey


@contextmanager
def writer_holding_the_lock(database_url: str, key_id: int, owner_id: int,
                            also: tuple[int, ...] = ()):
    """Another client's open write transaction: SQLite's write lock (BEGIN IMMEDIATE), or on
    PostgreSQL the rows a usage stamp and a key creation need (the keys' and their owner's)."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
            for locked in (key_id, *also):
                conn.execute(text("SELECT id FROM api_keys WHERE id = :id FOR UPDATE"),
                             {"id": locked})
            conn.execute(text("SELECT id FROM users WHERE id = :id FOR UPDATE"), {"id": owner_id})
        try:
            yield
        finally:
            conn.exec_driver_sql("ROLLBACK")
    engine.dispose()


@pytest.fixture
def service_key(make_user, make_key):
    _, value = make_key(make_user("service@example.com"), label="service", scopes=["key:verify"])
    return value


def _verify(url: str, service_key: str, value: str) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = requests.post(f"{url}/api/verify/", json={"key": value},
                             headers={"Authorization": f"Bearer {service_key}"}, timeout=10)
    return time.monotonic() - started, response


def test_verify_never_waits_for_a_writer(live_server, database_url, user, make_key, service_key):
    key, value = make_key(user, scopes=["user:read"])  # never used: verify wants to stamp it
    _, writer = make_key(user, label="writer", scopes=["*"])
    with writer_holding_the_lock(database_url, key.id, user.id):
        for _ in range(3):
            elapsed, answer = _verify(live_server.url, service_key, value)
            assert answer.status_code == 200 and answer.json()["active"] is True
            assert elapsed < 1.0, elapsed
        # A write that cannot get the lock within KEYVAULT_DATABASE_TIMEOUT (2 s): 503.
        started = time.monotonic()
        create = requests.post(f"{live_server.url}/api/personal_api_keys/",
                               json={"label": "blocked", "scopes": ["user:read"]},
                               headers={"Authorization": f"Bearer {writer}"}, timeout=10)
        assert time.monotonic() - started < 5
        assert create.status_code == 503, create.text
        assert create.headers["Content-Type"] == "application/problem+json"
        assert int(create.headers["Retry-After"]) > 0
        db.session.expire_all()
        assert db.session.get(ApiKey, key.id).last_used_at is None  # the stamp waited
    # Once the writer is gone, the usage stamp catches up (with the first use's time), and
    # the refused create left nothing behind.
    deadline = time.monotonic() + 10
    while True:
        _verify(live_server.url, service_key, value)
        db.session.expire_all()
        if db.session.get(ApiKey, key.id).last_used_at is not None:
            break
        assert time.monotonic() < deadline, "last_used_at never caught up"
        time.sleep(0.2)
    assert db.session.query(ApiKey).filter_by(label="blocked").count() == 0
