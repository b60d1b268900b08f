"""Time-series fan-out against an in-memory fake of ``POST /timeseries`` (no HTTP)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iris360_async._timeseries_query import (
    match_responses,
    plan_batches,
    query_timeseries,
    resolve_order,
)
from iris360_async.errors import InternalServerError, ResponseDecodeError
from iris360_async.models.timeseries import (
    TimeSeries,
    TimeSeriesAggregation,
    TimeSeriesOptions,
    TimeSeriesRequest,
    TimeSeriesResponse,
    TimeSeriesValue,
)
from iris360_async.models.tsquery import TimeSeriesResult, TimeSeriesRow

UTC = timezone.utc
T0 = datetime(2025, 1, 1)


def urn(i: int) -> str:
    return f"urn:ngsi-ld:Device:D{i:03d}"


class FakeTimeseries:
    """Server semantics of §4.1: per-pair filter, order and limit; pairs without data absent."""

    def __init__(
        self,
        data: dict[tuple[str, str], list[tuple[datetime, object]]],
        *,
        echo_query_id: bool = True,
        reverse_responses: bool = False,
        shuffle_points: bool = False,
        fail_calls: set[int] | None = None,
        silent_empty: set[str] | None = None,
        turns: int = 2,
    ) -> None:
        self.data = data
        self.echo_query_id = echo_query_id
        self.reverse_responses = reverse_responses
        self.shuffle_points = shuffle_points
        self.fail_calls = fail_calls or set()
        self.silent_empty = silent_empty or set()  # devices whose batch answers [] silently
        self.turns = turns
        self.calls: list[list[TimeSeriesRequest]] = []
        self.bodies: list[bytes] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0

    def answer(self, request: TimeSeriesRequest) -> TimeSeriesResponse:
        opts = request.options
        if any(d in self.silent_empty for d in request.device_ids):
            return TimeSeriesResponse(time_series=[], options=opts)
        start = _parse(opts.start_date)
        end = _parse(opts.end_date)
        limit = 100 if opts.limit is msgspec.UNSET else opts.limit
        assert isinstance(limit, int)
        out = []
        for device in request.device_ids:
            measures = request.measure_ids or sorted({m for (d, m) in self.data if d == device})
            for measure in measures:
                points = [
                    (ts, v)
                    for ts, v in self.data.get((device, measure), [])
                    if (start is None or ts >= start) and (end is None or ts <= end)
                ]
                points.sort(key=lambda p: p[0], reverse=opts.order == "desc")
                points = points[:limit]
                if self.shuffle_points:
                    random.Random(7).shuffle(points)
                if points:
                    out.append(
                        TimeSeries(
                            device,
                            measure,
                            [TimeSeriesValue(ts.replace(tzinfo=None), v) for ts, v in points],
                        )
                    )
        echoed = opts if self.echo_query_id else msgspec.structs.replace(opts, query_id=None)
        return TimeSeriesResponse(time_series=out, options=echoed)

    async def get(self, requests: list[TimeSeriesRequest]) -> list[TimeSeriesResponse]:
        index = len(self.calls)
        self.calls.append(list(requests))
        self.bodies.append(msgspec.json.encode(requests))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(self.turns + index % 3):
                await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        if index in self.fail_calls:
            raise InternalServerError("boom", status=500, method="POST", url="/timeseries")
        responses = [self.answer(r) for r in requests]
        return responses[::-1] if self.reverse_responses else responses


def _parse(value: object) -> datetime | None:
    if value is msgspec.UNSET or value is None:
        return None
    assert isinstance(value, str)
    if value.startswith("PT") and value.endswith("H"):  # "now minus duration"
        return datetime.now(UTC) - timedelta(hours=int(value[2:-1]))
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def make_data(
    devices: int, measures: Sequence[str], points: int, *, skip: int = 0
) -> dict[tuple[str, str], list[tuple[datetime, object]]]:
    """Every ``skip``-th pair has no data (skip=0: all pairs have data)."""
    data: dict[tuple[str, str], list[tuple[datetime, object]]] = {}
    n = 0
    for d in range(devices):
        for m in measures:
            n += 1
            if skip and n % skip == 0:
                continue
            data[(urn(d), m)] = [
                (T0.replace(tzinfo=UTC) + timedelta(minutes=k), d * 1000 + k) for k in range(points)
            ]
    return data


def as_plain(
    result: TimeSeriesResult | list[TimeSeriesResponse],
) -> dict[tuple[str, str], list[tuple[datetime, object]]]:
    if isinstance(result, TimeSeriesResult):
        series = result.series()
    else:
        series = [s for r in result for s in r.time_series]
    return {(s.device_id, s.measure_id): [(v.timestamp, v.value) for v in s.values] for s in series}


MEASURES = ["temperature", "humidity", "pm10"]


# -- planning -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    devices=st.integers(1, 40),
    measures=st.integers(0, 12),
    batch_size=st.integers(1, 30),
)
def test_plan_covers_every_pair_once_within_batch_size(
    devices: int, measures: int, batch_size: int
) -> None:
    device_ids = [urn(i) for i in range(devices)]
    measure_ids = [f"m{i}" for i in range(measures)]
    batches = plan_batches(device_ids, measure_ids, batch_size)
    pairs = [(d, m) for ds, ms in batches for d in ds for m in (ms or ["*"])]
    expected = [(d, m) for d in device_ids for m in (measure_ids or ["*"])]
    assert sorted(pairs) == sorted(expected)
    assert len(pairs) == len(set(pairs))
    assert all(len(ds) * max(len(ms), 1) <= batch_size for ds, ms in batches)
    assert all(ds for ds, _ in batches)


def test_plan_keeps_measures_together_when_they_fit() -> None:
    batches = plan_batches([urn(i) for i in range(7)], MEASURES, 9)
    assert [len(ds) for ds, _ in batches] == [3, 3, 1]
    assert all(ms == MEASURES for _, ms in batches)


def test_resolve_order() -> None:
    assert resolve_order(None, None) == "desc"
    assert resolve_order(None, T0) == "asc"
    assert resolve_order("desc", T0) == "desc"
    with pytest.raises(ValueError, match="order"):
        resolve_order("up", None)  # type: ignore[arg-type]


def test_match_responses_by_query_id_then_position() -> None:
    reqs = [
        TimeSeriesRequest([urn(i)], ["t"], TimeSeriesOptions(query_id=f"q{i}")) for i in range(3)
    ]
    resps = [TimeSeriesResponse(options=r.options) for r in reqs]
    assert match_responses(reqs, resps[::-1]) == resps
    anonymous = [TimeSeriesResponse(options=TimeSeriesOptions(query_id=None)) for _ in reqs]
    assert match_responses(reqs, anonymous) == anonymous
    with pytest.raises(ResponseDecodeError, match="no response for request 2"):
        match_responses(reqs, resps[:2])


# -- the fan-out equals one big request -----------------------------------------------------


@pytest.mark.parametrize(
    ("batch_size", "concurrency", "per_call"), [(1, 1, 1), (2, 3, 1), (4, 8, 2), (100, 4, 1)]
)
@pytest.mark.parametrize(
    "window",
    [
        {},
        {"limit": 5},
        {"start": T0 + timedelta(minutes=3), "limit": 4},
        {"start": T0 + timedelta(minutes=2), "end": T0 + timedelta(minutes=9)},
        {"limit": 3, "order": "asc"},
    ],
)
async def test_fan_out_matches_single_request(
    batch_size: int, concurrency: int, per_call: int, window: dict[str, Any]
) -> None:
    data = make_data(9, MEASURES, 20, skip=4)
    fake = FakeTimeseries(data, shuffle_points=True)
    devices = [urn(i) for i in range(10)]  # D009 has no data at all
    result = await query_timeseries(
        fake.get,
        devices,
        MEASURES,
        tenant="libelium",
        scope="/",
        batch_size=batch_size,
        concurrency=concurrency,
        requests_per_call=per_call,
        **window,
    )
    options: dict[str, Any] = {
        "order": window.get("order") or ("asc" if "start" in window else "desc")
    }
    for ours, wire in (("start", "start_date"), ("limit", "limit")):
        if ours in window:
            options[wire] = window[ours]
    if "end" in window:  # query's end is exclusive, the server's inclusive
        options["end_date"] = window["end"] - timedelta(microseconds=1)
    if "start" in window and "limit" not in window:  # a whole range: every point
        options["limit"] = 10**6
    reference = FakeTimeseries(data).answer(
        TimeSeriesRequest(
            devices, MEASURES, TimeSeriesOptions(tenant="libelium", scope="/", **options)
        )
    )
    assert as_plain(result) == as_plain([reference])
    # every (device, measure) pair either has data or is reported missing, never both
    assert set(result) | set(result.missing) == {(d, m) for d in devices for m in MEASURES}
    assert not set(result) & set(result.missing)
    assert urn(9) in result.missing_devices
    assert fake.max_in_flight <= concurrency
    n_batches = len(plan_batches(devices, MEASURES, batch_size))
    assert len(fake.calls) == -(-n_batches // per_call)
    ids = [r.options.query_id for call in fake.calls for r in call]
    assert len(set(ids)) == len(ids) == n_batches
    assert result.complete


async def test_rows_and_series_and_mapping() -> None:
    data = make_data(2, ["t", "h"], 3)
    result = await query_timeseries(
        FakeTimeseries(data).get,
        [urn(1), urn(0)],
        ["h", "t"],
        tenant="x",
        scope="/",
        start=T0,
        batch_size=1,
    )
    # request order: devices as given, measures as given
    assert list(result) == [(urn(1), "h"), (urn(1), "t"), (urn(0), "h"), (urn(0), "t")]
    assert [s.measure_id for s in result.series()] == ["h", "t", "h", "t"]
    rows = list(result.rows())
    assert len(rows) == 12 == result.point_count
    first = rows[0]
    assert isinstance(first, TimeSeriesRow)
    device_id, measure_id, timestamp, value = first
    assert (device_id, measure_id, value) == (urn(1), "h", 1000)
    assert timestamp == T0.replace(tzinfo=UTC)
    assert timestamp.tzinfo is not None
    assert result[(urn(0), "t")].values[2].value == 2
    assert (urn(5), "t") not in result
    assert "series=4" in repr(result)


async def test_points_sorted_in_effective_order() -> None:
    data = make_data(1, ["t"], 10)
    fake = FakeTimeseries(data, shuffle_points=True)
    newest = await query_timeseries(fake.get, [urn(0)], ["t"], tenant="x", scope="/", limit=4)
    assert [v.value for v in newest[(urn(0), "t")].values] == [9, 8, 7, 6]
    oldest = await query_timeseries(
        fake.get, [urn(0)], ["t"], tenant="x", scope="/", limit=4, start=T0
    )
    assert [v.value for v in oldest[(urn(0), "t")].values] == [0, 1, 2, 3]


async def test_all_measures_when_measure_ids_empty() -> None:
    data = make_data(3, MEASURES, 2)
    del data[(urn(1), "pm10")]
    result = await query_timeseries(
        FakeTimeseries(data).get, [urn(0), urn(1), urn(4)], [], tenant="x", scope="/"
    )
    assert len(result) == 5
    assert result.missing == []  # pairs cannot be listed without measures ...
    assert result.missing_devices == [urn(4)]  # ... but devices without any series can


# -- what is sent ---------------------------------------------------------------------------


async def test_limit_omitted_unless_given_and_dates_in_utc() -> None:
    fake = FakeTimeseries({})
    await query_timeseries(fake.get, [urn(0)], ["t"], tenant="libelium", scope="/")
    body = msgspec.json.decode(fake.bodies[0])
    assert "limit" not in body[0]["options"]
    assert "start_date" not in body[0]["options"]
    assert body[0]["options"]["order"] == "desc"
    assert body[0]["options"]["tenant"] == "libelium"
    assert body[0]["options"]["scope"] == "/"

    fake = FakeTimeseries({})
    berlin = timezone(timedelta(hours=1))
    await query_timeseries(
        fake.get,
        [urn(0)],
        ["t"],
        tenant="t",
        scope="/",
        limit=7,
        start=datetime(2025, 1, 1, 12, 0),  # naive = UTC
        end=datetime(2025, 1, 2, 13, 0, tzinfo=berlin),
        aggregation=("percentile-95", timedelta(minutes=15)),
    )
    options = msgspec.json.decode(fake.bodies[0])[0]["options"]
    assert options["limit"] == 7
    assert options["start_date"] == "2025-01-01T12:00:00Z"
    # the server's end is inclusive: the last microsecond before the exclusive end is sent
    assert options["end_date"] == "2025-01-02T11:59:59.999999Z"
    assert options["order"] == "asc"
    assert options["aggregation"] == {"type": "percentile-95", "interval": "PT15M"}


@pytest.mark.parametrize("start", [timedelta(hours=6), "PT6H", "PT5H60M"])
async def test_durations_count_back_from_the_request_time(start: timedelta | str) -> None:
    fake = FakeTimeseries({})
    now = datetime(2025, 3, 1, 12, tzinfo=UTC).timestamp()
    await query_timeseries(fake.get, [urn(0)], ["t"], tenant="t", scope="/", start=start,
                           limit=5, now=now)
    options = msgspec.json.decode(fake.bodies[0])[0]["options"]
    assert options["start_date"] == "2025-03-01T06:00:00Z"
    assert "end_date" not in options  # with a limit and no end: up to the server's now
    fake = FakeTimeseries({})
    await query_timeseries(fake.get, [urn(0)], ["t"], tenant="t", scope="/", start=start,
                           now=now)
    options = msgspec.json.decode(fake.bodies[0])[0]["options"]
    assert options["start_date"] == "2025-03-01T06:00:00Z"
    assert options["end_date"] == "2025-03-01T11:59:59.999999Z"  # a whole range ends now


async def test_duplicate_ids_are_queried_once() -> None:
    fake = FakeTimeseries(make_data(2, ["t"], 1))
    result = await query_timeseries(
        fake.get, [urn(0), urn(1), urn(0)], ["t", "t"], tenant="t", scope="/", batch_size=1
    )
    assert len(fake.calls) == 2
    assert len(result) == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"device_ids": []}, ValueError),
        ({"device_ids": urn(0)}, TypeError),
        ({"device_ids": [""]}, ValueError),
        ({"device_ids": ["urn with space"]}, ValueError),
        ({"measure_ids": "t"}, TypeError),
        ({"measure_ids": [""]}, TypeError),
        ({"tenant": ""}, ValueError),
        ({"scope": ""}, ValueError),
        ({"limit": 0}, ValueError),
        ({"limit": 2.5}, TypeError),
        ({"order": "newest"}, ValueError),
        ({"start": T0 + timedelta(days=1), "end": T0}, ValueError),
        ({"start": 1700000000}, TypeError),
        ({"start": timedelta(0)}, ValueError),
        ({"aggregation": ("percentile", "PT1H")}, ValueError),
        ({"aggregation": ("median", "PT1H")}, ValueError),
        ({"aggregation": ("mean", "P1M")}, ValueError),
        ({"aggregation": ("mean", "P1Y")}, ValueError),
        ({"aggregation": TimeSeriesAggregation("mean", "PT0S")}, ValueError),
        ({"aggregation": "mean"}, TypeError),
        ({"batch_size": 0}, ValueError),
        ({"concurrency": 0}, ValueError),
        ({"requests_per_call": 0}, ValueError),
    ],
)
async def test_bad_arguments_fail_before_any_request(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    fake = FakeTimeseries({})
    args: dict[str, object] = {
        "device_ids": [urn(0)],
        "measure_ids": ["t"],
        "tenant": "t",
        "scope": "/",
    }
    args.update(kwargs)
    with pytest.raises(error):
        await query_timeseries(fake.get, **args)  # type: ignore[arg-type]
    assert fake.calls == []


async def test_aggregation_struct_accepted() -> None:
    fake = FakeTimeseries({})
    await query_timeseries(
        fake.get,
        [urn(0)],
        ["t"],
        tenant="t",
        scope="/",
        aggregation=TimeSeriesAggregation("moving_avg", "PT1H"),
    )
    assert msgspec.json.decode(fake.bodies[0])[0]["options"]["aggregation"] == {
        "type": "moving_avg",
        "interval": "PT1H",
    }


# -- matching, empties, failures ------------------------------------------------------------


@pytest.mark.parametrize(("echo", "reverse"), [(True, True), (False, False)])
async def test_responses_matched_by_query_id_or_position(echo: bool, reverse: bool) -> None:
    data = make_data(6, ["t"], 3)
    fake = FakeTimeseries(data, echo_query_id=echo, reverse_responses=reverse)
    result = await query_timeseries(
        fake.get,
        [urn(i) for i in range(6)],
        ["t"],
        tenant="t",
        scope="/",
        batch_size=1,
        requests_per_call=3,
    )
    assert as_plain(result) == as_plain([FakeTimeseries(data).answer(r) for r in result.requests])
    assert result.missing == []


async def test_silent_empty_batches_are_surfaced() -> None:
    data = make_data(4, ["t", "h"], 2)
    fake = FakeTimeseries(data, silent_empty={urn(2)})
    result = await query_timeseries(
        fake.get, [urn(i) for i in range(4)], ["t", "h"], tenant="t", scope="/", batch_size=2
    )
    assert result.missing == [(urn(2), "t"), (urn(2), "h")]
    assert result.missing_devices == [urn(2)]
    assert [r.device_ids for r in result.empty_requests] == [[urn(2)]]
    assert result.complete


async def test_failure_propagates_and_cancels_other_calls() -> None:
    fake = FakeTimeseries(make_data(20, ["t"], 2), fail_calls={1})

    async def get(requests: list[TimeSeriesRequest]) -> list[TimeSeriesResponse]:
        if len(fake.calls) == 1:
            fake.turns = 0  # the failing call returns at once
        else:
            fake.turns = 1000  # the others are slow
        return await fake.get(requests)

    tasks_before = asyncio.all_tasks()
    with pytest.raises(InternalServerError, match="boom"):
        await query_timeseries(
            get,
            [urn(i) for i in range(20)],
            ["t"],
            tenant="t",
            scope="/",
            batch_size=1,
            concurrency=4,
        )
    assert fake.cancelled == 3  # the three calls in flight beside the failing one
    assert len(fake.calls) == 4  # nothing started after the failure
    assert fake.in_flight == 0
    assert asyncio.all_tasks() == tasks_before


async def test_failures_reported_when_not_raising() -> None:
    data = make_data(6, ["t", "h"], 2)
    fake = FakeTimeseries(data, fail_calls={0, 4})
    result = await query_timeseries(
        fake.get,
        [urn(i) for i in range(6)],
        ["t", "h"],
        tenant="t",
        scope="/",
        batch_size=2,
        concurrency=1,
        raise_on_error=False,
    )
    assert not result.complete
    failed = [f.request.device_ids for f in result.failures]
    assert failed == [[urn(0)], [urn(4)]]
    assert all(isinstance(f.error, InternalServerError) for f in result.failures)
    assert {d for d, _ in result} == {urn(1), urn(2), urn(3), urn(5)}
    assert result.missing == []  # failed pairs are failures, not "missing"
    assert result.missing_devices == []
