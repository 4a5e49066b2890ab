"""What `keyvault serve` writes: one line per request (keyvault.access) and the app's and the
server's own messages, as JSON lines (KEYVAULT_LOG_FORMAT=json, the production default) or as
text for a person at a terminal (the development default).

Every field that carries something a client sent (path and query, Referer, User-Agent) is
scrubbed of keys before it is written (redact.scrub); request bodies, Authorization headers and
passwords are never logged at all.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from urllib.parse import quote

import orjson

from .redact import scrub

FORMATS = ("json", "text")
access_log = logging.getLogger("keyvault.access")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time, level, logger, message, and any `fields` the
    caller passed in `extra` (the access log's request facts)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": _now(), "level": record.levelname.lower(), "logger": record.name,
                "message": scrub(record.getMessage())}
        line.update(getattr(record, "fields", {}))
        if record.exc_info:  # KeyVault's own handlers log no tracebacks; anything else's may
            line["exception"] = scrub(self.formatException(record.exc_info))
        return orjson.dumps(line).decode()


def _target(environ: dict) -> str:
    """The request target as the client sent it (near enough: re-quoted from PATH_INFO)."""
    path = quote(environ["PATH_INFO"].encode("latin-1"), safe="/:@!$&'()*+,;=~-._")
    query = environ.get("QUERY_STRING")
    return f"{path}?{query}" if query else path


def request_fields(environ: dict, status: int, size: int, seconds: float) -> dict:
    """The access-log facts of an answered request (environ as the app left it: the client's
    address after any trusted proxy, the request id, and what the app noted)."""
    from .request_context import LOG_FIELDS, REQUEST_ID

    noted = environ.get(LOG_FIELDS) or {}
    return {
        "request_id": environ.get(REQUEST_ID),
        "method": environ["REQUEST_METHOD"],
        "route": noted.get("route"),
        "path": scrub(_target(environ)),
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "bytes": size,
        "client": environ.get("REMOTE_ADDR"),
        "key_id": noted.get("key_id"),
        "user_agent": scrub(environ["HTTP_USER_AGENT"]) if "HTTP_USER_AGENT" in environ else None,
        "referer": scrub(environ["HTTP_REFERER"]) if "HTTP_REFERER" in environ else None,
    }


def log_request(environ: dict, status: int, size: int, seconds: float, fmt: str) -> None:
    fields = request_fields(environ, status, size, seconds)
    if fmt == "json":
        access_log.info("request", extra={"fields": fields})
        return
    access_log.info(
        '%s - - [%s] "%s %s %s" %d %d "%s" "%s" %.1fms id=%s key=%s',
        fields["client"], datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S %z"), fields["method"],
        fields["path"], environ["SERVER_PROTOCOL"], status, size, fields["referer"] or "-",
        fields["user_agent"] or "-", fields["duration_ms"], fields["request_id"],
        fields["key_id"] or "-")


def configure(fmt: str) -> None:
    """Send the access log and KeyVault's own log to stdout in `fmt`, in this process."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(message)s"))
    access_log.handlers[:] = [handler]
    access_log.setLevel(logging.INFO)
    access_log.propagate = False
    app_log = logging.getLogger("keyvault")
    app_handler = logging.StreamHandler(sys.stdout)
    app_handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "[%(levelname)s] %(name)s: %(message)s"))
    app_log.handlers[:] = [app_handler]
    app_log.setLevel(logging.INFO)
    app_log.propagate = False


def granian_config(fmt: str) -> dict | None:
    """granian's logging (its own start/stop messages) in the same format; None: its default."""
    if fmt != "json":
        return None
    formatter = {"()": "keyvault.logs.JsonFormatter"}
    return {"formatters": {"generic": formatter, "access": formatter}}
