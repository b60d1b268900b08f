"""Result of the time-series fan-out (``client.timeseries.query``).

:class:`TimeSeriesResult` merges the answers of many ``POST /timeseries`` requests into one
read-only mapping ``(device_id, measure_id) -> TimeSeries`` and says explicitly which of the
requested pairs came back without data (:attr:`TimeSeriesResult.missing`): the server answers
"no data" and some of its own failures the same way, with nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from .timeseries import TimeSeries, TimeSeriesRequest

__all__ = ["BatchFailure", "TimeSeriesResult", "TimeSeriesRow"]

SeriesKey = tuple[str, str]


class TimeSeriesRow(NamedTuple):
    """One data point in long format."""

    device_id: str
    measure_id: str
    timestamp: datetime
    """Timezone-aware (UTC when the server sent no offset)."""
    value: Any


class BatchFailure(NamedTuple):
    """A request of the fan-out that failed (only with ``raise_on_error=False``)."""

    request: TimeSeriesRequest
    error: BaseException


class TimeSeriesResult(Mapping[SeriesKey, TimeSeries]):
    """Points of every requested (device, measure) pair, merged from several requests.

    A read-only mapping ``(device_id, measure_id) -> TimeSeries`` holding the pairs that
    returned data, in request order (devices in the order given, measures within a device in
    the order given; pairs the server added on its own come last).

    Attributes:
        requests: The requests that were sent (each one a batch of devices x measures).
        missing: Requested pairs that came back without any point. The server does not tell
            "no data" apart from a failure inside its time-series service, so treat these as
            "unknown", not as proof of absence.
        missing_devices: Requested devices without a single series (useful when every
            measure was asked for, where pairs cannot be listed in advance).
        empty_requests: Requests whose whole answer was empty, the most likely victims of
            a silent server-side failure; send them again with ``client.timeseries.get``.
        failures: Requests that raised, when the query ran with ``raise_on_error=False``.
            Their pairs are in neither the mapping nor :attr:`missing`.

    Example:
        >>> result = await iris.timeseries.query(devices, ["temperature"], limit=10)
        ... for device_id, measure_id, timestamp, value in result.rows():
        ...     print(device_id, measure_id, timestamp.isoformat(), value)
        ... print("no data for", result.missing)
    """

    __slots__ = (
        "_series",
        "empty_requests",
        "failures",
        "missing",
        "missing_devices",
        "requests",
    )

    def __init__(
        self,
        series: dict[SeriesKey, TimeSeries],
        *,
        requests: list[TimeSeriesRequest],
        missing: list[SeriesKey],
        missing_devices: list[str],
        empty_requests: list[TimeSeriesRequest],
        failures: list[BatchFailure],
    ) -> None:
        self._series = series
        self.requests = requests
        self.missing = missing
        self.missing_devices = missing_devices
        self.empty_requests = empty_requests
        self.failures = failures

    def __getitem__(self, key: SeriesKey) -> TimeSeries:
        return self._series[key]

    def __iter__(self) -> Iterator[SeriesKey]:
        return iter(self._series)

    def __len__(self) -> int:
        return len(self._series)

    def __repr__(self) -> str:
        return (
            f"<TimeSeriesResult series={len(self._series)} points={self.point_count} "
            f"missing={len(self.missing)} failures={len(self.failures)} "
            f"requests={len(self.requests)}>"
        )

    @property
    def complete(self) -> bool:
        """``True`` when every request succeeded (pairs may still be :attr:`missing`)."""
        return not self.failures

    @property
    def point_count(self) -> int:
        """Total number of points over all series."""
        return sum(len(s.values) for s in self._series.values())

    def series(self) -> list[TimeSeries]:
        """The series with data, in request order."""
        return list(self._series.values())

    def rows(self) -> Iterator[TimeSeriesRow]:
        """Every point as ``(device_id, measure_id, timestamp, value)``, series by series."""
        for item in self._series.values():
            device_id, measure_id = item.device_id, item.measure_id
            for point in item.values:
                yield TimeSeriesRow(device_id, measure_id, point.timestamp, point.value)
