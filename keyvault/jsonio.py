"""JSON one way: orjson for parsing and writing, pydantic's serializer for the API's models.

Flask's `jsonify` and `request.get_json` go through OrjsonProvider; code outside a request (the
verify fast path) calls `encode` itself, so both write exactly the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask.json.provider import JSONProvider
from pydantic import BaseModel

_OPTIONS = orjson.OPT_UTC_Z  # 2030-01-31T00:00:00Z, as pydantic writes UTC times


def _fallback(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(value: Any) -> bytes:
    """A model (through its own serializer) or plain data, as compact UTF-8 JSON."""
    if isinstance(value, BaseModel):
        return value.__pydantic_serializer__.to_json(value)
    try:
        return orjson.dumps(value, default=_fallback, option=_OPTIONS)
    except TypeError:  # what orjson cannot write (integers past 64 bits): the standard library
        return json.dumps(value, default=_fallback, ensure_ascii=False,
                          separators=(",", ":")).encode()


def decode(data: bytes | str) -> Any:
    """Raises orjson.JSONDecodeError (a ValueError) on malformed input."""
    return orjson.loads(data)


class OrjsonProvider(JSONProvider):
    """Flask's JSON provider, backed by `encode` and `decode`."""

    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return encode(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return decode(s)

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(encode(obj), mimetype=self.mimetype)
