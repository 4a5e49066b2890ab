"""memory://'s counts (keyvault.ratelimit): in one process's memory (WindowCounts), or, under
`keyvault serve`, in memory that all the server's workers share (SharedWindowCounts), set up by
the server's main process before it forks them (shared_between_workers)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import mmap
import os
import struct
import threading
import time

from .logs import FailureLog

log = logging.getLogger("keyvault.ratelimit")

SHARED_COUNTS_FD = "KEYVAULT_RATELIMIT_SHARED_FD"  # set by `keyvault serve` for its workers
CROWDED_LOG_EVERY = 60.0


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
        self._crowded = FailureLog(log, "rate limits", CROWDED_LOG_EVERY)

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


def in_memory():
    """The counts for memory://: the table the server's workers share, when this process is
    one of them; else this process's own."""
    shared = os.environ.get(SHARED_COUNTS_FD)
    return SharedWindowCounts(int(shared)) if shared else WindowCounts()
