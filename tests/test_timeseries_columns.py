"""Column exports of a time-series result (plain columns, pandas, Arrow) against ``rows()``."""

from __future__ import annotations

import sys
from array import array
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from iris360_async.models.timeseries import TimeSeriesValue
from iris360_async.models.tsquery import SeriesPoints, TimeSeriesColumns, TimeSeriesResult

UTC = timezone.utc
T0 = datetime(2025, 11, 1)


def result_of(series: dict[tuple[str, str], list[tuple[datetime, Any]]]) -> TimeSeriesResult:
    points = {}
    for key, values in series.items():
        points[key] = SeriesPoints()
        points[key].extend([TimeSeriesValue(ts, v) for ts, v in values])
    return TimeSeriesResult(
        points, requests=[], missing=[], missing_devices=[], empty_requests=[], failures=[]
    )


NUMERIC = result_of(
    {
        ("urn:ngsi-ld:Device:A", "temperature"): [
            (T0 + timedelta(minutes=10 * k, microseconds=k), 20.5 + k) for k in range(5)
        ],
        ("urn:ngsi-ld:Device:A", "battery"): [(T0, 100), (T0 + timedelta(hours=1), 99)],
        ("urn:ngsi-ld:Device:B", "temperature"): [
            # an offset: the instant is kept, expressed in UTC
            (datetime(2025, 11, 1, 2, 0, tzinfo=timezone(timedelta(hours=1))), 18.25)
        ],
    }
)
MIXED = result_of(
    {
        ("urn:ngsi-ld:Device:A", "firmware"): [(T0, "v1.2.0"), (T0 + timedelta(days=1), 3)],
        ("urn:ngsi-ld:Device:A", "online"): [(T0, True)],
        ("urn:ngsi-ld:Device:A", "config"): [(T0, {"a": [1, 2]})],
    }
)


def rows(result: TimeSeriesResult) -> list[tuple[str, str, datetime, Any]]:
    return [tuple(r) for r in result.rows()]  # type: ignore[misc]


@pytest.mark.parametrize("result", [NUMERIC, MIXED])
def test_to_columns_equals_rows(result: TimeSeriesResult) -> None:
    columns = result.to_columns()
    assert isinstance(columns, TimeSeriesColumns)
    assert isinstance(columns.timestamp, array)
    assert columns.timestamp.typecode == "q"
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rebuilt = [
        (d, m, epoch + timedelta(microseconds=t), v)
        for d, m, t, v in zip(*columns, strict=True)
    ]
    assert rebuilt == rows(result)
    assert len(columns.value) == result.point_count


def test_rows_and_mapping_keep_instants_and_values() -> None:
    first = rows(NUMERIC)[0]
    assert first == ("urn:ngsi-ld:Device:A", "temperature", T0.replace(tzinfo=UTC), 20.5)
    b = NUMERIC[("urn:ngsi-ld:Device:B", "temperature")].values[0]
    assert b.timestamp == datetime(2025, 11, 1, 1, 0, tzinfo=UTC)
    assert [v.value for v in NUMERIC[("urn:ngsi-ld:Device:A", "battery")].values] == [100, 99]
    assert isinstance(NUMERIC[("urn:ngsi-ld:Device:A", "battery")].values[0].value, int)


def test_to_pandas_equals_rows() -> None:
    pd = pytest.importorskip("pandas")
    frame = NUMERIC.to_pandas()
    assert list(frame.columns) == ["device_id", "measure_id", "timestamp", "value"]
    assert isinstance(frame["device_id"].dtype, pd.CategoricalDtype)
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert frame["value"].dtype == "float64"
    names = ["device_id", "measure_id", "timestamp", "value"]
    expected = pd.DataFrame(rows(NUMERIC), columns=names)
    got = frame.astype({"device_id": object, "measure_id": object})
    expected["timestamp"] = pd.to_datetime(expected["timestamp"], utc=True).astype(
        "datetime64[us, UTC]"
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert frame["timestamp"].tolist() == [r[2] for r in rows(NUMERIC)]

    mixed = MIXED.to_pandas()
    assert mixed["value"].tolist() == [r[3] for r in rows(MIXED)]


def test_to_arrow_equals_rows() -> None:
    pa = pytest.importorskip("pyarrow")
    table = NUMERIC.to_arrow()
    assert table.column_names == ["device_id", "measure_id", "timestamp", "value"]
    assert pa.types.is_dictionary(table.schema.field("device_id").type)
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.to_pylist() == [
        dict(zip(["device_id", "measure_id", "timestamp", "value"], r, strict=True))
        for r in rows(NUMERIC)
    ]
    mixed = MIXED.to_arrow()  # no single Arrow type: JSON text
    assert mixed.column("value").to_pylist() == ['"v1.2.0"', "3", "true", '{"a":[1,2]}']


def test_empty_result_exports() -> None:
    empty = result_of({})
    assert empty.to_columns() == ([], [], array("q"), [])
    if "pandas" in sys.modules or _importable("pandas"):
        assert len(empty.to_pandas()) == 0
    if _importable("pyarrow"):
        assert empty.to_arrow().num_rows == 0


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(("module", "method", "extra"), [
    ("pandas", "to_pandas", "pandas"), ("pyarrow", "to_arrow", "arrow"),
])  # fmt: skip
def test_missing_optional_dependency_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, method: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"pip install 'iris360-async\[{extra}\]'"):
        getattr(NUMERIC, method)()
