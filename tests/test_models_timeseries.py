"""Time-series models: request encoding (unset fields omitted, dates as ISO 8601 UTC) and
response decoding (naive timestamps as UTC, non-ISO timestamps tolerated)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from iris360_async._timeutil import UNPARSEABLE_TIMESTAMP, format_duration, parse_timestamp
from iris360_async.models import (
    TimeScope,
    TimeScopeAdjustment,
    TimeSeriesAggregation,
    TimeSeriesOptions,
    TimeSeriesRequest,
    TimeSeriesValue,
    WhereClause,
)
from iris360_async.models.timeseries import decode_timeseries_responses

UTC = timezone.utc

# The response example of the API reference (§4.1).
EXAMPLE = b"""[
  {
    "time_series": [
      {
        "device_id": "urn:ngsi-ld:Device:Device001",
        "measure_id": "Measure_A",
        "values": [
          {"timestamp": "2025-01-01T18:10:02.904000", "value": 1},
          {"timestamp": "2025-01-01T19:29:26.026000", "value": 2}
        ]
      }
    ],
    "options": {
      "start_date": "2025-01-01T00:00:00Z",
      "end_date": "2025-01-02T00:00:00Z",
      "order": "desc",
      "limit": 200,
      "aggregation": null,
      "period": null,
      "query_id": "QueryId",
      "where": null,
      "tenant": "libelium",
      "scope": "/"
    }
  }
]"""


def encode(obj: object) -> object:
    return msgspec.json.decode(msgspec.json.encode(obj))


def test_request_omits_unset_fields() -> None:
    request = TimeSeriesRequest(["urn:a"], ["temp"], TimeSeriesOptions(tenant="t", scope="/"))
    assert encode(request) == {
        "device_ids": ["urn:a"],
        "measure_ids": ["temp"],
        "options": {"tenant": "t", "scope": "/"},
    }


def test_request_sends_explicit_none_but_never_unset() -> None:
    options = TimeSeriesOptions(tenant="t", scope="/", aggregation=None, limit=5)
    assert encode(options) == {"tenant": "t", "scope": "/", "limit": 5, "aggregation": None}


def test_request_always_sends_both_id_lists() -> None:
    assert encode(TimeSeriesRequest([], [], TimeSeriesOptions(tenant="t", scope="/"))) == {
        "device_ids": [],
        "measure_ids": [],
        "options": {"tenant": "t", "scope": "/"},
    }


def test_single_string_ids_rejected() -> None:
    with pytest.raises(TypeError, match="device_ids"):
        TimeSeriesRequest("urn:a", ["x"])  # type: ignore[arg-type]


def test_dates_encode_as_iso_utc() -> None:
    naive = datetime(2025, 1, 1, 10, 0, 30, 63000)
    aware = datetime(2025, 1, 2, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    options = TimeSeriesOptions(start_date=naive, end_date=aware)
    assert encode(options) == {
        "start_date": "2025-01-01T10:00:30.063000Z",
        "end_date": "2025-01-02T10:00:00Z",
    }


def test_timedelta_and_strings_as_durations() -> None:
    options = TimeSeriesOptions(start_date=timedelta(days=1, hours=6), end_date="PT1H")
    assert encode(options) == {"start_date": "P1DT6H", "end_date": "PT1H"}


def test_aggregation_interval_from_timedelta() -> None:
    agg = TimeSeriesAggregation("percentile-95", timedelta(minutes=15))
    assert encode(agg) == {"type": "percentile-95", "interval": "PT15M"}


def test_period_and_where_encoding() -> None:
    options = TimeSeriesOptions(
        period=[
            TimeScope(
                hours=[("08:00:00", "18:00:00")],
                extra=[TimeScopeAdjustment(year=2025, month=11, exclude=False)],
                timezone="Europe/Madrid",
            )
        ],
        where=WhereClause.equals("datamodel", "AirQualityObserved"),
    )
    assert encode(options) == {
        "period": [
            {
                "hours": [["08:00:00", "18:00:00"]],
                "extra": [{"year": 2025, "month": 11, "exclude": False}],
                "timezone": "Europe/Madrid",
            }
        ],
        "where": {"conditions": [["datamodel", "=", "AirQualityObserved"]], "operation": "AND"},
    }


def test_decode_reference_example() -> None:
    [response] = decode_timeseries_responses(EXAMPLE)
    [series] = response.time_series
    assert series.device_id == "urn:ngsi-ld:Device:Device001"
    assert series.measure_id == "Measure_A"
    assert [v.value for v in series.values] == [1, 2]
    assert series.values[0].timestamp == datetime(2025, 1, 1, 18, 10, 2, 904000, tzinfo=UTC)
    assert all(v.timestamp.tzinfo is not None for v in series.values)
    assert response.options.query_id == "QueryId"
    assert response.options.limit == 200
    assert response.options.aggregation is None
    assert response.options.tenant == "libelium"
    assert response.options.start_date == "2025-01-01T00:00:00Z"


def test_offsets_are_kept_as_the_same_instant() -> None:
    body = (
        b'[{"time_series":[{"device_id":"d","measure_id":"m","values":['
        b'{"timestamp":"2025-01-01T12:00:00+02:00","value":true},'
        b'{"timestamp":"2025-01-01T10:00:00Z","value":{"a":1}}]}],'
        b'"options":{"tenant":"t","scope":"/"}}]'
    )
    values = decode_timeseries_responses(body)[0].time_series[0].values
    assert values[0].timestamp == values[1].timestamp == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert values[1].value == {"a": 1}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-01-01 10:00:00", datetime(2025, 1, 1, 10, tzinfo=UTC)),
        ("2025-01-01", datetime(2025, 1, 1, tzinfo=UTC)),
        ("garbage", UNPARSEABLE_TIMESTAMP),
        ("", UNPARSEABLE_TIMESTAMP),
    ],
)
def test_non_iso_timestamps_do_not_fail(raw: str, expected: datetime) -> None:
    body = (
        b'[{"time_series":[{"device_id":"d","measure_id":"m","values":['
        b'{"timestamp":"2025-01-01T00:00:00","value":1},'
        b'{"timestamp":"' + raw.encode() + b'","value":2}]}],'
        b'"options":{"tenant":"t","scope":"/","unknown_option":1}}]'
    )
    values = decode_timeseries_responses(body)[0].time_series[0].values
    assert values[0].timestamp == datetime(2025, 1, 1, tzinfo=UTC)
    assert values[1].timestamp == expected
    assert values[1].value == 2


def test_unknown_fields_tolerated() -> None:
    body = (
        b'[{"extra":1,"time_series":[{"device_id":"d","measure_id":"m","unit":"C",'
        b'"values":[{"timestamp":"2025-01-01T00:00:00","value":1,"q":0}]}],'
        b'"options":{"tenant":"t","scope":"/"}}]'
    )
    assert decode_timeseries_responses(body)[0].time_series[0].values[0].value == 1


def test_wrong_shape_still_raises() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_timeseries_responses(b'[{"time_series":[{"measure_id":"m","values":[]}]}]')
    with pytest.raises(msgspec.DecodeError):
        decode_timeseries_responses(b"not json")


def test_value_repr_and_constructor() -> None:
    point = TimeSeriesValue.at(datetime(2025, 1, 1), 3)
    assert point.timestamp == datetime(2025, 1, 1, tzinfo=UTC)
    assert "tzinfo=datetime.timezone.utc" in repr(point)
    assert msgspec.json.encode(point) == b'{"timestamp":"2025-01-01T00:00:00Z","value":3}'


def test_response_options_are_frozen() -> None:
    [response] = decode_timeseries_responses(EXAMPLE)
    with pytest.raises(AttributeError):
        response.options.limit = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-01-01T10:00:00", datetime(2025, 1, 1, 10, tzinfo=UTC)),
        ("2025-01-01T10:00:00.1234567Z", datetime(2025, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2025-01-01 10:00:00", datetime(2025, 1, 1, 10, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        ("…", None),
        (None, None),
        (True, None),
        ([1], None),
    ],
)
def test_parse_timestamp(value: object, expected: datetime | None) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(hours=1), "PT1H"),
        (timedelta(days=1), "P1D"),
        (timedelta(minutes=15), "PT15M"),
        (timedelta(seconds=30), "PT30S"),
        (timedelta(seconds=1.5), "PT1.5S"),
        (timedelta(days=2, minutes=1), "P2DT1M"),
    ],
)
def test_format_duration(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text


def test_format_duration_rejects_zero() -> None:
    with pytest.raises(ValueError, match="positive"):
        format_duration(timedelta(0))
