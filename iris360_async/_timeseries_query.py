"""Time-series fan-out: many devices x measures as concurrent ``POST /timeseries`` batches.

The server evaluates every request separately for each (device, measure) pair, and ``limit``
and aggregation apply per pair (API reference §4.1). Splitting the pairs over several requests
therefore returns exactly what one big request would, while keeping each response small and
letting the requests run concurrently.

Without a ``limit`` a range is pulled whole: pairs are paged by time
(:mod:`._timeseries_pages` joins the pages, :mod:`._timeseries_stream` runs the calls).
The pure planning step (:func:`plan_batches`) and response matching are separate from the I/O
so they can be tested exactly; :func:`query_timeseries` takes the raw call as an argument
(``client.timeseries.get``), which already carries the client's retries.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

import msgspec
from msgspec import UNSET

from ._timeseries_pages import PageMode, page_ceiling
from ._timeseries_stream import PullSettings, TimeSeriesStream
from ._timeutil import UTC, format_datetime, parse_timestamp
from ._validation import (
    _DURATION,
    validate_aggregation,
    validate_limit,
    validate_positive_int,
    validate_urn,
)
from .errors import ResponseDecodeError
from .models.timeseries import (
    TimeScope,
    TimeSeriesAggregation,
    TimeSeriesOptions,
    TimeSeriesRequest,
    TimeSeriesResponse,
)
from .models.tsquery import SeriesPoints, TimeSeriesResult

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_PAGE_SIZE",
    "GetTimeseries",
    "match_responses",
    "plan_batches",
    "prepare_pull",
    "query_timeseries",
    "resolve_order",
    "stream_timeseries",
]

GetTimeseries = Callable[[list[TimeSeriesRequest]], Awaitable[list[TimeSeriesResponse]]]
"""The raw call: one ``POST /timeseries`` with a list of requests, one response each."""

DateBound: TypeAlias = "datetime | timedelta | str"
AggregationArg: TypeAlias = "TimeSeriesAggregation | tuple[str, str | timedelta]"
Order: TypeAlias = Literal["asc", "desc"]

DEFAULT_BATCH_SIZE = 100
"""(device, measure) pairs per request; with the server's default ``limit`` of 100 points per
pair a response holds at most 10,000 points."""

DEFAULT_CONCURRENCY = 4
"""Requests in flight at once."""

DEFAULT_PAGE_SIZE = 1000
"""Points per pair and request when a whole range is paged: ten times the server's default
``limit`` (the API reference documents no maximum), so a batch of 100 pairs answers with at
most 100,000 points (about 5 MB of JSON)."""

_MICROSECOND = timedelta(microseconds=1)
_DURATION_PARTS = (
    ("weeks", 604800.0), ("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0),
    ("seconds", 1.0),
)


# -- pure helpers ---------------------------------------------------------------------------


def plan_batches(
    device_ids: Sequence[str], measure_ids: Sequence[str], batch_size: int
) -> list[tuple[list[str], list[str]]]:
    """Split devices x measures into request batches of at most ``batch_size`` pairs.

    Every pair lands in exactly one batch. Measures stay together where they fit (a batch
    is a block of devices x all measures); when there are more measures than ``batch_size``,
    each device gets blocks of ``batch_size`` measures. With no measures (= every measure
    of the device, counted as one pair per device), batches hold ``batch_size`` devices.

    Args:
        device_ids: Entity URNs (no duplicates).
        measure_ids: Attribute names (no duplicates); empty means every attribute.
        batch_size: Maximum pairs per batch (>= 1).

    Returns:
        ``(devices, measures)`` per batch, in input order.
    """
    validate_positive_int("batch_size", batch_size)
    devices = list(device_ids)
    measures = list(measure_ids)
    if not measures:
        return [(devices[i : i + batch_size], []) for i in range(0, len(devices), batch_size)]
    if len(measures) <= batch_size:
        per = batch_size // len(measures)
        return [(devices[i : i + per], measures) for i in range(0, len(devices), per)]
    return [
        ([device], measures[j : j + batch_size])
        for device in devices
        for j in range(0, len(measures), batch_size)
    ]


def resolve_order(order: Order | None, start: DateBound | None) -> Order:
    """The ``order`` sent to the server when the caller gave none.

    With a ``limit`` the order decides *which* points are kept: ``desc`` keeps the newest,
    ``asc`` the oldest. Without ``start`` the caller asks for "the latest N", so ``desc``;
    with a ``start`` they ask for "N points from start on", so ``asc``. (The server itself
    treats a missing order as ascending, and still applies its default limit of 100.)
    """
    if order is not None:
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', got {order!r}")
        return order
    return "asc" if start is not None else "desc"


def _unique_ids(name: str, values: Iterable[str], *, urn: bool) -> list[str]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a list of strings, not a single string")
    out: dict[str, None] = {}
    for index, value in enumerate(values):
        if urn:
            try:
                validate_urn(value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{name}[{index}]: {exc}") from None
        elif not isinstance(value, str) or not value:
            raise TypeError(f"{name}[{index}] must be a non-empty string, got {value!r}")
        out.setdefault(value, None)
    return list(out)


def _resolve_bound(name: str, value: object, now: datetime) -> datetime | None:
    """A bound as an aware UTC datetime: naive datetimes are UTC, a duration (``timedelta``
    or ISO 8601 such as ``"P1D"``) counts back from ``now``.

    Raises:
        TypeError, ValueError: an unusable bound, or one outside the range of dates.
    """
    try:
        return _bound(name, value, now)
    except OverflowError:
        raise ValueError(f"{name}: {value!r} is outside the range of dates") from None


def _bound(name: str, value: object, now: datetime) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return _as_utc(value).astimezone(UTC)
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValueError(f"{name} as a duration (now minus it) must be positive")
        return now - value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a datetime, timedelta or ISO 8601 string, got {value!r}")
    if value.startswith("P"):
        match = _DURATION.fullmatch(value)
        if match is None or value in ("P", "PT") or value.endswith("T"):
            raise ValueError(
                f"{name}: {value!r} is not an ISO 8601 duration in weeks, days, hours, minutes "
                "and seconds (months and years have no fixed length: give a datetime)"
            )
        seconds = sum(
            float(text.replace(",", ".")) * factor
            for part, factor in _DURATION_PARTS
            if (text := match.group(part))
        )
        if seconds <= 0:
            raise ValueError(f"{name} as a duration (now minus it) must be positive")
        return now - timedelta(seconds=seconds)
    parsed = parse_timestamp(value)
    if parsed is None:
        raise ValueError(f"{name}: {value!r} is not an ISO 8601 date-time or duration")
    return parsed.astimezone(UTC)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _naive(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def _aggregation(value: AggregationArg | None) -> TimeSeriesAggregation | None:
    if value is None:
        return None
    if isinstance(value, TimeSeriesAggregation):
        type_, interval = value.type, value.interval
    elif isinstance(value, tuple) and len(value) == 2:
        type_, interval = value
    else:
        raise TypeError(
            "aggregation must be a TimeSeriesAggregation or a (type, interval) tuple, "
            f"got {type(value).__name__}"
        )
    checked_type, checked_interval = validate_aggregation(type_, interval)
    return TimeSeriesAggregation(type=checked_type, interval=checked_interval)


def match_responses(
    requests: Sequence[TimeSeriesRequest], responses: Sequence[TimeSeriesResponse]
) -> list[TimeSeriesResponse]:
    """Pair each request with its response: by echoed ``query_id``, else by position.

    Raises:
        ResponseDecodeError: a request has no response.
    """
    wanted = {r.options.query_id: i for i, r in enumerate(requests)}
    by_request: dict[int, TimeSeriesResponse] = {}
    unclaimed: dict[int, TimeSeriesResponse] = {}
    for position, response in enumerate(responses):
        index = wanted.get(response.options.query_id)
        if index is not None and index not in by_request:
            by_request[index] = response
        else:
            unclaimed[position] = response
    out: list[TimeSeriesResponse] = []
    for index in range(len(requests)):
        found = by_request.get(index)
        if found is None:
            found = unclaimed.pop(index, None)
        if found is None:
            raise ResponseDecodeError(
                f"POST /timeseries: no response for request {index} "
                f"(query_id {requests[index].options.query_id!r}) among {len(responses)}",
                method="POST",
                path=f"$[{index}]",
            )
        out.append(found)
    return out


# -- the pull -------------------------------------------------------------------------------


def _interval(aggregation: TimeSeriesAggregation) -> timedelta:
    interval = aggregation.interval
    if isinstance(interval, timedelta):
        return interval
    bound = _resolve_bound("aggregation interval", interval, datetime(2000, 1, 1, tzinfo=UTC))
    assert bound is not None
    return datetime(2000, 1, 1, tzinfo=UTC) - bound


def prepare_pull(
    device_ids: Iterable[str],
    measure_ids: Iterable[str],
    *,
    tenant: str,
    scope: str,
    start: DateBound | None,
    end: DateBound | None,
    limit: int | None,
    order: Order | None,
    aggregation: AggregationArg | None,
    period: Sequence[TimeScope] | None,
    page_size: int,
    batch_size: int,
    concurrency: int,
    requests_per_call: int,
    raise_on_error: bool,
    now: float,
) -> tuple[list[str], list[str], list[TimeSeriesRequest], PullSettings]:
    """Check every argument (nothing is sent before) and plan the first requests.

    Returns:
        The unique devices and measures, the first requests and the settings of the pull.
    """
    devices = _unique_ids("device_ids", device_ids, urn=True)
    measures = _unique_ids("measure_ids", measure_ids, urn=False)
    if not devices:
        raise ValueError("device_ids must not be empty")
    for name, value in (("tenant", tenant), ("scope", scope)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    request_time = datetime.fromtimestamp(now, UTC)
    lower = _resolve_bound("start", start, request_time)
    upper = _resolve_bound("end", end, request_time)
    checked_limit = None if limit is None else validate_limit(limit)
    paging = lower is not None and checked_limit is None
    if paging and upper is None:
        upper = request_time  # an open range ends at the request time
    if upper is not None and upper - datetime.min.replace(tzinfo=UTC) < _MICROSECOND:
        raise ValueError(f"end ({upper.isoformat()}) must be after the first microsecond of year 1")
    if lower is not None and upper is not None and lower > upper:
        raise ValueError(f"start ({lower.isoformat()}) is after end ({upper.isoformat()})")
    effective_order = resolve_order(order, start)
    checked_aggregation = _aggregation(aggregation)
    validate_positive_int("page_size", page_size)
    validate_positive_int("concurrency", concurrency)
    validate_positive_int("requests_per_call", requests_per_call)
    batches = plan_batches(devices, measures, batch_size)

    mode: PageMode = "raw"
    window = None
    if checked_aggregation is not None:
        mode = "buckets"
        if checked_aggregation.type == "moving_avg":
            mode, window = "moving", _interval(checked_aggregation)
    prefix = secrets.token_hex(4)
    base = TimeSeriesOptions(
        tenant=tenant,
        scope=scope,
        start_date=UNSET if lower is None else format_datetime(lower),
        # the server's end is inclusive: ask for the last microsecond before the end
        end_date=UNSET if upper is None else format_datetime(upper - _MICROSECOND),
        order="asc" if paging else effective_order,
        limit=page_size if paging else UNSET if checked_limit is None else checked_limit,
        aggregation=UNSET if checked_aggregation is None else checked_aggregation,
        period=UNSET if period is None else list(period),
    )
    requests = [
        TimeSeriesRequest(
            device_ids=batch_devices,
            measure_ids=batch_measures,
            options=msgspec.structs.replace(base, query_id=f"{prefix}-{index}"),
        )
        for index, (batch_devices, batch_measures) in enumerate(batches)
    ]
    settings = PullSettings(
        base=base,
        paging=paging,
        end=_naive(upper),
        floor=_naive(lower),
        mode=mode,
        window=window,
        order=effective_order,
        batch_size=batch_size,
        concurrency=concurrency,
        requests_per_call=requests_per_call,
        raise_on_error=raise_on_error,
        query_prefix=prefix,
        max_page=page_ceiling(page_size),
    )
    return devices, measures, requests, settings


def stream_timeseries(
    get: GetTimeseries,
    device_ids: Iterable[str],
    measure_ids: Iterable[str],
    *,
    tenant: str,
    scope: str,
    start: DateBound | None = None,
    end: DateBound | None = None,
    limit: int | None = None,
    order: Order | None = None,
    aggregation: AggregationArg | None = None,
    period: Sequence[TimeScope] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    requests_per_call: int = 1,
    raise_on_error: bool = True,
    now: float | None = None,
) -> TimeSeriesStream:
    """The pull of :func:`query_timeseries` as pieces, page by page, in bounded memory.

    Takes the arguments of :func:`query_timeseries`. Use it as ``async with`` and iterate:
    each piece is a :class:`~iris360_async.models.TimeSeries` holding the new points of one
    page of one pair (ascending in a whole-range pull). See
    :class:`~iris360_async._timeseries_stream.TimeSeriesStream`.

    Raises:
        TypeError, ValueError: Bad arguments (raised here, nothing is sent).

    Example:
        >>> async with stream_timeseries(iris.timeseries.get, devices, ["temperature"],
        ...                              tenant="libelium", scope="/", start=t0, end=t1) as s:
        ...     async for piece in s:
        ...         write(piece.device_id, piece.measure_id, piece.values)
    """
    devices, measures, requests, settings = prepare_pull(
        device_ids,
        measure_ids,
        tenant=tenant,
        scope=scope,
        start=start,
        end=end,
        limit=limit,
        order=order,
        aggregation=aggregation,
        period=period,
        page_size=page_size,
        batch_size=batch_size,
        concurrency=concurrency,
        requests_per_call=requests_per_call,
        raise_on_error=raise_on_error,
        now=time.time() if now is None else now,
    )
    return TimeSeriesStream(get, devices, measures, requests, settings)


async def query_timeseries(
    get: GetTimeseries,
    device_ids: Iterable[str],
    measure_ids: Iterable[str],
    *,
    tenant: str,
    scope: str,
    start: DateBound | None = None,
    end: DateBound | None = None,
    limit: int | None = None,
    order: Order | None = None,
    aggregation: AggregationArg | None = None,
    period: Sequence[TimeScope] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    requests_per_call: int = 1,
    raise_on_error: bool = True,
    now: float | None = None,
) -> TimeSeriesResult:
    """Fetch the time series of many devices x measures with concurrent batched requests.

    **Ranges are half-open**, ``start <= t < end``, so consecutive windows never share a
    point. With a ``start`` and no ``limit`` the result holds *every* point of the range:
    the server caps each pair at ``limit`` points per call, so a pair that returns a full page
    of ``page_size`` points is asked again from its last timestamp (points already received
    at that instant are dropped), until its range is exhausted. Without ``end`` the range ends
    at the request time. With a ``limit``, each pair gets at most that many points (the
    oldest or newest, by ``order``), and pairs that reached it are listed in
    :attr:`~iris360_async.models.TimeSeriesResult.truncated`.

    The (device, measure) pairs are split into requests of at most ``batch_size`` pairs
    (see :func:`plan_batches`); up to ``concurrency`` calls run at once, each carrying
    ``requests_per_call`` requests. Every request is tagged with a unique ``query_id`` and
    matched to its response by the echoed id (by position if the id is not echoed).

    Args:
        get: The raw call, normally ``client.timeseries.get``.
        device_ids: Entity URNs (``urn:ngsi-ld:Device:D1``); duplicates are dropped.
        measure_ids: Attribute names; empty means every attribute of each device.
        tenant: FIWARE service.
        scope: FIWARE service path, e.g. ``"/"``.
        start: Inclusive lower bound: a ``datetime`` (naive = UTC), an ISO 8601 date-time
            string, or a duration back from the request time (``timedelta`` or ISO 8601
            such as ``"P1D"``; months and years are refused).
        end: Exclusive upper bound, same forms; default: the request time.
        limit: At most this many points per pair (>= 1); turns paging off. Without ``start``
            and ``limit`` the server's default of 100 (newest) points applies.
        order: ``"asc"`` or ``"desc"``: the order of each series in the result; with a limit
            it also decides which points are kept. Default: ``"desc"`` without ``start``,
            ``"asc"`` with it.
        aggregation: ``TimeSeriesAggregation`` or ``(type, interval)``, e.g.
            ``("mean", "PT1H")`` or ``("percentile-95", timedelta(minutes=15))``; checked here.
        period: Calendar filters (:class:`~iris360_async.models.TimeScope`).
        page_size: Points per pair and request when paging a range (>= 1). A page with fewer
            points ends the pair (a smaller limit echoed by the server counts as its cap). A
            page grows to get past one instant up to ``max(64 * page_size, 10_000)`` points;
            a pair stuck beyond that ends as truncated.
        batch_size: Maximum (device, measure) pairs per request (>= 1).
        concurrency: Maximum calls in flight at once (>= 1).
        requests_per_call: Requests sent together in one call (>= 1).
        raise_on_error: If ``True`` (default) the first failing call cancels the others and its
            exception propagates. If ``False`` failed requests are reported in
            :attr:`TimeSeriesResult.failures` and the rest completes.
        now: The request time, seconds since the epoch (default: the system clock).

    Returns:
        The merged :class:`~iris360_async.models.tsquery.TimeSeriesResult`; requested pairs
        without data are listed in ``missing``.

    Raises:
        TypeError, ValueError: Bad arguments (nothing is sent).
        Iris360Error: A call failed (with ``raise_on_error=True``).

    Example:
        >>> result = await query_timeseries(iris.timeseries.get, devices, ["temperature"],
        ...                                 tenant="libelium", scope="/",
        ...                                 start=datetime(2025, 11, 1), end=datetime(2025, 12, 1))
    """
    stream = stream_timeseries(
        get,
        device_ids,
        measure_ids,
        tenant=tenant,
        scope=scope,
        start=start,
        end=end,
        limit=limit,
        order=order,
        aggregation=aggregation,
        period=period,
        page_size=page_size,
        batch_size=batch_size,
        concurrency=concurrency,
        requests_per_call=requests_per_call,
        raise_on_error=raise_on_error,
        now=now,
    )
    got: dict[tuple[str, str], SeriesPoints] = {}
    async with stream:
        async for piece in stream:
            key = (piece.device_id, piece.measure_id)
            points = got.get(key)
            if points is None:
                points = got[key] = SeriesPoints()
            points.extend(piece.values)
    settings = stream.settings
    ordered: dict[tuple[str, str], SeriesPoints] = {}
    for device in stream.devices:
        for measure in stream.measures:
            if (device, measure) in got:
                ordered[(device, measure)] = got[(device, measure)]
    for key, points in got.items():  # pairs the server added (e.g. every measure requested)
        ordered.setdefault(key, points)
    if settings.paging and settings.order == "desc":
        for points in ordered.values():
            points.reverse()
    return TimeSeriesResult(
        ordered,
        requests=stream.requests,
        missing=stream.missing,
        missing_devices=stream.missing_devices,
        empty_requests=stream.empty_requests,
        failures=stream.failures,
        truncated=stream.truncated,
        paged_pairs=stream.paged_pairs,
    )
