"""Time series: the ``POST /timeseries`` request and response shapes.

Request structs (:class:`TimeSeriesRequest`, :class:`TimeSeriesOptions`, …) leave every
optional field :data:`msgspec.UNSET`; unset fields are omitted from the body so the server
applies its defaults (an explicit ``null`` is taken literally by the server). The same
:class:`TimeSeriesOptions` decodes the effective options echoed in each response.

Dates: ``start_date``/``end_date`` accept a ``datetime`` (naive = UTC, sent as ISO 8601 UTC),
a ``timedelta`` (sent as an ISO 8601 duration meaning "now minus that") or a string passed
through unchanged.

Point timestamps: the service sends ISO 8601 without an offset, meaning UTC.
:attr:`TimeSeriesValue.timestamp` is always timezone-aware. To keep decoding of large results
fast, the wire value is decoded natively by msgspec into :attr:`TimeSeriesValue.raw_timestamp`
(naive when the server sent no offset) and UTC is attached when ``timestamp`` is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from .._timeutil import (
    UNPARSEABLE_TIMESTAMP,
    UTC,
    format_datetime,
    format_duration,
    parse_timestamp,
)

__all__ = [
    "DEFAULT_LIMIT",
    "TimeScope",
    "TimeScopeAdjustment",
    "TimeSeries",
    "TimeSeriesAggregation",
    "TimeSeriesOptions",
    "TimeSeriesRequest",
    "TimeSeriesResponse",
    "TimeSeriesValue",
    "WhereClause",
    "decode_timeseries_responses",
    "effective_limit",
    "mark_truncated",
]

if TYPE_CHECKING:
    from typing import TypeAlias

    DateBound: TypeAlias = datetime | timedelta | str
    Interval: TypeAlias = timedelta | str
else:
    # On the wire (and for msgspec) these are strings; __post_init__ converts the rest.
    DateBound = str
    Interval = str


def _date_to_wire(value: object) -> object:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, timedelta):
        return format_duration(value)
    return value


class TimeSeriesAggregation(msgspec.Struct, frozen=True, omit_defaults=True):
    """Aggregation of each (device, measure) series (``TimeSeriesAggregationOptions``).

    Attributes:
        type: ``mean``, ``moving_avg``, ``sum``, ``min``, ``max`` or ``percentile-N``.
        interval: bucket width, an ISO 8601 duration without years/months (``PT15M``,
            ``PT1H``, ``P1D``) or a ``timedelta``.

    Values are checked by the time-series call before sending
    (:func:`iris360_async._validation.validate_aggregation`), not when constructed, so
    whatever the server echoes back always decodes.
    """

    type: str
    interval: Interval

    def __post_init__(self) -> None:
        if isinstance(self.interval, timedelta):
            msgspec.structs.force_setattr(self, "interval", format_duration(self.interval))


class TimeScopeAdjustment(msgspec.Struct, frozen=True, omit_defaults=True):
    """An exception inside a :class:`TimeScope` (``extra``).

    Attributes:
        year: calendar year, or unset for any.
        month: 0-based month (0-11), or unset for any.
        month_day: 0-based day of month (0-30), or unset for any.
        exclude: ``True`` (server default) removes matching dates, ``False`` adds them back.
    """

    year: int | UnsetType | None = UNSET
    month: int | UnsetType | None = UNSET
    month_day: int | UnsetType | None = UNSET
    exclude: bool | UnsetType = UNSET


class TimeScope(msgspec.Struct, frozen=True, omit_defaults=True):
    """One entry of ``period``: calendar filters (categories AND-ed, values OR-ed).

    Attributes:
        months: 0-based months (see the API reference for the server's off-by-one).
        month_days: 0-based days of month.
        week_days: 0-6 (the server's SQL uses 0 = Sunday).
        hours: inclusive ``("HH:MM:SS", "HH:MM:SS")`` ranges; start after end wraps midnight.
        extra: exceptions, see :class:`TimeScopeAdjustment`.
        timezone: IANA zone for ``hours`` (server default ``UTC``).
    """

    months: list[int] | UnsetType | None = UNSET
    month_days: list[int] | UnsetType | None = UNSET
    week_days: list[int] | UnsetType | None = UNSET
    hours: list[tuple[str, str]] | UnsetType | None = UNSET
    extra: list[TimeScopeAdjustment] | UnsetType | None = UNSET
    timezone: str | UnsetType | None = UNSET


class WhereClause(msgspec.Struct, frozen=True):
    """Undocumented server-side filter: exactly one ``[field, "=", value]`` condition.

    Example:
        ``WhereClause.equals("datamodel", "AirQualityObserved")``
    """

    conditions: list[tuple[str, str, Any]]
    operation: str = "AND"

    @classmethod
    def equals(cls, field: str, value: str | float | bool) -> WhereClause:
        """The one supported condition: ``field = value``."""
        return cls(conditions=[(field, "=", value)])


class TimeSeriesOptions(msgspec.Struct, frozen=True, omit_defaults=True):
    """Options of one time-series request, and the effective options echoed back.

    Attributes:
        tenant: FIWARE service. Filled from the client's default when unset.
        scope: FIWARE service path, e.g. ``/``. Filled from the client's default when unset.
        start_date: inclusive lower bound (``datetime``, ``timedelta`` = now minus, or str).
        end_date: inclusive upper bound, same forms.
        order: ``"asc"`` or ``"desc"``; with ``limit``, ``desc`` keeps the newest points.
        limit: points per (device, measure) pair, >= 1 (server default 100). Leave unset
            rather than ``None``.
        aggregation: see :class:`TimeSeriesAggregation`.
        period: calendar filters, see :class:`TimeScope`.
        query_id: echoed back in the response, to match responses to requests.
        where: undocumented filter, see :class:`WhereClause`.
    """

    tenant: str | UnsetType = UNSET
    scope: str | UnsetType = UNSET
    start_date: DateBound | UnsetType | None = UNSET
    end_date: DateBound | UnsetType | None = UNSET
    order: Literal["asc", "desc"] | UnsetType | None = UNSET
    limit: int | UnsetType | None = UNSET
    aggregation: TimeSeriesAggregation | UnsetType | None = UNSET
    period: list[TimeScope] | UnsetType | None = UNSET
    query_id: str | UnsetType | None = UNSET
    where: WhereClause | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        for name in ("start_date", "end_date"):
            value = getattr(self, name)
            if isinstance(value, (datetime, timedelta)):
                msgspec.structs.force_setattr(self, name, _date_to_wire(value))


class TimeSeriesRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """One element of the ``POST /timeseries`` body.

    Attributes:
        device_ids: entity URNs (``urn:ngsi-ld:Device:Device001``). May be empty only with
            ``options.where``.
        measure_ids: attribute names; empty means every attribute.
        options: see :class:`TimeSeriesOptions`.

    Example:
        ``TimeSeriesRequest(["urn:ngsi-ld:Device:D1"], ["temperature"],
        TimeSeriesOptions(start_date=datetime(2025, 1, 1), order="desc", limit=10))``
    """

    device_ids: list[str]
    measure_ids: list[str]
    options: TimeSeriesOptions = msgspec.field(default_factory=TimeSeriesOptions)

    def __post_init__(self) -> None:
        # Always send both lists (the docs mark them required); omit_defaults only drops
        # fields equal to their default, and these have none.
        for name in ("device_ids", "measure_ids"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"{name} must be a list of strings, not a single string")


class TimeSeriesValue(msgspec.Struct, frozen=True, gc=False):
    """One data point.

    Attributes:
        raw_timestamp: the timestamp as decoded (wire name ``timestamp``); naive when the
            server sent no offset. Prefer :attr:`timestamp`.
        value: number, string, boolean or JSON object/array, as sent.
    """

    raw_timestamp: datetime = msgspec.field(name="timestamp")
    value: Any = None

    @property
    def timestamp(self) -> datetime:
        """The timezone-aware timestamp (UTC when the server sent no offset)."""
        ts = self.raw_timestamp
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)

    @classmethod
    def at(cls, timestamp: datetime, value: Any) -> TimeSeriesValue:
        """A point at ``timestamp`` (naive = UTC)."""
        return cls(timestamp if timestamp.tzinfo is not None else timestamp.replace(tzinfo=UTC),
                   value)

    def __repr__(self) -> str:
        return f"TimeSeriesValue(timestamp={self.timestamp!r}, value={self.value!r})"


class TimeSeries(msgspec.Struct, frozen=True):
    """The points of one (device, measure) pair.

    Attributes:
        device_id: entity URN.
        measure_id: attribute name.
        values: the points.
        possibly_truncated: ``True`` when the series came back with as many points as the
            request's ``limit`` (100 when the request left it unset): the server cut it there,
            so there may be more points in the range. Set by ``client.timeseries.get``; not
            part of the server's answer.
    """

    device_id: str
    measure_id: str
    values: list[TimeSeriesValue] = msgspec.field(default_factory=list)
    possibly_truncated: bool = False


class TimeSeriesResponse(msgspec.Struct, frozen=True):
    """The answer to one :class:`TimeSeriesRequest` (same position in the response array).

    Attributes:
        time_series: one entry per pair that has data; empty when nothing was found (or the
            service failed silently).
        options: the effective options, normalised by the server.
    """

    time_series: list[TimeSeries] = msgspec.field(default_factory=list)
    options: TimeSeriesOptions = msgspec.field(default_factory=TimeSeriesOptions)

    @property
    def truncated_count(self) -> int:
        """How many series came back with exactly ``limit`` points (see
        :attr:`TimeSeries.possibly_truncated`)."""
        return sum(1 for series in self.time_series if series.possibly_truncated)


DEFAULT_LIMIT = 100
"""Points per (device, measure) pair when a request leaves ``limit`` unset (API reference §4.1)."""


def effective_limit(options: TimeSeriesOptions) -> int:
    """The ``limit`` the server applies for ``options`` (its default when unset)."""
    limit = options.limit
    return limit if isinstance(limit, int) and not isinstance(limit, bool) else DEFAULT_LIMIT


def mark_truncated(
    requests: Sequence[TimeSeriesRequest], responses: Sequence[TimeSeriesResponse]
) -> None:
    """Flag every series that reached its request's ``limit`` as possibly truncated.

    The limit is the one the server echoes in the response's options, else the request's,
    else the server's default of 100. Requests and responses are paired by position.
    """
    for request, response in zip(requests, responses, strict=False):
        echoed = response.options.limit
        limit = (
            echoed
            if isinstance(echoed, int) and not isinstance(echoed, bool)
            else effective_limit(request.options)
        )
        for series in response.time_series:
            if len(series.values) >= limit:
                msgspec.structs.force_setattr(series, "possibly_truncated", True)


_FAST_DECODER = msgspec.json.Decoder(list[TimeSeriesResponse])


def _coerce_points(data: Any) -> Any:
    """Replace every point's timestamp in decoded builtins by a datetime (lenient)."""
    if not isinstance(data, list):
        return data
    for response in data:
        series_list = response.get("time_series") if isinstance(response, dict) else None
        if not isinstance(series_list, list):
            continue
        for series in series_list:
            values = series.get("values") if isinstance(series, dict) else None
            if not isinstance(values, list):
                continue
            for point in values:
                if isinstance(point, dict):
                    parsed = parse_timestamp(point.get("timestamp"))
                    point["timestamp"] = UNPARSEABLE_TIMESTAMP if parsed is None else parsed
    return data


def decode_timeseries_responses(content: bytes) -> list[TimeSeriesResponse]:
    """Decode a ``POST /timeseries`` body.

    The fast path lets msgspec parse every timestamp natively. If that fails (a timestamp in
    another format, e.g. ``2025-01-01`` or garbage), the body is decoded again leniently:
    readable timestamps are parsed with :func:`iris360_async._timeutil.parse_timestamp`,
    unreadable ones become :data:`iris360_async._timeutil.UNPARSEABLE_TIMESTAMP` instead of
    failing the whole response.

    Raises:
        msgspec.DecodeError: the body is not JSON.
        msgspec.ValidationError: the body does not have the response shape.
    """
    try:
        return _FAST_DECODER.decode(content)
    except msgspec.ValidationError:
        data = _coerce_points(msgspec.json.decode(content))
        return msgspec.convert(data, list[TimeSeriesResponse])
