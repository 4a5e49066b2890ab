"""What each granian worker serves (`application`), and the CPU it keeps to."""

from __future__ import annotations

import asyncio
import gc
import os

from .. import logs
from ..api.fastlane import lookup_of, takes
from ..app import create_app
from ..service import mail, usage, webhook_delivery
from .bridge import DEFAULT_THREADS, BufferedWSGI
from .lookups import Lookups
from .stream import Broadcaster

WORKER_INDEX = "KEYVAULT_WORKER_INDEX"  # set for each worker by KeyVaultServer, before the fork
PIN = "KEYVAULT_SERVE_PIN"


def application() -> BufferedWSGI:
    """What each granian worker serves: its own app, engine and connection pool."""
    _pin()  # before granian and the app start their threads: they inherit it
    fmt = os.environ.get("KEYVAULT_SERVE_LOG_FORMAT", "text")
    logs.configure(fmt)
    app = create_app()
    # What is built by now lives as long as the worker: frozen out of the cyclic collector's
    # reach, a full collection in the middle of a request no longer walks the whole app.
    gc.collect()
    gc.freeze()
    stop_mail = mail.start_sender(app)
    stop_webhooks = webhook_delivery.start_sender(app)
    # The verify fast path is answered on the event loop. On SQLite its read never waits (module
    # docstring); a PostgreSQL round trip must not hold up the loop, so there the lookup is sent
    # on an async connection and the loop serves others until its rows arrive.
    sqlite = app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
    events = Broadcaster(app)
    events.hear_signals_of(asyncio.get_event_loop())  # granian's loop, its handlers yet to come
    return BufferedWSGI(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"],
                        int(os.environ.get("KEYVAULT_SERVE_THREADS", DEFAULT_THREADS)),
                        app.config["KEYVAULT_BODY_TIMEOUT"],
                        on_stop=lambda: (stop_mail(), stop_webhooks(), usage.close(app)),
                        inline=takes, events=events,
                        lookups=None if sqlite else Lookups.of(app),
                        lookup_of=lambda environ: lookup_of(environ, app))


def pins_workers(setting: str, workers: int, sqlite: bool) -> bool:
    """KEYVAULT_PIN_WORKERS: `auto` pins each worker to a CPU of its own on SQLite, when there
    is exactly one worker per CPU this process may use (so instances side by side on one host,
    each with that many workers, still share every CPU evenly); `off` never does.

    Only on SQLite, where a worker does all of a request's work itself. With PostgreSQL its
    backends need those CPUs too: pinned, verify's p99 rose from 24-28 ms to 38-570 ms on the
    benchmark (bench/README.md)."""
    return setting == "auto" and sqlite and workers == len(os.sched_getaffinity(0))


def _pin() -> None:
    """Keep this worker's threads on its own CPU (pins_workers). Its event loop and granian's
    I/O thread hand every request to each other; spread over both CPUs, each waited for a CPU
    the other worker held, and that wait set verify's p99 (bench/README.md)."""
    if os.environ.get(PIN) != "1":
        return
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[int(os.environ[WORKER_INDEX]) % len(cpus)]})
