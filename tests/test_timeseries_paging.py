"""Whole-range pulls: pages by time, half-open ranges, boundary de-duplication, failures.

Against an in-memory server with the semantics of API.md §4.1 (inclusive bounds, ``order``
then ``limit`` per pair, default limit 100), no HTTP.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iris360_async._timeseries_pages import Cursor, take_page
from iris360_async._timeseries_query import query_timeseries, stream_timeseries
from iris360_async.errors import InternalServerError
from iris360_async.models.timeseries import (
    TimeSeries,
    TimeSeriesRequest,
    TimeSeriesResponse,
    TimeSeriesValue,
)
from iris360_async.models.tsquery import TimeSeriesResult

UTC = timezone.utc
T0 = datetime(2025, 11, 1, tzinfo=UTC)
Data = dict[tuple[str, str], list[tuple[datetime, Any]]]


def urn(i: int) -> str:
    return f"urn:ngsi-ld:Device:D{i:03d}"


def _parse(value: object) -> datetime | None:
    if value is msgspec.UNSET or value is None:
        return None
    assert isinstance(value, str)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Server:
    """Per pair: ``start <= t <= end``, sorted by ``order`` (ties in random order), ``limit``."""

    def __init__(
        self,
        data: Data,
        *,
        cap: int | None = None,
        fail_calls: set[int] | None = None,
        lose: set[int] | None = None,
        seed: int = 3,
    ) -> None:
        self.data = data
        self.cap = cap  # the server answers at most this many points per pair, and says so
        self.fail_calls = fail_calls or set()
        self.lose = lose or set()  # calls answered with nothing (a silent server failure)
        self.random = random.Random(seed)
        self.calls: list[list[TimeSeriesRequest]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def answer(self, request: TimeSeriesRequest, *, lost: bool) -> TimeSeriesResponse:
        opts = request.options
        start, end = _parse(opts.start_date), _parse(opts.end_date)
        limit = 100 if opts.limit is msgspec.UNSET else opts.limit
        assert isinstance(limit, int)
        if self.cap is not None:
            limit = min(limit, self.cap)
        out = []
        for device in request.device_ids:
            for measure in request.measure_ids:
                points = [
                    p
                    for p in self.data.get((device, measure), [])
                    if (start is None or p[0] >= start) and (end is None or p[0] <= end)
                ]
                self.random.shuffle(points)
                points.sort(key=lambda p: p[0], reverse=opts.order == "desc")
                points = points[:limit]
                if points and not lost:
                    values = [TimeSeriesValue(ts.replace(tzinfo=None), v) for ts, v in points]
                    out.append(TimeSeries(device, measure, values))
        echoed = msgspec.structs.replace(opts, limit=limit)
        return TimeSeriesResponse(time_series=out, options=echoed)

    async def get(self, requests: list[TimeSeriesRequest]) -> list[TimeSeriesResponse]:
        index = len(self.calls)
        self.calls.append(list(requests))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(1 + index % 3):
                await anyio.lowlevel.checkpoint()
        finally:
            self.in_flight -= 1
        if index in self.fail_calls:
            raise InternalServerError("boom", status=500, method="POST", url="/timeseries")
        return [self.answer(r, lost=index in self.lose) for r in requests]


def regular(devices: int, measures: list[str], points: int, step: timedelta) -> Data:
    return {
        (urn(d), m): [(T0 + k * step, d * 100_000 + k) for k in range(points)]
        for d in range(devices)
        for m in measures
    }


def expected(data: Data, start: datetime, end: datetime) -> dict[tuple[str, str], Counter[Any]]:
    return {
        key: Counter((ts, repr(v)) for ts, v in points if start <= ts < end)
        for key, points in data.items()
        if any(start <= ts < end for ts, _ in points)
    }


def got(result: TimeSeriesResult) -> dict[tuple[str, str], Counter[Any]]:
    return {
        key: Counter((ts, repr(v)) for ts, v in ((p.timestamp, p.value) for p in s.values))
        for key, s in zip(result, result.series(), strict=True)
    }


def total(result: TimeSeriesResult) -> int:
    return result.point_count


# -- paging --------------------------------------------------------------------------------


async def test_every_point_across_many_pages() -> None:
    data = regular(5, ["t", "h"], 500, timedelta(minutes=10))
    server = Server(data)
    end = T0 + timedelta(days=30)
    result = await query_timeseries(
        server.get, [urn(i) for i in range(5)], ["t", "h"], tenant="x", scope="/",
        start=T0, end=end, page_size=7, batch_size=4, concurrency=3,
    )  # fmt: skip
    assert got(result) == expected(data, T0, end)
    assert total(result) == 5 * 2 * 500  # every point exactly once
    assert result.paged_pairs == 10
    assert result.truncated == []
    assert result.missing == []
    assert result.complete
    assert server.max_in_flight <= 3
    assert len(server.calls) >= 500 // 7 * 10 // 4
    for series in result.series():  # ascending, as asked
        stamps = [p.timestamp for p in series.values]
        assert stamps == sorted(stamps)


async def test_duplicate_timestamps_at_page_boundaries() -> None:
    # three points per timestamp (two of them with the same value), pages of 4 and 5:
    # boundaries cut through groups, and the server orders ties at random
    data: Data = {
        (urn(0), "t"): [
            (T0 + timedelta(seconds=k // 3), (k // 3) if k % 3 < 2 else -k) for k in range(300)
        ]
    }
    end = T0 + timedelta(hours=1)
    for page_size in (2, 4, 5, 299, 300):
        result = await query_timeseries(
            Server(data, seed=page_size).get, [urn(0)], ["t"], tenant="x", scope="/",
            start=T0, end=end, page_size=page_size,
        )  # fmt: skip
        assert got(result) == expected(data, T0, end), page_size
        assert total(result) == 300


async def test_more_points_in_one_instant_than_a_page() -> None:
    data: Data = {(urn(0), "t"): [(T0, k % 4) for k in range(25)] + [(T0 + timedelta(1), 9)]}
    server = Server(data)
    result = await query_timeseries(
        server.get, [urn(0)], ["t"], tenant="x", scope="/",
        start=T0, end=T0 + timedelta(days=2), page_size=3,
    )  # fmt: skip
    assert got(result) == expected(data, T0, T0 + timedelta(days=2))
    limits = [r.options.limit for call in server.calls for r in call]
    assert limits[0] == 3
    assert max(limits) >= 26


async def test_a_server_cap_below_the_page_size_is_followed() -> None:
    data = regular(2, ["t"], 60, timedelta(minutes=1))
    result = await query_timeseries(
        Server(data, cap=7).get, [urn(0), urn(1)], ["t"], tenant="x", scope="/",
        start=T0, end=T0 + timedelta(days=1), page_size=50,
    )  # fmt: skip
    assert total(result) == 120


async def test_consecutive_windows_chain_without_overlap_or_gap() -> None:
    data = regular(3, ["t"], 3 * 144, timedelta(minutes=10))  # three days
    middle = T0 + timedelta(days=1, hours=5)  # a point sits exactly on it
    end = T0 + timedelta(days=3)
    args: dict[str, Any] = {"tenant": "x", "scope": "/", "page_size": 25}
    devices = [urn(i) for i in range(3)]
    first = await query_timeseries(Server(data).get, devices, ["t"], start=T0, end=middle, **args)
    second = await query_timeseries(Server(data).get, devices, ["t"], start=middle, end=end, **args)
    whole = await query_timeseries(Server(data).get, devices, ["t"], start=T0, end=end, **args)
    for key in whole:
        a = [p.timestamp for p in first[key].values]
        b = [p.timestamp for p in second[key].values]
        assert max(a) < middle == min(b)
        assert a + b == [p.timestamp for p in whole[key].values]
    assert total(first) + total(second) == total(whole) == 3 * 3 * 144


async def test_descending_order_of_a_whole_range() -> None:
    data = regular(1, ["t"], 50, timedelta(minutes=1))
    result = await query_timeseries(
        Server(data).get, [urn(0)], ["t"], tenant="x", scope="/",
        start=T0, end=T0 + timedelta(hours=1), order="desc", page_size=8,
    )  # fmt: skip
    values = [p.value for p in result[(urn(0), "t")].values]
    assert values == list(range(49, -1, -1))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (T0 + timedelta(days=1), T0),
        ("2025-11-02T00:00:00Z", "2025-11-01T00:00:00Z"),
        (timedelta(hours=1), timedelta(hours=2)),  # an hour ago is after two hours ago
        ("PT1H", "P1D"),
    ],
)
async def test_start_after_end_is_refused_before_sending(start: Any, end: Any) -> None:
    server = Server({})
    with pytest.raises(ValueError, match="after end"):
        await query_timeseries(
            server.get, [urn(0)], ["t"], tenant="x", scope="/", start=start, end=end
        )
    with pytest.raises(ValueError, match="after end"):
        stream_timeseries(server.get, [urn(0)], ["t"], tenant="x", scope="/", start=start, end=end)
    assert server.calls == []


@pytest.mark.parametrize("bad", ["P1M", "yesterday", "PT"])
async def test_bounds_that_cannot_be_resolved(bad: str) -> None:
    server = Server({})
    with pytest.raises(ValueError, match="start"):
        await query_timeseries(server.get, [urn(0)], ["t"], tenant="x", scope="/", start=bad)
    assert server.calls == []


async def test_an_open_range_ends_at_the_request_time() -> None:
    data = regular(1, ["t"], 100, timedelta(minutes=1))
    now = (T0 + timedelta(minutes=40)).timestamp()
    result = await query_timeseries(
        Server(data).get, [urn(0)], ["t"], tenant="x", scope="/",
        start=T0, now=now, page_size=9,
    )  # fmt: skip
    assert [p.value for p in result[(urn(0), "t")].values] == list(range(40))


async def test_pairs_without_data() -> None:
    data = regular(2, ["t"], 30, timedelta(minutes=1))
    data[(urn(5), "t")] = [(T0 - timedelta(days=1), 1.0)]  # only before the range
    result = await query_timeseries(
        Server(data).get, [urn(0), urn(1), urn(5), urn(7)], ["t", "h"], tenant="x",
        scope="/", start=T0, end=T0 + timedelta(hours=1), page_size=10,
    )  # fmt: skip
    assert set(result) == {(urn(0), "t"), (urn(1), "t")}
    assert result.missing == [
        (urn(0), "h"), (urn(1), "h"), (urn(5), "t"), (urn(5), "h"), (urn(7), "t"), (urn(7), "h")
    ]  # fmt: skip
    assert result.missing_devices == [urn(5), urn(7)]
    assert total(result) == 60


async def test_a_failing_page_mid_pull_is_listed_and_the_rest_completes() -> None:
    data = regular(4, ["t"], 100, timedelta(minutes=1))
    end = T0 + timedelta(days=1)
    server = Server(data, fail_calls={5})
    result = await query_timeseries(
        server.get, [urn(i) for i in range(4)], ["t"], tenant="x", scope="/",
        start=T0, end=end, page_size=10, batch_size=1, concurrency=2, raise_on_error=False,
    )  # fmt: skip
    assert not result.complete
    [failure] = result.failures
    assert isinstance(failure.error, InternalServerError)
    [device] = failure.request.device_ids
    resume = _parse(failure.request.options.start_date)
    assert resume is not None
    assert resume > T0
    reference = expected(data, T0, end)
    for key in reference:
        if key[0] != device:
            assert got(result)[key] == reference[key]  # every other pair is complete
    partial = [p.timestamp for p in result[(device, "t")].values]
    assert partial
    assert max(partial) <= resume
    assert result.missing == []

    with pytest.raises(InternalServerError):
        await query_timeseries(
            Server(data, fail_calls={5}).get, [urn(i) for i in range(4)], ["t"], tenant="x",
            scope="/", start=T0, end=end, page_size=10, batch_size=1, concurrency=2,
        )  # fmt: skip


async def test_a_full_page_followed_by_nothing_is_reported_truncated() -> None:
    data = regular(2, ["t"], 30, timedelta(minutes=1))
    server = Server(data, lose={1})  # the second page of the first pair comes back empty
    result = await query_timeseries(
        server.get, [urn(0), urn(1)], ["t"], tenant="x", scope="/",
        start=T0, end=T0 + timedelta(hours=1), page_size=10, batch_size=1, concurrency=1,
    )  # fmt: skip
    assert result.truncated == [(urn(0), "t")]
    assert len(result[(urn(0), "t")].values) == 10
    assert result[(urn(0), "t")].possibly_truncated
    assert len(result[(urn(1), "t")].values) == 30
    assert result.empty_requests


# -- with a limit: today's meaning, flagged -----------------------------------------------


async def test_limit_keeps_its_meaning_and_flags_pairs_that_reached_it() -> None:
    data = regular(2, ["t"], 30, timedelta(minutes=1))
    data[(urn(1), "t")] = data[(urn(1), "t")][:4]
    server = Server(data)
    result = await query_timeseries(
        server.get, [urn(0), urn(1)], ["t"], tenant="x", scope="/", start=T0, limit=5
    )
    assert len(server.calls) == 1  # no paging
    assert [p.value for p in result[(urn(0), "t")].values] == [0, 1, 2, 3, 4]
    assert result.truncated == [(urn(0), "t")]
    assert result[(urn(0), "t")].possibly_truncated
    assert not result[(urn(1), "t")].possibly_truncated
    assert result.paged_pairs == 0
    latest = await query_timeseries(Server(data).get, [urn(0)], ["t"], tenant="x", scope="/")
    assert latest.truncated == []  # 30 points < the server's default of 100
    assert [p.value for p in latest[(urn(0), "t")].values][:2] == [29, 28]


# -- the pure page step --------------------------------------------------------------------


def _points(*pairs: tuple[int, Any]) -> list[TimeSeriesValue]:
    base = datetime(2025, 1, 1)
    return [TimeSeriesValue(base + timedelta(seconds=s), v) for s, v in pairs]


def test_take_page_removes_what_was_seen_at_the_boundary_as_a_multiset() -> None:
    base = datetime(2025, 1, 1)
    cursor = Cursor(base + timedelta(seconds=5), ("a", "a"), 4, base + timedelta(seconds=5))
    page = take_page(_points((5, "a"), (5, "b"), (5, "a"), (5, "a")), limit=4, cursor=cursor,
                     end=None)  # fmt: skip
    assert [p.value for p in page.points] == ["b", "a"]  # a third "a" is a new point
    assert page.cursor is not None
    assert page.cursor.limit == 8
    assert page.cursor.seen == ("a", "a", "b", "a")


def test_take_page_clips_the_end_and_stops() -> None:
    base = datetime(2025, 1, 1)
    page = take_page(_points((3, 1), (1, 0), (9, 3), (5, 2)), limit=4, cursor=None,
                     end=base + timedelta(seconds=9))  # fmt: skip
    assert [p.value for p in page.points] == [0, 1, 2]  # sorted, 9 s excluded
    assert page.cursor is None  # the page reached the end: nothing more to ask


def test_take_page_mixed_offsets_sort_by_instant() -> None:
    plus_one = timezone(timedelta(hours=1))
    values = [
        TimeSeriesValue(datetime(2025, 1, 1, 0, 30), "b"),
        TimeSeriesValue(datetime(2025, 1, 1, 1, 0, tzinfo=plus_one), "a"),  # 00:00 UTC
    ]
    page = take_page(values, limit=5, cursor=None, end=None)
    assert [p.value for p in page.points] == ["a", "b"]


# -- streaming -----------------------------------------------------------------------------


async def test_stream_delivers_pages_in_order_and_the_same_points_as_query() -> None:
    data = regular(3, ["t", "h"], 95, timedelta(minutes=1))
    end = T0 + timedelta(days=1)
    pieces: list[TimeSeries] = []
    async with stream_timeseries(
        Server(data).get, [urn(i) for i in range(3)], ["t", "h"], tenant="x", scope="/",
        start=T0, end=end, page_size=10, batch_size=2,
    ) as stream:  # fmt: skip
        async for piece in stream:
            assert len(piece.values) <= 10
            pieces.append(piece)
    assert stream.paged_pairs == 6
    assert stream.missing == []
    assert stream.failures == []
    by_pair: dict[tuple[str, str], list[Any]] = {}
    for piece in pieces:
        by_pair.setdefault((piece.device_id, piece.measure_id), []).extend(
            p.value for p in piece.values
        )
    assert all(values == sorted(values) for values in by_pair.values())
    assert sum(map(len, by_pair.values())) == 6 * 95


async def test_stream_stopped_early_cancels_its_calls() -> None:
    data = regular(20, ["t"], 200, timedelta(minutes=1))
    server = Server(data)
    async with stream_timeseries(
        server.get, [urn(i) for i in range(20)], ["t"], tenant="x", scope="/",
        start=T0, end=T0 + timedelta(days=1), page_size=10, batch_size=1, concurrency=3,
    ) as stream:  # fmt: skip
        async for _ in stream:
            break
    calls = len(server.calls)
    assert server.in_flight == 0
    await anyio.lowlevel.checkpoint()
    assert len(server.calls) == calls  # nothing runs after the block
    assert calls < 20 * 20


async def test_stream_memory_is_bounded_by_the_buffer() -> None:
    data = regular(50, ["t"], 100, timedelta(minutes=1))
    server = Server(data)
    async with stream_timeseries(
        server.get, [urn(i) for i in range(50)], ["t"], tenant="x", scope="/",
        start=T0, end=T0 + timedelta(days=1), page_size=10, batch_size=5, concurrency=2,
    ) as stream:  # fmt: skip
        first = await stream.__anext__()
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        # a consumer that does not read holds up the calls: no more than the buffer
        # (one batch of pieces) plus what the two workers hold
        assert len(server.calls) <= 4
        rest = [piece async for piece in stream]
    assert sum(len(p.values) for p in [first, *rest]) == 50 * 100


@settings(max_examples=150, deadline=None)
@given(
    offsets=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3)), max_size=80),
    page_size=st.integers(1, 12),
    cut=st.integers(0, 41),
    seed=st.integers(0, 1000),
)
def test_any_data_any_page_size_every_point_once(
    offsets: list[tuple[int, int]], page_size: int, cut: int, seed: int
) -> None:
    data: Data = {(urn(0), "t"): [(T0 + timedelta(seconds=s), v) for s, v in offsets]}
    middle = T0 + timedelta(seconds=cut)
    end = T0 + timedelta(seconds=41)

    async def pull(start: datetime, stop: datetime) -> TimeSeriesResult:
        return await query_timeseries(
            Server(data, seed=seed).get, [urn(0)], ["t"], tenant="x", scope="/",
            start=start, end=stop, page_size=page_size,
        )  # fmt: skip

    async def both() -> tuple[TimeSeriesResult, TimeSeriesResult]:
        return await pull(T0, middle), await pull(middle, end)

    first, second = anyio.run(both)
    merged = Counter[Any]()
    for part in (first, second):
        for counter in got(part).values():
            merged.update(counter)
    assert merged == Counter((ts, repr(v)) for ts, v in data[(urn(0), "t")])


def test_a_stream_is_made_outside_the_event_loop_and_used_inside() -> None:
    data = regular(2, ["t"], 30, timedelta(minutes=1))
    stream = stream_timeseries(
        Server(data).get, [urn(0), urn(1)], ["t"], tenant="x", scope="/",
        start=T0, end=T0 + timedelta(hours=1), page_size=7,
    )  # fmt: skip

    async def consume() -> int:
        with pytest.raises(RuntimeError, match="async with"):
            await stream.__anext__()
        async with stream:
            return sum([len(piece.values) async for piece in stream])

    assert anyio.run(consume) == 60
