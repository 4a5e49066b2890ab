"""The main process of `keyvault serve`: granian's supervisor, which forks the workers, replaces
them one by one on SIGHUP and stops them gracefully on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import os

from .. import logs, metrics, window_counts
from ..app import create_app
from ..config import SERVE_URL
from .bridge import DEFAULT_THREADS
from .sockets import _server_class, per_worker_sockets
from .workers import PIN, pins_workers

# Requests a worker accepts at once (slow ones included: each costs a coroutine while it reads).
BACKPRESSURE = 2048


# Binds a person on this machine reaches as localhost: the name passkeys accept, unlike 127.0.0.1.
LOCAL_BINDS = ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::", "")


def url_to_open(host: str, port: int) -> str:
    """The address a person on this machine opens for a server bound to host:port."""
    if host in LOCAL_BINDS:
        host = "localhost"
    elif ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"http://{host}:{port}"


def event_loop():
    """Each worker's event loop: uvloop (libuv), a dependency wherever it builds. Every request
    passes through the loop (its body read, the verify fast path answered, the answer sent):
    on the benchmark asyncio's own loop held the do-nothing app at 0.65x of uvloop's throughput
    and verify at 0.87x (bench/README.md). Named here, not left to granian's `auto`, which
    would prefer an installed rloop (its p99 was 10x on the same run)."""
    from granian.constants import Loops

    try:
        import uvloop  # noqa: F401 - only whether it is there
    except ImportError:  # a platform uvloop does not build on (pyproject.toml)
        return Loops.asyncio
    return Loops.uvloop


def serve(target: str, host: str, port: int, workers: int, threads: int = DEFAULT_THREADS,
          log_format: str = "text", listen_sockets: str = "auto",
          pin_workers: str = "auto", sqlite: bool = True) -> None:
    """Run granian with `target` ("module:factory", returning an ASGI app) in `workers` processes.

    SIGTERM and SIGINT stop gracefully (requests in flight finish); SIGHUP replaces the workers
    one by one, starting each new one before the old one stops, so no request is lost.
    """
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.log import logger as granian_log

    os.environ["KEYVAULT_SERVE_THREADS"] = str(threads)  # read by the workers' factory
    os.environ["KEYVAULT_SERVE_LOG_FORMAT"] = log_format
    os.environ[SERVE_URL] = url_to_open(host, port)  # development's mail links (config)
    pinned = pins_workers(pin_workers, workers, sqlite)
    os.environ[PIN] = "1" if pinned else "0"
    per_worker = per_worker_sockets(listen_sockets)
    if workers > 1 and not per_worker:
        logging.getLogger("keyvault").warning(
            "one listening socket shared by %d workers: restarts lose nothing, but connections "
            "may not spread evenly over the workers; set sysctl net.ipv4.tcp_migrate_req=1 to "
            "give each worker its own (README: The server)", workers)
    server = _server_class(per_worker)(
        target, address=host, port=port, interface=Interfaces.ASGI, factory=True,
        loop=event_loop(),
        workers=workers, http=HTTPModes.http1, websockets=False,
        backpressure=BACKPRESSURE, backlog=BACKPRESSURE,
        # granian reads request heads itself and drops a client that takes longer than this
        http1_settings=HTTP1Settings(header_read_timeout=10_000, keep_alive=True),
        log_level=LogLevels.info, log_dictconfig=logs.granian_config(log_format),
        log_access=False,  # KeyVault writes its own, scrubbed (keyvault.logs)
        respawn_failed_workers=True, respawn_interval=1.0, workers_kill_timeout=30,
    )
    if pinned:  # in granian's log, now configured, beside its own start-up lines
        granian_log.info("One worker per CPU: each keeps to a CPU of its own "
                         "(KEYVAULT_PIN_WORKERS=off lets them roam)")
    server.serve()


def run(host: str, port: int, workers: int, threads: int = DEFAULT_THREADS) -> None:
    app = create_app()  # generate instance secrets once, before workers race for them
    # the workers' Prometheus counters, summed at /metrics; their rate-limit counts, shared
    with metrics.multiprocess_dir(), window_counts.shared_between_workers(
            app.config["KEYVAULT_RATELIMIT_STORAGE_URL"]):
        serve("keyvault.server.workers:application", host, port, workers, threads,
              app.config["KEYVAULT_LOG_FORMAT"], app.config["KEYVAULT_LISTEN_SOCKETS"],
              app.config["KEYVAULT_PIN_WORKERS"],
              app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"))
