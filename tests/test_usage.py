"""Use counts (service.usage): counted in memory per process, written every few seconds with one
upsert, never a write per verify; a flush that meets a held lock keeps its counts for later."""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import create_engine, func, select, text

from keyvault import clock, service
from keyvault.extensions import db
from keyvault.models import ApiKey, KeyUsageDay
from keyvault.service import usage
from tests.conftest import start_server, stop_server


def counts(key: ApiKey | None = None) -> dict[str, int]:
    """What the table holds (for one key, or all), by outcome."""
    db.session.expire_all()
    stmt = select(KeyUsageDay.outcome, func.sum(KeyUsageDay.count)).group_by(KeyUsageDay.outcome)
    if key is not None:
        stmt = stmt.where(KeyUsageDay.key_id == key.id)
    return {outcome: int(number) for outcome, number in db.session.execute(stmt)}


def verify_times(client, service_key: str, value: str, times: int, **body) -> None:
    for _ in range(times):
        response = client.post("/api/verify/", json={"key": value, **body},
                               headers={"Authorization": f"Bearer {service_key}"})
        assert response.status_code == 200


@pytest.fixture
def service_key(make_user, make_key):
    return make_key(make_user("service@example.com"), label="verifier", scopes=["key:verify"])


def test_verifies_are_counted_in_memory_and_written_by_a_flush(app, client, user, make_key,
                                                               service_key):
    """Seven verifies write nothing; one flush writes seven, for the subject and the caller."""
    key, value = make_key(user, label="counted")
    verify_times(client, service_key[1], value, 7)
    assert counts() == {}  # not a write per verify
    assert usage.counter(app).pending() == 14  # the subject's seven and the caller's seven
    assert usage.flush(app) is True
    assert counts(key) == {"valid": 7}
    assert counts(service_key[0]) == {"valid": 7}
    assert usage.counter(app).pending() == 0
    verify_times(client, service_key[1], value, 2)
    usage.flush(app)
    assert counts(key) == {"valid": 9}  # added to the day's row, not a second row
    assert db.session.scalar(select(func.count(KeyUsageDay.id))
                             .where(KeyUsageDay.key_id == key.id)) == 1


def test_each_verdict_is_counted_under_its_code(app, client, user, make_key, service_key):
    """valid, insufficient_scope, revoked and expired are told apart; unknown keys are not
    anyone's and are not counted."""
    narrow, narrow_value = make_key(user, label="narrow", scopes=["user:read"])
    verify_times(client, service_key[1], narrow_value, 2)
    verify_times(client, service_key[1], narrow_value, 3, scopes=["key:verify"])
    expiring, expiring_value = make_key(user, label="expiring",
                                        expires_at=clock.now() + timedelta(seconds=1))
    gone, gone_value = make_key(user, label="gone")
    service.revoke_key(user, gone.public_id, service.Origin())
    verify_times(client, service_key[1], gone_value, 4)
    verify_times(client, service_key[1], "kv_" + "A" * 46, 1)  # malformed: no key to count
    time.sleep(1.1)
    verify_times(client, service_key[1], expiring_value, 1)
    usage.flush(app)
    assert counts(narrow) == {"valid": 2, "insufficient_scope": 3}
    assert counts(gone) == {"revoked": 4}
    assert counts(expiring) == {"expired": 1}
    assert counts(service_key[0]) == {"valid": 11}


def test_api_calls_and_forward_auth_are_counted(app, client, user, make_key):
    """A key used on the API or through a gateway's forward_auth counts too, refused or not."""
    key, value = make_key(user, label="api", scopes=["user:read"])
    headers = {"Authorization": f"Bearer {value}"}
    assert client.get("/api/users/@me/", headers=headers).status_code == 200
    assert client.get("/api/personal_api_keys/", headers=headers).status_code == 403
    assert client.get("/api/forward_auth/", headers=headers).status_code == 200
    usage.flush(app)
    assert counts(key) == {"valid": 2, "insufficient_scope": 1}


def hold_the_write_lock(engine):
    """A transaction that holds what a flush needs: SQLite's write lock, or on PostgreSQL the
    usage table itself. Returns the connection; rolling it back lets go."""
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()
        conn.execute(text("LOCK TABLE key_usage_daily IN EXCLUSIVE MODE"))
    return conn


def test_a_flush_that_meets_a_held_lock_keeps_its_counts(app, client, user, make_key,
                                                         service_key):
    """While another transaction holds the lock, verifies still answer at once and the flush
    gives up quickly, keeping its counts; the next flush writes them all."""
    key, value = make_key(user, label="locked out")
    verify_times(client, service_key[1], value, 3)
    engine = create_engine(db.engine.url)
    holder = hold_the_write_lock(engine)
    try:
        started = time.monotonic()
        verify_times(client, service_key[1], value, 2)  # verdicts do not wait for the lock
        assert usage.flush(app) is False
        assert time.monotonic() - started < 2
        assert usage.counter(app).pending() == 10
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    assert counts(key) == {}
    assert usage.flush(app) is True
    assert counts(key) == {"valid": 5}


def test_the_flush_at_shutdown_waits_out_a_brief_lock(app, client, user, make_key, service_key):
    """Stopping writes what the process counted even while another writer holds the lock for
    a moment (every worker of a stopping server flushes at once): the last flush, which has no
    next one to keep its counts for, tries again until the lock is free."""
    key, value = make_key(user, label="last words")
    verify_times(client, service_key[1], value, 3)
    engine = create_engine(db.engine.url)
    locked, releasing = threading.Event(), threading.Event()

    def hold_for_a_second():
        holder = hold_the_write_lock(engine)
        locked.set()
        time.sleep(1.0)
        releasing.set()  # before the rollback: the flush may finish the moment it frees the lock
        holder.rollback()
        holder.close()

    thread = threading.Thread(target=hold_for_a_second)
    thread.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        usage.close(app)
        assert releasing.is_set()  # it waited the lock out
        assert time.monotonic() - started < 5
    finally:
        thread.join()
        engine.dispose()
    assert counts(key) == {"valid": 3}
    assert counts(service_key[0]) == {"valid": 3}


def test_the_flush_at_shutdown_does_not_wait_for_a_database_that_is_gone(app, client, user,
                                                                         make_key, service_key,
                                                                         caplog):
    """Only a held lock is worth waiting for: when the database cannot be opened at all, the
    last flush gives up at once and says what was lost."""
    _, value = make_key(user, label="nowhere to go")
    verify_times(client, service_key[1], value, 2)
    usage.counter(app)._engine = create_engine("sqlite:////nonexistent-keyvault-dir/gone.db")
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="keyvault"):
        usage.close(app)
    assert time.monotonic() - started < 1
    assert "so lost: 2 use-count rows" in caplog.text


def test_what_a_process_holds_is_bounded(app, monkeypatch, user, make_key):
    """While flushes fail, at most PENDING_MAX rows are held; more are dropped, not grown."""
    monkeypatch.setattr(usage, "PENDING_MAX", 2)
    held = usage.counter(app)
    now = clock.now()
    for key_id in (1, 2, 3):
        held.add(key_id, f"key-{key_id}", "valid", now, None)
    held.add(1, "key-1", "valid", now, None)
    assert held.pending() == 3 and held.dropped == 1


def test_deleting_the_account_deletes_its_usage(app, client, auth, user, make_key, service_key):
    key, value = make_key(user, label="to be deleted")
    verify_times(client, service_key[1], value, 2)
    usage.flush(app)
    key_id = key.id
    assert counts(key) == {"valid": 2}
    service.delete_account(user, service.Origin())
    db.session.expire_all()
    assert db.session.scalar(select(func.count(KeyUsageDay.id))
                             .where(KeyUsageDay.key_id == key_id)) == 0
    assert counts(service_key[0]) == {"valid": 2}  # the service's own key is not the account's


def test_counts_of_a_key_deleted_before_the_flush_are_dropped(app, client, user, make_key,
                                                               service_key):
    key, value = make_key(user, label="gone before the flush")
    verify_times(client, service_key[1], value, 2)
    service.delete_account(user, service.Origin())
    assert usage.flush(app) is True
    assert counts(service_key[0]) == {"valid": 2}
    assert usage.counter(app).pending() == 0


def test_the_last_good_use_and_its_address(app, client, user, make_key, service_key):
    """The key page's "last used from" is the address of the latest valid presentation."""
    key, value = make_key(user, label="from where")
    for address in ("203.0.113.7", "198.51.100.9"):
        response = client.post("/api/verify/", json={"key": value},
                               headers={"Authorization": f"Bearer {service_key[1]}"},
                               environ_base={"REMOTE_ADDR": address})
        assert response.status_code == 200
    usage.flush(app)
    seen = usage.key_usage(key, clock.now().date())
    assert seen.last_valid_address == "198.51.100.9"
    assert seen.total("valid") == 2 and len(seen.days) == 30


# ---------------------------------------------------------------- across processes


def wait_for_counts(key: ApiKey, expected: dict[str, int], seconds: float) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    while True:
        seen = counts(key)
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.25)


def test_the_live_servers_workers_write_their_counts_within_seconds(live_server, user, make_key,
                                                                    service_key):
    """Verifies spread over the real server's workers all reach the table, by each worker's
    timer (every KEYVAULT_USAGE_FLUSH_SECONDS, 5 by default), with no request needed after."""
    key, value = make_key(user, label="live")
    with requests.Session() as session:
        for _ in range(20):
            response = session.post(f"{live_server.url}/api/verify/", json={"key": value},
                                    headers={"Authorization": f"Bearer {service_key[1]}"},
                                    timeout=10)
            assert response.status_code == 200 and response.json()["code"] == "valid"
    assert wait_for_counts(key, {"valid": 20}, 15) == {"valid": 20}


def test_a_server_that_stops_writes_what_it_counted(database_url, tmp_path, user, make_key,
                                                    service_key):
    """With an hour between flushes, the counts are still written when the server stops."""
    server = start_server(database_url, tmp_path / "server.log",
                          extra_env={"KEYVAULT_USAGE_FLUSH_SECONDS": "3600"})
    key, value = make_key(user, label="until the end")
    try:
        for _ in range(6):
            response = requests.post(f"{server.url}/api/verify/", json={"key": value},
                                     headers={"Authorization": f"Bearer {service_key[1]}"},
                                     timeout=10)
            assert response.status_code == 200
        time.sleep(0.5)
        assert counts(key) == {}
    finally:
        stop_server(server)
    assert wait_for_counts(key, {"valid": 6}, 5) == {"valid": 6}, server.log()


def test_no_key_value_reaches_the_usage_table(app, client, user, make_key, service_key):
    key, value = make_key(user, label="secret")
    verify_times(client, service_key[1], value, 1)
    usage.flush(app)
    rows = db.session.execute(select(KeyUsageDay)).scalars().all()
    assert rows and not any(re.search(value[3:13], repr(vars(row))) for row in rows)


def test_counts_stay_with_their_key_when_its_row_id_is_reused(app, user, make_key):
    """SQLite gives a deleted key's row id to the next key made: counts held for the deleted
    key (and its usage stamp) go nowhere, not to the new key that has its id."""
    from keyvault import keystore
    from keyvault.extensions import db
    from keyvault.models import ApiKey

    old, _ = make_key(user, label="deleted soon")
    old_id, old_public = old.id, old.public_id
    now = clock.now()
    usage.counter(app).add(old_id, old_public, "valid", now, "192.0.2.1")
    store = keystore.keystore(app)
    store.stamp(old_id, old_public, now, write=False)
    db.session.delete(old)
    db.session.commit()
    # The next key made with the old row id (SQLite's own choice; PostgreSQL never reuses one,
    # so the row is made with it here)
    new = ApiKey(id=old_id, public_id="new-key-same-row", user_id=user.id, label="new",
                 mask="kv_…new0", digest="0" * 64, scopes=["user:read"])
    db.session.add(new)
    db.session.commit()
    assert usage.flush(app) is True
    db.session.expire_all()
    assert counts(new) == {}
    assert db.session.get(ApiKey, old_id).last_used_at is None
