"""``client.timeseries.get`` on the wire: the array body, tenant/scope filled from the client,
unset options omitted, the time-series timeout, decoding and argument errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aioresponses import aioresponses
from resources_support import ROOT, TOKEN, body_of, make_client, mocked, sent

from iris360_async import Iris360Client, ResponseDecodeError, Timeout
from iris360_async.models import (
    TimeSeriesAggregation,
    TimeSeriesOptions,
    TimeSeriesRequest,
    WhereClause,
)

UTC = timezone.utc


@pytest.fixture
async def iris() -> AsyncIterator[Iris360Client]:
    async for client in make_client(timeseries_timeout=Timeout(connect=5, read=190, total=250)):
        yield client


@pytest.fixture
def mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    yield from mocked(monkeypatch)


def response(query_id: str, *points: tuple[str, Any]) -> dict[str, Any]:
    return {
        "time_series": [{
            "device_id": "urn:ngsi-ld:Device:Device001", "measure_id": "Measure_A",
            "values": [{"timestamp": t, "value": v} for t, v in points],
        }] if points else [],
        "options": {"tenant": "libelium", "scope": "/", "query_id": query_id, "limit": 200,
                    "order": "desc", "aggregation": None, "period": None, "where": None},
    }


async def test_get_wire_format_and_decoding(
    iris: Iris360Client, mock: aioresponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock.post(ROOT + "/timeseries", payload=[
        response("q1", ("2025-01-01T18:10:02.904000", 1), ("2025-01-01T19:29:26.026000", 2)),
        response("q2"),
    ])
    requests = [
        TimeSeriesRequest(
            ["urn:ngsi-ld:Device:Device001"], ["Measure_A", "Measure_B"],
            TimeSeriesOptions(
                query_id="q1", order="desc", limit=200,
                start_date=datetime(2025, 1, 1, 10, 0, 30, 63000),
                end_date=datetime(2025, 1, 2, 11, 40, 30, tzinfo=timezone(timedelta(hours=1))),
            ),
        ),
        TimeSeriesRequest(
            ["urn:b"], [], TimeSeriesOptions(
                tenant="other", scope="/x", query_id="q2",
                aggregation=TimeSeriesAggregation("percentile-95", "PT1H"),
            ),
        ),
    ]
    first, second = await iris.timeseries.get(requests)
    assert [v.value for v in first.time_series[0].values] == [1, 2]
    assert first.time_series[0].values[0].timestamp == datetime(
        2025, 1, 1, 18, 10, 2, 904000, tzinfo=UTC
    )
    assert first.options.query_id == "q1"
    assert second.time_series == []
    kwargs = sent(mock, "POST", "/timeseries")
    assert body_of(kwargs) == [
        {
            "device_ids": ["urn:ngsi-ld:Device:Device001"],
            "measure_ids": ["Measure_A", "Measure_B"],
            "options": {
                "tenant": "libelium", "scope": "/",
                "start_date": "2025-01-01T10:00:30.063000Z",
                "end_date": "2025-01-02T10:40:30Z",
                "order": "desc", "limit": 200, "query_id": "q1",
            },
        },
        {
            "device_ids": ["urn:b"],
            "measure_ids": [],
            "options": {
                "tenant": "other", "scope": "/x",
                "aggregation": {"type": "percentile-95", "interval": "PT1H"},
                "query_id": "q2",
            },
        },
    ]
    assert kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert kwargs["headers"]["Content-Type"] == "application/json"
    timeout = kwargs["timeout"]  # the call's Timeout(connect=5, read=190, total=250)
    assert (timeout.sock_connect, timeout.sock_read, timeout.total) == (5, 190, 250)


async def test_length_mismatch_is_an_error(iris: Iris360Client, mock: aioresponses) -> None:
    mock.post(ROOT + "/timeseries", payload=[response("q1")])
    requests = [TimeSeriesRequest(["urn:a"], []), TimeSeriesRequest(["urn:b"], [])]
    with pytest.raises(ResponseDecodeError, match="expected 2 responses"):
        await iris.timeseries.get(requests)


async def test_non_iso_timestamps_do_not_fail(iris: Iris360Client, mock: aioresponses) -> None:
    mock.post(ROOT + "/timeseries", payload=[
        response("q", ("2025-01-01 10:00:00", 1), ("oops", 2))
    ])
    [result] = await iris.timeseries.get([TimeSeriesRequest(["urn:a"], ["m"])])
    first, second = result.time_series[0].values
    assert first.timestamp == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert second.value == 2


async def test_where_allows_empty_device_ids(iris: Iris360Client, mock: aioresponses) -> None:
    mock.post(ROOT + "/timeseries", payload=[response("q")])
    options = TimeSeriesOptions(where=WhereClause.equals("datamodel", "Device"))
    await iris.timeseries.get([TimeSeriesRequest([], ["m"], options)])
    assert body_of(sent(mock, "POST", "/timeseries"))[0]["options"]["where"] == {
        "conditions": [["datamodel", "=", "Device"]], "operation": "AND",
    }


@pytest.mark.parametrize(
    ("requests", "error"),
    [
        ([], ValueError),
        (TimeSeriesRequest(["urn:a"], []), TypeError),
        ([{"device_ids": ["urn:a"]}], TypeError),
        ([TimeSeriesRequest([], [])], ValueError),
        ([TimeSeriesRequest(["urn:a"], [""])], ValueError),
        ([TimeSeriesRequest(["urn:a"], [], TimeSeriesOptions(limit=0))], ValueError),
        ([TimeSeriesRequest(["urn:a"], [], TimeSeriesOptions(limit=None))], ValueError),
        ([TimeSeriesRequest(["urn:a"], [], TimeSeriesOptions(order="up"))], ValueError),  # type: ignore[arg-type]
        ([TimeSeriesRequest(["urn:a"], [], TimeSeriesOptions(
            aggregation=TimeSeriesAggregation("percentile", "PT1H")))], ValueError),
        ([TimeSeriesRequest(["urn:a"], [], TimeSeriesOptions(
            aggregation=TimeSeriesAggregation("mean", "P1M")))], ValueError),
    ],
)
async def test_bad_requests_raise_before_any_request(
    iris: Iris360Client, mock: aioresponses, requests: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await iris.timeseries.get(requests)
    assert not mock.requests


async def test_missing_tenant_without_client_default(mock: aioresponses) -> None:
    async for client in make_client(tenant=None, scope=None):
        with pytest.raises(ValueError, match="tenant"):
            await client.timeseries.get([TimeSeriesRequest(["urn:a"], [])])
        mock.post(ROOT + "/timeseries", payload=[response("q")])
        options = TimeSeriesOptions(tenant="t", scope="/")
        await client.timeseries.get([TimeSeriesRequest(["urn:a"], [], options)])
        assert body_of(sent(mock, "POST", "/timeseries"))[0]["options"] == {
            "tenant": "t", "scope": "/",
        }
