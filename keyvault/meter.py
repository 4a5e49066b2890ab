"""Spending a usage quota (issue 25): one conditional UPDATE per quota, on the hot path's engine.

The decision and the spend are one statement (`... SET remaining = remaining - cost WHERE
remaining >= cost RETURNING remaining`): the database serialises racing uses of one row, so of
200 parallel uses of a quota of 50 exactly 50 find a row to update, whichever worker or instance
they run in, and nothing is spent twice or lost by a restart (the count lives only in the row).
A use in a later refill period than the row's refills in the same statement (`remaining`
becomes the refill amount, then the cost is taken), so a period refills exactly once.

A key whose service account has a pool spends from both in one transaction: both or neither.
The statement waits for a racing writer as long as the app's other writes do
(KEYVAULT_DATABASE_TIMEOUT), not the usage stamp's 100 ms: a quota must not turn a busy moment into
a refusal. Past that, or with the database down, the error goes up and the request gets 503:
a quota that cannot be counted refuses (README, "Limits on a key").
"""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime

from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError

from .keystore import keystore
from .limit_models import Limits

_SPEND = ("UPDATE key_limits SET remaining = (CASE WHEN period = {m} THEN remaining ELSE {m} END)"
          " - {m}, period = {m} WHERE id = {m}"
          " AND (CASE WHEN period = {m} THEN remaining ELSE {m} END) >= {m} RETURNING remaining")


class Meter:
    """Spends quotas for one app's database, in one process: a connection per thread."""

    def __init__(self, app: Flask):
        # An engine of its own: the hot path's pool is sized for one connection per thread.
        options = {k: v for k, v in app.config["SQLALCHEMY_ENGINE_OPTIONS"].items()
                   if k != "pool_pre_ping"}  # a dropped connection is dropped, then refused
        self.engine = create_engine(keystore(app).engine.url, isolation_level="AUTOCOMMIT",
                                    pool_reset_on_return=None, **options)
        mark = "?" if self.engine.dialect.dbapi.paramstyle == "qmark" else "%s"
        self._spend = _SPEND.format(m=mark)
        sqlite = self.engine.dialect.name == "sqlite"
        self._begin = "BEGIN IMMEDIATE" if sqlite else "BEGIN"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._held: list = []

    def _cursor(self):
        held = getattr(self._local, "held", None)
        if held is None:
            connection = self.engine.raw_connection()
            held = self._local.held = (connection, connection.driver_connection.cursor())
            with self._lock:
                self._held.append(connection)
        return held

    def spend(self, quotas: list[Limits], cost: int, now: datetime) -> list[int] | None:
        """Take `cost` from every quota in `quotas` (a key's, then its pool's), all or none:
        what each has left after, or None when one has less than `cost` (nothing taken)."""
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        connection, cursor = self._cursor()
        try:
            if len(quotas) == 1:
                return self._take(cursor, quotas[0], cost, now)
            cursor.execute(self._begin)
            left = []
            for quota in quotas:
                after = self._take(cursor, quota, cost, now)
                if after is None:
                    cursor.execute("ROLLBACK")
                    return None
                left.extend(after)
            cursor.execute("COMMIT")
            return left
        except dbapi_error as error:
            with contextlib.suppress(dbapi_error):
                cursor.execute("ROLLBACK")
            if self.engine.dialect.is_disconnect(error, connection, cursor):
                self._drop(connection)
            raise DBAPIError.instance(self._spend, (), error, dbapi_error) from error

    def _take(self, cursor, quota: Limits, cost: int, now: datetime) -> list[int] | None:
        period, amount = quota.current_period(now), quota.refill_amount or 0
        cursor.execute(self._spend, (period, amount, cost, period, quota.id, period, amount, cost))
        row = cursor.fetchone()
        return None if row is None else [row[0]]

    def _drop(self, connection) -> None:
        connection.invalidate()
        self._local.held = None
        with self._lock:
            self._held.remove(connection)

    def close(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for connection in held:
            connection.close()
        self.engine.dispose()


def meter(app: Flask) -> Meter:
    """The app's Meter, made on first use in each process."""
    found = app.extensions.get("keyvault.meter")
    if found is None:
        found = app.extensions["keyvault.meter"] = Meter(app)
    return found

