"""The verify hot path's database access: fixed SQL on a pooled, autocommit DB-API connection.

Building an ORM or Core statement costs more than running it here (bench/README.md has the
figures), so the one lookup and the once-a-minute `last_used_at` write are written out once per
process. SQLAlchemy still does the type work: each column's own result and bind processors turn
database values into the same Python values the models give (aware UTC datetimes, lists).
An autocommit connection means a read opens no transaction and needs no round trip to end one.
Nothing is cached: every call reads the database, so revocation is seen on the very next call.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from datetime import datetime
from typing import NamedTuple

import orjson
from flask import Flask, current_app
from sqlalchemy import JSON, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from .extensions import db
from .models import ApiKey, User, UTCDateTime, as_utc

_k, _u = ApiKey.__table__.c, User.__table__.c


class KeyRow(NamedTuple):
    """What the hot path reads about a key and its owner, by name."""

    id: int
    public_id: str
    label: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_rolled_at: datetime | None
    previous_expires_at: datetime | None
    user_id: int
    email: str
    user_is_active: bool
    digest: str
    previous_digest: str | None


# The column behind each KeyRow field, in the same order.
COLUMNS = (
    _k.id, _k.public_id, _k.label, _k.scopes, _k.created_at, _k.expires_at, _k.revoked_at,
    _k.last_used_at, _k.last_rolled_at, _k.previous_expires_at, _u.id, _u.email, _u.is_active,
    _k.digest, _k.previous_digest,
)
assert len(COLUMNS) == len(KeyRow._fields)
_SELECT = (
    "SELECT " + ", ".join(f"{'k' if c.table is ApiKey.__table__ else 'u'}.{c.name}" for c in COLUMNS)
    + " FROM api_keys k JOIN users u ON u.id = k.user_id"
    " WHERE k.digest IN ({marks}) OR k.previous_digest IN ({marks})"
)


# How long the usage stamp waits for a lock that a writer holds (SQLite's busy timeout and
# PostgreSQL's lock_timeout on the hot path's own connections), before it is deferred.
TOUCH_WAIT_MS = 100
PENDING_MAX = 10_000


def _reader(column, dialect):
    """How to turn this column's raw driver value into the model's Python value, cheaply.

    Timestamps go through UTCDateTime's own conversion (C-speed fromisoformat for SQLite's
    strings), JSON through orjson; anything else through SQLAlchemy's processor for the dialect.
    """
    if isinstance(column.type, UTCDateTime):
        return as_utc
    if isinstance(column.type, JSON):
        return lambda value: orjson.loads(value) if isinstance(value, (str, bytes)) else value
    return column.type.dialect_impl(dialect).result_processor(dialect, None)


class KeyStore:
    """Reads key rows by digest and records use, for one app's database, in one process."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()
        self._held: list = []
        self._pending: dict[int, datetime] = {}  # usage stamps that met a held lock
        self._later: dict[int, tuple[str, datetime]] = {}  # touch_later: public id, when
        dialect = engine.dialect
        mark = "?" if dialect.dbapi.paramstyle == "qmark" else "%s"
        self._mark = mark
        # Verify's statements (one key or two) are written once; a longer list (a leaked-key
        # report) gets its own.
        self._select = {n: _SELECT.format(marks=", ".join([mark] * n)) for n in (1, 2)}
        self._touch = (f"UPDATE api_keys SET last_used_at = {mark} WHERE id = {mark}"
                       f" AND (last_used_at IS NULL OR last_used_at <= {mark})")
        self._touch_same_key = (f"UPDATE api_keys SET last_used_at = {mark} WHERE id = {mark}"
                                f" AND public_id = {mark}"
                                f" AND (last_used_at IS NULL OR last_used_at <= {mark})")
        self._readers = [(i, p) for i, p in enumerate(_reader(c, dialect) for c in COLUMNS)
                         if p is not None]
        self._bind_time = _k.last_used_at.type.dialect_impl(dialect).bind_processor(dialect)

    def _cursor(self):
        """This thread's connection and one cursor on it, both kept: a pool checkout per call
        costs ~15 µs, a new cursor ~9 µs (PostgreSQL)."""
        held = getattr(self._local, "held", None)
        if held is None:
            connection = self.engine.raw_connection()
            driver = connection.driver_connection
            cursor = driver.cursor()
            if self.engine.dialect.driver == "psycopg":  # JSON columns through orjson, as ours
                from psycopg.types.json import set_json_loads

                set_json_loads(orjson.loads, driver)
                cursor.execute(f"SET lock_timeout = {TOUCH_WAIT_MS}")
            else:  # SQLite: readers never wait in WAL mode; only the usage stamp could
                cursor.execute(f"PRAGMA busy_timeout = {TOUCH_WAIT_MS}")
            held = self._local.held = (connection, cursor)
            with self._lock:
                self._held.append(connection)
        return held

    def _drop(self, connection) -> None:
        connection.invalidate()
        self._local.held = None
        with self._lock:
            self._held.remove(connection)

    def _run(self, sql: str, params: tuple, fetch: bool):
        """Run one statement; on a connection the server dropped, reconnect once and retry.

        Driver errors come out as SQLAlchemy's (OperationalError, …), as from the ORM.
        """
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        for attempt in (1, 2):
            try:
                connection, cursor = self._cursor()
            except dbapi_error as error:
                raise DBAPIError.instance(sql, params, error, dbapi_error) from error
            try:
                cursor.execute(sql, params)
                return cursor.fetchall() if fetch else None
            except dbapi_error as error:
                disconnected = self.engine.dialect.is_disconnect(error, connection, cursor)
                if disconnected:
                    self._drop(connection)
                if attempt == 2 or not disconnected:
                    raise DBAPIError.instance(sql, params, error, dbapi_error) from error
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Return every thread's connection and close the pool."""
        with self._lock:
            held, self._held = self._held, []
        for connection in held:
            connection.close()
        self.engine.dispose()

    def lookup(self, digests: list[str]) -> list[KeyRow]:
        """The rows whose current or grace-period digest is one of `digests`: one round trip."""
        count = len(digests)
        sql = self._select.get(count) or _SELECT.format(marks=", ".join([self._mark] * count))
        rows = self._run(sql, (*digests, *digests), fetch=True)
        converted = []
        for row in rows:
            row = list(row)
            for index, process in self._readers:
                row[index] = process(row[index])
            converted.append(KeyRow._make(row))
        return converted

    def touch(self, key_id: int, now: datetime, threshold: datetime) -> bool:
        """Set last_used_at unless another worker already did within the resolution.

        A usage stamp never holds up a verdict: when a writer holds the lock for longer than
        TOUCH_WAIT_MS the stamp is kept here, and written with the next one that gets through
        (last_used_at catches up; it never moves backwards). False when it had to wait.
        """
        if not self._stamp_or_defer(key_id, now, threshold):
            return False
        with self._lock:
            pending, self._pending = list(self._pending.items()), {}
        for index, (other, when) in enumerate(pending):
            if other != key_id and not self._stamp_or_defer(other, when, when):
                with self._lock:  # a writer holds the lock again: the rest wait for the next
                    for later, at in pending[index + 1:]:
                        self._pending.setdefault(later, at)
                break
        return True

    def touch_later(self, key_id: int, public_id: str, when: datetime) -> None:
        """Keep a usage stamp for write_pending, which the usage counter's timer calls
        (service.usage): a verdict answered on the server's event loop writes nothing."""
        with self._lock:
            if len(self._later) < PENDING_MAX:
                self._later.setdefault(key_id, (public_id, when))

    def write_pending(self) -> bool:
        """Write every held stamp in one transaction, on a pooled connection (it runs on a
        timer's thread): the first uses of a thousand keys after a quiet minute are one write,
        not a thousand. The key's public id must still match: SQLite hands a deleted key's row
        id to the next key made. False (stamps kept for the next) when a writer held the lock
        too long."""
        with self._lock:
            held, self._later = self._later, {}
        if not held:
            return True
        bind = self._bind_time
        rows = [(bind(when), key_id, public_id, bind(when))
                for key_id, (public_id, when) in held.items()]
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("BEGIN")
            cursor.executemany(self._touch_same_key, rows)
            cursor.execute("COMMIT")
            return True
        except dbapi_error as error:
            with contextlib.suppress(dbapi_error):
                cursor.execute("ROLLBACK")
            with self._lock:  # kept for the next write
                for key_id, stamp in held.items():
                    if len(self._later) < PENDING_MAX:
                        self._later.setdefault(key_id, stamp)
            if not self._lock_busy(error):
                raise DBAPIError.instance(self._touch_same_key, rows[0], error,
                                          dbapi_error) from error
            return False
        finally:
            connection.close()

    def _stamp_or_defer(self, key_id: int, when: datetime, threshold: datetime) -> bool:
        """Write one stamp; when a writer holds the lock, keep it for later (False)."""
        try:
            self._stamp(key_id, when, threshold)
            return True
        except DBAPIError as error:
            if not self._lock_busy(error.orig):
                raise
            with self._lock:
                if len(self._pending) < PENDING_MAX:
                    self._pending.setdefault(key_id, when)
            return False

    def _stamp(self, key_id: int, when: datetime, threshold: datetime) -> None:
        bind = self._bind_time
        self._run(self._touch, (bind(when), key_id, bind(threshold)), fetch=False)

    def _lock_busy(self, error: Exception) -> bool:
        return lock_busy(error)


def lock_busy(error: Exception) -> bool:
    """Did this statement give up waiting for another transaction's lock? (A driver's error,
    or SQLAlchemy's wrapping one.)"""
    error = getattr(error, "orig", None) or error
    if isinstance(error, sqlite3.Error):
        return "locked" in str(error) or "busy" in str(error)
    return getattr(error, "sqlstate", None) == "55P03"  # PostgreSQL's lock_not_available


def keystore(app: Flask | None = None) -> KeyStore:
    """The app's KeyStore (default: the current app's), made on first use in each process, after
    the server starts its workers."""
    if app is None:
        app = current_app._get_current_object()
    store = app.extensions.get("keyvault.keystore")
    if store is None:
        options = {k: v for k, v in app.config["SQLALCHEMY_ENGINE_OPTIONS"].items()
                   if k != "pool_pre_ping"}  # a dropped connection is retried instead
        with app.app_context():
            url = db.engine.url
        engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None,
                               **options)
        store = app.extensions["keyvault.keystore"] = KeyStore(engine)
    return store


def dispose(app) -> None:
    """Close this app's hot-path connections (tests, shutdown)."""
    store = app.extensions.pop("keyvault.keystore", None)
    if store is not None:
        store.close()
