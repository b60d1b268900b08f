"""The streaming time-series pull: concurrent requests, pages by time, one piece per page.

:class:`TimeSeriesStream` sends the planned batches (``_timeseries_query.plan_batches``) with
at most ``concurrency`` calls in flight. In a whole-range pull every pair that returns a full
page is asked again from its last timestamp (:func:`._timeseries_pages.take_page` decides);
the follow-up pairs of one answer that share a cursor go out together, again batched. Every
page of every pair becomes one :class:`~iris360_async.models.TimeSeries` piece on a bounded
memory stream, so a consumer that writes pieces away holds about ``concurrency + 1`` answers
in memory whatever the size of the range.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import anyio
import msgspec

from ._timeseries_pages import Cursor, PageMode, take_page
from ._timeutil import format_datetime
from .models.timeseries import (
    TimeSeries,
    TimeSeriesOptions,
    TimeSeriesRequest,
    TimeSeriesResponse,
    effective_limit,
)
from .models.tsquery import BatchFailure

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["PullSettings", "TimeSeriesStream"]

GetTimeseries = Callable[[list[TimeSeriesRequest]], Awaitable[list[TimeSeriesResponse]]]
SeriesKey = tuple[str, str]


@dataclass(frozen=True)
class PullSettings:
    """How a pull runs (checked by ``_timeseries_query``).

    Attributes:
        base: options shared by every request (tenant, scope, order, aggregation, period, and
            the first page's bounds and limit).
        paging: ``True`` for a whole range (pairs with a full page are asked again).
        end: exclusive upper bound, naive UTC (points at or after it are dropped).
        floor: the range's start, naive UTC.
        mode: how pages of a pair join.
        window: a moving average's interval.
        order: the order of the points of each piece when not paging (pages are ascending).
        batch_size: pairs per request; concurrency: calls in flight; requests_per_call:
            requests per call; raise_on_error: see ``query_timeseries``.
        max_page: the largest page asked for to get past one instant
            (:func:`._timeseries_pages.page_ceiling`); a pair that needs more ends as truncated.
    """

    base: TimeSeriesOptions
    paging: bool
    end: datetime | None
    floor: datetime | None
    mode: PageMode
    window: timedelta | None
    order: Literal["asc", "desc"]
    batch_size: int
    concurrency: int
    requests_per_call: int
    raise_on_error: bool
    query_prefix: str
    max_page: int


class TimeSeriesStream:
    """Pieces of series as their pages arrive; ``async with`` it, then ``async for`` over it.

    Each piece is a :class:`~iris360_async.models.TimeSeries` with the new points of one page
    of one pair, in ascending time (with a ``limit`` and no paging: one piece per pair, in the
    query's order). Pieces of different pairs interleave; the pieces of one pair come in
    order. What the pull found besides points is filled in as it goes and complete once the
    iteration ends: :attr:`requests`, :attr:`failures`, :attr:`missing`,
    :attr:`missing_devices`, :attr:`empty_requests`, :attr:`truncated`,
    :attr:`paged_pairs`.

    Raises (from the iteration):
        Iris360Error: a call failed and ``raise_on_error`` is on; the other calls are
            cancelled, pieces already received stay valid.
    """

    def __init__(
        self,
        get: GetTimeseries,
        devices: list[str],
        measures: list[str],
        requests: list[TimeSeriesRequest],
        settings: PullSettings,
    ) -> None:
        self._get = get
        self._devices = devices
        self._measures = measures
        self._settings = settings
        per_call = settings.requests_per_call
        self._queue: deque[list[TimeSeriesRequest]] = deque(
            requests[i : i + per_call] for i in range(0, len(requests), per_call)
        )
        self._ids = itertools.count(len(requests))
        self._cursors: dict[SeriesKey, Cursor] = {}
        self._with_data: set[SeriesKey] = set()
        self._answered: set[str] = set()
        self._active = 0
        self._changed: anyio.Event | None = None  # made in __aenter__, inside the event loop
        self._error: Exception | None = None
        self._task_group: TaskGroup | None = None
        self._workers: anyio.CancelScope | None = None
        self._send: MemoryObjectSendStream[TimeSeries] | None = None
        self._receive: MemoryObjectReceiveStream[TimeSeries] | None = None
        self._paged: set[SeriesKey] = set()
        self.requests: list[TimeSeriesRequest] = []
        self.failures: list[BatchFailure] = []
        self.empty_requests: list[TimeSeriesRequest] = []
        self.truncated: list[SeriesKey] = []
        self.missing: list[SeriesKey] = []
        self.missing_devices: list[str] = []
        self.finished = False

    @property
    def settings(self) -> PullSettings:
        """How the pull runs."""
        return self._settings

    @property
    def devices(self) -> list[str]:
        """The requested devices (unique, in the order given)."""
        return self._devices

    @property
    def measures(self) -> list[str]:
        """The requested measures (unique, in the order given; empty: every measure)."""
        return self._measures

    @property
    def paged_pairs(self) -> int:
        """How many pairs needed more than one page so far."""
        return len(self._paged)

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> TimeSeriesStream:
        send, receive = anyio.create_memory_object_stream[TimeSeries](
            max_buffer_size=self._settings.batch_size
        )
        self._send, self._receive = send, receive
        self._changed = anyio.Event()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group = self._task_group
        if task_group is None:
            return
        self._task_group = None
        task_group.cancel_scope.cancel()  # a consumer that stopped early: stop the calls
        try:
            await task_group.__aexit__(None, None, None)
        finally:
            if self._receive is not None:
                self._receive.close()

    def __aiter__(self) -> TimeSeriesStream:
        return self

    async def __anext__(self) -> TimeSeries:
        if self._receive is None:
            raise RuntimeError("use the stream inside 'async with'")
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None

    # -- the calls --------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._send is not None
        async with self._send:
            async with anyio.create_task_group() as workers:
                self._workers = workers.cancel_scope
                for _ in range(min(self._settings.concurrency, len(self._queue))):
                    workers.start_soon(self._worker)
            if self._error is None:
                self._finish()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
        self._changed = anyio.Event()

    async def _worker(self) -> None:
        while self._error is None:
            if self._queue:
                call = self._queue.popleft()
            elif self._active:  # a call in flight may add follow-up pages
                assert self._changed is not None
                await self._changed.wait()
                continue
            else:
                return
            self._active += 1
            try:
                await self._call(call)
            finally:
                self._active -= 1
                self._notify()

    async def _call(self, call: list[TimeSeriesRequest]) -> None:
        from ._timeseries_query import match_responses

        self.requests.extend(call)
        try:
            responses = match_responses(call, await self._get(list(call)))
        except Exception as exc:
            if self._settings.raise_on_error:
                if self._error is None:
                    self._error = exc
                assert self._workers is not None
                self._workers.cancel()
                return
            self.failures.extend(BatchFailure(request, exc) for request in call)
            for request in call:  # their pairs stop here
                for pair in _pairs(request):
                    self._cursors.pop(pair, None)
            return
        follow_ups: list[TimeSeriesRequest] = []
        for request, response in zip(call, responses, strict=True):
            follow_ups += await self._take(request, response)
        per_call = self._settings.requests_per_call
        calls = [follow_ups[i : i + per_call] for i in range(0, len(follow_ups), per_call)]
        self._queue.extendleft(reversed(calls))  # finish pairs before starting new ones

    async def _take(
        self, request: TimeSeriesRequest, response: TimeSeriesResponse
    ) -> list[TimeSeriesRequest]:
        """Deliver the pieces of one answer; the follow-up requests it needs."""
        settings = self._settings
        assert self._send is not None
        self._answered.update(request.device_ids)
        if not response.time_series:
            self.empty_requests.append(request)
        asked = limit = effective_limit(request.options)
        echoed = response.options.limit
        if isinstance(echoed, int) and not isinstance(echoed, bool) and 0 < echoed < limit:
            limit = echoed  # the server capped the page: full at its cap
        follow: dict[tuple[datetime, int], dict[str, list[str]]] = {}
        for series in response.time_series:
            key = (series.device_id, series.measure_id)
            cursor = self._cursors.pop(key, None)
            page = take_page(
                series.values,
                limit=limit,
                cursor=cursor,
                end=settings.end,
                mode=settings.mode,
                window=settings.window,
                floor=settings.floor,
                pages=settings.paging,
            )
            full = len(series.values) >= limit
            if not settings.paging and full:
                self.truncated.append(key)
            if _stalled(cursor, page.cursor) and limit < asked:
                # No new point, and the server already answered less than asked: a larger
                # page cannot get past this instant, so asking again would never end.
                self.truncated.append(key)
            elif page.cursor is not None and page.cursor.limit > settings.max_page:
                # Still at one instant after pages up to the ceiling: a server that fills
                # every page there would make the page grow without end.
                self.truncated.append(key)
            elif page.cursor is not None:
                self._cursors[key] = page.cursor
                self._paged.add(key)
                follow.setdefault((page.cursor.start, page.cursor.limit), {}).setdefault(
                    key[0], []
                ).append(key[1])
            if page.points:
                self._with_data.add(key)
                points = page.points
                if not settings.paging and len(points) > asked:
                    # the server sent more than the limit: keep the points it should have kept
                    points = points[:asked] if settings.order == "asc" else points[-asked:]
                if not settings.paging and settings.order == "desc":
                    points = points[::-1]
                flagged = full and not settings.paging
                await self._send.send(TimeSeries(*key, points, possibly_truncated=flagged))
        if settings.paging and self._cursors:
            returned = {(s.device_id, s.measure_id) for s in response.time_series}
            for pair in _pairs(request):  # a full page, then nothing: the server lost it
                if pair in self._cursors and pair not in returned:
                    del self._cursors[pair]
                    self.truncated.append(pair)
        return self._follow_ups(follow)

    def _follow_ups(
        self, follow: dict[tuple[datetime, int], dict[str, list[str]]]
    ) -> list[TimeSeriesRequest]:
        from ._timeseries_query import plan_batches

        out = []
        for (start, limit), by_device in follow.items():
            by_measures: dict[tuple[str, ...], list[str]] = {}
            for device, measures in by_device.items():
                by_measures.setdefault(tuple(measures), []).append(device)
            options = msgspec.structs.replace(
                self._settings.base, start_date=format_datetime(start), limit=limit
            )
            for measure_ids, device_ids in by_measures.items():
                for batch_devices, batch_measures in plan_batches(
                    device_ids, list(measure_ids), self._settings.batch_size
                ):
                    query_id = f"{self._settings.query_prefix}-{next(self._ids)}"
                    out.append(
                        TimeSeriesRequest(
                            batch_devices,
                            batch_measures,
                            msgspec.structs.replace(options, query_id=query_id),
                        )
                    )
        return out

    def _finish(self) -> None:
        failed_pairs: set[SeriesKey] = set()
        failed_devices: set[str] = set()
        for failure in self.failures:
            failed_devices.update(failure.request.device_ids)
            failed_pairs.update(_pairs(failure.request))
        self.missing = [
            (d, m)
            for d in self._devices
            for m in self._measures
            if (d, m) not in self._with_data and (d, m) not in failed_pairs
        ]
        with_data = {device for device, _ in self._with_data}
        self.missing_devices = [
            d
            for d in self._devices
            if d not in with_data and d not in failed_devices and d in self._answered
        ]
        self.finished = True


def _stalled(before: Cursor | None, after: Cursor | None) -> bool:
    """Whether a page asked from ``before`` brought no new point (its pair would go on)."""
    return (
        before is not None
        and after is not None
        and after.after == before.after
        and len(after.seen) == len(before.seen)
    )


def _pairs(request: TimeSeriesRequest) -> list[SeriesKey]:
    return [(d, m) for d in request.device_ids for m in request.measure_ids]

