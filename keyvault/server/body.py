"""A request's body, read on the worker's event loop before any thread is given to it: a slow
client costs a coroutine, and gets the body timeout (keyvault.server's docstring says why)."""

from __future__ import annotations

import asyncio
import io

import orjson

Answer = tuple[int, list, bytes]  # status, headers, body: what the bridge sends


def problem(status: int, title: str, detail: str) -> Answer:
    body = orjson.dumps({"type": "about:blank", "title": title, "status": status,
                         "detail": detail})
    return status, [("Content-Type", "application/problem+json"), ("Connection", "close")], body


async def buffer(environ: dict, receive, max_body: int, timeout: float) -> Answer | None:
    """Put the request's body in `environ["wsgi.input"]`, read whole (up to the body limit);
    or the answer that ends the request when it cannot be read."""
    try:
        declared = int(environ["CONTENT_LENGTH"]) if "CONTENT_LENGTH" in environ else None
    except ValueError:
        return problem(400, "Bad Request", "The Content-Length header is not a number.")
    if declared is not None and declared > max_body:
        environ["wsgi.input"] = io.BytesIO()  # the app answers 413 from the length alone
    elif declared is None and "HTTP_TRANSFER_ENCODING" not in environ:
        environ["wsgi.input"] = io.BytesIO()  # no body at all (RFC 9112 §6.3): most GETs
    else:
        try:
            async with asyncio.timeout(timeout):  # no task, unlike wait_for
                body = await _read(receive, declared, max_body)
        except TimeoutError:
            return problem(408, "Request Timeout", "The request body did not arrive within "
                           f"{timeout:g} s.")
        except Exception:  # the client went away mid-body: nobody reads the answer
            return problem(400, "Bad Request", "The request body was cut short.")
        environ["wsgi.input"] = io.BytesIO(body)
    return None


async def _read(receive, declared: int | None, max_body: int) -> bytes:
    """The body, or (of unknown length) its first max_body + 1 bytes: enough for the app
    to see that it is over the limit."""
    if declared == 0:
        return b""
    limit = max_body + 1 if declared is None else declared
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
