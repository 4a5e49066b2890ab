"""A request that `keyvault serve`'s event loop cannot finish yet, handed off before anything
is counted or written: the server does what is needed (fetches the rows the lookup needs:
keyvault.server.lookups; or hands the request to a thread: service.verify.AnswerOnAThread),
then the request is answered again from the start (keyvault.server.bridge)."""

from __future__ import annotations

from contextvars import ContextVar


class AnswerLater(Exception):  # noqa: N818 - not an error: a request to wait or to move
    """Raised while the server's event loop answers a request it cannot finish there yet, before
    anything is counted or written: the server does what is needed (fetch the rows; hand the
    request to a thread: service.verify.AnswerOnAThread) and the request is answered again
    from the start (keyvault.server.bridge)."""


class FetchFirst(AnswerLater):
    """The rows of these digests are needed; the event loop must not wait for the database."""

    def __init__(self, digests: tuple[str, ...]):
        super().__init__("fetch the rows first")
        self.digests = digests


class Fetched:
    """What the server fetched on its event loop for one request: nothing yet, or the raw rows
    of its digests (or the failure, as SQLAlchemy's error, to be raised where the lookup would
    have raised it)."""

    __slots__ = ("digests", "error", "rows")

    def __init__(self, digests: tuple[str, ...] | None = None, rows: list | None = None,
                 error: Exception | None = None):
        self.digests, self.rows, self.error = digests, rows, error

    def rows_of(self, digests: tuple[str, ...]) -> list:
        if digests != self.digests:
            raise FetchFirst(digests)
        if self.error is not None:
            raise self.error
        return self.rows


# Set while the server answers a request on its event loop with lookups of its own (None: the
# lookup runs here, on this thread's connection).
fetched_on_the_loop: ContextVar[Fetched | None] = ContextVar("keyvault_fetched_on_the_loop",
                                                             default=None)
