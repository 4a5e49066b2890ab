"""Rate limits on the doors a program knocks at: the API (per key), verify and forward_auth (per
calling key), sign-up (per address) and password-reset mails (per email address asked for).
Password guessing has its own, exact limit (service.guessing).

Counts live in this process's memory by default (WindowCounts), or in a `limits` storage
(Flask-Limiter's own engine) shared by every worker and instance through
KEYVAULT_RATELIMIT_STORAGE_URL (`redis://host:6379/0`). Windows are fixed and aligned to the
clock, so every instance counts the same window; a hit is one atomic increment (Redis INCR),
which is what keeps parallel requests from slipping past a limit. Flask-Limiter's decorators
are not used because the verify fast path answers without Flask: the gate (http.gate.admit)
calls this for both.

A limiter that cannot reach its storage lets requests through and logs it (once a minute):
rate limiting must not turn a Redis outage into a KeyVault outage.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import NamedTuple

from flask import Flask, current_app
from limits import parse
from limits.storage import storage_from_string

log = logging.getLogger("keyvault.ratelimit")

# The doors and their configuration settings.
DOORS = {
    "api": "KEYVAULT_RATELIMIT_API",
    "verify": "KEYVAULT_RATELIMIT_VERIFY",
    "signup": "KEYVAULT_RATELIMIT_SIGNUP",
    "reset": "KEYVAULT_RATELIMIT_RESET",  # password-reset mails, per email address asked for
}
DEFAULTS = {"api": "1200/minute", "verify": "60000/minute", "signup": "10/hour",
            "reset": "5/hour"}
STORAGE_ERROR_LOG_EVERY = 60.0


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

    def _sweep(self, now: float) -> None:
        for key in [key for key, end in self._ends.items() if end <= now]:
            del self._counts[key], self._ends[key]
        self._next_sweep = now + self.SWEEP_EVERY

    def __len__(self) -> int:
        return len(self._counts)


def _storage(url: str):
    return WindowCounts() if url.split("://", 1)[0] == "memory" else storage_from_string(url)


class RateLimiter:
    def __init__(self, storage_url: str, quotas: dict[str, Quota | None]):
        self.storage = _storage(storage_url)
        self.quotas = quotas
        self._last_error_log = -math.inf
        self._lock = threading.Lock()

    def hit(self, door: str, who: str) -> Outcome | None:
        """Count one request by `who` at `door`; None when the door has no limit (or the
        storage cannot be reached)."""
        quota = self.quotas.get(door)
        if quota is None:
            return None
        now = time.time()
        window = int(now // quota.window)
        try:
            count = self.storage.incr(f"kv/{door}/{window}/{who}", quota.window)
        except Exception as error:  # noqa: BLE001 - any storage failure: let the request in
            self._storage_failed(error)
            return None
        reset = max(1, math.ceil((window + 1) * quota.window - now))
        return Outcome(quota, count <= quota.amount, max(quota.amount - count, 0), reset)

    def _storage_failed(self, error: Exception) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last_error_log < STORAGE_ERROR_LOG_EVERY:
                return
            self._last_error_log = now
        log.error("rate-limit storage unreachable (%s); requests are not being limited",
                  type(error).__name__)


def init_app(app: Flask) -> None:
    app.extensions["keyvault.ratelimit"] = RateLimiter(
        app.config["KEYVAULT_RATELIMIT_STORAGE_URL"],
        {door: app.config[setting] for door, setting in DOORS.items()})


def limiter(app: Flask | None = None) -> RateLimiter:
    return (app or current_app).extensions["keyvault.ratelimit"]
