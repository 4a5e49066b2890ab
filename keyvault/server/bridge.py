"""The bridge between granian (ASGI) and the WSGI app: each request's body is read first, on
the worker's event loop (keyvault.server.body); only then is the request handed to one of a fixed
number of threads that run the app, or, for the verify fast path, answered on the loop itself
(on PostgreSQL with its lookup made on the loop too: keyvault.server.lookups).
The revocation stream's head comes from the app like any answer; its body is then written on
the loop (keyvault.server.stream), never by a thread."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from .. import logs
from ..api.stream import STREAM, StreamRequest
from ..handoff import Fetched, FetchFirst, fetched_on_the_loop
from ..service.verify import AnswerOnAThread, write_elsewhere
from .body import buffer
from .environ import environ_of
from .lookups import Lookups
from .stream import Broadcaster

# Python threads per worker process that run the app.
DEFAULT_THREADS = 8
_SERVER_ERROR = (500, [("Content-Type", "text/plain; charset=utf-8")], b"Internal Server Error\n")


class BufferedWSGI:
    """An ASGI application that serves a WSGI one: body first, on the loop; then a thread."""

    def __init__(self, wsgi_app: Callable, max_body: int, threads: int = DEFAULT_THREADS,
                 body_timeout: float = 30.0,
                 on_stop: Callable[[], None] | None = None,
                 inline: Callable[[dict], bool] | None = None,
                 events: Broadcaster | None = None, lookups: Lookups | None = None,
                 lookup_of: Callable[[dict], tuple[str, ...] | None] | None = None):
        self.wsgi_app = wsgi_app
        self.events = events
        self.inline = inline
        self.lookups = lookups
        self.lookup_of = lookup_of  # what an inline request will look up, if it can be told
        self.on_stop = on_stop
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.threads = threads
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_due = False

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
                if self.lookups is not None:
                    await self.lookups.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        logging.getLogger("keyvault").info(
            "worker %d ready: %s event loop, %d threads", os.getpid(),
            type(loop).__module__.split(".")[0], self.threads)
        self._workers = [threading.Thread(target=self._work, name=f"keyvault-{number + 1}",
                                          daemon=True) for number in range(self.threads)]
        for thread in self._workers:
            thread.start()
        if self.events is not None:
            self.events.start(loop)

    def _stop(self) -> None:
        """The worker is stopping (its requests are answered): end the threads, then let the
        app write what it holds in memory. A granian worker exits without running atexit
        hooks (multiprocessing ends it with os._exit), so this is the last word."""
        if logs.access is not None:
            logs.access.flush()
        if self.events is not None:
            self.events.stop()
        for _ in self._workers:
            self._jobs.put(None)
        for thread in self._workers:
            thread.join(timeout=10)
        if self.on_stop is not None:
            self.on_stop()

    async def _serve(self, scope: dict, receive, send) -> None:
        started = time.perf_counter()
        environ = environ_of(scope)
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
        if isinstance(body, StreamRequest):
            size = await self.events.serve(body, receive, send)
        else:
            await send({"type": "http.response.body", "body": body})
            size = len(body)
        if logs.access is not None:
            logs.access.write(environ, status, size, time.perf_counter() - started)
            if not self._flush_due:  # after this turn of the loop (logs.AccessLog)
                self._flush_due = True
                self._loop.call_soon(self._flush_log)

    def _flush_log(self) -> None:
        self._flush_due = False
        logs.access.flush()

    # ------------------------------------------------------------ one request

    async def _answer(self, environ: dict, receive) -> tuple[int, list, bytes | StreamRequest]:
        refused = await buffer(environ, receive, self.max_body, self.body_timeout)
        if refused is not None:
            return refused
        if self.inline is not None and self.inline(environ):
            fetched = None
            if self.lookups is not None and self.lookup_of is not None:
                digests = self.lookup_of(environ)  # its rows fetched first: one pass, not two
                if digests is not None:
                    fetched = await self.lookups.fetch(FetchFirst(digests))
            answer = self._call_here(environ, fetched)
            if isinstance(answer, FetchFirst):  # rows from the database: fetched here, then again
                environ["wsgi.input"].seek(0)
                answer = self._call_here(environ, await self.lookups.fetch(answer))
            if answer is not None and not isinstance(answer, FetchFirst):
                return answer
            environ["wsgi.input"].seek(0)  # a quota to spend: from the start, on a thread
        future = self._loop.create_future()
        self._jobs.put(lambda: self._loop.call_soon_threadsafe(_settle, future,
                                                               self._call_safely(environ)))
        return await future

    def _work(self) -> None:
        """A thread that runs the WSGI app, one request at a time, and the writes that
        requests answered on the loop leave behind."""
        jobs = self._jobs
        while (job := jobs.get()) is not None:
            try:
                job()
            except Exception:
                logging.getLogger("keyvault").exception("a write after a verdict failed")

    def _call_here(self, environ: dict, fetched: Fetched | None = None
                   ) -> tuple[int, list, bytes] | FetchFirst | None:
        """Answer on the event loop; writes that may wait for a lock go to the threads. None
        when the request must spend a quota before it is answered (a write that may wait:
        service.verify.AnswerOnAThread), with nothing counted yet: a thread answers it. With
        lookups of the loop's own (PostgreSQL), the rows the request needs (FetchFirst), with
        nothing counted yet either, until they are `fetched`."""
        token = write_elsewhere.set(self._jobs.put)
        if self.lookups is not None:
            fetched_token = fetched_on_the_loop.set(fetched or Fetched())
        try:
            return self._call(environ)
        except FetchFirst as need:
            return need
        except AnswerOnAThread:
            return None
        except Exception:
            logging.getLogger("keyvault").exception("the app failed outside Flask")
            return _SERVER_ERROR
        finally:
            write_elsewhere.reset(token)
            if self.lookups is not None:
                fetched_on_the_loop.reset(fetched_token)

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
        streamed = environ.get(STREAM)
        if streamed is not None and self.events is not None and started[0] == 200:
            if hasattr(result, "close"):
                result.close()  # its body is written on the loop instead (keyvault.server.stream)
            return started[0], started[1], streamed
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return started[0], started[1], body


def _settle(future: asyncio.Future, answer) -> None:
    if not future.cancelled():
        future.set_result(answer)
