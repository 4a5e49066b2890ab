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

Each worker's event loop is uvloop (supervisor.event_loop): every request passes through it.
One kind of request skips the threads: the verify fast path (`inline`), answered on the event
loop itself. On SQLite its verdict is a read from a file in this process that never waits for a
writer (WAL); on PostgreSQL the loop sends the lookup of the keys the request presents
(api.fastlane.lookup_of) on an async connection of the worker's own and serves other requests
until the rows arrive (`lookups`, keyvault.handoff). The writes it
leaves behind, which may wait for a lock, are made elsewhere: security-log events on the threads
(service.verify.write_elsewhere), usage stamps with the use counts every few seconds
(keystore.stamp). Handing a request to a thread and back costs more than the verdict, and the
threads' turns at the GIL behind a busy loop were what made verify's p99 several times its p50.

One job a module: `supervisor` (the main process: granian's server, SIGHUP and SIGTERM),
`sockets` (where it listens), `workers` (what each worker serves, and the CPU it keeps to),
`bridge` (ASGI to WSGI: threads, the fast path on the loop), `body` (the body read first, on the
loop), `environ` (the WSGI environ, byte for byte), `lookups` (verify's lookup on PostgreSQL,
from the loop), `stream` (the revocation stream's body, written on the loop).
"""

from .bridge import DEFAULT_THREADS, BufferedWSGI
from .sockets import kernel_migrates_requests
from .supervisor import run, serve
from .workers import application, pins_workers

__all__ = ["DEFAULT_THREADS", "BufferedWSGI", "application", "kernel_migrates_requests",
           "pins_workers", "run", "serve"]
