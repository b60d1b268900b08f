"""The time-series fan-out through the real client against the emulator (127.0.0.1 sockets):
batched concurrent requests give what one big ``client.timeseries.get`` call gives."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from emulator_support import client_for

from iris360_async._timeseries_query import plan_batches, query_timeseries
from iris360_async.models.timeseries import (
    TimeSeriesAggregation,
    TimeSeriesOptions,
    TimeSeriesRequest,
    TimeSeriesResponse,
)
from iris360_async.models.tsquery import TimeSeriesResult
from iris360_async.testing import FaultProfile, Iris360Emulator

EmulatorFactory = Callable[..., Awaitable[Iris360Emulator]]

DEVICES = [f"urn:ngsi-ld:Device:SN{i:06d}" for i in range(1, 13)] + ["urn:ngsi-ld:Device:UNKNOWN"]
MEASURES = ["temperature", "humidity", "battery", "no_such_measure"]


@pytest.fixture
async def emu(iris360_emulator_factory: EmulatorFactory) -> Iris360Emulator:
    return await iris360_emulator_factory(devices=12, seed=5)


def plain(
    source: TimeSeriesResult | list[TimeSeriesResponse],
) -> dict[tuple[str, str], list[tuple[datetime, Any]]]:
    series = (
        source.series()
        if isinstance(source, TimeSeriesResult)
        else [s for r in source for s in r.time_series]
    )
    return {
        (s.device_id, s.measure_id): sorted((v.timestamp, v.value) for v in s.values)
        for s in series
    }


WINDOWS: list[dict[str, Any]] = [
    {"limit": 5},
    {"limit": 7, "order": "asc"},
    {"start": datetime(2025, 1, 1, 3), "end": datetime(2025, 1, 1, 9), "limit": 50},
    {
        "start": datetime(2025, 1, 1),
        "end": datetime(2025, 1, 2),
        "aggregation": TimeSeriesAggregation("mean", "PT3H"),
    },
]


@pytest.mark.parametrize("window", WINDOWS)
async def test_fan_out_equals_one_big_request(emu: Iris360Emulator, window: dict[str, Any]) -> None:
    async with client_for(emu) as client:
        order = window.get("order") or ("asc" if "start" in window else "desc")
        options: dict[str, Any] = {"order": order}
        if "start" in window:
            options["start_date"] = window["start"]
        if "end" in window:  # the server's end is inclusive, query's is exclusive
            options["end_date"] = window["end"] - timedelta(microseconds=1)
        for key in ("limit", "aggregation"):
            if key in window:
                options[key] = window[key]
        big = await client.timeseries.get(
            [TimeSeriesRequest(DEVICES, MEASURES, TimeSeriesOptions(**options))]
        )
        calls_before = emu.stats.requests["timeseries"]
        result = await query_timeseries(
            client.timeseries.get,
            DEVICES,
            MEASURES,
            tenant=emu.tenant,
            scope=emu.scope,
            batch_size=5,
            concurrency=3,
            **window,
        )
    assert plain(result) == plain(big)
    assert len(result) > 0
    n_batches = len(plan_batches(DEVICES, MEASURES, 5))
    assert emu.stats.requests["timeseries"] - calls_before == n_batches
    expected_missing = [(d, m) for d in DEVICES for m in MEASURES if (d, m) not in plain(big)]
    assert result.missing == expected_missing
    assert ("urn:ngsi-ld:Device:UNKNOWN", "temperature") in result.missing
    assert "urn:ngsi-ld:Device:UNKNOWN" in result.missing_devices
    assert result.complete


async def test_latest_n_by_default(emu: Iris360Emulator) -> None:
    async with client_for(emu) as client:
        result = await query_timeseries(
            client.timeseries.get,
            DEVICES[:2],
            ["temperature"],
            tenant=emu.tenant,
            scope=emu.scope,
            limit=3,
        )
        newest = await client.timeseries.get(
            [
                TimeSeriesRequest(
                    DEVICES[:1], ["temperature"], TimeSeriesOptions(limit=1, order="desc")
                )
            ]
        )
    series = result[(DEVICES[0], "temperature")]
    stamps = [v.timestamp for v in series.values]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    assert stamps[0] == newest[0].time_series[0].values[0].timestamp


async def test_relative_start(emu: Iris360Emulator) -> None:
    async with client_for(emu) as client:
        result = await query_timeseries(
            client.timeseries.get,
            DEVICES[:3],
            ["battery"],
            tenant=emu.tenant,
            scope=emu.scope,
            start=timedelta(hours=2),
            limit=1000,
        )
    counts = {len(s.values) for s in result.series()}
    assert len(result) == 3
    assert 11 <= min(counts) <= max(counts) <= 13  # one point every 10 minutes over two hours


async def test_retryable_faults_do_not_change_the_result(emu: Iris360Emulator) -> None:
    async with client_for(emu, max_retries=10) as client:
        big = await client.timeseries.get(
            [TimeSeriesRequest(DEVICES, MEASURES, TimeSeriesOptions(limit=4, order="desc"))]
        )
        emu.set_faults(
            FaultProfile(error_rate=0.3, error_status=503, rate_limit_rate=0.2, retry_after=1),
            endpoint="timeseries",
        )
        result = await query_timeseries(
            client.timeseries.get,
            DEVICES,
            MEASURES,
            tenant=emu.tenant,
            scope=emu.scope,
            limit=4,
            batch_size=2,
            concurrency=6,
        )
    assert plain(result) == plain(big)
    assert emu.stats.responses["timeseries"][503] > 0


async def test_client_query_method_uses_the_fan_out(emu: Iris360Emulator) -> None:
    async with client_for(emu) as client:
        big = await client.timeseries.get(
            [TimeSeriesRequest(DEVICES, MEASURES, TimeSeriesOptions(limit=3, order="desc"))]
        )
        calls_before = emu.stats.requests["timeseries"]
        result = await client.timeseries.query(DEVICES, MEASURES, limit=3, batch_size=8)
    assert plain(result) == plain(big)
    assert emu.stats.requests["timeseries"] - calls_before == len(
        plan_batches(DEVICES, MEASURES, 8)
    )
    assert all(r.options.tenant == emu.tenant for r in result.requests)


# -- whole ranges ---------------------------------------------------------------------------


async def test_a_month_returns_every_point_once(emu: Iris360Emulator) -> None:
    start, end = datetime(2025, 2, 1), datetime(2025, 3, 3)  # 30 days, 4,320 points a pair
    devices = DEVICES[:5]
    measures = ["temperature", "humidity", "battery"]
    async with client_for(emu) as client:
        result = await client.timeseries.query(devices, measures, start=start, end=end)
        [one] = await client.timeseries.get(
            [TimeSeriesRequest(devices[:1], ["humidity"], TimeSeriesOptions(
                start_date=start, end_date=end - timedelta(microseconds=1), limit=10_000))]
        )  # fmt: skip
    assert result.point_count == 5 * 3 * 4320
    assert result.paged_pairs == 15  # the default page of 1,000 points needed five pages
    assert result.truncated == []
    assert result.missing == []
    step = timedelta(minutes=10)
    for series in result.series():
        stamps = [p.timestamp for p in series.values]
        assert stamps[0] == start.replace(tzinfo=stamps[0].tzinfo)
        assert all(b - a == step for a, b in itertools.pairwise(stamps))
    assert plain(result)[(devices[0], "humidity")] == plain([one])[(devices[0], "humidity")]


@pytest.mark.parametrize(
    ("aggregation", "days", "page_size"),
    [(TimeSeriesAggregation("mean", "PT1H"), 3, 10), (TimeSeriesAggregation("max", "PT2H"), 2, 7),
     (TimeSeriesAggregation("moving_avg", "PT30M"), 1, 20)],
)  # fmt: skip
async def test_aggregated_ranges_page_like_one_request(
    emu: Iris360Emulator, aggregation: TimeSeriesAggregation, days: int, page_size: int
) -> None:
    start = datetime(2025, 1, 3, 0, 20)
    end = start + timedelta(days=days)
    async with client_for(emu) as client:
        paged = await client.timeseries.query(
            DEVICES[:3], ["temperature", "battery"], start=start, end=end,
            aggregation=aggregation, page_size=page_size,
        )  # fmt: skip
        [whole] = await client.timeseries.get([TimeSeriesRequest(
            DEVICES[:3], ["temperature", "battery"], TimeSeriesOptions(
                start_date=start, end_date=end - timedelta(microseconds=1), order="asc",
                limit=10_000, aggregation=aggregation))])  # fmt: skip
    assert paged.paged_pairs == 6
    assert {k: [(t, pytest.approx(v)) for t, v in s] for k, s in plain(paged).items()} == plain(
        [whole]
    )


async def test_get_flags_series_that_reached_the_limit(emu: Iris360Emulator) -> None:
    window = {"start_date": datetime(2025, 1, 1), "end_date": datetime(2025, 1, 1, 0, 20)}
    async with client_for(emu) as client:
        answers = await client.timeseries.get([
            TimeSeriesRequest(DEVICES[:2], ["temperature"], TimeSeriesOptions(**window, limit=3)),
            TimeSeriesRequest(DEVICES[:2], ["temperature"], TimeSeriesOptions(**window, limit=2)),
            TimeSeriesRequest(DEVICES[:1], ["humidity"], TimeSeriesOptions()),  # default 100
        ])  # fmt: skip
    assert [s.possibly_truncated for s in answers[0].time_series] == [True, True]  # 3 of 3
    assert answers[0].truncated_count == 2
    assert [len(s.values) for s in answers[1].time_series] == [2, 2]
    assert answers[1].truncated_count == 2
    assert answers[2].time_series[0].possibly_truncated
    async with client_for(emu) as client:
        [loose] = await client.timeseries.get([TimeSeriesRequest(
            DEVICES[:1], ["temperature"], TimeSeriesOptions(**window, limit=4))])  # fmt: skip
    assert loose.truncated_count == 0
    assert not loose.time_series[0].possibly_truncated


async def test_client_stream_pieces(emu: Iris360Emulator) -> None:
    start = datetime(2025, 1, 2)
    async with client_for(emu) as client:
        count = 0
        async with client.timeseries.stream(
            DEVICES[:4], ["temperature"], start=start, end=start + timedelta(days=2),
            page_size=50,
        ) as pieces:  # fmt: skip
            async for piece in pieces:
                assert 0 < len(piece.values) <= 50
                count += len(piece.values)
    assert count == 4 * 288
    assert pieces.paged_pairs == 4
    assert pieces.missing == []
