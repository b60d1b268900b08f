"""Hostile time-series answers: a server cap below an instant, a server that ignores ``limit``
or ``start_date``, very large instants, and bounds too large for a date. A small in-memory
server (inclusive bounds, ``order`` then ``limit`` per pair, its cap echoed) and, on the wire,
``aioresponses``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
from aioresponses import CallbackResult, aioresponses
from emulator_support import client_for
from resources_support import ROOT, make_client, mocked

from iris360_async import Iris360Client
from iris360_async._timeseries_pages import Cursor, take_page
from iris360_async._timeseries_query import query_timeseries
from iris360_async._timeutil import UNPARSEABLE_TIMESTAMP
from iris360_async.errors import ResponseDecodeError
from iris360_async.models.timeseries import (
    TimeSeries,
    TimeSeriesRequest,
    TimeSeriesResponse,
    TimeSeriesValue,
)
from iris360_async.testing import FaultProfile

UTC = timezone.utc
T0 = datetime(2025, 1, 1)
DEVICE = "urn:ngsi-ld:Device:D1"
Points = list[tuple[datetime, Any]]


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)


class CappedServer:
    """One pair; answers at most ``cap`` points per call and echoes the cap as its limit."""

    def __init__(self, points: Points, *, cap: int, ignore_start: bool = False) -> None:
        self.points = sorted(points, key=lambda p: p[0])
        self.cap = cap
        self.ignore_start = ignore_start
        self.calls: list[TimeSeriesRequest] = []

    async def get(self, requests: list[TimeSeriesRequest]) -> list[TimeSeriesResponse]:
        assert len(self.calls) < 200, "the pull does not end"
        out = []
        for request in requests:
            self.calls.append(request)
            opts = request.options
            start = None if self.ignore_start else _parse(opts.start_date)
            end = _parse(opts.end_date)
            asked = opts.limit if isinstance(opts.limit, int) else 100
            limit = min(asked, self.cap)
            chosen = [
                p for p in self.points
                if (start is None or p[0] >= start) and (end is None or p[0] <= end)
            ][:limit]
            series = [TimeSeries(DEVICE, "m", [TimeSeriesValue(t, v) for t, v in chosen])]
            out.append(TimeSeriesResponse(series, msgspec.structs.replace(opts, limit=limit)))
        return out


async def pull(server: CappedServer | OneInstantServer, **kwargs: Any) -> Any:
    return await query_timeseries(
        server.get, [DEVICE], ["m"], tenant="t", scope="/",
        start=T0, end=T0 + timedelta(days=1), **kwargs,
    )


async def test_an_instant_larger_than_the_server_cap_ends_the_pair_as_truncated() -> None:
    # 150 points share one timestamp, the server never answers more than 100: a larger page
    # cannot help, so the pair stops there and says so instead of asking forever.
    points = [(T0, i) for i in range(150)] + [(T0 + timedelta(seconds=1), 999)]
    server = CappedServer(points, cap=100)
    result = await pull(server, page_size=100)
    assert result.truncated == [(DEVICE, "m")]
    assert len(result[(DEVICE, "m")].values) == 100
    assert len(server.calls) <= 3


async def test_a_capped_server_that_ignores_start_does_not_loop() -> None:
    points = [(T0 + timedelta(minutes=i), i) for i in range(500)]
    server = CappedServer(points, cap=100, ignore_start=True)
    result = await pull(server, page_size=1000)
    assert result.truncated == [(DEVICE, "m")]
    assert [v.value for v in result[(DEVICE, "m")].values] == list(range(100))
    assert len(server.calls) <= 4


async def test_a_capped_server_still_delivers_every_point_of_ordinary_data() -> None:
    points = [(T0 + timedelta(seconds=i // 3), i) for i in range(1000)]  # 3 per instant
    server = CappedServer(points, cap=50)
    result = await pull(server, page_size=1000)
    assert result.truncated == []
    assert [v.value for v in result[(DEVICE, "m")].values] == list(range(1000))


class OneInstantServer:
    """Answers every request with exactly ``limit`` new, distinct points, all at ``T0``."""

    def __init__(self) -> None:
        self.calls: list[TimeSeriesRequest] = []
        self.sent = 0

    async def get(self, requests: list[TimeSeriesRequest]) -> list[TimeSeriesResponse]:
        out = []
        for request in requests:
            self.calls.append(request)
            opts = request.options
            assert isinstance(opts.limit, int)
            assert opts.limit <= 10**5, "the page grows without end"
            values = [TimeSeriesValue(T0, self.sent + i) for i in range(opts.limit)]
            self.sent += opts.limit
            out.append(TimeSeriesResponse([TimeSeries(DEVICE, "m", values)], opts))
        return out


@pytest.mark.parametrize(("page_size", "largest"), [(100, 6400), (1000, 64000)])
async def test_a_page_does_not_grow_without_end_at_one_instant(
    page_size: int, largest: int
) -> None:
    # Every answer is a full page of new points at one instant: the page doubles while it
    # makes no progress past it, but not beyond 64 times page_size (at least 10,000 points);
    # then the pair ends as truncated, with every point received so far.
    server = OneInstantServer()
    result = await pull(server, page_size=page_size)
    limits = [request.options.limit for request in server.calls]
    assert limits == [page_size] + [page_size * 2**i for i in range(7)]
    assert limits[-1] == largest
    assert result.truncated == [(DEVICE, "m")]
    series = result[(DEVICE, "m")]
    assert series.possibly_truncated
    assert [v.value for v in series.values] == list(range(server.sent))


async def test_an_aggregated_page_does_not_grow_without_end_at_one_instant() -> None:
    server = OneInstantServer()
    result = await pull(server, page_size=100, aggregation=("mean", "PT1H"))
    assert [request.options.limit for request in server.calls][-1] == 6400
    assert result.truncated == [(DEVICE, "m")]
    assert [v.value for v in result[(DEVICE, "m")].values] == list(range(100))


async def test_an_instant_of_thousands_of_points_is_paged_past_with_a_small_page_size() -> None:
    # Real instants hold at most a few thousand points: the ceiling never stops them, even
    # when the page size is small.
    points = [(T0, i) for i in range(5000)] + [(T0 + timedelta(seconds=1), 5000)]
    server = CappedServer(points, cap=10**6)
    result = await pull(server, page_size=10)
    assert result.truncated == []
    assert [v.value for v in result[(DEVICE, "m")].values] == list(range(5001))


class Counted:
    """A hashable value that counts how often it is compared."""

    comparisons = 0

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        Counted.comparisons += 1
        return isinstance(other, Counted) and other.n == self.n

    def __hash__(self) -> int:
        return hash(self.n)


def test_boundary_de_duplication_is_linear_in_the_points_of_the_instant() -> None:
    # Removing what was seen at the boundary must not compare every new point with every
    # seen value: 4,000 points in one instant would otherwise cost millions of comparisons.
    n = 4000
    values = [TimeSeriesValue(T0, Counted(i)) for i in range(n)]
    seen = tuple(Counted(i) for i in reversed(range(n // 2)))
    Counted.comparisons = 0
    page = take_page(
        values, limit=n, cursor=Cursor(T0, seen, n, T0), end=T0 + timedelta(days=1)
    )
    assert [p.value.n for p in page.points] == list(range(n // 2, n))
    assert Counted.comparisons <= 2 * n


def test_boundary_de_duplication_keeps_unhashable_values_as_a_multiset() -> None:
    values = [TimeSeriesValue(T0, v) for v in ({"a": 1}, {"a": 1}, [1], 1, True, 1.0)]
    cursor = Cursor(T0, ({"a": 1}, [1], 1), 10, T0)
    page = take_page(values, limit=10, cursor=cursor, end=T0 + timedelta(days=1))
    assert [p.value for p in page.points] == [{"a": 1}, True, 1.0]


# -- a server that ignores ``limit`` ----------------------------------------------------------


@pytest.fixture
async def iris() -> AsyncIterator[Iris360Client]:
    async for client in make_client():
        yield client


@pytest.fixture
def mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    yield from mocked(monkeypatch)


def _answer(count: int, order: str) -> list[dict[str, Any]]:
    stamps = [T0 + timedelta(minutes=i) for i in range(count)]
    if order == "desc":
        stamps.reverse()
    values = [{"timestamp": t.isoformat(), "value": t.minute} for t in stamps]
    return [{
        "time_series": [{"device_id": DEVICE, "measure_id": "m", "values": values}],
        "options": {"limit": 5, "order": order},
    }]


@pytest.mark.parametrize(
    ("order", "kept"), [("asc", [0, 1, 2, 3, 4]), ("desc", [19, 18, 17, 16, 15])]
)
async def test_a_limit_is_kept_when_the_server_sends_more_points(
    iris: Iris360Client, mock: aioresponses, order: str, kept: list[int]
) -> None:
    mock.post(ROOT + "/timeseries", payload=_answer(20, order))
    result = await iris.timeseries.query([DEVICE], ["m"], limit=5, order=order)  # type: ignore[arg-type]
    assert [v.value for v in result[(DEVICE, "m")].values] == kept
    assert result.truncated == [(DEVICE, "m")]


# -- bounds too large for a date --------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ({"start": timedelta(days=10**6)}, "start"),
        ({"start": "P99999999D"}, "start"),
        ({"start": "PT99999999999999S"}, "start"),
        ({"start": datetime(1, 1, 1), "end": datetime(1, 1, 1)}, "end"),
        ({"end": datetime.min.replace(tzinfo=UTC)}, "end"),
        ({"start": datetime.min.replace(tzinfo=timezone(timedelta(hours=2)))}, "start"),
    ],
)
async def test_bounds_out_of_the_date_range_are_a_value_error_before_sending(
    bounds: dict[str, Any], message: str
) -> None:
    calls: list[Any] = []

    async def get(requests: list[TimeSeriesRequest]) -> list[TimeSeriesResponse]:
        calls.append(requests)
        return []

    with pytest.raises(ValueError, match=message):
        await query_timeseries(
            get, [DEVICE], ["m"], tenant="t", scope="/", now=T0.replace(tzinfo=UTC).timestamp(),
            **bounds,
        )
    assert calls == []


# -- against the emulator: same answer at any concurrency, cancellation --------------------------

EMU_DEVICES = [f"urn:ngsi-ld:Device:SN{i:06d}" for i in range(1, 7)]


async def test_any_concurrency_and_batching_give_the_same_ordered_result(
    iris360_emulator_factory: Any,
) -> None:
    emu = await iris360_emulator_factory(devices=6, seed=11)
    async with client_for(emu) as client:
        results = []
        for concurrency, batch_size, page_size in ((1, 100, 1000), (8, 1, 37), (3, 4, 50)):
            result = await client.timeseries.query(
                EMU_DEVICES, ["temperature", "humidity"],
                start=datetime(2025, 11, 1, 5, 3, 7, 123456, tzinfo=UTC),
                end=datetime(2025, 11, 3, tzinfo=timezone(timedelta(hours=-5))),
                concurrency=concurrency, batch_size=batch_size, page_size=page_size,
            )
            results.append([
                (key, [(v.timestamp, v.value) for v in series.values])
                for key, series in result.items()
            ])
            assert result.truncated == []
            assert result.failures == []
        assert results[0] == results[1] == results[2]
        first = results[0][0][1]
        assert first[0][0] >= datetime(2025, 11, 1, 5, 3, 7, 123456, tzinfo=UTC)
        assert first[-1][0] < datetime(2025, 11, 3, 5, tzinfo=UTC)
        assert [t for t, _ in first] == sorted({t for t, _ in first})


async def test_a_stream_cancelled_mid_pull_leaves_no_call_behind(
    iris360_emulator_factory: Any,
) -> None:
    emu = await iris360_emulator_factory(devices=6, seed=11)
    async with client_for(emu, connection_limit=4) as client:
        with anyio.CancelScope() as scope:
            async with client.timeseries.stream(
                EMU_DEVICES, ["temperature"], start=datetime(2025, 11, 1),
                end=datetime(2025, 11, 20), page_size=100, batch_size=1, concurrency=4,
            ) as pieces:
                async for _ in pieces:
                    emu.set_faults(FaultProfile(slow_rate=1.0, slow_delay=600),
                                   endpoint="timeseries")
                    with anyio.fail_after(10):
                        while emu.stats.in_flight < 3:  # noqa: ASYNC110 - polling a counter
                            await anyio.sleep(0.005)
                    scope.cancel()
                    await anyio.lowlevel.checkpoint()
        assert scope.cancelled_caught
        emu.clear_faults()
        with anyio.fail_after(20):  # every connection is free again
            again = await client.timeseries.query(
                EMU_DEVICES, ["temperature"], start=datetime(2025, 11, 1),
                end=datetime(2025, 11, 2), concurrency=4, batch_size=1,
            )
        assert again.point_count == 6 * 144


# -- a broken body in the middle of a pull ------------------------------------------------------


@pytest.mark.parametrize("body", ["<html>502 Bad Gateway</html>", '[{"time_series": [{"dev'])
async def test_a_broken_body_mid_pull_is_a_failure_and_the_other_pairs_complete(
    iris: Iris360Client, mock: aioresponses, body: str
) -> None:
    devices = [f"urn:ngsi-ld:Device:D{i}" for i in range(3)]
    calls: list[dict[str, Any]] = []

    def answer(url: object, **kwargs: Any) -> CallbackResult:
        [request] = json.loads(kwargs["data"])
        calls.append(request)
        options = request["options"]
        start = _parse(options["start_date"])
        assert start is not None
        device = request["device_ids"][0]
        if device.endswith("D1") and start > T0:  # the second page of D1 breaks
            return CallbackResult(status=200, body=body, content_type="text/html")
        stamps = [start + timedelta(minutes=i) for i in range(options["limit"])]
        values = [{"timestamp": t.isoformat(), "value": 1} for t in stamps]
        series = [{"device_id": device, "measure_id": "m", "values": values}]
        return CallbackResult(payload=[{"time_series": series, "options": options}])

    mock.post(ROOT + "/timeseries", callback=answer, repeat=True)
    result = await iris.timeseries.query(
        devices, ["m"], start=T0, end=T0 + timedelta(minutes=25), page_size=10, batch_size=1,
        concurrency=2, raise_on_error=False,
    )
    [failure] = result.failures
    assert failure.request.device_ids == [devices[1]]
    assert failure.request.options.start_date == "2025-01-01T00:09:00Z"
    assert isinstance(failure.error, ResponseDecodeError)
    assert len(result[(devices[0], "m")].values) == 25
    assert len(result[(devices[2], "m")].values) == 25
    assert len(result[(devices[1], "m")].values) == 10
    assert result.missing == []

    with pytest.raises(ResponseDecodeError):
        await iris.timeseries.query(
            devices, ["m"], start=T0, end=T0 + timedelta(minutes=25), page_size=10,
            batch_size=1, concurrency=2,
        )


# -- unreadable timestamps ----------------------------------------------------------------------


@pytest.mark.parametrize("page", [1, 2])
def test_a_point_with_an_unreadable_timestamp_is_kept_on_any_page(page: int) -> None:
    # Decoding keeps such a point (its timestamp is UNPARSEABLE_TIMESTAMP, year 1) rather
    # than failing the answer; paging must not drop it because it sorts before the cursor.
    end = T0 + timedelta(days=1)
    values = [TimeSeriesValue(T0 + timedelta(minutes=9 + i), i) for i in range(10)]
    values[3] = TimeSeriesValue(UNPARSEABLE_TIMESTAMP, "unreadable")
    cursor = Cursor(T0 + timedelta(minutes=9), (0,), 10, T0) if page == 2 else None
    result = take_page(values, limit=10, cursor=cursor, end=end)
    assert [p.value for p in result.points][:1] == ["unreadable"]
    assert len(result.points) == (10 if page == 1 else 9)
    assert result.cursor is not None
    assert result.cursor.after == T0 + timedelta(minutes=18)
