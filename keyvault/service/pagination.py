"""Keyset pagination, newest first, with opaque cursors that only this API issues."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, or_

from ..extensions import db
from .errors import InvalidInput

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def clean_limit(raw: str | None) -> int:
    """A page size as a query parameter gives it: 1 to MAX_LIMIT, DEFAULT_LIMIT when absent."""
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidInput("The page size must be a whole number.", "limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"The page size can be from 1 to {MAX_LIMIT}.", "limit")
    return limit


@dataclass
class Page:
    results: list
    next_cursor: str | None
    previous_cursor: str | None


def _encode_cursor(created_at: datetime, row_id: int, direction: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id, direction], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id, direction = json.loads(base64.urlsafe_b64decode(padded.encode()))
        when = datetime.fromisoformat(created).astimezone(UTC)
        if (created[-6:] not in ("+00:00",) or not isinstance(row_id, int)
                or isinstance(row_id, bool) or not 0 < row_id < 2**63
                or direction not in ("n", "p") or not 1 < when.year < 9999):
            raise ValueError
        return when, row_id, direction
    except (ValueError, TypeError, OverflowError, RecursionError, binascii.Error, UnicodeError):
        raise InvalidInput("That page link was not made by this API: start again from the first "
                           "page and follow its `next` and `previous` links.", "cursor") from None


def paginate(stmt, model, limit: int, cursor: str | None) -> Page:
    """Keyset pagination, newest first, on (created_at, id): stable under inserts and deletes."""
    created, ident = model.created_at, model.id
    direction = "n"
    if cursor:
        when, row_id, direction = _decode_cursor(cursor)
        if direction == "n":
            stmt = stmt.where(or_(created < when, and_(created == when, ident < row_id)))
        else:
            stmt = stmt.where(or_(created > when, and_(created == when, ident > row_id)))
    if direction == "n":
        stmt = stmt.order_by(created.desc(), ident.desc())
    else:
        stmt = stmt.order_by(created.asc(), ident.asc())
    rows = list(db.session.scalars(stmt.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    if direction == "p":
        rows.reverse()
    if not rows:
        return Page([], None, None)
    first, last = rows[0], rows[-1]
    has_next = more if direction == "n" else True
    has_previous = bool(cursor) if direction == "n" else more
    return Page(
        rows,
        _encode_cursor(last.created_at, last.id, "n") if has_next else None,
        _encode_cursor(first.created_at, first.id, "p") if has_previous else None,
    )
