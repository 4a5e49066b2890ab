"""Rate limits on the doors a program knocks at: the API (per key), verify and forward_auth (per
calling key), sign-up (per address) and password-reset mails (service.resets has the rule).
Password guessing has its own, exact limit (service.guessing).

Where counts live (KEYVAULT_RATELIMIT_STORAGE_URL):
- `memory://` (the default) under `keyvault serve`: in memory that all the server's workers
  share (SharedWindowCounts), set up by the server's main process before it forks them, so a
  limit of 20 is 20 across workers and a worker replaced on SIGHUP finds the counts it left;
- `memory://` in any other process (`flask run`, the test client): that process's own memory
  (WindowCounts);
- a `limits` storage (Flask-Limiter's own engine) shared by every worker and instance:
  `redis://host:6379/0`.
Windows are fixed and aligned to the clock, so every instance counts the same window; a hit is
one atomic increment (Redis INCR, or one under a lock on the shared memory), which is what keeps
parallel requests from slipping past a limit. Flask-Limiter's decorators are not used because
the verify fast path answers without Flask: the gate (http.gate.admit) calls this for both.

A limiter that cannot reach its storage lets requests through and logs it (once a minute):
rate limiting must not turn a Redis outage into a KeyVault outage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import math
import mmap
import os
import struct
import threading
import time
from typing import NamedTuple

from flask import Flask, current_app
from limits import parse
from limits.storage import RedisClusterStorage, RedisStorage, storage_from_string

from .logs import FailureLog

log = logging.getLogger("keyvault.ratelimit")

# The doors and their configuration settings.
DOORS = {
    "api": "KEYVAULT_RATELIMIT_API",
    "verify": "KEYVAULT_RATELIMIT_VERIFY",
    "signup": "KEYVAULT_RATELIMIT_SIGNUP",
    "reset": "KEYVAULT_RATELIMIT_RESET",  # reset mails per address asked for, per client
    "reset_total": "KEYVAULT_RATELIMIT_RESET_TOTAL",  # ... per address, strangers altogether
}
DEFAULTS = {"api": "1200/minute", "verify": "60000/minute", "signup": "10/hour",
            "reset": "5/hour", "reset_total": "10/hour"}
STORAGE_ERROR_LOG_EVERY = 60.0
# Several counts in one round trip to Redis (RateLimiter.count_all): each as the `limits`
# storage's own incr does it (INCRBY, EXPIRE when new), stopping after the first one past its
# limit, so nothing after a refusal is counted. KEYS: the counts' names; ARGV: limit, window, ...
_COUNT_ALL = """
local counts = {}
for i, name in ipairs(KEYS) do
    local count = redis.call("incrby", name, 1)
    if count == 1 then
        redis.call("expire", name, ARGV[2 * i])
    end
    counts[i] = count
    if count > tonumber(ARGV[2 * i - 1]) then
        break
    end
end
return counts
"""


class Quota(NamedTuple):
    """A door's limit: `amount` requests per `window` seconds."""

    door: str
    amount: int
    window: int


def parse_quota(door: str, text: str) -> Quota | None:
    """'600/minute', '10 per hour', '100/10 seconds' (the `limits` notation); '0' or '' = none."""
    text = text.strip()
    if text in ("", "0", "off", "none"):
        return None
    try:
        item = parse(text)
    except ValueError as error:
        raise ValueError(f"{DOORS[door]}: {text!r} is not a limit such as '600/minute'") from error
    return Quota(door, item.amount, item.get_expiry())


class Outcome(NamedTuple):
    """One request counted against a door's quota."""

    quota: Quota
    allowed: bool
    remaining: int
    reset: int  # seconds until the window ends

    def headers(self) -> tuple[tuple[str, str], ...]:
        """The IETF draft's fields (draft-ietf-httpapi-ratelimit-headers), and Retry-After when
        refused."""
        q = self.quota
        fields = (("RateLimit-Policy", f'"{q.door}";q={q.amount};w={q.window}'),
                  ("RateLimit", f'"{q.door}";r={self.remaining};t={self.reset}'))
        return fields if self.allowed else (*fields, ("Retry-After", str(self.reset)))


def headers_of(outcomes: list[Outcome]) -> tuple[tuple[str, str], ...]:
    """The draft's fields for several limits on one request (a door's, a key's), each field a
    list of one item per limit; Retry-After is the longest wait among those refused."""
    if len(outcomes) == 1:
        return outcomes[0].headers()
    merged: dict[str, list[str]] = {}
    for outcome in outcomes:
        for name, value in outcome.headers():
            merged.setdefault(name, []).append(value)
    waits = merged.pop("Retry-After", None)
    fields = tuple((name, ", ".join(values)) for name, values in merged.items())
    return fields if waits is None else (*fields, ("Retry-After", str(max(map(int, waits)))))


class WindowCounts:
    """memory://: one count per door, window and caller, in a dict under a lock.

    `limits`' own MemoryStorage starts a timer thread every 10 ms while hits arrive, to expire
    counts; on the verify hot path that cost a third of the work (bench/README.md). Here a key
    names its window, so a finished window's counts are simply dropped once a minute.
    """

    SWEEP_EVERY = 60.0

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._ends: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_sweep = time.time() + self.SWEEP_EVERY

    def incr(self, key: str, expiry: float) -> int:
        with self._lock:
            now = time.time()
            if now >= self._next_sweep:
                self._sweep(now)
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
            if count == 1:
                self._ends[key] = now + expiry
            return count

    def get(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, 0) if self._ends.get(key, 0) > time.time() else 0

    def _sweep(self, now: float) -> None:
        for key in [key for key, end in self._ends.items() if end <= now]:
            del self._counts[key], self._ends[key]
        self._next_sweep = now + self.SWEEP_EVERY

    def __len__(self) -> int:
        return len(self._counts)


class SharedWindowCounts:
    """memory:// under `keyvault serve`: the same counts as WindowCounts, in a table of fixed
    slots in memory that every worker of the server maps (a memfd the main process made before
    forking them: shared_between_workers).

    A slot is a key's digest, the time its count may be dropped, and the count. A key goes in
    the first free slot (never used, or past its time) of the PROBES slots after its digest's
    place, so a lookup stops at a never-used slot. One increment holds a lock on the whole table:
    a thread lock within the worker and flock(2) between workers (each opens the memfd anew, so
    that each has a lock of its own; a worker that dies holding it lets go with its last file).
    Both cost about 4 µs a hit on verify's hot path (bench/README.md).

    If the PROBES slots of a new key are all taken (some hundreds of thousands of live counts:
    a flood of addresses or keys), the smallest count among them gives its slot up: a count of
    1 or 2 lost is the least harm, and the table keeps counting the busy callers it is for.
    """

    SLOTS = 1 << 20  # 32 MiB of address space; memory is taken only by pages a count touches
    PROBES = 32
    _SLOT = struct.Struct("<16sdq")  # digest, drop after (epoch seconds), count
    SIZE = SLOTS * _SLOT.size

    def __init__(self, fd: int) -> None:
        # A file of our own for the memfd: flock(2) belongs to an open file, and the one this
        # process inherited is the same open file in every worker.
        self._fd = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
        self._table = mmap.mmap(self._fd, self.SIZE)
        self._lock = threading.Lock()
        self._crowded = FailureLog(log, "rate limits", STORAGE_ERROR_LOG_EVERY)

    def incr(self, key: str, expiry: float) -> int:
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        first = int.from_bytes(digest[:8], "little")
        slot, table, mask = self._SLOT, self._table, self.SLOTS - 1
        # Work is kept out of the lock where it can be: a worker that loses its CPU while
        # holding it stops every other worker's event loop until it runs again.
        now = time.time()
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                free = -1
                for probe in range(self.PROBES):
                    offset = ((first + probe) & mask) * slot.size
                    held, until, count = slot.unpack_from(table, offset)
                    if until > now:
                        if held == digest:
                            slot.pack_into(table, offset, digest, until, count + 1)
                            return count + 1
                        continue
                    if free < 0:
                        free = offset
                    if until == 0:  # never used: the key is not further on
                        break
                if free < 0:
                    free = self._smallest(first, now)
                slot.pack_into(table, free, digest, now + expiry, 1)
                return 1
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def get(self, key: str) -> int:
        """The count so far, without counting (a key's standing in a refusal about it)."""
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        first = int.from_bytes(digest[:8], "little")
        slot, mask, now = self._SLOT, self.SLOTS - 1, time.time()
        with self._lock:
            for probe in range(self.PROBES):
                held, until, count = slot.unpack_from(self._table,
                                                      ((first + probe) & mask) * slot.size)
                if until == 0:
                    break
                if held == digest and until > now:
                    return count
        return 0

    def _smallest(self, first: int, now: float) -> int:
        """The slot among a full run of PROBES whose count is the smallest (the class's
        docstring says why); logged once a minute per worker."""
        slot, mask = self._SLOT, self.SLOTS - 1
        offsets = [((first + probe) & mask) * slot.size for probe in range(self.PROBES)]
        smallest = min(offsets, key=lambda offset: slot.unpack_from(self._table, offset)[2])
        self._crowded.failed("crowded", "the table is crowded: small counts are being dropped "
                             "to make room (a flood of callers? KEYVAULT_RATELIMIT_STORAGE_URL="
                             "redis:// has no such bound)", level=logging.WARNING)
        return smallest


SHARED_COUNTS_FD = "KEYVAULT_RATELIMIT_SHARED_FD"  # set by `keyvault serve` for its workers


@contextlib.contextmanager
def shared_between_workers(storage_url: str):
    """For the main process of `keyvault serve`, around starting its workers: with memory://,
    a table that every worker forked inside shares (SharedWindowCounts), new and empty; its
    descriptor is named to them in the environment, and it lives as long as this process
    holds it, so a worker that replaces another (SIGHUP, a crash) finds the counts."""
    if storage_url.split("://", 1)[0] != "memory":
        yield
        return
    fd = os.memfd_create("keyvault-ratelimit", 0)  # inherited by the forked workers
    try:
        os.ftruncate(fd, SharedWindowCounts.SIZE)
        os.environ[SHARED_COUNTS_FD] = str(fd)
        yield
    finally:
        os.environ.pop(SHARED_COUNTS_FD, None)
        os.close(fd)


def _storage(url: str):
    if url.split("://", 1)[0] != "memory":
        return storage_from_string(url)
    shared = os.environ.get(SHARED_COUNTS_FD)
    return SharedWindowCounts(int(shared)) if shared else WindowCounts()


class RateLimiter:
    def __init__(self, storage_url: str, quotas: dict[str, Quota | None]):
        self.storage = _storage(storage_url)
        self.quotas = quotas
        self._failures = FailureLog(log, "rate limits", STORAGE_ERROR_LOG_EVERY)
        # A cluster spreads the names over nodes, which one script cannot reach: one by one.
        self._count_all = (self.storage.get_connection().register_script(_COUNT_ALL)
                           if isinstance(self.storage, RedisStorage)
                           and not isinstance(self.storage, RedisClusterStorage) else None)

    def hit(self, door: str, who: str) -> Outcome | None:
        """Count one request by `who` at `door`; None when the door has no limit (or the
        storage cannot be reached)."""
        quota = self.quotas.get(door)
        return None if quota is None else self.count(quota, who)

    def count(self, quota: Quota, who, *, counting: bool = True) -> Outcome | None:
        """Count one request by `who` against `quota` (a door's, or a limit an owner set on a
        key or a pool: issue 25); with `counting` false, only say where it stands. None when
        the storage cannot be reached: the request goes ahead, and that is logged."""
        now = time.time()
        name = _name(quota, who, now)
        try:
            count = (self.storage.incr(name, quota.window) if counting
                     else int(self.storage.get(name) or 0))
        except Exception as error:  # noqa: BLE001 - any storage failure: let the request in
            self._storage_failed(error)
            return None
        return _outcome(quota, count, now)

    def count_all(self, counts: list[tuple[Quota, str]]) -> list[Outcome | None]:
        """Count one request against each (quota, who) in order, up to and including the first
        that refuses (nothing after it is counted): their outcomes. With Redis one round trip
        for all (a script), so a door's count and the rates its owner set on the key cost what
        the door's alone does; elsewhere one count after another. None for each when the
        storage cannot be reached (let through, logged)."""
        if self._count_all is None or len(counts) < 2:
            outcomes: list[Outcome | None] = []
            for quota, who in counts:
                outcomes.append(self.count(quota, who))
                if outcomes[-1] is not None and not outcomes[-1].allowed:
                    break
            return outcomes
        now = time.time()
        names = [self.storage.prefixed_key(_name(quota, who, now)) for quota, who in counts]
        limits = [number for quota, _ in counts for number in (quota.amount, quota.window)]
        try:
            got = self._count_all(keys=names, args=limits)
        except Exception as error:  # noqa: BLE001 - any storage failure: let the request in
            self._storage_failed(error)
            return [None] * len(counts)
        return [_outcome(quota, int(count), now) for (quota, _), count in zip(counts, got, strict=False)]

    def _storage_failed(self, error: Exception) -> None:
        self._failures.failed("storage", "storage unreachable (%s); requests are not being "
                              "limited", type(error).__name__)


def _name(quota: Quota, who, now: float) -> str:
    """The count's name: the door (or key, pool), the fixed window `now` is in, and who."""
    return f"kv/{quota.door}/{int(now // quota.window)}/{who}"


def _outcome(quota: Quota, count: int, now: float) -> Outcome:
    reset = max(1, math.ceil((int(now // quota.window) + 1) * quota.window - now))
    return Outcome(quota, count <= quota.amount, max(quota.amount - count, 0), reset)


def init_app(app: Flask) -> None:
    app.extensions["keyvault.ratelimit"] = RateLimiter(
        app.config["KEYVAULT_RATELIMIT_STORAGE_URL"],
        {door: app.config[setting] for door, setting in DOORS.items()})


def limiter(app: Flask | None = None) -> RateLimiter:
    return (app or current_app).extensions["keyvault.ratelimit"]
