"""What a failure leaves in the log, for requests and the work after them alike: a database
failure one line per kind per interval, without SQL; anything unexpected with its traceback."""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from . import metrics

log = logging.getLogger("keyvault")
# A database that is down, unreachable or busy past KEYVAULT_DATABASE_TIMEOUT: the client may
# try again soon, and nothing was decided (verify never says yes without the database).
DATABASE_ERRORS = (OperationalError, InterfaceError, PoolTimeout)
# One log line per kind of database failure per interval: an outage under load must not write
# a line (let alone a traceback holding SQL parameters, key digests among them) per request.
DATABASE_LOG_INTERVAL = 30.0


class _FailureLog:
    """When each kind of database failure was last logged, for one app."""

    def __init__(self):
        self.last: dict[str, float] = {}
        self.lock = threading.Lock()

    def due(self, kind: str) -> bool:
        now = time.monotonic()
        with self.lock:
            if now - self.last.get(kind, -DATABASE_LOG_INTERVAL) < DATABASE_LOG_INTERVAL:
                return False
            self.last[kind] = now
            return True


def report(app: Flask, error: Exception, method: str, path: str, request: str) -> None:
    """Log a failure that ended a request (or the work a request left behind)."""
    if isinstance(error, DATABASE_ERRORS):
        cause = getattr(error, "orig", None) or error
        kind = type(cause).__name__
        metrics.record_database_error(kind)
        if not app.extensions.setdefault("keyvault.failure_log", _FailureLog()).due(kind):
            return
        first_line = (str(cause).strip().splitlines() or [""])[0][:200]
        log.error("database unavailable (%s: %s) on %s %s (request %s); answering 503, "
                  "logged at most every %d s", kind, first_line, method, path, request,
                  DATABASE_LOG_INTERVAL)
        return
    log.error("unhandled error on %s %s (request %s)", method, path, request, exc_info=error)
