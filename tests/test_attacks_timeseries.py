"""Hostile time-series answers: a server cap below an instant, a server that ignores ``limit``
or ``start_date``, very large instants, and bounds too large for a date. A small in-memory
server (inclusive bounds, ``order`` then ``limit`` per pair, its cap echoed) and, on the wire,
``aioresponses``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from aioresponses import aioresponses
from resources_support import ROOT, make_client, mocked

from iris360_async import Iris360Client
from iris360_async._timeseries_pages import Cursor, take_page
from iris360_async._timeseries_query import query_timeseries
from iris360_async.models.timeseries import (
    TimeSeries,
    TimeSeriesRequest,
    TimeSeriesResponse,
    TimeSeriesValue,
)

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


async def pull(server: CappedServer, **kwargs: Any) -> Any:
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
