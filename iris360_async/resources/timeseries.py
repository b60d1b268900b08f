"""``client.timeseries``: historic values of entity attributes (``POST /timeseries``)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from .._config import NOT_GIVEN, NotGiven, Timeout
from .._retry import RetryPolicy
from .._timeseries_query import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONCURRENCY,
    DEFAULT_PAGE_SIZE,
    query_timeseries,
    stream_timeseries,
)
from .._timeseries_stream import TimeSeriesStream
from .._validation import validate_aggregation, validate_limit
from ..errors import ResponseDecodeError
from ..models.timeseries import (
    TimeScope,
    TimeSeriesAggregation,
    TimeSeriesOptions,
    TimeSeriesRequest,
    TimeSeriesResponse,
    decode_timeseries_responses,
    mark_truncated,
)
from ..models.tsquery import TimeSeriesResult
from ._base import APIResource, decode_response

__all__ = ["TimeseriesResource"]

TIMESERIES_PATH = "/timeseries"


def _check_options(index: int, options: TimeSeriesOptions) -> None:
    where = f"requests[{index}].options"
    if options.limit is not msgspec.UNSET:
        try:
            validate_limit(options.limit)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
    if options.order not in (msgspec.UNSET, None, "asc", "desc"):
        raise ValueError(f"{where}.order must be 'asc' or 'desc', got {options.order!r}")
    aggregation = options.aggregation
    if aggregation is not msgspec.UNSET and aggregation is not None:
        try:
            validate_aggregation(aggregation.type, aggregation.interval)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}.aggregation: {exc}") from None


class TimeseriesResource(APIResource):
    """Time series: ``POST /timeseries``."""

    def prepare(self, requests: Sequence[TimeSeriesRequest]) -> list[TimeSeriesRequest]:
        """The requests as they will be sent: checked, ``tenant``/``scope`` filled in.

        A request whose ``options`` leave ``tenant`` or ``scope`` unset gets the client's
        default (the server needs both in every request).

        Raises:
            TypeError, ValueError: an empty list, a non-request item, an unusable option, or a
                missing tenant/scope with no client default.
        """
        if isinstance(requests, TimeSeriesRequest):
            raise TypeError("requests must be a list of TimeSeriesRequest, not a single one")
        items = list(requests)
        if not items:
            raise ValueError("requests must not be empty")
        prepared: list[TimeSeriesRequest] = []
        for index, request in enumerate(items):
            if not isinstance(request, TimeSeriesRequest):
                raise TypeError(
                    f"requests[{index}] must be a TimeSeriesRequest, got {type(request).__name__}"
                )
            options = request.options
            for name in ("device_ids", "measure_ids"):
                ids = getattr(request, name)
                if not all(isinstance(i, str) and i for i in ids):
                    raise ValueError(f"requests[{index}].{name} must contain non-empty strings")
            if not request.device_ids and options.where in (msgspec.UNSET, None):
                raise ValueError(
                    f"requests[{index}].device_ids may be empty only with options.where"
                )
            _check_options(index, options)
            if options.tenant is msgspec.UNSET or options.scope is msgspec.UNSET:
                tenant, scope = self._client.require_tenant_scope(
                    None if options.tenant is msgspec.UNSET else options.tenant,
                    None if options.scope is msgspec.UNSET else options.scope,
                )
                options = msgspec.structs.replace(options, tenant=tenant, scope=scope)
                request = msgspec.structs.replace(request, options=options)
            prepared.append(request)
        return prepared

    async def get(
        self,
        requests: Sequence[TimeSeriesRequest],
        *,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> list[TimeSeriesResponse]:
        """Run time-series requests in one call; one response per request, same order.

        Each request is evaluated for every (device, measure) pair; ``limit`` and aggregation
        apply per pair. Pairs without data are simply absent (no error). A series that came
        back with as many points as the limit (100 when unset) has
        :attr:`~iris360_async.models.TimeSeries.possibly_truncated` set, and each response
        counts them in :attr:`~iris360_async.models.TimeSeriesResponse.truncated_count`.
        The call uses the client's ``timeseries_timeout`` (the server may take up to 180 s).

        Args:
            requests: see :class:`~iris360_async.models.TimeSeriesRequest`; ``tenant`` and
                ``scope`` default to the client's.
            timeout: this call's timeouts (a :class:`~iris360_async.Timeout` or seconds per
                attempt; ``None``: none); default: the client's ``timeseries_timeout``.
            max_retries: this call's repeats after the first attempt; default: the client's.
            retry_policy: this call's :class:`~iris360_async.RetryPolicy`.

        Raises:
            TypeError, ValueError: bad requests (nothing is sent).
            ResponseDecodeError: the answer is not one response per request.

        Example:
            >>> [resp] = await iris.timeseries.get([TimeSeriesRequest(
            ...     ["urn:ngsi-ld:Device:D1"], ["temperature"],
            ...     TimeSeriesOptions(order="desc", limit=10))])
        """
        options = self._options(
            timeout, max_retries, retry_policy, default_timeout=self._config.timeseries_timeout
        )
        prepared = self.prepare(requests)
        response = await self._transport.request(
            "POST", TIMESERIES_PATH, json=prepared, retry="read", **options
        )
        results = decode_response(
            response, decode_timeseries_responses, "list[TimeSeriesResponse]"
        )
        mark_truncated(prepared, results)
        if len(results) != len(prepared):
            raise ResponseDecodeError(
                f"{response.method} {TIMESERIES_PATH} -> {response.status}: expected "
                f"{len(prepared)} responses (one per request), got {len(results)}",
                method=response.method,
                url=response.url,
                status=response.status,
                path="$",
                text="",
            )
        return results

    def _getter(
        self,
        timeout: Timeout | float | NotGiven | None,
        max_retries: int | None,
        retry_policy: RetryPolicy | None,
    ) -> Callable[[Sequence[TimeSeriesRequest]], Awaitable[list[TimeSeriesResponse]]]:
        """:meth:`get` with one pull's call options (checked here, before any request)."""
        self._options(timeout, max_retries, retry_policy)
        return functools.partial(
            self.get, timeout=timeout, max_retries=max_retries, retry_policy=retry_policy
        )

    def _pull_arguments(
        self,
        tenant: str | None,
        scope: str | None,
    ) -> dict[str, Any]:
        tenant_value, scope_value = self._client.require_tenant_scope(tenant, scope)
        return {"tenant": tenant_value, "scope": scope_value, "now": self._transport.clock.time()}

    async def query(
        self,
        device_ids: Iterable[str],
        measure_ids: Iterable[str],
        *,
        tenant: str | None = None,
        scope: str | None = None,
        start: datetime | timedelta | str | None = None,
        end: datetime | timedelta | str | None = None,
        limit: int | None = None,
        order: Literal["asc", "desc"] | None = None,
        aggregation: TimeSeriesAggregation | tuple[str, str | timedelta] | None = None,
        period: Sequence[TimeScope] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        requests_per_call: int = 1,
        raise_on_error: bool = True,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> TimeSeriesResult:
        """Many devices x measures as concurrent batched :meth:`get` calls, merged.

        Ranges are half-open, ``start <= t < end``. With ``start`` and no ``limit`` every
        point of the range is returned: pairs are paged by time (``page_size`` points per
        pair and request); without ``end`` the range ends now. With ``limit``, at most that
        many points per pair (pairs that reached it are listed in ``result.truncated``).
        ``tenant``/``scope`` default to the client's. The other arguments are those of
        :func:`iris360_async._timeseries_query.query_timeseries`: ``start``/``end`` as
        ``datetime`` (naive = UTC), ISO 8601 string, or a duration back from now
        (``timedelta`` or ``"P1D"``); ``order`` (default ``desc`` without ``start``,
        ``asc`` with it); ``aggregation`` as a struct or ``(type, interval)``;
        ``batch_size`` pairs per request; ``concurrency`` calls in flight. ``timeout``,
        ``max_retries`` and ``retry_policy`` apply to every call, as in :meth:`get`.

        Raises:
            TypeError, ValueError: bad arguments, e.g. ``start`` after ``end`` (nothing is
                sent).

        Example:
            >>> result = await iris.timeseries.query(
            ...     devices, ["temperature"], start=datetime(2025, 11, 1),
            ...     end=datetime(2025, 12, 1))
            >>> frame = result.to_pandas()
        """
        return await query_timeseries(
            self._getter(timeout, max_retries, retry_policy),
            device_ids,
            measure_ids,
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
            **self._pull_arguments(tenant, scope),
        )

    def stream(
        self,
        device_ids: Iterable[str],
        measure_ids: Iterable[str],
        *,
        tenant: str | None = None,
        scope: str | None = None,
        start: datetime | timedelta | str | None = None,
        end: datetime | timedelta | str | None = None,
        limit: int | None = None,
        order: Literal["asc", "desc"] | None = None,
        aggregation: TimeSeriesAggregation | tuple[str, str | timedelta] | None = None,
        period: Sequence[TimeScope] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        requests_per_call: int = 1,
        raise_on_error: bool = True,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> TimeSeriesStream:
        """The pull of :meth:`query` piece by piece, in bounded memory.

        Same arguments as :meth:`query` (``timeout``, ``max_retries`` and ``retry_policy``
        included). Use it with ``async with`` and iterate: every piece
        is a :class:`~iris360_async.models.TimeSeries` with the new points of one page of one
        pair (ascending in a whole-range pull; the pieces of a pair arrive in order, those of
        different pairs interleave). At most about ``concurrency + 1`` answers are held at
        once. After the loop the stream tells ``missing``, ``failures``, ``truncated`` and
        ``paged_pairs`` as a :class:`~iris360_async.models.TimeSeriesResult` would.

        Raises:
            TypeError, ValueError: bad arguments (raised here; nothing is sent).

        Example:
            >>> async with iris.timeseries.stream(devices, ["temperature"],
            ...                                   start=datetime(2025, 11, 1)) as pieces:
            ...     async for piece in pieces:
            ...         await db.write(piece.device_id, piece.measure_id, piece.values)
        """
        return stream_timeseries(
            self._getter(timeout, max_retries, retry_policy),
            device_ids,
            measure_ids,
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
            **self._pull_arguments(tenant, scope),
        )
