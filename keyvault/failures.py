"""What a failure leaves in the log, for requests and the work after them alike: a database
failure one line per kind per interval, without SQL; anything unexpected with its traceback."""

from __future__ import annotations

import logging

from flask import Flask
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from . import metrics
from .logs import FailureLog

log = logging.getLogger("keyvault")
# A database that is down, unreachable or busy past KEYVAULT_DATABASE_TIMEOUT: the client may
# try again soon, and nothing was decided (verify never says yes without the database).
DATABASE_ERRORS = (OperationalError, InterfaceError, PoolTimeout)
# One log line per kind of database failure per interval: an outage under load must not write
# a line (let alone a traceback holding SQL parameters, key digests among them) per request.
DATABASE_LOG_INTERVAL = 30.0


def report(app: Flask, error: Exception, method: str, path: str, request: str) -> None:
    """Log a failure that ended a request (or the work a request left behind)."""
    if isinstance(error, DATABASE_ERRORS):
        cause = getattr(error, "orig", None) or error
        kind = type(cause).__name__
        metrics.record_database_error(kind)
        first_line = (str(cause).strip().splitlines() or [""])[0][:200]
        failures = app.extensions.get("keyvault.failure_log")
        if failures is None:
            failures = app.extensions.setdefault(
                "keyvault.failure_log", FailureLog(log, "requests", DATABASE_LOG_INTERVAL))
        failures.failed(kind, "database unavailable (%s: %s) on %s %s (request %s); answering "
                        "503", kind, first_line, method, path, request)
        return
    log.error("unhandled error on %s %s (request %s)", method, path, request, exc_info=error)
