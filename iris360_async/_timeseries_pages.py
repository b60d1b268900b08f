"""One page of one (device, measure) pair: order, half-open end, boundary de-duplication.

Pure functions, no I/O: the streaming pull (:mod:`._timeseries_stream`) feeds every series of
every response through :func:`take_page` and asks again for the pairs it returns a cursor for.

Paging by time asks a pair that returned a full page again *from* its last timestamp (the
server's bounds are inclusive): timestamps need not be unique (seconds or milliseconds
resolution, two measurements in one instant), so asking from just after it could skip points.
The points at the boundary timestamp that the previous page already delivered are removed
from the new page as a multiset of values, so a genuine repeat of a value at that instant
survives. Aggregated series have one point per timestamp, so there the boundary point is
simply dropped; a moving average is asked again from one window before the boundary, so the
first points of the next page average a full window, as in one unpaged answer.
"""

from __future__ import annotations

import itertools
import operator
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from .models.timeseries import TimeSeriesValue

__all__ = [
    "PAGE_CEILING_MIN",
    "PAGE_GROWTH",
    "Cursor",
    "PageMode",
    "PageResult",
    "page_ceiling",
    "sort_key",
    "take_page",
]

PageMode = Literal["raw", "buckets", "moving"]
"""How pages of a pair join: raw points, buckets of an aggregation, or a moving average."""

PAGE_GROWTH = 64
"""A page grows to at most this many times ``page_size`` to get past one instant."""
PAGE_CEILING_MIN = 10_000
"""A page may always grow to this many points, whatever a small ``page_size``."""

_UTC = timezone.utc
_UNREADABLE = datetime.min  # UNPARSEABLE_TIMESTAMP as a naive UTC key


def sort_key(point: TimeSeriesValue) -> datetime:
    """The point's timestamp as a naive UTC datetime (comparable across offsets)."""
    ts = point.raw_timestamp
    return ts if ts.tzinfo is None else ts.astimezone(_UTC).replace(tzinfo=None)


def page_ceiling(page_size: int) -> int:
    """The largest page a pull of ``page_size`` asks for to get past one instant.

    ``max(64 * page_size, 10_000)`` points. Real data holds at most a few thousand points at
    one instant, so a pair that needs more is almost surely a broken or hostile server that
    fills every page with one timestamp, not data to wait for. The ceiling follows
    ``page_size`` because the server's own maximum is unknown and the caller chose
    ``page_size`` as the size of an answer: a page is never asked more than 64 times that
    (six doublings, six extra requests), which also bounds the values remembered at the
    boundary. The floor of 10,000 keeps a small ``page_size`` from stopping at a real instant.
    """
    return max(PAGE_GROWTH * page_size, PAGE_CEILING_MIN)


@dataclass(frozen=True)
class Cursor:
    """Where the next page of a pair starts.

    Attributes:
        after: the last timestamp delivered (naive UTC).
        seen: the values delivered at ``after`` (raw mode; removed from the next page).
        limit: the page size for the next request (grows when a page made no progress).
        start: the ``start_date`` to send (``after``, or one window earlier for a moving
            average), naive UTC.
    """

    after: datetime
    seen: tuple[Any, ...]
    limit: int
    start: datetime


@dataclass(frozen=True)
class PageResult:
    """What a page gives: the new points (ascending) and the cursor if the pair goes on."""

    points: list[TimeSeriesValue]
    cursor: Cursor | None


def _ascending(values: list[TimeSeriesValue]) -> tuple[list[TimeSeriesValue], list[datetime]]:
    """The points in ascending time and their naive UTC timestamps."""
    keys = [p.raw_timestamp for p in values]
    try:
        if all(map(operator.le, keys, itertools.islice(keys, 1, None))) and (
            not keys or (keys[0].tzinfo is None and keys[-1].tzinfo is None)
        ):
            return values, keys  # the usual answer: naive (UTC), already in order
    except TypeError:  # naive and aware timestamps mixed
        pass
    keys = [sort_key(p) for p in values]
    if not all(map(operator.le, keys, itertools.islice(keys, 1, None))):
        order = sorted(range(len(values)), key=keys.__getitem__)
        values = [values[i] for i in order]
        keys = [keys[i] for i in order]
    return values, keys


def _without(points: list[TimeSeriesValue], seen: tuple[Any, ...]) -> list[TimeSeriesValue]:
    """``points`` minus the multiset ``seen`` of values (equal value and same type).

    Hashable values are counted in a dict, so an instant of many points costs linear time;
    unhashable ones (JSON objects and arrays) are matched one by one.
    """
    counts: dict[tuple[type, Any], int] = {}
    rest: list[Any] = []
    for value in seen:
        try:
            key = (type(value), value)
            counts[key] = counts.get(key, 0) + 1
        except TypeError:
            rest.append(value)
    out = []
    for point in points:
        value = point.value
        try:
            key = (type(value), value)
            left = counts.get(key, 0)
        except TypeError:
            for i, other in enumerate(rest):
                if other == value and type(other) is type(value):
                    del rest[i]
                    break
            else:
                out.append(point)
            continue
        if left:
            counts[key] = left - 1
        else:
            out.append(point)
    return out


def take_page(
    values: list[TimeSeriesValue],
    *,
    limit: int,
    cursor: Cursor | None,
    end: datetime | None,
    mode: PageMode = "raw",
    window: timedelta | None = None,
    floor: datetime | None = None,
    pages: bool = True,
) -> PageResult:
    """The new points of one page of a pair, ascending, and where its next page starts.

    Args:
        values: the series' points as the server sent them (any order).
        limit: the ``limit`` of the request; a page with that many points is full.
        cursor: the pair's cursor when this page was asked for from it, else ``None``.
        end: exclusive upper bound (naive UTC); points at or after it are dropped.
        mode: how pages join (see :data:`PageMode`).
        window: the moving average's interval (``mode="moving"``).
        floor: the range's start (naive UTC): a moving average is never asked from before it.
        pages: ``False`` for a single request with a caller's ``limit``: no cursor.

    Returns:
        The points to deliver and the cursor (``None``: the pair is complete).
    """
    full = len(values) >= limit
    points, keys = _ascending(values)
    # Points whose timestamp could not be read sort first (UNPARSEABLE_TIMESTAMP, year 1):
    # they are delivered with the page whatever its cursor, and take no part in paging.
    unreadable = bisect_right(keys, _UNREADABLE)
    kept = points[:unreadable]
    if unreadable:
        points, keys = points[unreadable:], keys[unreadable:]
    page_last = keys[-1] if keys else None
    if cursor is not None:
        after = cursor.after
        if mode == "raw":
            cut = bisect_left(keys, after)
            stop = bisect_right(keys, after, cut)
            at_boundary = _without(points[cut:stop], cursor.seen)
            points = at_boundary + points[stop:]
            keys = [after] * len(at_boundary) + keys[stop:]
        else:
            cut = bisect_right(keys, after)
            points, keys = points[cut:], keys[cut:]
    if end is not None and keys and keys[-1] >= end:
        cut = bisect_left(keys, end)
        points, keys = points[:cut], keys[:cut]
    cursor_next = None
    if pages and full and page_last is not None and (end is None or page_last < end):
        cursor_next = _next_cursor(points, keys, cursor, limit, mode, window, floor)
    return PageResult(kept + points if kept else points, cursor_next)


def _next_cursor(
    points: list[TimeSeriesValue],
    keys: list[datetime],
    cursor: Cursor | None,
    limit: int,
    mode: PageMode,
    window: timedelta | None,
    floor: datetime | None,
) -> Cursor:
    if not keys:  # a full page and nothing new: everything sat at the boundary
        assert cursor is not None
        return Cursor(cursor.after, cursor.seen, limit * 2, cursor.start)
    last = keys[-1]
    seen = ()
    if mode == "raw":
        first = bisect_left(keys, last)
        seen = tuple(p.value for p in points[first:])
        if cursor is not None and last == cursor.after:
            seen = cursor.seen + seen
    start = last
    if mode == "moving" and window is not None:
        start = last - window
        if floor is not None and start < floor:
            start = floor
    progressed = cursor is None or last > cursor.after
    return Cursor(last, seen, limit if progressed else limit * 2, start)
