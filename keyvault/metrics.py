"""Prometheus counters (served at /metrics by keyvault.ops).

What is counted, and where:
- `keyvault_verify_total{endpoint, code}`: every verify decision, in keyvault.http.gate (the
  Flask view and the fast path alike) and forward_auth: the subject key's verdict (`valid`,
  `expired`, `revoked`, `not_found`, `malformed`, `user_inactive`, `insufficient_scope`) when the
  caller is let in, else `caller_refused`, `bad_request`, `error` (database down) or, on
  forward_auth, `no_key`.
- `keyvault_request_duration_seconds{route, method}`: every request, timed by
  http.context.AroundRequest; `route` is the URL rule (`/api/personal_api_keys/<public_id>/`),
  never the raw path, and `<unmatched>` for anything no rule matched (methods outside the
  standard few are `other`).
- `keyvault_rate_limited_total{limit}`: 429 answers, by limit name (`record_rate_limited`).
- `keyvault_database_errors_total{kind}`: requests that ended in a database failure (503).
- `keyvault_live_keys`: keys that verify now, counted by a query at scrape time.
- `keyvault_processes`: processes serving (a live gauge: a dead worker's share goes).

`keyvault serve` forks workers, so the counters live in prometheus-client's multi-process mode:
`multiprocess_dir()` (called by keyvault.server.run) makes a fresh folder for this server's
workers, marks dead workers (their live gauges stop counting) and deletes it on exit. The
prometheus_client import waits for the first metric, so a process decides its mode only after
`keyvault serve` has set PROMETHEUS_MULTIPROC_DIR.

Who may read: keyvault.ops.views.scrape says.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from flask import Flask
from sqlalchemy import func, or_, select

from . import clock
from .extensions import db
from .logs import LOG_FIELDS
from .models import ApiKey, User

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
# Seconds; verify answers in about a millisecond, password checks take hundreds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)



class _Metrics:
    def __init__(self):
        from prometheus_client import Counter, Gauge, Histogram

        self.verify = Counter("keyvault_verify", "Verify decisions, by endpoint and outcome.",
                              ["endpoint", "code"])
        self.latency = Histogram("keyvault_request_duration_seconds",
                                 "Time to answer a request, by route (the URL rule).",
                                 ["route", "method"], buckets=LATENCY_BUCKETS)
        self.rate_limited = Counter("keyvault_rate_limited",
                                    "Requests refused with 429, by limit.", ["limit"])
        self.database_errors = Counter("keyvault_database_errors",
                                       "Requests that ended in a database failure (503), by kind.",
                                       ["kind"])
        self.leak_reports = Counter("keyvault_secret_scanning_tokens",
                                    "Tokens in signed leaked-key reports, by the label answered.",
                                    ["label"])
        # Live processes that serve KeyVault; a dead worker's share is removed by
        # mark_process_dead (multiprocess_dir's watcher).
        self.processes = Gauge("keyvault_processes", "Processes serving KeyVault.",
                               multiprocess_mode="livesum")
        self.processes.set(1)
        self._children: dict = {}

    def child(self, metric, *labels: str):
        """metric.labels(*labels), remembered: labels() takes a lock and hashes every time, and
        this runs for every request."""
        key = (metric._name, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


_metrics: _Metrics | None = None
_lock = threading.Lock()


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


# ---------------------------------------------------------------- what the app calls


def record_verify(endpoint: str, code: str) -> None:
    metrics = _get()
    metrics.child(metrics.verify, endpoint, code).inc()


def record_rate_limited(limit_name: str) -> None:
    """A request refused with 429 by the limit `limit_name` (the rate limiter calls this)."""
    _get().rate_limited.labels(limit_name).inc()


def record_reported_token(label: str) -> None:
    """One token of a leaked-key report, answered `true_positive` or `false_positive`."""
    metrics = _get()
    metrics.child(metrics.leak_reports, label).inc()


def record_database_error(kind: str) -> None:
    _get().database_errors.labels(kind).inc()


def observe_request(environ: dict, method: str, seconds: float) -> None:
    """A request's duration, by its route: the URL rule Flask matched, or the fast path's, as
    noted for the access log (http.context.note); UNMATCHED when nothing matched."""
    route = (environ.get(LOG_FIELDS) or {}).get("route") or UNMATCHED
    if method not in METHODS:  # a client may send any token as its method
        method = "other"
    metrics = _get()
    metrics.child(metrics.latency, route, method).observe(seconds)


def init_app(app: Flask) -> None:
    if os.environ.get(MULTIPROC_ENV):  # a worker of `keyvault serve`: count it from the start
        _get().processes.set(1)  # again: metrics made before a fork start at 0 in the child


# ---------------------------------------------------------------- /metrics


def _live_keys() -> int:
    now = clock.now()
    return db.session.scalar(
        select(func.count(ApiKey.id)).join(ApiKey.user).where(
            ApiKey.revoked_at.is_(None), User.is_active.is_(True),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)))


def exposition() -> bytes:
    """Every metric in Prometheus' text format: all workers' counters (multi-process mode) or
    this process's, then the live keys counted now."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    _get()
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    live = GaugeMetricFamily("keyvault_live_keys", "Keys that verify now (not revoked, not "
                             "expired, owner active).", value=_live_keys())

    class _Live:
        def collect(self):
            yield live

    scraped = CollectorRegistry()
    scraped.register(_Live())
    return generate_latest(registry) + generate_latest(scraped)



# ---------------------------------------------------------------- keyvault serve


_DB_FILE = re.compile(r".*_(\d+)\.db")


def mark_dead_workers(path: Path, handled: set[int]) -> None:
    """mark_process_dead for every process that left files in `path` and is gone."""
    from prometheus_client import multiprocess

    for name in os.listdir(path):
        match = _DB_FILE.fullmatch(name)
        if match is None or int(match.group(1)) in handled:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(path))
            handled.add(pid)
        except PermissionError:
            pass  # alive, someone else's


DIR_PREFIX = "keyvault-metrics-"


def _remove_orphans() -> None:
    """Folders left by a `keyvault serve` that was killed before it could remove its own."""
    for folder in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*-*"):
        owner = folder.name[len(DIR_PREFIX):].split("-", 1)[0]
        if not owner.isdigit():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass


@contextlib.contextmanager
def multiprocess_dir(interval: float = 2.0):
    """A fresh PROMETHEUS_MULTIPROC_DIR for the workers started inside, watched for dead workers
    every `interval` seconds, and deleted afterwards (a stale one would add old counts to new)."""
    _remove_orphans()
    path = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-"))
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(path)
    import prometheus_client  # noqa: F401 - now, in multi-process mode: forked workers inherit it
    stop = threading.Event()

    def watch():
        handled: set[int] = set()
        while not stop.wait(interval):
            with contextlib.suppress(OSError):
                mark_dead_workers(path, handled)

    watcher = threading.Thread(target=watch, name="keyvault-metrics-reaper", daemon=True)
    watcher.start()
    try:
        yield path
    finally:
        stop.set()
        watcher.join()
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)
