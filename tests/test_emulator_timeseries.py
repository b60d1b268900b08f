"""Emulator time series: limits, order, bounds, aggregation, periods, errors."""

from __future__ import annotations

import json
import statistics
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest

from iris360_async.testing import Iris360Emulator

START = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp())
NOW = START + 2 * 86400 + 300  # two days of 10-minute points, plus 5 minutes
URN = "urn:ngsi-ld:Device:SN000001"


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).replace(tzinfo=None).isoformat()


class Api:
    def __init__(self, emu: Iris360Emulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session
        self.auth = {"Authorization": f"Bearer {emu.issue_token().token}"}

    async def query(self, body: Any) -> tuple[int, Any, str]:
        async with self.session.post(self.emu.api_url + "/timeseries", json=body,
                                     headers=self.auth) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text), resp.content_type
            except ValueError:
                return resp.status, text, resp.content_type

    async def values(self, measure: str = "temperature", urn: str = URN,
                     **options: Any) -> list[dict[str, Any]]:
        status, body, _ = await self.query([request([urn], [measure], **options)])
        assert status == 200, body
        series = body[0]["time_series"]
        return series[0]["values"] if series else []


def request(device_ids: list[str], measure_ids: list[str], **options: Any) -> dict[str, Any]:
    return {"device_ids": device_ids, "measure_ids": measure_ids,
            "options": {"tenant": "libelium", "scope": "/", **options}}


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with Iris360Emulator(devices=5, seed=7, clock_start=NOW, token_ttl=86400) as emu, \
            aiohttp.ClientSession() as session:
        yield Api(emu, session)


async def test_default_limit_is_100_per_pair_and_oldest_first(api: Api) -> None:
    values = await api.values()
    assert len(values) == 100
    assert values[0]["timestamp"] == iso(START)
    assert values[1]["timestamp"] == iso(START + 600)


async def test_desc_keeps_the_newest_points(api: Api) -> None:
    values = await api.values(order="desc", limit=3)
    assert [v["timestamp"] for v in values] == [iso(NOW - 300 - 600 * i) for i in range(3)]
    asc = await api.values(order="asc", limit=3)
    assert [v["timestamp"] for v in asc] == [iso(START + 600 * i) for i in range(3)]
    null = await api.values(order=None, limit=3)
    assert null == asc


async def test_values_are_deterministic_and_timestamps_naive(api: Api) -> None:
    first = await api.values(limit=5)
    assert first == await api.values(limit=5)
    assert all("+" not in v["timestamp"] and not v["timestamp"].endswith("Z") for v in first)
    async with Iris360Emulator(devices=5, seed=7, clock_start=NOW + 86400) as other:
        emu_api = Api(other, api.session)
        assert await emu_api.values(limit=5) == first  # same seed, same points


async def test_bounds_are_inclusive(api: Api) -> None:
    values = await api.values(start_date="2025-01-01T01:00:00Z",
                              end_date="2025-01-01T02:00:00Z")
    assert [v["timestamp"] for v in values] == [iso(START + 3600 + 600 * i) for i in range(7)]
    values = await api.values(start_date="2025-01-01T01:00:00+01:00", limit=1)
    assert values[0]["timestamp"] == iso(START)


async def test_duration_bounds_count_back_from_the_emulator_clock(api: Api) -> None:
    values = await api.values(start_date="PT1H", limit=100)
    assert len(values) == 6
    api.emu.advance(3600)
    newest = await api.values(order="desc", limit=1)
    assert newest[0]["timestamp"] == iso(NOW - 300 + 3600)


async def test_one_response_per_request_and_unknown_urns_are_omitted(api: Api) -> None:
    body = [
        request([URN, "urn:ngsi-ld:Device:NOPE", "urn:ngsi-ld:Device:SN000002"],
                ["temperature", "nope"], limit=2, query_id="a"),
        request(["urn:ngsi-ld:Device:NOPE"], ["temperature"], query_id="b"),
        request([URN], [], limit=1, query_id="c"),
    ]
    status, out, _ = await api.query(body)
    assert status == 200
    assert len(out) == 3
    assert [r["options"]["query_id"] for r in out] == ["a", "b", "c"]
    pairs = [(s["device_id"], s["measure_id"]) for s in out[0]["time_series"]]
    assert pairs == [(URN, "temperature"), ("urn:ngsi-ld:Device:SN000002", "temperature")]
    assert out[1]["time_series"] == []
    assert {s["measure_id"] for s in out[2]["time_series"]} == {
        "temperature", "humidity", "battery", "online"}


async def test_effective_options_are_echoed(api: Api) -> None:
    _, out, _ = await api.query([request(
        [URN], ["temperature"], start_date="2025-01-01T00:00:00Z", order="desc",
        aggregation={"type": "mean", "interval": "PT60M"},
    )])
    options = out[0]["options"]
    assert options == {
        "start_date": "2025-01-01T00:00:00Z", "end_date": None, "order": "desc", "limit": 100,
        "aggregation": {"type": "mean", "interval": "PT1H"}, "period": None,
        "query_id": None, "where": None, "tenant": "libelium", "scope": "/",
    }


@pytest.mark.parametrize(
    ("kind", "reduce"),
    [("mean", statistics.fmean), ("sum", sum), ("min", min), ("max", max),
     ("percentile-50", statistics.median)],
)
async def test_bucket_aggregations_match_the_raw_points(api: Api, kind: str, reduce: Any) -> None:
    raw = await api.values(limit=12)  # the first two hours
    buckets = await api.values(limit=2, aggregation={"type": kind, "interval": "PT1H"})
    assert [b["timestamp"] for b in buckets] == [iso(START), iso(START + 3600)]
    for bucket, chunk in zip(buckets, (raw[:6], raw[6:12]), strict=True):
        expected = reduce([v["value"] for v in chunk])
        assert bucket["value"] == pytest.approx(expected)


async def test_booleans_aggregate_as_numbers_and_strings_are_dropped(api: Api) -> None:
    raw = await api.values("online", limit=6)
    agg = await api.values("online", limit=1, aggregation={"type": "sum", "interval": "PT1H"})
    assert agg[0]["value"] == sum(1 for v in raw if v["value"])
    gateway = "urn:ngsi-ld:Gateway:GW0001"
    assert await api.values("firmware", urn=gateway, limit=1)
    assert await api.values("firmware", urn=gateway,
                            aggregation={"type": "max", "interval": "PT1H"}) == []


async def test_moving_average_keeps_raw_timestamps(api: Api) -> None:
    raw = await api.values(limit=4)
    moving = await api.values(limit=4, aggregation={"type": "moving_avg", "interval": "PT20M"})
    assert [m["timestamp"] for m in moving] == [r["timestamp"] for r in raw]
    values = [r["value"] for r in raw]
    assert moving[0]["value"] == pytest.approx(values[0])
    assert moving[3]["value"] == pytest.approx((values[2] + values[3]) / 2)


async def test_period_filters_with_the_server_quirks(api: Api) -> None:
    # months compare against the 1-based month: 1 selects January, 0 never matches
    assert len(await api.values(limit=3, period=[{"months": [1]}])) == 3
    assert await api.values(limit=3, period=[{"months": [0]}]) == []
    # week_days use PostgreSQL dow (0 = Sunday); 2025-01-01 was a Wednesday (dow 3)
    wednesday = await api.values(limit=200, period=[{"week_days": [3]}])
    assert {v["timestamp"][:10] for v in wednesday} == {"2025-01-01"}
    hours = await api.values(limit=200, period=[{"hours": [["23:00:00", "00:30:00"]]}])
    assert {v["timestamp"][11:16] for v in hours} >= {"23:00", "23:50", "00:00", "00:30"}
    assert all(v["timestamp"][11:13] in ("23", "00") for v in hours)
    excluded = await api.values(limit=300, period=[{"extra": [{"month_day": 0}]}])
    assert excluded
    assert all(not v["timestamp"].startswith("2025-01-01") for v in excluded)


async def test_where_clause_with_empty_device_ids(api: Api) -> None:
    status, out, _ = await api.query([{
        "device_ids": [], "measure_ids": ["NO2"],
        "options": {"tenant": "libelium", "scope": "/", "limit": 1,
                    "where": {"conditions": [["datamodel", "=", "AirQualityObserved"]],
                              "operation": "AND"}},
    }])
    assert status == 200
    assert {s["device_id"] for s in out[0]["time_series"]} == {
        "urn:ngsi-ld:AirQualityObserved:AQ0001", "urn:ngsi-ld:AirQualityObserved:AQ0002",
        "urn:ngsi-ld:AirQualityObserved:AQ0004"}  # AQ0003 lives in scope /lab


async def test_limit_below_one_is_a_fastapi_422_served_as_html(api: Api) -> None:
    status, body, ctype = await api.query([request([URN], ["temperature"], limit=0)])
    assert status == 422
    assert ctype == "text/html"
    (detail,) = body["detail"]
    assert detail["loc"] == ["body", 0, "options", "limit"]
    assert detail["type"] == "value_error"
    assert detail["msg"]


@pytest.mark.parametrize(
    ("options", "loc"),
    [({"order": "up"}, ["body", 0, "options", "order"]),
     ({"aggregation": {"type": "percentile", "interval": "PT1H"}},
      ["body", 0, "options", "aggregation", "type"]),
     ({"aggregation": {"type": "mean", "interval": "P1M"}},
      ["body", 0, "options", "aggregation", "interval"]),
     ({"start_date": "yesterday"}, ["body", 0, "options", "start_date"]),
     ({"period": [{"months": [12]}]}, ["body", 0, "options", "period", 0, "months", 0])],
)
async def test_option_validation(api: Api, options: dict[str, Any], loc: list[Any]) -> None:
    status, body, _ = await api.query([request([URN], ["temperature"], **options)])
    assert status == 422
    assert [d["loc"] for d in body["detail"]] == [loc]


async def test_request_level_errors(api: Api) -> None:
    status, body, _ = await api.query([request([URN], ["temperature"], limit=None)])
    assert status == 500
    status, body, _ = await api.query({"device_ids": [URN]})
    assert (status, body) == (400, {"error": "invalid request body"})
    status, body, _ = await api.query([{"device_ids": [URN], "measure_ids": []}])
    assert (status, body) == (400, {"error": "options not provided, tenant and scope are needed"})
    status, body, _ = await api.query([{"device_ids": [URN], "options": {"tenant": "libelium"}}])
    assert (status, body) == (400, {"error": "tenant and scope are needed"})
    status, body, _ = await api.query([request([URN], [], scope="/nope")])
    assert (status, body) == (404, {"error": "scope not found"})
    status, body, _ = await api.query([request([], ["temperature"])])
    assert status == 422
    assert body["detail"][0]["msg"].startswith("Value error, Neither device_ids nor where")


async def test_descending_buckets_start_with_the_newest(api: Api) -> None:
    buckets = await api.values(order="desc", limit=3,
                               aggregation={"type": "max", "interval": "PT1H"})
    newest = START + 2 * 86400  # the last point sits alone in its hour
    assert [b["timestamp"] for b in buckets] == [iso(newest), iso(newest - 3600),
                                                iso(newest - 7200)]
    raw = await api.values(order="desc", limit=7)
    assert buckets[0]["value"] == raw[0]["value"]
    assert buckets[1]["value"] == max(v["value"] for v in raw[1:7])
    daily = await api.values(aggregation={"type": "mean", "interval": "P1D"})
    assert [b["timestamp"] for b in daily] == [iso(START), iso(START + 86400),
                                              iso(START + 2 * 86400)]


# -- the generator's fast paths give the point-by-point values ---------------------------------


def _reference(fleet: Any, urn: str, measure: Any, query: Any, now: float) -> list[Any]:
    """Point by point, straight from API.md: bounds inclusive, ``limit`` after ``order``."""
    from iris360_async.testing.series import timestamp_naive, value_at

    t0, iv = fleet.series_start, fleet.series_interval
    ks = [k for k in range(0, int((now - t0) // iv) + 1)
          if (query.start is None or t0 + k * iv >= query.start)
          and (query.end is None or t0 + k * iv <= query.end)]
    if query.descending:
        ks.reverse()
    return [{"timestamp": timestamp_naive(t0 + k * iv),
             "value": value_at(fleet.seed, urn, measure, k, t0 + k * iv)}
            for k in ks[: query.limit]]


@pytest.mark.parametrize("interval", [600, 7, 3600])
@pytest.mark.parametrize(
    ("start", "end", "descending", "limit"),
    [(None, None, False, 100), (None, None, True, 5), (3000, 90000, False, 10_000),
     (3001, 90000, True, 7), (90000, 3000, False, 10), (None, 0, False, 3), (-50, 10, True, 1)],
)
def test_fast_generation_matches_point_by_point(
    interval: int, start: int | None, end: int | None, descending: bool, limit: int
) -> None:
    from iris360_async.testing.fleet import MEASURES, Fleet
    from iris360_async.testing.series import SeriesQuery, encoded_values, run_query

    fleet = Fleet(devices=2, seed=11, tenant="t", scope="/", no_ota_fraction=0.0,
                  extra_entities=0, connectors=0, series_start=START, series_interval=interval)
    now = START + 2 * 86400 + 123
    query = SeriesQuery(
        start=None if start is None else START + start, end=None if end is None else START + end,
        descending=descending, limit=limit, aggregation=None, period=(),
    )
    for measure in MEASURES["Device"] + MEASURES["Gateway"] + MEASURES["AirQualityObserved"]:
        expected = _reference(fleet, URN, measure, query, now)
        assert run_query(fleet, URN, measure, query, now) == expected
        encoded = encoded_values(fleet, URN, measure, query, now)
        assert encoded is not None
        assert json.loads(encoded) == expected


def test_values_repeat_only_after_65536_points_and_differ_between_series() -> None:
    from iris360_async.testing.fleet import MEASURES
    from iris360_async.testing.series import value_at, values_between

    temperature = MEASURES["Device"][0]
    many = values_between(1, URN, temperature, 0, 70_000, START, 600)
    assert many == [value_at(1, URN, temperature, k, START + 600 * k) for k in range(70_001)]
    assert many[:2000] != values_between(1, "urn:ngsi-ld:Device:SN000002", temperature,
                                         0, 1999, START, 600)
    assert len(set(many[:1000])) > 500  # noisy, not a constant
