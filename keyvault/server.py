"""`keyvault serve`: granian (a Rust HTTP server) in front of the WSGI app, through a bridge that
reads each request's body before a Python thread is given to it.

The bridge speaks ASGI to granian, not its faster-looking RSGI, because only ASGI hands over a
request's bytes as they came: RSGI's header object silently leaves out every value with a byte
outside visible ASCII (a Latin-1 0xE9, the UTF-8 of a no-break space), so a gateway's
`X-KeyVault-Required-Scopes` with one such byte vanished and forward_auth answered 200 where it
had to refuse; its path is decoded lossily and its query as UTF-8 text. From ASGI's raw bytes
the environ is built as PEP 3333 says (latin-1 strings of the bytes), and the app refuses what
it cannot read (keyvault.http.wire). What it costs: bench/README.md (verify at 0.96x RSGI's, the
median of six rounds on a noisy machine).

Why a bridge: under any WSGI server the app is called as soon as the head arrives, and a thread
that reads `wsgi.input` waits for the client — a few connections trickling their bodies hold every
thread, the way two of them stopped gunicorn's sync workers. Here each request is read on the
worker's event loop (a slow client costs a coroutine, and gets KEYVAULT_BODY_TIMEOUT seconds), up to the
body limit; only a complete request goes to one of a fixed number of threads, which run the WSGI
app. A fixed number of threads also bounds the database connections a worker holds (the verify
hot path keeps one per thread). bench/README.md has the figures that chose this.

One kind of request skips the threads: the verify fast path on SQLite (`inline`), whose verdict
is a read from a file in this process that never waits for a writer (WAL). It is answered on
the event loop itself; the writes it leaves behind, which may wait for a lock, are made
elsewhere: security-log events on the threads (service.verify.write_elsewhere), usage stamps
with the use counts every few seconds (keystore.stamp). Handing a request to a thread and
back costs more than the verdict, and the threads' turns at the GIL behind a busy loop were
what made verify's p99 several times its p50.
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote_to_bytes

from . import logs, metrics, ratelimit
from .api.fastlane import takes
from .app import create_app
from .service import mail, usage
from .service.verify import write_elsewhere

# Python threads per worker process that run the app.
DEFAULT_THREADS = 8
# Requests a worker accepts at once (slow ones included: each costs a coroutine while it reads).
BACKPRESSURE = 2048

_SERVER_ERROR = (500, [("Content-Type", "text/plain; charset=utf-8")], b"Internal Server Error\n")


def _problem(status: int, title: str, detail: str) -> tuple[int, list, bytes]:
    import orjson

    body = orjson.dumps({"type": "about:blank", "title": title, "status": status,
                         "detail": detail})
    return status, [("Content-Type", "application/problem+json"), ("Connection", "close")], body


class BufferedWSGI:
    """An ASGI application that serves a WSGI one: body first, on the loop; then a thread."""

    def __init__(self, wsgi_app: Callable, max_body: int, threads: int = DEFAULT_THREADS,
                 body_timeout: float = 30.0,
                 on_stop: Callable[[], None] | None = None,
                 inline: Callable[[dict], bool] | None = None):
        self.wsgi_app = wsgi_app
        self.inline = inline
        self.on_stop = on_stop
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.threads = threads
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ granian's hooks

    async def __call__(self, scope: dict, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._serve(scope, receive, send)
        elif kind == "lifespan":  # a worker starting, then stopping (granian runs it per worker)
            await self._lifespan(receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._workers = [threading.Thread(target=self._work, name=f"keyvault-{number + 1}",
                                          daemon=True) for number in range(self.threads)]
        for thread in self._workers:
            thread.start()

    def _stop(self) -> None:
        """The worker is stopping (its requests are answered): end the threads, then let the
        app write what it holds in memory. A granian worker exits without running atexit
        hooks (multiprocessing ends it with os._exit), so this is the last word."""
        for _ in self._workers:
            self._jobs.put(None)
        for thread in self._workers:
            thread.join(timeout=10)
        if self.on_stop is not None:
            self.on_stop()

    async def _serve(self, scope: dict, receive, send) -> None:
        started = time.perf_counter()
        environ = self._environ(scope)
        status, headers, body = await self._answer(environ, receive)
        try:
            raw_headers = [(name.encode("latin-1"), value.encode("latin-1"))
                           for name, value in headers]
        except UnicodeEncodeError:  # a header no HTTP/1.1 message can carry (PEP 3333: latin-1)
            logging.getLogger("keyvault").error("an answer's header is not latin-1 (%s %s)",
                                                environ["REQUEST_METHOD"], environ["PATH_INFO"])
            status, headers, body = _SERVER_ERROR
            raw_headers = [(name.encode(), value.encode()) for name, value in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})
        if logs.access is not None:
            logs.access.write(environ, status, len(body), time.perf_counter() - started)

    # ------------------------------------------------------------ one request

    async def _answer(self, environ: dict, receive) -> tuple[int, list, bytes]:
        try:
            declared = int(environ["CONTENT_LENGTH"]) if "CONTENT_LENGTH" in environ else None
        except ValueError:
            return _problem(400, "Bad Request", "The Content-Length header is not a number.")
        if declared is not None and declared > self.max_body:
            environ["wsgi.input"] = io.BytesIO()  # the app answers 413 from the length alone
        elif declared is None and "HTTP_TRANSFER_ENCODING" not in environ:
            environ["wsgi.input"] = io.BytesIO()  # no body at all (RFC 9112 §6.3): most GETs
        else:
            try:
                async with asyncio.timeout(self.body_timeout):  # no task, unlike wait_for
                    body = await self._read(receive, declared)
            except TimeoutError:
                return _problem(408, "Request Timeout", "The request body did not arrive within "
                                f"{self.body_timeout:g} s.")
            except Exception:  # the client went away mid-body: nobody reads the answer
                return _problem(400, "Bad Request", "The request body was cut short.")
            environ["wsgi.input"] = io.BytesIO(body)
        if self.inline is not None and self.inline(environ):
            return self._call_here(environ)
        future = self._loop.create_future()
        self._jobs.put(lambda: self._loop.call_soon_threadsafe(_settle, future,
                                                               self._call_safely(environ)))
        return await future

    async def _read(self, receive, declared: int | None) -> bytes:
        """The body, or (of unknown length) its first max_body + 1 bytes: enough for the app
        to see that it is over the limit."""
        if declared == 0:
            return b""
        limit = self.max_body + 1 if declared is None else declared
        chunks, size = [], 0
        while size < limit:
            message = await receive()
            if message["type"] != "http.request":
                raise ConnectionError("the client went away mid-body")
            chunks.append(message["body"])
            size += len(message["body"])
            if not message.get("more_body"):
                break
        return b"".join(chunks)[:limit]

    def _work(self) -> None:
        """A thread that runs the WSGI app, one request at a time, and the writes that
        requests answered on the loop leave behind."""
        jobs = self._jobs
        while (job := jobs.get()) is not None:
            try:
                job()
            except Exception:
                logging.getLogger("keyvault").exception("a write after a verdict failed")

    def _call_here(self, environ: dict) -> tuple[int, list, bytes]:
        """Answer on the event loop; writes that may wait for a lock go to the threads."""
        token = write_elsewhere.set(self._jobs.put)
        try:
            return self._call_safely(environ)
        finally:
            write_elsewhere.reset(token)

    def _call_safely(self, environ: dict) -> tuple[int, list, bytes]:
        try:
            return self._call(environ)
        except Exception:
            logging.getLogger("keyvault").exception("the app failed outside Flask")
            return _SERVER_ERROR

    def _call(self, environ: dict) -> tuple[int, list, bytes]:
        started: list = []

        def start_response(status: str, headers: list, exc_info=None):
            started[:] = [int(status[:3]), headers]
            return lambda data: None  # the legacy write(): KeyVault never calls it

        result = self.wsgi_app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return started[0], started[1], body

    @staticmethod
    def _environ(scope: dict) -> dict:
        """The WSGI environ (PEP 3333) of an ASGI scope, byte for byte as werkzeug's own server
        and granian's WSGI build it: the path percent-decoded, the query as sent, and every
        header value, each as a latin-1 string of its bytes. Nothing is dropped or judged
        here; what the app cannot read, it refuses (keyvault.http.wire)."""
        host, port = scope["server"]
        address, client_port = scope["client"]
        environ = {
            "REQUEST_METHOD": scope["method"],
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(scope["raw_path"]).decode("latin-1"),
            "QUERY_STRING": scope["query_string"].decode("latin-1"),
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
            "REMOTE_ADDR": address,
            "REMOTE_PORT": str(client_port),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scope["scheme"],
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            if name == "content-type":
                key = "CONTENT_TYPE"
            elif name == "content-length":
                key = "CONTENT_LENGTH"
            else:
                key = "HTTP_" + name.upper().replace("-", "_")
            if key in environ:  # a repeated header: one value, as RFC 9110 joins them
                value = f"{environ[key]}{'; ' if key == 'HTTP_COOKIE' else ', '}{value}"
            environ[key] = value
        return environ


def _settle(future: asyncio.Future, answer) -> None:
    if not future.cancelled():
        future.set_result(answer)


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
    # On SQLite the verify fast path's read never waits (module docstring); a PostgreSQL
    # round trip would hold up every connection of the worker, so there it takes a thread.
    sqlite = app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
    return BufferedWSGI(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"],
                        int(os.environ.get("KEYVAULT_SERVE_THREADS", DEFAULT_THREADS)),
                        app.config["KEYVAULT_BODY_TIMEOUT"],
                        on_stop=lambda: (stop_mail(), usage.close(app)),
                        inline=takes if sqlite else None)


WORKER_INDEX = "KEYVAULT_WORKER_INDEX"  # set for each worker by KeyVaultServer, before the fork
PIN = "KEYVAULT_SERVE_PIN"


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


MIGRATE_REQUESTS = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def kernel_migrates_requests() -> bool:
    """net.ipv4.tcp_migrate_req=1: a closing SO_REUSEPORT socket hands its queued connections
    to the others of its group instead of resetting them (Linux 5.14+)."""
    try:
        return MIGRATE_REQUESTS.read_text().strip() == "1"
    except OSError:
        return False


def per_worker_sockets(mode: str) -> bool:
    """KEYVAULT_LISTEN_SOCKETS: `per-worker`, `shared`, or `auto` (per-worker where the kernel
    migrates a stopping socket's queue, else shared). Why it matters: _server_class."""
    return mode == "per-worker" or (mode == "auto" and kernel_migrates_requests())


def _listening_socket(host: str, port: int, backlog: int, reuse_port: bool):
    """A listening TCP socket that hands a connection over only once its request has arrived
    (TCP_DEFER_ACCEPT). That matters when a worker stops: granian then closes the connections
    it has accepted but not yet read a byte from (hyper's graceful shutdown), and without this a
    client that had just connected lost its request."""
    import socket

    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _server_class(per_worker: bool):
    """granian's server, listening one of two ways, on sockets KeyVault makes (_listening_socket).

    Per worker: each worker accepts from a SO_REUSEPORT socket of its own, and the kernel
    spreads new connections over them evenly. But when a worker stops, as SIGHUP's rolling
    restart makes each old one do, the kernel resets the connections queued on its socket,
    unless net.ipv4.tcp_migrate_req=1 moves them to the others. The socket is made in the main
    process just before the worker is forked, and the main process lets go of its copy once the
    worker has it, so the socket closes (and its queue moves on) when the worker stops.

    Shared: one socket that every worker accepts from. A stopping worker only stops taking
    connections, and the rest take what is queued: a restart loses nothing without the sysctl.
    But whichever worker is awake first takes a burst of new connections, and keep-alive
    clients then stay with it: on the bench, 32 connections split 32/0 in some runs, leaving a
    core idle (bench/README.md). tests/test_server.py holds both to account.
    """
    import socket

    from granian._granian import SocketHolder
    from granian.server import Server

    class KeyVaultServer(Server):
        def _init_shared_socket(self):
            if self.bind_uds:
                return super()._init_shared_socket()
            self._ssp = self._shd = self._sso = None
            if not per_worker:
                self._hold(_listening_socket(self.bind_addr, self.bind_port, self.backlog,
                                             reuse_port=False))

        def _hold(self, sock: socket.socket) -> None:
            self._sso, self._sfd = sock, sock.fileno()
            self._shd = SocketHolder(self._sfd, False, self.backlog)

        def _spawn_worker(self, idx, target, callback_loader):
            sock = None
            if per_worker and not self.bind_uds:
                sock = _listening_socket(self.bind_addr, self.bind_port, self.backlog,
                                         reuse_port=True)
                self._hold(sock)
            worker = super()._spawn_worker(idx, target, callback_loader)
            if sock is not None:
                self._ssp = self._shd = self._sso = None
            start = worker.start

            def start_and_let_go():
                os.environ[WORKER_INDEX] = str(idx)  # the fork copies it (_pin)
                try:
                    start()  # forks: the worker has its copy of the socket
                finally:
                    if sock is not None:
                        sock.close()

            worker.start = start_and_let_go
            return worker

    return KeyVaultServer


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
    with metrics.multiprocess_dir(), ratelimit.shared_between_workers(
            app.config["KEYVAULT_RATELIMIT_STORAGE_URL"]):
        serve("keyvault.server:application", host, port, workers, threads,
              app.config["KEYVAULT_LOG_FORMAT"], app.config["KEYVAULT_LISTEN_SOCKETS"],
              app.config["KEYVAULT_PIN_WORKERS"],
              app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"))
