"""Keyset paging for lists (a boundary module): a stable order, an opaque cursor, the total.

A page is the next ``limit`` rows after the cursor in the order (sort key, id), so a deep page
costs what the first one does, rows added or removed meanwhile never shift what the next page
shows, and the order is stable even where sort keys repeat (the id breaks ties).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.sql import ColumnElement

from review.db import db

#: Rows per page unless the caller asks for another size; and the largest size allowed.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class CursorError(ValueError):
    """A cursor that this list did not hand out (tampered, truncated or from another sort)."""


@dataclass(frozen=True)
class Page:
    """One page of a list: its rows, how many rows the whole filtered list has, and the cursor
    of the next page (None on the last)."""

    rows: list[Any]
    total: int
    next_cursor: str | None
    limit: int


def _encode(sort: str, value: Any, row_id: int) -> str:
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([sort, value, row_id], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str, sort: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, value, row_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CursorError(cursor) from exc
    if name != sort or not isinstance(row_id, int) or isinstance(row_id, bool):
        raise CursorError(cursor)
    if isinstance(value, dict):
        try:
            value = datetime.fromisoformat(str(value["t"]))
        except (KeyError, ValueError) as exc:
            raise CursorError(cursor) from exc
    elif value is not None and not isinstance(value, (str, int, float)):
        raise CursorError(cursor)
    return value, row_id


def parse_limit(raw: object, default: int = DEFAULT_LIMIT) -> int:
    """The page size asked for, clamped to 1..MAX_LIMIT; anything unreadable is the default."""
    try:
        number = int(str(raw))
    except ValueError:
        return default
    return max(1, min(number, MAX_LIMIT))


def keyset_page(
    query: Select[Any],
    *,
    sort: str,
    key: ColumnElement[Any],
    row_id: ColumnElement[int],
    descending: bool,
    cursor: str | None,
    limit: int,
) -> Page:
    """The page of ``query`` after ``cursor`` in the order (key, id), both ``descending`` or not.

    ``query`` selects one entity and carries the filters but no order; ``sort`` names the
    order so that a cursor from another order is refused (CursorError).
    """
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    paged = query
    if cursor:
        value, last_id = _decode(cursor, sort)
        if descending:
            paged = paged.where(or_(key < value, and_(key == value, row_id < last_id)))
        else:
            paged = paged.where(or_(key > value, and_(key == value, row_id > last_id)))
    order = (key.desc(), row_id.desc()) if descending else (key.asc(), row_id.asc())
    rows = list(db.session.scalars(paged.order_by(*order).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = _encode(sort, getattr(last, key.key), getattr(last, row_id.key))
    return Page(rows=rows, total=int(total or 0), next_cursor=next_cursor, limit=limit)
