"""Time-series fan-out: many devices x measures as concurrent ``POST /timeseries`` batches.

The server evaluates every request separately for each (device, measure) pair, and ``limit``
and aggregation apply per pair (API reference §4.1). Splitting the pairs over several requests
therefore returns exactly what one big request would, while keeping each response small and
letting the requests run concurrently.

The pure planning step (:func:`plan_batches`) and response matching are separate from the I/O
so they can be tested exactly; :func:`query_timeseries` takes the raw call as an argument
(``client.timeseries.get``), which already carries the client's retries.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

import anyio
import msgspec
from msgspec import UNSET

from ._timeutil import UTC
from ._validation import (
    validate_aggregation,
    validate_limit,
    validate_positive_int,
    validate_urn,
)
from .errors import ResponseDecodeError
from .models.timeseries import (
    TimeScope,
    TimeSeries,
    TimeSeriesAggregation,
    TimeSeriesOptions,
    TimeSeriesRequest,
    TimeSeriesResponse,
    TimeSeriesValue,
)
from .models.tsquery import BatchFailure, TimeSeriesResult

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONCURRENCY",
    "GetTimeseries",
    "match_responses",
    "plan_batches",
    "query_timeseries",
    "resolve_order",
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


def _check_bound(name: str, value: object) -> DateBound | None:
    if value is None or isinstance(value, (datetime, str)):
        return value
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValueError(f"{name} as a duration (now minus it) must be positive")
        return value
    raise TypeError(f"{name} must be a datetime, timedelta or ISO 8601 string, got {value!r}")


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


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


def _sort_key(point: TimeSeriesValue) -> datetime:
    ts = point.raw_timestamp
    return ts if ts.tzinfo is None else ts.astimezone(UTC).replace(tzinfo=None)


def _ordered(series: TimeSeries, order: Order) -> TimeSeries:
    """The series with its points in ``order`` (the server does not guarantee it)."""
    values = series.values
    keys = [_sort_key(v) for v in values]
    if order == "asc":
        in_order = all(a <= b for a, b in itertools.pairwise(keys))
    else:
        in_order = all(a >= b for a, b in itertools.pairwise(keys))
    if in_order:
        return series
    ranked = sorted(range(len(values)), key=keys.__getitem__, reverse=order == "desc")
    return msgspec.structs.replace(series, values=[values[i] for i in ranked])


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


# -- the fan-out ----------------------------------------------------------------------------


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
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    requests_per_call: int = 1,
    raise_on_error: bool = True,
) -> TimeSeriesResult:
    """Fetch the time series of many devices x measures with concurrent batched requests.

    The (device, measure) pairs are split into requests of at most ``batch_size`` pairs
    (see :func:`plan_batches`); up to ``concurrency`` calls run at once, each carrying
    ``requests_per_call`` requests. Every request is tagged with a unique ``query_id`` and
    matched to its response by the echoed id (by position if the id is not echoed). As
    ``limit``, ``order`` and aggregation apply per pair on the server, the merged result is the
    one a single request for all pairs would give.

    Args:
        get: The raw call, normally ``client.timeseries.get``.
        device_ids: Entity URNs (``urn:ngsi-ld:Device:D1``); duplicates are dropped.
        measure_ids: Attribute names; empty means every attribute of each device.
        tenant: FIWARE service.
        scope: FIWARE service path, e.g. ``"/"``.
        start: Inclusive lower bound: a ``datetime`` (naive = UTC), a ``timedelta`` (now minus
            it, on the server's clock) or an ISO 8601 string sent as is.
        end: Inclusive upper bound, same forms.
        limit: Points per (device, measure) pair (>= 1). ``None`` omits the option, so the
            server applies its default of 100 (an explicit null would fail).
        order: ``"asc"`` or ``"desc"``. With a limit it decides which points are kept.
            Default: ``"desc"`` (the newest points) without ``start``, ``"asc"`` (the first
            points from ``start`` on) with it. Each series of the result is sorted in this
            order, since the server does not guarantee it.
        aggregation: ``TimeSeriesAggregation`` or ``(type, interval)``, e.g.
            ``("mean", "PT1H")`` or ``("percentile-95", timedelta(minutes=15))``; checked here.
        period: Calendar filters (:class:`~iris360_async.models.TimeScope`).
        batch_size: Maximum (device, measure) pairs per request (>= 1).
        concurrency: Maximum calls in flight at once (>= 1).
        requests_per_call: Requests sent together in one call (>= 1).
        raise_on_error: If ``True`` (default) the first failing call cancels the others and its
            exception propagates. If ``False`` failed requests are reported in
            :attr:`TimeSeriesResult.failures` and the rest is returned.

    Returns:
        The merged :class:`~iris360_async.models.tsquery.TimeSeriesResult`; requested pairs
        without data are listed in ``missing``.

    Raises:
        TypeError, ValueError: Bad arguments (nothing is sent).
        Iris360Error: A call failed (with ``raise_on_error=True``).

    Example:
        >>> result = await query_timeseries(iris.timeseries.get, devices, ["temperature"],
        ...                                 tenant="libelium", scope="/", limit=10)
    """
    devices = _unique_ids("device_ids", device_ids, urn=True)
    measures = _unique_ids("measure_ids", measure_ids, urn=False)
    if not devices:
        raise ValueError("device_ids must not be empty")
    for name, value in (("tenant", tenant), ("scope", scope)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    start = _check_bound("start", start)
    end = _check_bound("end", end)
    if isinstance(start, datetime) and isinstance(end, datetime) and _as_utc(start) > _as_utc(end):
        raise ValueError("start must not be after end (the server would return nothing)")
    checked_limit = None if limit is None else validate_limit(limit)
    effective_order = resolve_order(order, start)
    checked_aggregation = _aggregation(aggregation)
    validate_positive_int("concurrency", concurrency)
    validate_positive_int("requests_per_call", requests_per_call)
    batches = plan_batches(devices, measures, batch_size)

    prefix = secrets.token_hex(4)
    base = TimeSeriesOptions(
        tenant=tenant,
        scope=scope,
        start_date=UNSET if start is None else start,
        end_date=UNSET if end is None else end,
        order=effective_order,
        limit=UNSET if checked_limit is None else checked_limit,
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
    calls = [
        requests[i : i + requests_per_call] for i in range(0, len(requests), requests_per_call)
    ]

    answers: list[list[TimeSeriesResponse] | None] = [None] * len(calls)
    failures: list[tuple[int, BaseException]] = []
    first_error: list[Exception] = []
    pending = iter(range(len(calls)))

    async def worker(scope_: anyio.CancelScope) -> None:
        for index in pending:  # shared iterator: each call is taken exactly once
            call = calls[index]
            try:
                answers[index] = match_responses(call, await get(list(call)))
            except Exception as exc:
                if raise_on_error:
                    if not first_error:
                        first_error.append(exc)
                    scope_.cancel()
                    return
                failures.append((index, exc))

    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, len(calls))):
            tg.start_soon(worker, tg.cancel_scope)
    if first_error:
        raise first_error[0]

    return _merge(devices, measures, calls, answers, failures, effective_order, requests)


def _merge(
    devices: list[str],
    measures: list[str],
    calls: list[list[TimeSeriesRequest]],
    answers: list[list[TimeSeriesResponse] | None],
    failures: list[tuple[int, BaseException]],
    order: Order,
    requests: list[TimeSeriesRequest],
) -> TimeSeriesResult:
    got: dict[tuple[str, str], TimeSeries] = {}
    empty_requests: list[TimeSeriesRequest] = []
    answered_devices: set[str] = set()
    for call, responses in zip(calls, answers, strict=True):
        if responses is None:
            continue
        for request, response in zip(call, responses, strict=True):
            answered_devices.update(request.device_ids)
            if not response.time_series:
                empty_requests.append(request)
            for item in response.time_series:
                key = (item.device_id, item.measure_id)
                previous = got.get(key)
                if previous is not None:  # the same pair twice: keep every point
                    item = msgspec.structs.replace(item, values=previous.values + item.values)
                got[key] = item

    failed_devices: set[str] = set()
    failed_pairs: set[tuple[str, str]] = set()
    failure_list: list[BatchFailure] = []
    for index, error in sorted(failures, key=lambda f: f[0]):
        for request in calls[index]:
            failure_list.append(BatchFailure(request, error))
            failed_devices.update(request.device_ids)
            failed_pairs.update((d, m) for d in request.device_ids for m in request.measure_ids)

    ordered: dict[tuple[str, str], TimeSeries] = {}
    for device in devices:
        for measure in measures:
            key = (device, measure)
            if key in got:
                ordered[key] = _ordered(got[key], order)
    for key, item in got.items():  # pairs the server added (e.g. every measure requested)
        if key not in ordered:
            ordered[key] = _ordered(item, order)

    missing = [
        (d, m)
        for d in devices
        for m in measures
        if (d, m) not in got and (d, m) not in failed_pairs
    ]
    with_data = {device for device, _ in got}
    missing_devices = [
        d
        for d in devices
        if d not in with_data and d not in failed_devices and d in answered_devices
    ]
    return TimeSeriesResult(
        ordered,
        requests=requests,
        missing=missing,
        missing_devices=missing_devices,
        empty_requests=empty_requests,
        failures=failure_list,
    )
