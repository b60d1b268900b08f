"""Result of the time-series fan-out (``client.timeseries.query``).

:class:`TimeSeriesResult` merges the answers of many ``POST /timeseries`` requests into one
read-only mapping ``(device_id, measure_id) -> TimeSeries`` and says explicitly which of the
requested pairs came back without data (:attr:`TimeSeriesResult.missing`): the server answers
"no data" and some of its own failures the same way, with nothing.

Points are held column by column (:class:`SeriesPoints`: timestamps as microseconds since the
epoch in an ``array``, values in a list), about 40 bytes a point instead of the 110 of decoded
point objects, so months of data for thousands of pairs fit in memory and export to pandas or
Arrow without a Python object per row.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from .timeseries import TimeSeries, TimeSeriesRequest, TimeSeriesValue

if TYPE_CHECKING:
    import pandas  # type: ignore[import-untyped]
    import pyarrow  # type: ignore[import-untyped]

__all__ = [
    "BatchFailure",
    "SeriesPoints",
    "TimeSeriesColumns",
    "TimeSeriesResult",
    "TimeSeriesRow",
]

SeriesKey = tuple[str, str]

_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class TimeSeriesRow(NamedTuple):
    """One data point in long format."""

    device_id: str
    measure_id: str
    timestamp: datetime
    """Timezone-aware (UTC when the server sent no offset)."""
    value: Any


class TimeSeriesColumns(NamedTuple):
    """Every point of a result in four columns of equal length (long format).

    Attributes:
        device_id: entity URN of each point.
        measure_id: attribute name of each point.
        timestamp: microseconds since 1970-01-01T00:00:00Z (``array('q')``, 8 bytes a point;
            ``numpy.frombuffer(columns.timestamp, "datetime64[us]")`` reads it without a copy).
        value: the values as decoded (numbers, strings, booleans, objects).
    """

    device_id: list[str]
    measure_id: list[str]
    timestamp: array[int]
    value: list[Any]


class BatchFailure(NamedTuple):
    """A request of the fan-out that failed (only with ``raise_on_error=False``).

    For a page of a whole-range pull, ``request.options.start_date`` says from where the
    pair was being fetched: the points before it are in the result.
    """

    request: TimeSeriesRequest
    error: BaseException


def to_micros(stamps: Iterable[datetime]) -> array[int]:
    """Timestamps (naive = UTC) as microseconds since the epoch."""
    items = stamps if isinstance(stamps, list) else list(stamps)
    try:
        return array("q", [(t - _EPOCH) // _MICROSECOND for t in items])
    except TypeError:  # some carry an offset
        return array(
            "q",
            [(t - (_EPOCH if t.tzinfo is None else _EPOCH_UTC)) // _MICROSECOND for t in items],
        )


class SeriesPoints:
    """The points of one pair, column by column (see the module docstring)."""

    __slots__ = ("micros", "values")

    def __init__(self) -> None:
        self.micros: array[int] = array("q")
        self.values: list[Any] = []

    def __len__(self) -> int:
        return len(self.values)

    def extend(self, points: list[TimeSeriesValue]) -> None:
        """Append decoded points."""
        self.micros.extend(to_micros([p.raw_timestamp for p in points]))
        self.values.extend([p.value for p in points])

    def reverse(self) -> None:
        """Reverse the order of the points in place."""
        self.micros.reverse()
        self.values.reverse()

    def decoded(self) -> list[TimeSeriesValue]:
        """The points as :class:`TimeSeriesValue` (naive UTC ``raw_timestamp``)."""
        return [
            TimeSeriesValue(_EPOCH + timedelta(microseconds=m), v)
            for m, v in zip(self.micros, self.values, strict=True)
        ]


class TimeSeriesResult(Mapping[SeriesKey, TimeSeries]):
    """Points of every requested (device, measure) pair, merged from several requests.

    A read-only mapping ``(device_id, measure_id) -> TimeSeries`` holding the pairs that
    returned data, in request order (devices in the order given, measures within a device in
    the order given; pairs the server added on its own come last).

    Attributes:
        requests: Every request that was sent (batches of devices x measures, and the follow-up
            pages of a whole-range pull).
        missing: Requested pairs that came back without any point. The server does not tell
            "no data" apart from a failure inside its time-series service, so treat these as
            "unknown", not as proof of absence.
        missing_devices: Requested devices without a single series (useful when every
            measure was asked for, where pairs cannot be listed in advance).
        empty_requests: Requests whose whole answer was empty, the most likely victims of
            a silent server-side failure; send them again with ``client.timeseries.get``.
        failures: Requests that raised, when the query ran with ``raise_on_error=False``.
            Their pairs are not in :attr:`missing`; a pair whose later page failed keeps the
            points fetched before.
        truncated: Pairs that may have more points than the result holds: with a ``limit``,
            those that came back with exactly ``limit`` points; in a whole-range pull, those
            whose next page came back empty although the previous one was full (a silent
            server-side failure).
        paged_pairs: How many pairs needed more than one page.

    Example:
        >>> result = await iris.timeseries.query(devices, ["temperature"], start=t0, end=t1)
        ... for device_id, measure_id, timestamp, value in result.rows():
        ...     print(device_id, measure_id, timestamp.isoformat(), value)
        ... print("no data for", result.missing)
    """

    __slots__ = (
        "_points",
        "empty_requests",
        "failures",
        "missing",
        "missing_devices",
        "paged_pairs",
        "requests",
        "truncated",
    )

    def __init__(
        self,
        points: dict[SeriesKey, SeriesPoints],
        *,
        requests: list[TimeSeriesRequest],
        missing: list[SeriesKey],
        missing_devices: list[str],
        empty_requests: list[TimeSeriesRequest],
        failures: list[BatchFailure],
        truncated: list[SeriesKey] | None = None,
        paged_pairs: int = 0,
    ) -> None:
        self._points = points
        self.requests = requests
        self.missing = missing
        self.missing_devices = missing_devices
        self.empty_requests = empty_requests
        self.failures = failures
        self.truncated = truncated if truncated is not None else []
        self.paged_pairs = paged_pairs

    def __getitem__(self, key: SeriesKey) -> TimeSeries:
        points = self._points[key]
        return TimeSeries(*key, points.decoded(), possibly_truncated=key in self.truncated)

    def __iter__(self) -> Iterator[SeriesKey]:
        return iter(self._points)

    def __len__(self) -> int:
        return len(self._points)

    def __contains__(self, key: object) -> bool:
        return key in self._points

    def __repr__(self) -> str:
        return (
            f"<TimeSeriesResult series={len(self._points)} points={self.point_count} "
            f"missing={len(self.missing)} truncated={len(self.truncated)} "
            f"failures={len(self.failures)} requests={len(self.requests)}>"
        )

    @property
    def complete(self) -> bool:
        """``True`` when every request succeeded (pairs may still be :attr:`missing`)."""
        return not self.failures

    @property
    def point_count(self) -> int:
        """Total number of points over all series."""
        return sum(len(p) for p in self._points.values())

    def series(self) -> list[TimeSeries]:
        """The series with data, in request order."""
        truncated = set(self.truncated)
        return [
            TimeSeries(*key, points.decoded(), possibly_truncated=key in truncated)
            for key, points in self._points.items()
        ]

    def rows(self) -> Iterator[TimeSeriesRow]:
        """Every point as ``(device_id, measure_id, timestamp, value)``, series by series.

        One Python tuple per point: for large results prefer :meth:`to_columns`,
        :meth:`to_pandas` or :meth:`to_arrow`.
        """
        for (device_id, measure_id), points in self._points.items():
            for micros, value in zip(points.micros, points.values, strict=True):
                yield TimeSeriesRow(
                    device_id, measure_id, _EPOCH_UTC + timedelta(microseconds=micros), value
                )

    def to_columns(self) -> TimeSeriesColumns:
        """Every point in four columns (see :class:`TimeSeriesColumns`), series by series,
        without a Python object per row and without extra dependencies."""
        from .tscolumns import columns

        return columns(self._points)

    def to_pandas(self) -> pandas.DataFrame:
        """A ``pandas.DataFrame`` with columns ``device_id``, ``measure_id`` (categoricals),
        ``timestamp`` (``datetime64[us, UTC]``) and ``value``, built column by column.

        Raises:
            ImportError: pandas is not installed (``pip install 'iris360-async[pandas]'``).
        """
        from .tscolumns import to_pandas

        return to_pandas(self._points)

    def to_arrow(self) -> pyarrow.Table:
        """A ``pyarrow.Table`` with columns ``device_id``, ``measure_id`` (dictionary encoded),
        ``timestamp`` (``timestamp[us, tz=UTC]``) and ``value``, built column by column. Values
        of mixed types that Arrow cannot hold in one column become JSON text.

        Raises:
            ImportError: pyarrow is not installed (``pip install 'iris360-async[arrow]'``).
        """
        from .tscolumns import to_arrow

        return to_arrow(self._points)
