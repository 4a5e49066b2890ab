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


def test_many_stamps_waiting_for_a_writer_hold_up_no_verdict(live_server, database_url, user,
                                                            make_user, make_key, service_key):
    """30 never-used keys verified at once while a writer holds the lock: each usage stamp may
    wait for the lock, but none of them in the way of a verdict or of /healthz (on SQLite the
    server answers verify on its event loop and leaves the stamps to its threads)."""
    from concurrent.futures import ThreadPoolExecutor

    owners = [make_user(f"owner{n}@example.com") for n in range(3)]  # 10 live keys each at most
    keys = [make_key(owners[n % 3], label=f"fresh {n}", scopes=["user:read"]) for n in range(30)]
    with writer_holding_the_lock(database_url, keys[0][0].id, user.id,
                                 also=tuple(key.id for key, _ in keys[1:])):
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=30) as pool:
            answers = list(pool.map(lambda kv: _verify(live_server.url, service_key, kv[1]),
                                    keys))
            health_started = time.monotonic()
            health = requests.get(f"{live_server.url}/healthz", timeout=5)
            health_took = time.monotonic() - health_started
        took = time.monotonic() - started
        assert [a.json()["active"] for _, a in answers] == [True] * 30
        assert max(elapsed for elapsed, _ in answers) < 1.0, [e for e, _ in answers]
        assert took < 2.0, took
        assert health.status_code == 200 and health_took < 0.5, health_took
    ids = [key.id for key, _ in keys]
    deadline = time.monotonic() + 30  # the stamps go out with the use counts, every 5 s
    while True:  # once the writer is gone the stamps catch up
        _, fresh = make_key(user, label="trigger", scopes=["user:read"])
        for _ in range(4):
            _verify(live_server.url, service_key, fresh)
        db.session.expire_all()
        stamped = db.session.query(ApiKey).filter(ApiKey.id.in_(ids),
                                                  ApiKey.last_used_at.isnot(None)).count()
        if stamped == 30:
            break
        assert time.monotonic() < deadline, f"only {stamped} of 30 stamps caught up"
        db.session.query(ApiKey).filter_by(label="trigger").delete()
        db.session.commit()
        time.sleep(0.3)


def test_verify_is_answered_while_every_thread_waits_for_a_writer(database_url, user, make_key,
                                                                   service_key, tmp_path):
    """One worker with one thread, held by writes waiting for another client's lock: verify's
    lookup does not need that thread (on SQLite it is a read on the event loop; on PostgreSQL
    it is sent on the loop's own connection), so its answers come at once, the same as a
    thread's."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import start_server, stop_server

    key, value = make_key(user, scopes=["user:read"])
    _, writer = make_key(user, label="writer", scopes=["*"])
    server = start_server(database_url, tmp_path / "serve.log", workers=1, threads=1)
    try:
        _, before = _verify(server.url, service_key, value)  # connections made, statement known
        with writer_holding_the_lock(database_url, key.id, user.id), \
                ThreadPoolExecutor(max_workers=2) as pool:

            def create(label: str) -> requests.Response:
                return requests.post(f"{server.url}/api/personal_api_keys/",
                                     json={"label": label, "scopes": ["user:read"]},
                                     headers={"Authorization": f"Bearer {writer}"}, timeout=15)

            blocked = [pool.submit(create, f"blocked {n}") for n in range(2)]
            time.sleep(0.3)  # the first create holds the thread, the second waits for it
            answers = [_verify(server.url, service_key, value) for _ in range(5)]
            assert not any(f.done() for f in blocked)  # the thread was held all along
            assert [f.result().status_code for f in blocked] == [503, 503]
        assert [a.status_code for _, a in answers] == [200] * 5
        assert max(elapsed for elapsed, _ in answers) < 1.0, [e for e, _ in answers]
        assert {a.content for _, a in answers} == {before.content}
        assert before.json()["active"] is True and before.json()["key_id"] == key.public_id
    finally:
        stop_server(server)
