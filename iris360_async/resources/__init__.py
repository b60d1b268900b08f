"""Endpoint wrappers, one class per API area (attached to the client lazily)."""

from __future__ import annotations

from ._base import APIResource
from .auth import AuthResource
from .connectors import ConnectorsResource, OutConnectorsResource
from .devices import DevicesResource
from .entities import EntitiesResource
from .timeseries import TimeseriesResource

__all__ = [
    "APIResource",
    "AuthResource",
    "ConnectorsResource",
    "DevicesResource",
    "EntitiesResource",
    "OutConnectorsResource",
    "TimeseriesResource",
]
