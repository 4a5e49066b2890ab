"""Rate limits on the doors a program knocks at: the API (per key), verify and forward_auth (per
calling key), sign-up (per address) and password-reset mails (service.resets has the rule).
Password guessing has its own, exact limit (service.guessing).

Where counts live (KEYVAULT_RATELIMIT_STORAGE_URL):
- `memory://` (the default) under `keyvault serve`: in memory that all the server's workers
  share (window_counts.SharedWindowCounts), set up by the server's main process before it forks
  them, so a limit of 20 is 20 across workers and a worker replaced on SIGHUP finds the counts
  it left;
- `memory://` in any other process (`flask run`, the test client): that process's own memory
  (window_counts.WindowCounts);
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

import logging
import math
import time
from typing import NamedTuple

from flask import Flask, current_app
from limits import parse
from limits.storage import RedisClusterStorage, RedisStorage, storage_from_string

from .logs import FailureLog
from .window_counts import in_memory

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


def _storage(url: str):
    return storage_from_string(url) if url.split("://", 1)[0] != "memory" else in_memory()


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
