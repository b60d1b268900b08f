"""Typed shapes of the IRIS360 API (msgspec Structs): responses are frozen and tolerate
unknown fields; requests omit the fields left unset."""

from __future__ import annotations

from .auth import LoginRequest, RefreshRequest, TokenPair
from .bulk import CommandOutcome, CommandReport, CommandStatus, ProgressStats, Reconciliation
from .common import Page
from .connectors import (
    ConnectorModelsUpdate,
    ConnectorPaginationRequest,
    MappingSchema,
    OutConnector,
    SimpleOutConnector,
)
from .devices import (
    BulkCommandItemResult,
    Device,
    DeviceMainEntity,
    DevicePaginationRequest,
    DeviceType,
    ImportResult,
    Organization,
)
from .entities import (
    Entity,
    EntityAttribute,
    EntityCommand,
    EntityPaginationRequest,
    EntityProperty,
    EntityRelationship,
    LatestAttributes,
    UnknownEntityAttribute,
)
from .timeseries import (
    TimeScope,
    TimeScopeAdjustment,
    TimeSeries,
    TimeSeriesAggregation,
    TimeSeriesOptions,
    TimeSeriesRequest,
    TimeSeriesResponse,
    TimeSeriesValue,
    WhereClause,
)
from .tsquery import BatchFailure, TimeSeriesColumns, TimeSeriesResult, TimeSeriesRow

__all__ = [
    "BatchFailure",
    "BulkCommandItemResult",
    "CommandOutcome",
    "CommandReport",
    "CommandStatus",
    "ConnectorModelsUpdate",
    "ConnectorPaginationRequest",
    "Device",
    "DeviceMainEntity",
    "DevicePaginationRequest",
    "DeviceType",
    "Entity",
    "EntityAttribute",
    "EntityCommand",
    "EntityPaginationRequest",
    "EntityProperty",
    "EntityRelationship",
    "ImportResult",
    "LatestAttributes",
    "LoginRequest",
    "MappingSchema",
    "Organization",
    "OutConnector",
    "Page",
    "ProgressStats",
    "Reconciliation",
    "RefreshRequest",
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
    "TimeSeriesValue",
    "TokenPair",
    "UnknownEntityAttribute",
    "WhereClause",
]
