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
import threading
import time
from datetime import UTC, datetime
from urllib.parse import quote

import orjson

from .redact import scrub

FORMATS = ("json", "text")
# A background task that meets the same failure every few seconds (the database is down) says so
# once per kind per this many seconds, and once when it works again.
FAILURE_LOG_SECONDS = 60.0
# Where keyvault.http.context leaves a request's id and what the app noted for this log.
REQUEST_ID, LOG_FIELDS = "keyvault.request_id", "keyvault.log"
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
    if query and not query.isascii():  # raw bytes past ASCII (PEP 3333: latin-1), as sent
        query = quote(query.encode("latin-1"), safe="/:@!$&'()*+,;=~-._?%")
    return f"{path}?{query}" if query else path


def request_fields(environ: dict, status: int, size: int, seconds: float) -> dict:
    """The access-log facts of an answered request (environ as the app left it: the client's
    address after any trusted proxy, the request id, and what the app noted)."""
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


class AccessLog:
    """One line per answered request, formatted here and written straight to the stream: the
    logging module's record, caller lookup and handler locking cost twice the line itself, on
    every request (bench/README.md).

    `write` only holds the line; `flush` writes every held line at once. The server's bridge
    calls it once per turn of the worker's event loop, after the requests answered in that
    turn: one system call for all of them, not one each (bench/README.md, ~10 µs a request),
    and a line waits for no more than that turn."""

    def __init__(self, stream, fmt: str):
        self.stream = stream
        self.fmt = fmt
        self._second = -1
        self._clock = ""
        self._held: list[str] = []

    def flush(self) -> None:
        held, self._held = self._held, []
        if held:
            self.stream.write("".join(held))
            self.stream.flush()

    def write(self, environ: dict, status: int, size: int, seconds: float) -> None:
        fields = request_fields(environ, status, size, seconds)
        now = time.time()
        if int(now) != self._second:  # strftime once a second, not once a request
            self._second = int(now)
            moment = datetime.fromtimestamp(self._second, UTC)
            self._clock = (moment.strftime("%Y-%m-%dT%H:%M:%S") if self.fmt == "json"
                           else moment.strftime("%d/%b/%Y:%H:%M:%S +0000"))
        if self.fmt == "json":
            line = orjson.dumps({
                "time": f"{self._clock}.{int(now % 1 * 1000):03d}Z", "level": "info",
                "logger": access_log.name, "message": "request", **fields}).decode()
        else:
            line = (f'{fields["client"]} - - [{self._clock}] "{fields["method"]} '
                    f'{fields["path"]} {environ["SERVER_PROTOCOL"]}" {status} {size} '
                    f'"{fields["referer"] or "-"}" "{fields["user_agent"] or "-"}" '
                    f'{fields["duration_ms"]:.1f}ms id={fields["request_id"]} '
                    f'key={fields["key_id"] or "-"}')
        self._held.append(line + "\n")


# This process's access log, once configure() has set it up (None: requests are not logged).
access: AccessLog | None = None


def configure(fmt: str) -> None:
    """Send the access log and KeyVault's own log to stdout in `fmt`, in this process."""
    global access
    access = AccessLog(sys.stdout, fmt)
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


class FailureLog:
    """The log of one background task (the mail sender, the usage flush): one line per kind of
    failure per `every` seconds, however often the task meets it, with how many were left out;
    and one line when the task works again. An outage must not write a line per run per worker.
    """

    def __init__(self, logger: logging.Logger, task: str, every: float = FAILURE_LOG_SECONDS):
        self.logger, self.task, self.every = logger, task, every
        self._last: dict[str, float] = {}  # kind -> when it was last written
        self._left_out: dict[str, int] = {}
        self._lock = threading.Lock()

    def failed(self, kind: str, message: str, *args, level: int = logging.ERROR) -> bool:
        """Write `task: message` unless this kind was written less than `every` seconds ago;
        True when it was written."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.every:
                self._left_out[kind] = self._left_out.get(kind, 0) + 1
                return False
            self._last[kind] = now
            left_out = self._left_out.pop(kind, 0)
        more = f" ({left_out} more since the last line)" if left_out else ""
        self.logger.log(level, f"%s: {message}; said at most every %g s{more}", self.task, *args,
                        self.every)
        return True

    def recovered(self) -> None:
        """The task worked: one line if a failure was written since it last worked."""
        with self._lock:
            if not self._last:
                return
            kinds, left_out = sorted(self._last), sum(self._left_out.values())
            self._last.clear()
            self._left_out.clear()
        more = f", {left_out} more not written" if left_out else ""
        self.logger.info("%s: working again (after %s%s)", self.task, ", ".join(kinds), more)
