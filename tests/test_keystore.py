"""The verify hot path's query stays an index lookup however big the table grows."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError

from keyvault import clock, keystore
from keyvault.extensions import db
from keyvault.models import ApiKey

ROWS = 20_000


def _fill(owner_id: int) -> None:
    """Many keys, almost none with a previous digest, as in a real deployment."""
    now = clock.now()
    rows = [{"public_id": secrets.token_urlsafe(12), "user_id": owner_id, "label": "filler",
             "description": "", "mask": "kv_…0000", "digest": secrets.token_hex(32),
             "scopes": ["*"], "created_at": now,
             "previous_digest": secrets.token_hex(32) if i % 1000 == 0 else None}
            for i in range(ROWS)]
    db.session.execute(insert(ApiKey), rows)
    db.session.commit()


def test_lookup_uses_the_digest_indexes_after_analyze(app, user):
    """After ANALYZE (SQLite's PRAGMA optimize runs it too) the lookup never scans the keys."""
    _fill(user.id)
    sql = keystore.keystore()._select[2]
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
        if db.engine.dialect.name == "sqlite":
            plan = [row[3] for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + sql, ("a" * 64, "b" * 64, "a" * 64, "b" * 64))]
            assert not [step for step in plan if step.startswith("SCAN k")], plan
            searches = [step for step in plan if step.startswith("SEARCH k USING INDEX")]
            assert any(step.endswith("(digest=?)") for step in searches), plan
            assert any("uq_api_keys_previous_digest (previous_digest=?)" in s for s in searches)
        else:
            plan = [row[0] for row in conn.exec_driver_sql(
                "EXPLAIN " + sql, ("a" * 64, "b" * 64, "a" * 64, "b" * 64))]
            assert not [step for step in plan if "Seq Scan on api_keys" in step], plan
            assert any("uq_api_keys_previous_digest" in step for step in plan), plan


def test_previous_digest_index_is_partial_and_unique(app, user, make_key):
    """Two keys can't share a grace-period digest, and NULLs (the common case) don't collide."""
    make_key(user, label="one")
    make_key(user, label="two")
    db.session.execute(text("UPDATE api_keys SET previous_digest = :d WHERE label = 'one'"),
                       {"d": "f" * 64})
    db.session.commit()
    with pytest.raises(IntegrityError):
        db.session.execute(text("UPDATE api_keys SET previous_digest = :d WHERE label = 'two'"),
                           {"d": "f" * 64})
        db.session.commit()
    db.session.rollback()


def test_stamps_met_by_a_held_lock_are_written_later_and_none_is_lost(app, user, make_key,
                                                                     database_url):
    """A usage stamp that meets another writer's lock is held (stamp answers False, at once);
    the next stamp that gets through writes every held one, with its own time."""
    from datetime import timedelta

    from tests.test_database_locks import writer_holding_the_lock

    store = keystore.keystore()
    (a, _), (b, _), (c, _) = (make_key(user, label=label) for label in "abc")
    now = clock.now()
    with writer_holding_the_lock(database_url, a.id, user.id, also=(b.id,)):
        assert store.stamp(a.id, a.public_id, now, write=True) is False
        assert store.stamp(b.id, b.public_id, now + timedelta(seconds=1), write=True) is False
    db.session.expire_all()
    assert [db.session.get(ApiKey, k.id).last_used_at for k in (a, b)] == [None, None]
    later = now + timedelta(seconds=5)
    assert store.stamp(c.id, c.public_id, later, write=True) is True
    db.session.expire_all()
    assert [db.session.get(ApiKey, k.id).last_used_at for k in (a, b, c)] == [
        now, now + timedelta(seconds=1), later]


def test_stamps_held_for_later_are_written_together_and_kept_while_a_writer_holds_the_lock(
        app, user, make_key, database_url):
    """A stamp made on the event loop is only held; write_pending (the usage counter's timer) writes them all
    in one transaction, or (a writer holding the lock) keeps them for the next, losing none."""
    from tests.test_database_locks import writer_holding_the_lock

    keys = [make_key(user, label=f"k{n}")[0] for n in range(5)]
    store, when = keystore.keystore(), clock.now()
    for key in keys:
        assert store.stamp(key.id, key.public_id, when, write=False)
    with writer_holding_the_lock(database_url, keys[0].id, user.id,
                                 also=tuple(key.id for key in keys[1:])):
        assert store.write_pending() is False
    db.session.expire_all()
    assert [db.session.get(ApiKey, key.id).last_used_at for key in keys] == [None] * 5
    assert store.write_pending() is True
    db.session.expire_all()
    assert [db.session.get(ApiKey, key.id).last_used_at for key in keys] == [when] * 5


def test_a_stamp_never_moves_last_used_at_backwards_and_a_later_one_wins(app, user, make_key):
    """Two stamps held for one key keep the later time; writing an older one after a newer
    changes nothing."""
    from datetime import timedelta

    store = keystore.keystore()
    key, _ = make_key(user)
    now = clock.now()
    assert store.stamp(key.id, key.public_id, now + timedelta(seconds=2), write=False)
    assert store.stamp(key.id, key.public_id, now, write=False)  # older: the held one stays
    assert store.write_pending() is True
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).last_used_at == now + timedelta(seconds=2)
    assert store.stamp(key.id, key.public_id, now, write=True) is True
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).last_used_at == now + timedelta(seconds=2)
