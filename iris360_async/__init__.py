"""iris360-async: an asyncio SDK for the IRIS360 public API.

Import everything from here::

    from iris360_async import Iris360Client, Timeout, NotFoundError
"""

from __future__ import annotations

import contextlib

import msgspec as _msgspec

from ._bulk import CommandDispatcher
from ._client import Iris360Client
from ._config import ClientConfig, EndpointPaths, Timeout
from ._journal import JournalLockedError
from ._lifecycle import DeviceChange, TrackState, TrackSummary, TrackUpdate
from ._pagination import AsyncPaginator, PageResult
from ._retry import RetryPolicy
from ._timeseries_query import query_timeseries, stream_timeseries
from ._timeseries_stream import TimeSeriesStream
from ._version import __version__
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    Iris360Error,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    UnprocessableEntityError,
)
from .models import (
    BatchFailure,
    BulkCommandItemResult,
    CommandOutcome,
    CommandReport,
    CommandStatus,
    Device,
    DeviceMainEntity,
    DeviceType,
    Entity,
    EntityAttribute,
    EntityCommand,
    EntityProperty,
    EntityRelationship,
    ImportResult,
    LatestAttributes,
    MappingSchema,
    Organization,
    OutConnector,
    Page,
    ProgressStats,
    Reconciliation,
    SimpleOutConnector,
    TimeScope,
    TimeScopeAdjustment,
    TimeSeries,
    TimeSeriesAggregation,
    TimeSeriesColumns,
    TimeSeriesOptions,
    TimeSeriesRequest,
    TimeSeriesResponse,
    TimeSeriesResult,
    TimeSeriesRow,
    TimeSeriesValue,
    TokenPair,
    UnknownEntityAttribute,
    WhereClause,
)

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncPaginator",
    "AuthenticationError",
    "BadRequestError",
    "BatchFailure",
    "BulkCommandItemResult",
    "ClientConfig",
    "CommandDispatcher",
    "CommandOutcome",
    "CommandReport",
    "CommandStatus",
    "Device",
    "DeviceChange",
    "DeviceMainEntity",
    "DeviceType",
    "EndpointPaths",
    "Entity",
    "EntityAttribute",
    "EntityCommand",
    "EntityProperty",
    "EntityRelationship",
    "ImportResult",
    "InternalServerError",
    "Iris360Client",
    "Iris360Error",
    "JournalLockedError",
    "LatestAttributes",
    "MappingSchema",
    "NotFoundError",
    "Organization",
    "OutConnector",
    "Page",
    "PageResult",
    "PermissionDeniedError",
    "ProgressStats",
    "RateLimitError",
    "Reconciliation",
    "ResponseDecodeError",
    "RetryPolicy",
    "SimpleOutConnector",
    "TimeScope",
    "TimeScopeAdjustment",
    "TimeSeries",
    "TimeSeriesAggregation",
    "TimeSeriesColumns",
    "TimeSeriesOptions",
    "TimeSeriesRequest",
    "TimeSeriesResponse",
    "TimeSeriesResult",
    "TimeSeriesRow",
    "TimeSeriesStream",
    "TimeSeriesValue",
    "Timeout",
    "TokenPair",
    "TrackState",
    "TrackSummary",
    "TrackUpdate",
    "UnknownEntityAttribute",
    "UnprocessableEntityError",
    "WhereClause",
    "__version__",
    "query_timeseries",
    "stream_timeseries",
]

# Tracebacks and reprs show ``iris360_async.Iris360Client`` rather than the private module.
# msgspec Structs keep their real module: msgspec resolves their (postponed) annotations in
# that module's namespace.
for _name in __all__:
    _obj = globals()[_name]
    if (
        isinstance(_obj, type)
        and not issubclass(_obj, _msgspec.Struct)
        and _obj.__module__.startswith("iris360_async.")
    ):
        with contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = "iris360_async"
del _name, _obj, contextlib, _msgspec
