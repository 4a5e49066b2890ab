"""The revocation stream under `keyvault serve`: one task per worker reads the database's new
events (service.key_changes.Watcher, every KEYVAULT_STREAM_POLL_MS) and hands them to every
subscriber's queue; each subscriber's body is written on the event loop from its queue. So a
thousand open streams cost a thousand coroutines and still one query per poll, and verify's
threads never wait for a stream.

Why polling rather than PostgreSQL's LISTEN/NOTIFY: README.md (The revocation stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

from ..api.stream import HEARTBEAT, OPENING, StreamRequest, frame
from ..logs import FailureLog
from ..service import key_changes

log = logging.getLogger("keyvault")


class Broadcaster:
    """A worker's one reader of the events, and its subscribers."""

    def __init__(self, app: Flask):
        self.app = app
        self.poll = app.config["KEYVAULT_STREAM_POLL_MS"] / 1000
        self._subscribers: set[asyncio.Queue] = set()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="keyvault-stream")
        self._task: asyncio.Task | None = None
        self._ending = False
        self._watcher: key_changes.Watcher | None = None
        self._failures = FailureLog(log, "revocation stream")
        self._signal_handlers: dict[int, tuple] = {}  # granian's, by signal (hear_signals_of)

    def hear_signals_of(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called as the worker's app is built, before granian gives `loop` the handlers that
        stop the worker (SIGINT, SIGTERM): remember each, so that start() can end the streams
        before it runs. Through add_signal_handler, the loop's one public door: asyncio's loop
        keeps its handlers in a private dict, uvloop in C where nothing reads them, and
        reading asyncio's dict is how the streams stopped ending when uvloop came in."""
        add = loop.add_signal_handler

        def adding(number: int, callback, *args) -> None:
            self._signal_handlers[number] = (callback, args)
            add(number, callback, *args)

        loop.add_signal_handler = adding

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """As the worker starts, before it serves a request: the events are read from the
        newest one now, so a stream that opens next hears every change committed after it
        opened. (Set by the first read instead, a worker slow to make it let a stream that
        opened first miss the changes in between.)"""
        self._watcher = self._starting_point()
        self._task = loop.create_task(self._run())
        self._end_streams_on_signals(loop)

    def _starting_point(self) -> key_changes.Watcher | None:
        try:
            with self.app.app_context():
                return key_changes.Watcher(key_changes.latest_id())
        except Exception:  # noqa: BLE001 - the database is down: the first read sets it
            return None

    def _end_streams_on_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """granian stops a worker on SIGTERM (SIGHUP's rolling restart too) by waiting for its
        open requests, and a stream never ends by itself: without this each open stream held
        the worker for granian's 30 s kill timeout, and a worker killed then never writes what
        it holds (usage counts, log lines). So the streams end first (their clients reconnect,
        with Last-Event-ID, to a worker that stays), then granian's handler runs."""
        loop.__dict__.pop("add_signal_handler", None)  # the loop's own again (hear_signals_of)
        for number in (signal.SIGINT, signal.SIGTERM):
            previous = self._signal_handlers.get(number)
            if previous is None:
                continue

            def both(callback=previous[0], args=previous[1]) -> None:
                self.end_streams()
                callback(*args)

            loop.add_signal_handler(number, both)

    def end_streams(self) -> None:
        self._ending = True
        for queue in self._subscribers:
            queue.put_nowait(None)

    def stop(self) -> None:
        """End every open stream and the reader: the worker is stopping."""
        self.end_streams()
        if self._task is not None:
            self._task.cancel()
        self._reader.shutdown(wait=False, cancel_futures=True)

    async def _in_reader(self, work):
        return await asyncio.get_running_loop().run_in_executor(self._reader, work)

    def _step(self) -> list[key_changes.Change]:
        with self.app.app_context():
            if self._watcher is None:
                self._watcher = key_changes.Watcher(key_changes.latest_id())
            return self._watcher.step()

    async def _run(self) -> None:
        while True:
            try:
                changes = await self._in_reader(self._step)
            except Exception as error:  # noqa: BLE001 - a database outage must not end the task
                kind = type(getattr(error, "orig", None) or error).__name__
                self._failures.failed(kind, "%s; trying again every %s s", kind, self.poll)
            else:
                self._failures.recovered()
                if changes:
                    for queue in self._subscribers:
                        queue.put_nowait(changes)
            await asyncio.sleep(self.poll)

    def _backlog(self, after: int) -> list[key_changes.Change]:
        with self.app.app_context():
            found, batch = [], key_changes.read_after(after)
            while batch:
                found += batch
                batch = key_changes.read_after(batch[-1].id) if len(batch) == 1000 else []
            return found

    async def serve(self, asked: StreamRequest, receive, send) -> int:
        """Write one subscriber's stream (the head is sent); returns the bytes written."""
        queue: asyncio.Queue = asyncio.Queue()
        self._subscribers.add(queue)
        gone = asyncio.ensure_future(_disconnected(receive))
        written = 0

        async def write(data: bytes) -> None:
            nonlocal written
            await send({"type": "http.response.body", "body": data, "more_body": True})
            written += len(data)

        try:
            await write(OPENING)
            sent: set[int] = set()
            ends = None if asked.timeout is None else time.monotonic() + asked.timeout
            if asked.after is not None:  # resuming: what it missed, then what comes
                try:
                    backlog = await self._in_reader(lambda: self._backlog(asked.after))
                except Exception as error:  # noqa: BLE001 - the database: end the stream whole
                    kind = type(getattr(error, "orig", None) or error).__name__
                    self._failures.failed(kind, "%s reading a stream's backlog; the stream "
                                          "ends (its client reconnects)", kind)
                    backlog, ends = [], time.monotonic()
                sent = {change.id for change in backlog}
                if backlog:
                    await write(b"".join(frame(change) for change in backlog))
            while not gone.done() and not self._ending:
                wait = asked.heartbeat if ends is None else min(asked.heartbeat,
                                                                ends - time.monotonic())
                if wait <= 0:
                    break
                getting = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getting, gone}, timeout=wait,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getting not in done:
                    getting.cancel()
                    if not gone.done() and (ends is None or time.monotonic() < ends):
                        await write(HEARTBEAT)
                    continue
                changes = getting.result()
                if changes is None:  # the worker is stopping
                    break
                fresh = [change for change in changes if change.id not in sent]
                if fresh:
                    await write(b"".join(frame(change) for change in fresh))
                    if asked.names_caller(fresh) and await self._in_reader(
                            lambda fresh=fresh: asked.caller_gone(fresh)):
                        break  # the caller's own key no longer admits it (api.stream)
        except Exception:  # noqa: BLE001 - the client went away mid-write: nobody to tell
            return written
        finally:
            self._subscribers.discard(queue)
            gone.cancel()
        with contextlib.suppress(Exception):  # the client may be gone by now
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        return written


async def _disconnected(receive) -> None:
    """Returns when the client has gone (ASGI's http.disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass
