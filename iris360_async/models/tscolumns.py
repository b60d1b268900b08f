"""Column-by-column exports of a :class:`~iris360_async.models.TimeSeriesResult`.

Every column is built from the per-series columns (:class:`~.tsquery.SeriesPoints`) without a
Python object per row: device and measure columns are dictionary codes repeated per series,
timestamps are the series' microsecond arrays concatenated (read by pandas / Arrow without
conversion), values are one list. pandas and pyarrow are optional (extras ``pandas`` and
``arrow``).
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

import msgspec

from .tsquery import SeriesKey, SeriesPoints, TimeSeriesColumns

if TYPE_CHECKING:
    import pandas  # type: ignore[import-untyped]
    import pyarrow  # type: ignore[import-untyped]

__all__ = ["columns", "to_arrow", "to_pandas"]


def _require(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"this export needs {module}: pip install 'iris360-async[{extra}]'"
        ) from exc


def columns(points: dict[SeriesKey, SeriesPoints]) -> TimeSeriesColumns:
    """Plain columns: lists and one ``array('q')``."""
    devices: list[str] = []
    measures: list[str] = []
    micros: array[int] = array("q")
    values: list[Any] = []
    for (device_id, measure_id), series in points.items():
        n = len(series)
        devices += [device_id] * n
        measures += [measure_id] * n
        micros += series.micros
        values += series.values
    return TimeSeriesColumns(devices, measures, micros, values)


class _Flat:
    """Dictionary codes of the device and measure of every point, the timestamps and values."""

    def __init__(self, points: dict[SeriesKey, SeriesPoints]) -> None:
        device_codes: dict[str, int] = {}
        measure_codes: dict[str, int] = {}
        self.device_of: array[int] = array("i")  # one code per series
        self.measure_of: array[int] = array("i")
        self.lengths: array[int] = array("q")
        self.micros: array[int] = array("q")
        self.values: list[Any] = []
        for (device_id, measure_id), series in points.items():
            self.device_of.append(device_codes.setdefault(device_id, len(device_codes)))
            self.measure_of.append(measure_codes.setdefault(measure_id, len(measure_codes)))
            self.lengths.append(len(series))
            self.micros += series.micros
            self.values += series.values
        self.devices = list(device_codes)
        self.measures = list(measure_codes)

    def codes(self, per_series: array[int]) -> array[int]:
        """One code per point."""
        out: array[int] = array("i")
        for code, n in zip(per_series, self.lengths, strict=True):
            out += array("i", [code]) * n
        return out


def to_pandas(points: dict[SeriesKey, SeriesPoints]) -> pandas.DataFrame:
    """A DataFrame: categorical device/measure, UTC timestamps, values."""
    pd = _require("pandas", "pandas")
    np = _require("numpy", "pandas")
    flat = _Flat(points)
    lengths = np.frombuffer(flat.lengths, dtype=np.int64)
    device = pd.Categorical.from_codes(
        np.repeat(np.frombuffer(flat.device_of, dtype=np.int32), lengths),
        categories=pd.Index(flat.devices, dtype=object),
    )
    measure = pd.Categorical.from_codes(
        np.repeat(np.frombuffer(flat.measure_of, dtype=np.int32), lengths),
        categories=pd.Index(flat.measures, dtype=object),
    )
    stamps = pd.DatetimeIndex(np.frombuffer(flat.micros, dtype="datetime64[us]")).tz_localize("UTC")
    values = flat.values
    del flat
    return pd.DataFrame(
        {"device_id": device, "measure_id": measure, "timestamp": stamps, "value": values},
        copy=False,
    )


def to_arrow(points: dict[SeriesKey, SeriesPoints]) -> pyarrow.Table:
    """An Arrow table: dictionary-encoded device/measure, UTC timestamps, values."""
    pa = _require("pyarrow", "arrow")
    flat = _Flat(points)
    n = len(flat.values)

    def dictionary(per_series: array[int], names: list[str]) -> Any:
        indices = pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(flat.codes(per_series))])
        return pa.DictionaryArray.from_arrays(indices, pa.array(names, type=pa.string()))

    stamps = pa.Array.from_buffers(
        pa.timestamp("us", tz="UTC"), n, [None, pa.py_buffer(flat.micros)]
    )
    try:
        values = pa.array(flat.values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: JSON text
        values = pa.array(
            [msgspec.json.encode(v).decode() for v in flat.values], type=pa.string()
        )
    return pa.table(
        {
            "device_id": dictionary(flat.device_of, flat.devices),
            "measure_id": dictionary(flat.measure_of, flat.measures),
            "timestamp": stamps,
            "value": values,
        }
    )
