"""How often each key is presented, per day and verdict, without a write per verify.

Each process counts in memory (`count`, called by verify.record_use for every judged key) and
adds its counts to `key_usage_daily` with one upsert at most every KEYVAULT_USAGE_FLUSH_SECONDS,
from a timer thread, so no verdict ever waits for that write or fails with it. A flush that
meets a held lock or a database that is down keeps its counts for the next one (at most
PENDING_MAX distinct rows are held; past that, new ones are dropped and logged). Counts still
in memory are written when the process exits. Every process and instance adds to the same
rows, so the table is the sum of all of them.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from flask import Flask
from sqlalchemy import case, create_engine, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..keystore import lock_busy
from ..logs import FailureLog
from ..models import ApiKey, KeyUsageDay

PENDING_MAX = 10_000  # distinct (key, day, outcome) rows a process holds while flushes fail
WAIT_MS = 100  # how long a flush waits for a lock another transaction holds
LAST_FLUSH_SECONDS = 5.0  # how long the flush at shutdown keeps trying: there is no next one
OUTCOMES = ("valid", "insufficient_scope", "expired", "revoked", "user_inactive",
            "ip_not_allowed", "wrong_service", "rate_limited", "usage_exceeded")
log = logging.getLogger("keyvault")
_table = KeyUsageDay.__table__


@dataclass
class Tally:
    """One row's worth of counts not yet written."""

    count: int
    last_seen_at: datetime
    last_address: str | None

    def add(self, other: Tally) -> None:
        self.count += other.count
        if other.last_seen_at >= self.last_seen_at:
            self.last_seen_at, self.last_address = other.last_seen_at, other.last_address


class UsageCounter:
    """One app's counts in one process, and the timer that writes them."""

    def __init__(self, app: Flask):
        self.pid = os.getpid()
        self.every = app.config["KEYVAULT_USAGE_FLUSH_SECONDS"]
        self._app = app
        self._engine: Engine | None = None
        self._lock = threading.Lock()  # guards _counts and _timer
        self._flushing = threading.Lock()  # one flush at a time
        # (key id, its public id, day, outcome): the public id too, because SQLite hands a
        # deleted key's row id to the next key made, and counts must not move to that one.
        self._counts: dict[tuple[int, str, date, str], Tally] = {}
        self._timer: threading.Timer | None = None
        self._closed = False
        self._stamps_kept = False  # the keystore holds stamps a flush could not write
        self._only_busy = True  # the last flush failed, if it did, only on a held lock
        self._failures = FailureLog(log, "key usage")  # an outage: a line a minute, not a flush
        self.dropped = 0

    def add(self, key_id: int, public_id: str, outcome: str, now: datetime,
            address: str | None) -> None:
        """Count one presentation; memory only."""
        with self._lock:
            self._merge((key_id, public_id, now.date(), outcome), Tally(1, now, address))
            if self._timer is None and not self._closed:
                self._timer = threading.Timer(self.every, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def _merge(self, row: tuple[int, str, date, str], tally: Tally) -> None:
        """Add to the held counts (the caller holds _lock); bounded by PENDING_MAX."""
        held = self._counts.get(row)
        if held is not None:
            held.add(tally)
        elif len(self._counts) < PENDING_MAX:
            self._counts[row] = tally
        else:
            self.dropped += tally.count

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if self._closed:
                return
        self.flush()
        with self._lock:  # what a failed flush kept is tried again a period later
            if (self._counts or self._stamps_kept) and self._timer is None \
                    and not self._closed:
                self._timer = threading.Timer(self.every, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def pending(self) -> int:
        """Presentations counted here and not yet written."""
        with self._lock:
            return sum(tally.count for tally in self._counts.values())

    def flush(self) -> bool:
        """Write the held counts in one transaction; False (counts kept) when it could not."""
        with self._flushing:
            with self._lock:
                batch, self._counts = self._counts, {}
                dropped = self.dropped
            if dropped and self._failures.failed(
                    "rows held", "%d uses not counted (too many rows held)", dropped,
                    level=logging.WARNING):
                with self._lock:  # counted on until a line says how many
                    self.dropped -= dropped
            self._only_busy = True
            self._write_stamps()
            try:
                if batch:
                    self._write(batch)
            except Exception as error:  # noqa: BLE001 - whatever it is, keep the counts
                self._only_busy &= lock_busy(error)
                kind = _kind(error)
                self._failures.failed(f"rows: {kind}", "%d rows not written yet (%s); kept for "
                                      "the next flush", len(batch), kind, level=logging.WARNING)
                with self._lock:
                    for row, tally in batch.items():
                        self._merge(row, tally)
                return False
            if not self._stamps_kept:
                self._failures.recovered()
            return True

    def _write_stamps(self) -> None:
        """The last_used_at stamps of verdicts answered on the server's event loop
        (keystore.stamp), in one transaction with them all; kept ones make the timer
        come round again even if no use is counted meanwhile."""
        store = self._app.extensions.get("keyvault.keystore")  # none made: nothing held
        if store is None:
            return
        try:
            self._stamps_kept = not store.write_pending()
            if self._stamps_kept:
                self._failures.failed("stamps: busy", "last-used stamps not written yet "
                                      "(database busy); kept for the next flush",
                                      level=logging.WARNING)
        except Exception as error:  # noqa: BLE001 - kept by the keystore; the log says why
            self._stamps_kept = True
            self._only_busy = False
            kind = _kind(error)
            self._failures.failed(f"stamps: {kind}", "last-used stamps not written yet (%s)",
                                  kind, level=logging.WARNING)

    def _write(self, batch: dict[tuple[int, str, date, str], Tally]) -> None:
        engine = self._engine_for_flush()
        # A key deleted since it was counted (its account was) has nothing to add to, and a
        # new key that got its row id is another key.
        with engine.connect() as conn:
            ids = {key_id for key_id, _, _, _ in batch}
            live = dict(conn.execute(select(ApiKey.id, ApiKey.public_id)
                                     .where(ApiKey.id.in_(ids))).all())
            conn.rollback()
        rows = [{"key_id": key_id, "day": day, "outcome": outcome, "count": tally.count,
                 "last_seen_at": tally.last_seen_at, "last_address": tally.last_address}
                for (key_id, public_id, day, outcome), tally in batch.items()
                if live.get(key_id) == public_id]
        if not rows:
            return
        try:
            with engine.begin() as conn:
                conn.execute(_upsert(engine.dialect.name), rows)
        except IntegrityError:  # a key deleted between the check and the write
            log.warning("key usage: %d rows dropped (a key was deleted)", len(rows))

    def _engine_for_flush(self) -> Engine:
        """A small engine of its own whose connections give up on a held lock after WAIT_MS."""
        if self._engine is None:
            with self._app.app_context():
                url = db.engine.url
            if url.get_backend_name() == "sqlite":
                connect_args = {"timeout": WAIT_MS / 1000}
            else:
                timeout = self._app.config["KEYVAULT_DATABASE_TIMEOUT"]
                connect_args = {"connect_timeout": timeout,
                                "options": f"-c lock_timeout={WAIT_MS}"}
            self._engine = create_engine(url, connect_args=connect_args, pool_size=1,
                                         max_overflow=1, pool_pre_ping=True)
        return self._engine

    def close(self, write: bool = True) -> None:
        """Stop the timer, write what is held (unless `write` is False) and let go of the
        connections."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if write:
            self._last_flush()
        with self._flushing:  # after a timer's flush in progress has given its connection back
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def _last_flush(self) -> None:
        """Flush at shutdown, trying again for a while when a writer holds the lock (the other
        workers stopping at the same moment flush too): nothing comes after it. Any other
        failure (the database is gone) is not worth waiting for."""
        deadline = time.monotonic() + LAST_FLUSH_SECONDS
        while not (self.flush() and not self._stamps_kept):
            if not self._only_busy or time.monotonic() >= deadline:
                with self._lock:
                    rows = len(self._counts)
                log.error("key usage: not written at shutdown (database busy or down), so "
                          "lost: %d use-count rows%s", rows,
                          ", and last-used stamps" if self._stamps_kept else "")
                return
            time.sleep(0.05)


def _kind(error: Exception) -> str:
    """A failure's kind for the log: the driver's exception class under SQLAlchemy's wrapper."""
    return type(getattr(error, "orig", None) or error).__name__


def _upsert(dialect: str):
    """Add to the day's row, or make it; the latest use and its address win."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(_table)
    new = statement.excluded
    newer = or_(_table.c.last_seen_at.is_(None), new.last_seen_at >= _table.c.last_seen_at)
    return statement.on_conflict_do_update(
        index_elements=[_table.c.key_id, _table.c.day, _table.c.outcome],
        set_={"count": _table.c.count + new.count,
              "last_seen_at": case((newer, new.last_seen_at), else_=_table.c.last_seen_at),
              "last_address": case((newer, new.last_address), else_=_table.c.last_address)},
    )


# ---------------------------------------------------------------- one counter per app and process

_counters: weakref.WeakSet[UsageCounter] = weakref.WeakSet()
_making = threading.Lock()
EXTENSION = "keyvault.usage"


def counter(app: Flask) -> UsageCounter:
    """The app's counter in this process (made after a fork, never shared with the parent)."""
    held = app.extensions.get(EXTENSION)
    if held is None or held.pid != os.getpid():
        with _making:
            held = app.extensions.get(EXTENSION)
            if held is None or held.pid != os.getpid():
                held = app.extensions[EXTENSION] = UsageCounter(app)
                _counters.add(held)
    return held


def count(app: Flask, presented, now: datetime, address: str | None) -> None:
    """Count presentations: (key id, public id, verdict code) triples. Memory only (nothing
    here touches the database), and it never raises: the verdict it follows stands whatever
    happens here."""
    try:
        held = counter(app)
        address = address[:45] if address else None
        for key_id, public_id, outcome in presented:
            held.add(key_id, public_id, outcome, now, address)
    except Exception:  # noqa: BLE001 - a count is never worth a verdict (a thread that would
        log.exception("key usage: a use was not counted")  # not start, say)


def flush(app: Flask) -> bool:
    """Write this process's counts now (tests, shutdown); False when they were kept."""
    return counter(app).flush()


def close(app: Flask, write: bool = True) -> None:
    """Stop counting for this app in this process (tests' teardown, shutdown)."""
    held = app.extensions.pop(EXTENSION, None)
    if held is not None and held.pid == os.getpid():
        held.close(write)


@atexit.register
def _write_at_exit() -> None:
    for held in list(_counters):
        if held.pid == os.getpid():
            held.close()


# ---------------------------------------------------------------- reading, for the key page


@dataclass
class DayUsage:
    day: date
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class KeyUsage:
    """A key's written counts for the last `days` days (oldest first), and its last good use."""

    days: list[DayUsage]
    last_valid_at: datetime | None
    last_valid_address: str | None

    def total(self, outcome: str | None = None) -> int:
        return sum(d.total if outcome is None else d.counts.get(outcome, 0) for d in self.days)

    @property
    def outcomes(self) -> list[str]:
        """The verdict codes seen in the period, in OUTCOMES' order."""
        seen = {o for d in self.days for o, n in d.counts.items() if n}
        return [o for o in OUTCOMES if o in seen] + sorted(seen - set(OUTCOMES))


def key_usage(key: ApiKey, today: date, days: int = 30) -> KeyUsage:
    """What has been written for `key` (already the owner's: keys.get_key checked that)."""
    first = today - timedelta(days=days - 1)
    by_day = {first + timedelta(days=n): DayUsage(first + timedelta(days=n)) for n in range(days)}
    rows = db.session.execute(
        select(KeyUsageDay.day, KeyUsageDay.outcome, KeyUsageDay.count)
        .where(KeyUsageDay.key_id == key.id, KeyUsageDay.day >= first, KeyUsageDay.day <= today))
    for day, outcome, number in rows:
        by_day[day].counts[outcome] = by_day[day].counts.get(outcome, 0) + number
    last = db.session.execute(
        select(KeyUsageDay.last_seen_at, KeyUsageDay.last_address)
        .where(KeyUsageDay.key_id == key.id, KeyUsageDay.outcome == "valid")
        .order_by(KeyUsageDay.last_seen_at.desc()).limit(1)).first()
    return KeyUsage(list(by_day.values()), *(last if last is not None else (None, None)))
