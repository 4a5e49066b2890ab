"""The verify fast path's lookup on PostgreSQL, made on the worker's event loop: a few async
connections of the worker's own, each statement prepared on the server after its first use.

A thread per request waiting on a round trip, then queueing for the GIL behind the busy loop,
cost verify on PostgreSQL half its throughput (bench/README.md). Here the loop sends the
statement and serves other requests until the rows arrive; the rest of the pipeline then runs
on the loop as it does on SQLite (keyvault.keystore.FetchFirst says how the two meet).

A failure is handed back as the error the thread's own lookup would have raised (SQLAlchemy's
OperationalError, or a TimeoutError past KEYVAULT_DATABASE_TIMEOUT), so the request is answered
exactly as it would have been: 503 with Retry-After, logged once per kind and interval. A
connection that fails is closed; the next lookup connects again, so recovery needs nothing.
"""

from __future__ import annotations

import asyncio

import orjson
import psycopg
from flask import Flask
from psycopg.types.json import set_json_loads
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as DatabaseTimeout

from ..handoff import Fetched, FetchFirst
from ..keystore import keystore

# Lookups in flight at once per worker, each on a connection of its own: two CPUs' worth of
# PostgreSQL backends is kept busy by a few; more would only queue inside the database.
CONNECTIONS = 4


class Lookups:
    """A worker's async connections to PostgreSQL, used by its event loop only."""

    def __init__(self, connect_params: dict, timeout: float, connections: int = CONNECTIONS):
        self.connect_params = connect_params
        self.timeout = timeout
        self.connections = connections
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots: asyncio.Semaphore | None = None

    @classmethod
    def of(cls, app: Flask) -> Lookups:
        """Connect as the app's hot path does (keyvault.keystore), autocommit."""
        engine = keystore(app).engine
        _, params = engine.dialect.create_connect_args(engine.url)
        params.update(app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("connect_args", {}))
        return cls(params, app.config["KEYVAULT_DATABASE_TIMEOUT"])

    async def fetch(self, need: FetchFirst) -> Fetched:
        """The rows `need` asks for, or the failure the lookup raises in their place."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.connections)
        try:
            async with asyncio.timeout(self.timeout), self._slots:
                return Fetched(need.params, await self._rows(need.sql, need.params))
        except psycopg.Error as error:
            return Fetched(need.params, error=DBAPIError.instance(
                need.sql, need.params, error, psycopg.Error, hide_parameters=True))
        except TimeoutError:
            return Fetched(need.params, error=DatabaseTimeout(
                f"no answer from the database within {self.timeout:g} s"))

    async def _rows(self, sql: str, params: tuple) -> list:
        """On an idle connection; one that the server dropped meanwhile is replaced once."""
        for attempt in (1, 2):
            reused = bool(self._idle)
            connection = self._idle.pop() if reused else await self._connect()
            try:
                cursor = await connection.execute(sql, params, prepare=True)
                rows = await cursor.fetchall()
            except BaseException as error:
                await connection.close()  # its state is unknown: never used again
                if attempt == 2 or not reused or not isinstance(error, psycopg.OperationalError):
                    raise
                continue
            self._idle.append(connection)
            return rows
        raise AssertionError("unreachable")

    async def _connect(self) -> psycopg.AsyncConnection:
        connection = await psycopg.AsyncConnection.connect(**self.connect_params, autocommit=True)
        set_json_loads(orjson.loads, connection)  # JSON columns as the thread's lookup reads them
        return connection

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()
