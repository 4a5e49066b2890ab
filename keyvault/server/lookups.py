"""The verify fast path's lookup on PostgreSQL, made from the worker's event loop, the lookups of
all the requests waiting at the time in one statement.

A thread per request waiting on its round trip, then queueing for the GIL behind the busy loop,
cost verify on PostgreSQL half its throughput and twice SQLite's CPU (bench/README.md). Here
each request's digests join a queue; a sender sends every digest queued so far as one prepared
statement (`digest = ANY(...)`: keystore.SELECT_MANY), on an async connection of the
worker's own, and hands each request the rows of its own digests. The loop serves other
requests meanwhile. Alone, a request waits for one round trip, as before; under load the
database parses, plans and answers one statement for many verifies, and the worker makes one
round trip for them (bench/README.md has the figures). The rest of the pipeline then runs on
the loop as it does on SQLite (keyvault.handoff says how the two meet).

A failure is handed back as the error the thread's own lookup would have raised (SQLAlchemy's
OperationalError, or a TimeoutError past KEYVAULT_DATABASE_TIMEOUT), so the request is answered
exactly as it would have been: 503 with Retry-After, logged once per kind and interval. A
connection that fails is closed; the next statement connects again, so recovery needs nothing.
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
from ..keystore import DIGEST_COLUMNS, SELECT_MANY, keystore

# One statement in flight per worker, on a connection of its own; the requests that arrive
# meanwhile wait for the next, which carries all of their digests. Each statement costs the
# worker ~200 us of CPU whatever its size, so one at a time makes the batches grow (4.5-9
# verifies a statement under the bench's load, against 4.5-7 with two always allowed), and
# verify's p99 on the bench fell from 31-36 ms to 18-20 ms at the same throughput
# (bench/README.md). A second goes out only when the one in flight is older than SLOW_SECONDS
# (a connection the network dropped without a word, a stalled server): one stuck statement
# must not hold every verify of the worker until KEYVAULT_DATABASE_TIMEOUT.
CONNECTIONS = 2
SLOW_SECONDS = 0.05


class RowsByDigest:
    """One statement's rows, indexed once by the digests they answer to (a key's and, while a
    roll overlaps, its previous one), so each of a batch's requests takes its own rows without
    reading the whole batch's."""

    __slots__ = ("_rows", "_at")

    def __init__(self, rows: list):
        self._rows = rows
        self._at: dict[str, list[int]] = {}
        for position, row in enumerate(rows):
            for i in DIGEST_COLUMNS:
                if row[i] is not None:
                    self._at.setdefault(row[i], []).append(position)

    def of(self, digests: tuple[str, ...]) -> list:
        """The rows that answer to any of `digests`, each once, in the statement's order."""
        positions = sorted({p for digest in digests for p in self._at.get(digest, ())})
        return [self._rows[p] for p in positions]


class Lookups:
    """A worker's async connections to PostgreSQL, used by its event loop only."""

    def __init__(self, connect_params: dict, timeout: float, connections: int = CONNECTIONS):
        self.connect_params = connect_params
        self.timeout = timeout
        self.connections = connections
        self._idle: list[psycopg.AsyncConnection] = []
        self._waiting: list[tuple[tuple[str, ...], asyncio.Future]] = []
        self._senders: set[asyncio.Task] = set()
        self._sent_at: dict[asyncio.Task, float] = {}  # a sender's statement in flight: since

    @classmethod
    def of(cls, app: Flask) -> Lookups:
        """Connect as the app's hot path does (keyvault.keystore), autocommit."""
        engine = keystore(app).engine
        _, params = engine.dialect.create_connect_args(engine.url)
        params.update(app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("connect_args", {}))
        return cls(params, app.config["KEYVAULT_DATABASE_TIMEOUT"])

    async def fetch(self, need: FetchFirst) -> Fetched:
        """The rows of `need`'s digests, or the failure the lookup raises in their place, within
        KEYVAULT_DATABASE_TIMEOUT whatever is queued before it."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((need.digests, future))
        if self._wants_a_sender():
            sender = asyncio.create_task(self._send())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)  # one cancelled before it ran
        try:
            async with asyncio.timeout(self.timeout):
                rows = await future
        except psycopg.Error as error:
            return Fetched(need.digests, error=DBAPIError.instance(
                SELECT_MANY, None, error, psycopg.Error, hide_parameters=True))
        except TimeoutError:
            return Fetched(need.digests, error=DatabaseTimeout(
                f"no answer from the database within {self.timeout:g} s"))
        except Exception as error:  # noqa: BLE001 - raised in the pipeline, logged there (500)
            return Fetched(need.digests, error=error)
        return Fetched(need.digests, rows.of(need.digests))

    def _wants_a_sender(self) -> bool:
        """None is sending; or every one that is has had its statement out for SLOW_SECONDS,
        and a connection is left."""
        if not self._senders:
            return True
        if len(self._senders) >= self.connections or len(self._sent_at) < len(self._senders):
            return False
        now = asyncio.get_running_loop().time()
        return all(now - since > SLOW_SECONDS for since in self._sent_at.values())

    async def _send(self) -> None:
        """Send what is waiting, one statement at a time, until nothing is."""
        me = asyncio.current_task()
        try:
            await self._send_waiting(me)
        finally:  # at once, not in a done callback a turn later: a request queued in between
            self._senders.discard(me)  # would start no sender of its own
            self._sent_at.pop(me, None)

    async def _send_waiting(self, me: asyncio.Task) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch, self._waiting = self._waiting, []
            batch = [(digests, future) for digests, future in batch if not future.done()]
            if not batch:
                continue
            digests = list(dict.fromkeys(d for wanted, _ in batch for d in wanted))
            self._sent_at[me] = loop.time()
            try:
                async with asyncio.timeout(self.timeout):
                    rows = await self._rows(digests)
            except Exception as error:  # noqa: BLE001 - each request answers it (fetch)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            finally:
                del self._sent_at[me]
            by_digest = RowsByDigest(rows)
            for _, future in batch:
                if not future.done():
                    future.set_result(by_digest)

    async def _rows(self, digests: list[str]) -> list:
        """On an idle connection. When one the server dropped meanwhile fails, so did the
        others it held then (a restart, or every backend terminated): all idle connections
        are closed, and the statement is sent once more, on a new one."""
        for attempt in (1, 2):
            reused = bool(self._idle) and attempt == 1
            connection = self._idle.pop() if reused else await self._connect()
            try:
                cursor = await connection.execute(SELECT_MANY, {"digests": digests},
                                                  prepare=True)
                rows = await cursor.fetchall()
            except BaseException as error:
                await connection.close()  # its state is unknown: never used again
                if not reused or not isinstance(error, psycopg.OperationalError):
                    raise
                await self._close_idle()
                continue
            self._idle.append(connection)
            return rows
        raise AssertionError("unreachable")

    async def _connect(self) -> psycopg.AsyncConnection:
        connection = await psycopg.AsyncConnection.connect(**self.connect_params, autocommit=True)
        set_json_loads(orjson.loads, connection)  # JSON columns as the thread's lookup reads them
        return connection

    async def close(self) -> None:
        """Stop the senders, and wait for them: one cancelled in the middle of a statement
        closes the connection it holds (_rows), which a sender left pending would not."""
        senders = list(self._senders)
        for sender in senders:
            sender.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        await self._close_idle()

    async def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()
