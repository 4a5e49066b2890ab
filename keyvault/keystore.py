"""The verify hot path's database access: fixed SQL on a pooled, autocommit DB-API connection.

Building an ORM or Core statement costs more than running it here (bench/README.md has the
figures), so the one lookup and the once-a-minute `last_used_at` write are written out once per
process. SQLAlchemy still does the type work: each column's own result and bind processors turn
database values into the same Python values the models give (aware UTC datetimes, lists).
An autocommit connection means a read opens no transaction and needs no round trip to end one.
Nothing is cached: every call reads the database, so revocation is seen on the very next call.

On `keyvault serve`'s event loop (PostgreSQL), a lookup does not wait for the database there:
it raises FetchFirst, the server fetches the same statement's rows on an async connection of its
own (keyvault.server.lookups) and asks again with them (keyvault.handoff). The rows go through
the same conversion either way.
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

from .addresses import Ranges, networks_of
from .extensions import db
from .handoff import fetched_on_the_loop
from .limit_models import KeyLimits, Limits
from .models import ApiKey, User, UTCDateTime, as_utc
from .org_models import Organization, Service, ServiceAccount

_k, _u = ApiKey.__table__.c, User.__table__.c
_s, _o, _v = ServiceAccount.__table__.c, Organization.__table__.c, Service.__table__.c
_l = KeyLimits.__table__.c
_ALIAS = {ApiKey.__table__: "k", User.__table__: "u", ServiceAccount.__table__: "s",
          Organization.__table__: "o", Service.__table__: "v"}


class KeyRow(NamedTuple):
    """What the hot path reads about a key and its owner, by name: a person (user_id set), a
    service account of an organisation (service_account_id set, the user fields None), or a
    service (service_public_id set: its own verify key, carrying its audience and scopes)."""

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
    user_id: int | None
    email: str | None
    user_is_active: bool | None
    digest: str
    previous_digest: str | None
    service_account_id: int | None
    service_account_public_id: str | None
    service_account_name: str | None
    organization_public_id: str | None
    organization_name: str | None
    organization_is_active: bool | None
    allowed_networks: Ranges | None = None  # allowed_ips parsed; None: anywhere
    restricted_to: dict | None = None  # where the key works (service.restrictions): everywhere
    service_public_id: str | None = None
    service_audience: str | None = None
    service_scopes: list[str] | None = None
    limits: Limits | None = None  # the key's own rate and quota (limit_models), if any
    pool: Limits | None = None  # its service account's, shared by all the account's keys

    @property
    def owner_is_active(self) -> bool:
        """The person's account, or the service account's organisation, is active."""
        if self.user_id is not None:
            return bool(self.user_is_active)
        return bool(self.organization_is_active)


# The column behind each KeyRow field, in the same order.
COLUMNS = (
    _k.id, _k.public_id, _k.label, _k.scopes, _k.created_at, _k.expires_at, _k.revoked_at,
    _k.last_used_at, _k.last_rolled_at, _k.previous_expires_at, _u.id, _u.email, _u.is_active,
    _k.digest, _k.previous_digest, _s.id, _s.public_id, _s.name, _o.public_id, _o.name,
    _o.is_active, _k.allowed_ips, _k.restricted_to, _v.public_id, _v.audience, _v.scopes,
)
assert len(COLUMNS) == len(KeyRow._fields) - 2
# The limits of the key (kl) and of its service account's pool (pl), after COLUMNS: a key
# without limits finds no row through the outer joins and gets None (issue 25).
LIMIT_COLUMNS = (_l.id, _l.rate_limit, _l.rate_window, _l.remaining, _l.quota, _l.refill_amount,
                 _l.refill_interval, _l.refill_day, _l.period, _l.warned_period)
assert len(LIMIT_COLUMNS) == len(Limits._fields)
_FIRST_LIMIT = len(COLUMNS)
_FIRST_POOL = _FIRST_LIMIT + len(LIMIT_COLUMNS)
# One round trip whoever owns the key: a key has a user, a service account or a service (a
# CHECK says exactly one), so the outer joins find the one that is set.
_SELECT = (
    "SELECT " + ", ".join(f"{_ALIAS[c.table]}.{c.name}" for c in COLUMNS)
    + "".join(f", {alias}.{c.name}" for alias in ("kl", "pl") for c in LIMIT_COLUMNS)
    + " FROM api_keys k LEFT JOIN users u ON u.id = k.user_id"
    " LEFT JOIN service_accounts s ON s.id = k.service_account_id"
    " LEFT JOIN services v ON v.id = k.service_id"
    " LEFT JOIN organizations o ON o.id = COALESCE(s.organization_id, v.organization_id)"
    " LEFT JOIN key_limits kl ON kl.api_key_id = k.id"
    " LEFT JOIN key_limits pl ON pl.service_account_id = k.service_account_id"
    " WHERE k.digest IN ({marks}) OR k.previous_digest IN ({marks})"
)
# The same rows for any number of digests (PostgreSQL's arrays): the server's event loop looks
# up the keys of several requests in one statement (keyvault.server.lookups).
SELECT_MANY = _SELECT.replace("IN ({marks})", "= ANY(%(digests)s)")
DIGEST_COLUMNS = tuple(i for i, c in enumerate(COLUMNS) if c is _k.digest or c is _k.previous_digest)


# How long the usage stamp waits for a lock that a writer holds (SQLite's busy timeout and
# PostgreSQL's lock_timeout on the hot path's own connections), before it is deferred.
TOUCH_WAIT_MS = 100
PENDING_MAX = 10_000
# Held stamps a request's own thread writes after its verdict; the timer writes the rest.
WRITE_HERE_MAX = 16


def _reader(column, dialect):
    """How to turn this column's raw driver value into the model's Python value, cheaply.

    Timestamps go through UTCDateTime's own conversion (C-speed fromisoformat for SQLite's
    strings), JSON through orjson; anything else through SQLAlchemy's processor for the dialect.
    """
    if column is _k.allowed_ips:  # parsed into networks once per distinct value
        return networks_of
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
        self._stamps: dict[int, tuple[str, datetime]] = {}  # held usage stamps: public id, when
        dialect = engine.dialect
        mark = "?" if dialect.dbapi.paramstyle == "qmark" else "%s"
        self._mark = mark
        # Verify's statements (one key or two) are written once; a longer list (a leaked-key
        # report) gets its own.
        self._select = {n: _SELECT.format(marks=", ".join([mark] * n)) for n in (1, 2)}
        self._touch = (f"UPDATE api_keys SET last_used_at = {mark} WHERE id = {mark}"
                                f" AND public_id = {mark}"
                                f" AND (last_used_at IS NULL OR last_used_at <= {mark})")
        self._readers = [(i, p) for i, p in enumerate(_reader(c, dialect) for c in COLUMNS)
                         if p is not None]
        self._bind_time = _k.last_used_at.type.dialect_impl(dialect).bind_processor(dialect)

    def held(self):
        """This thread's connection and one cursor on it, both kept: a pool checkout per call
        costs ~15 µs, a new cursor ~9 µs (PostgreSQL). The quota meter (keyvault.meter) spends
        on it too, so a thread holds one hot-path connection, not two."""
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

    def drop(self, connection) -> None:
        """Forget this thread's connection: the server dropped it (the next use reconnects)."""
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
                connection, cursor = self.held()
            except dbapi_error as error:
                raise DBAPIError.instance(sql, params, error, dbapi_error) from error
            try:
                cursor.execute(sql, params)
                return cursor.fetchall() if fetch else None
            except dbapi_error as error:
                disconnected = self.engine.dialect.is_disconnect(error, connection, cursor)
                if disconnected:
                    self.drop(connection)
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
        on_the_loop = fetched_on_the_loop.get()
        rows = (self._run(sql, (*digests, *digests), fetch=True) if on_the_loop is None
                else on_the_loop.rows_of(tuple(digests)))
        converted = []
        for row in rows:
            row = list(row)
            for index, process in self._readers:
                row[index] = process(row[index])
            limits, pool = row[_FIRST_LIMIT:_FIRST_POOL], row[_FIRST_POOL:]
            converted.append(KeyRow._make(
                (*row[:_FIRST_LIMIT], Limits._make(limits) if limits[0] is not None else None,
                 Limits._make(pool) if pool[0] is not None else None)))
        return converted

    def stamp(self, key_id: int, public_id: str, when: datetime, *, write: bool) -> bool:
        """The one way `last_used_at` is written: the stamp is held here, then written by
        `write_held` now (`write`, on a thread that may wait 100 ms for a lock: TOUCH_WAIT_MS)
        or by `write_pending` on the usage counter's timer (a verdict answered on the server's
        event loop writes nothing). A stamp that meets a writer's lock stays held and goes with
        the next write; it never moves last_used_at backwards. False when it had to wait."""
        with self._lock:
            held = self._stamps.get(key_id)
            if held is None and len(self._stamps) >= PENDING_MAX:
                return False
            if held is None or held[1] < when:
                self._stamps[key_id] = (public_id, when)
        return self.write_held() if write else True

    def write_held(self, most: int = WRITE_HERE_MAX) -> bool:
        """Write up to `most` held stamps, one statement each, on this thread's hot-path
        connection (it waits TOUCH_WAIT_MS at most for a lock); the rest wait for the timer's
        write_pending. False, with the stamps kept, when a writer held the lock."""
        with self._lock:
            taken = list(self._stamps.items())[:most]
            for key_id, _ in taken:
                del self._stamps[key_id]
        bind = self._bind_time
        for index, (key_id, (public_id, when)) in enumerate(taken):
            try:
                self._run(self._touch, (bind(when), key_id, public_id, bind(when)), fetch=False)
            except DBAPIError as error:
                self._hold_again(taken[index:])
                if not self._lock_busy(error.orig):
                    raise
                return False
        return True

    def _hold_again(self, stamps) -> None:
        with self._lock:
            for key_id, (public_id, when) in stamps:
                held = self._stamps.get(key_id)
                if held is None or held[1] < when:
                    self._stamps[key_id] = (public_id, when)

    def write_pending(self) -> bool:
        """Write every held stamp in one transaction, on a pooled connection (it runs on a
        timer's thread): the first uses of a thousand keys after a quiet minute are one write,
        not a thousand. The key's public id must still match: SQLite hands a deleted key's row
        id to the next key made. False (stamps kept for the next) when a writer held the lock
        too long."""
        with self._lock:
            held, self._stamps = self._stamps, {}
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
            cursor.executemany(self._touch, rows)
            cursor.execute("COMMIT")
            return True
        except dbapi_error as error:
            with contextlib.suppress(dbapi_error):
                cursor.execute("ROLLBACK")
            self._hold_again(held.items())  # kept for the next write
            if not self._lock_busy(error):
                raise DBAPIError.instance(self._touch, rows[0], error,
                                          dbapi_error) from error
            return False
        finally:
            connection.close()

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
        # pool_pre_ping (PostgreSQL): no checkout gets a connection dropped while it sat in the
        # pool (the stamp writer returns them); one dropped while held is retried instead (_run)
        options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
        with app.app_context():
            url = db.engine.url
        engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None,
                               **options)
        store = app.extensions["keyvault.keystore"] = KeyStore(engine)
    return store


def dispose(app) -> None:
    """Close this app's hot-path connections (tests, shutdown)."""
    app.extensions.pop("keyvault.meter", None)  # it spends on the keystore's connections
    store = app.extensions.pop("keyvault.keystore", None)
    if store is not None:
        store.close()
