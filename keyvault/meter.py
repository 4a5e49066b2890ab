"""Spending a usage quota (issue 25): one conditional UPDATE per quota, on the hot path's
connection.

The decision and the spend are one statement (`... SET remaining = remaining - cost WHERE
remaining >= cost RETURNING remaining`): the database serialises racing uses of one row, so of
200 parallel uses of a quota of 50 exactly 50 find a row to update, whichever worker or instance
they run in, and nothing is spent twice or lost by a restart (the count lives only in the row).
A use in a later refill period than the row's refills in the same statement (`remaining`
becomes the refill amount, then the cost is taken), so a period refills exactly once.

A key whose service account has a pool spends from both in one transaction: both or neither.

The spend runs on the thread's keystore connection (keyvault.keystore): a thread holds one
hot-path connection, so an instance needs the connections the README plans for, not half as many
again (a connection of its own per thread ran two instances out of PostgreSQL's default 100).
That connection waits 100 ms for a lock (the usage stamp's wait); a spend waits as long as the
app's other writes do (KEYVAULT_DATABASE_TIMEOUT), raised for the spend alone: a quota must not
turn a busy moment into a refusal. On PostgreSQL that is `SET LOCAL lock_timeout` in the same
round trip as the UPDATE (one simple-protocol query string, so its values are written into it:
integers and a date, checked); on SQLite, the busy timeout set around it. Past the wait, or with
the database down, the error goes up and the request gets 503: a quota that cannot be counted
refuses (README, "Limits on a key").
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime

from flask import Flask
from sqlalchemy.exc import DBAPIError

from .keystore import TOUCH_WAIT_MS, keystore
from .limit_models import Limits

_SPEND = ("UPDATE key_limits SET remaining = (CASE WHEN period = {period} THEN remaining"
          " ELSE {amount} END) - {cost}, period = {period} WHERE id = {id} AND (CASE WHEN"
          " period = {period} THEN remaining ELSE {amount} END) >= {cost} RETURNING remaining")
_PERIOD = re.compile(r"[0-9-]{0,10}")  # limit_models.Limits.current_period: a date, or ''


class Meter:
    """Spends quotas for one app's database, in one process, on the keystore's connections."""

    def __init__(self, app: Flask):
        self.store = keystore(app)
        self.wait_ms = app.config["KEYVAULT_DATABASE_TIMEOUT"] * 1000
        self.sqlite = self.store.engine.dialect.name == "sqlite"

    def spend(self, quotas: list[Limits], cost: int, now: datetime) -> list[int] | None:
        """Take `cost` from every quota in `quotas` (a key's, then its pool's), all or none:
        what each has left after, or None when one has less than `cost` (nothing taken)."""
        dbapi_error = self.store.engine.dialect.loaded_dbapi.Error
        statements = [_statement(quota, cost, now) for quota in quotas]
        try:
            connection, cursor = self.store.held()
        except dbapi_error as error:
            raise DBAPIError.instance(statements[0], (), error, dbapi_error) from error
        try:
            if self.sqlite:
                return self._on_sqlite(cursor, statements)
            return self._on_postgresql(cursor, statements)
        except dbapi_error as error:
            with contextlib.suppress(dbapi_error):
                cursor.execute("ROLLBACK")
            if self.store.engine.dialect.is_disconnect(error, connection, cursor):
                self.store.drop(connection)
            raise DBAPIError.instance(statements[0], (), error, dbapi_error) from error

    def _on_postgresql(self, cursor, statements: list[str]) -> list[int] | None:
        wait = f"SET LOCAL lock_timeout = {int(self.wait_ms)}"
        if len(statements) == 1:  # one round trip: the query string is one implicit transaction
            cursor.execute(f"{wait}; {statements[0]}")
            cursor.nextset()
            return _left(cursor)
        cursor.execute("BEGIN")
        cursor.execute(wait)
        return self._all_or_none(cursor, statements)

    def _on_sqlite(self, cursor, statements: list[str]) -> list[int] | None:
        cursor.execute(f"PRAGMA busy_timeout = {int(self.wait_ms)}")
        try:
            if len(statements) == 1:
                cursor.execute(statements[0])
                return _left(cursor)
            cursor.execute("BEGIN IMMEDIATE")
            return self._all_or_none(cursor, statements)
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {TOUCH_WAIT_MS}")

    @staticmethod
    def _all_or_none(cursor, statements: list[str]) -> list[int] | None:
        left: list[int] = []
        for statement in statements:
            cursor.execute(statement)
            after = _left(cursor)
            if after is None:
                cursor.execute("ROLLBACK")
                return None
            left.extend(after)
        cursor.execute("COMMIT")
        return left


def _statement(quota: Limits, cost: int, now: datetime) -> str:
    """The spend for one quota, its values written in: integers, and a period that is a date."""
    period = quota.current_period(now)
    if not _PERIOD.fullmatch(period):
        raise ValueError(f"not a refill period: {period!r}")
    return _SPEND.format(period=f"'{period}'", amount=int(quota.refill_amount or 0),
                         cost=int(cost), id=int(quota.id))


def _left(cursor) -> list[int] | None:
    row = cursor.fetchone()
    return None if row is None else [row[0]]


def meter(app: Flask) -> Meter:
    """The app's Meter, made on first use in each process."""
    found = app.extensions.get("keyvault.meter")
    if found is None:
        found = app.extensions["keyvault.meter"] = Meter(app)
    return found
