"""Settings of an emulator: fleet size, credentials, token lifetimes, latency, paths, clock
speed, how devices confirm commands and the server model of the bulk endpoint."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .faults import FaultProfile
from .server_model import ServerModelSettings

__all__ = ["EmulatorConfig", "EmulatorPaths", "LatencyModel", "parse_sync_interval"]

DEFAULT_SERIES_START = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp())


@dataclass(frozen=True)
class LatencyModel:
    """Simulated processing time of one request, in seconds.

    A request with ``n`` items (bulk targets, time-series pairs, imported rows, page rows for
    lists) takes ``base + per_item * n`` plus a uniform random ``[0, jitter)``; the wait happens
    while the request holds one of the emulator's ``capacity`` slots.

    Attributes:
        base: fixed time per request, seconds.
        per_item: additional time per item, seconds (the real server handles bulk targets one by
            one, one context-broker round trip each).
        jitter: upper bound of the random extra time, seconds.
    """

    base: float = 0.0
    per_item: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.per_item < 0 or self.jitter < 0:
            raise ValueError("LatencyModel times must not be negative")

    @property
    def zero(self) -> bool:
        """Whether requests are answered without any simulated delay."""
        return self.base == 0 and self.per_item == 0 and self.jitter == 0


@dataclass(frozen=True)
class EmulatorPaths:
    """Paths (under the API prefix) of the endpoints whose public path is not verified.

    Mirrors the client's ``EndpointPaths``; any object with these four attributes is accepted.
    """

    login: str = "/login"
    refresh: str = "/refresh-token"
    import_file: str = "/devices/importFile"
    connector_models: str = "/connectors/out/{id}/models"

    @classmethod
    def coerce(cls, value: Any) -> EmulatorPaths:
        """An ``EmulatorPaths`` from ``None``, an ``EmulatorPaths`` or a look-alike object."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        return cls(
            login=value.login,
            refresh=value.refresh,
            import_file=value.import_file,
            connector_models=value.connector_models,
        )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if not getattr(self, f.name).startswith("/"):
                raise ValueError(f"EmulatorPaths.{f.name} must start with '/'")
        if "{id}" not in self.connector_models:
            raise ValueError("EmulatorPaths.connector_models must contain '{id}'")


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything an emulator is built from; see :class:`~.Iris360Emulator` for the meaning.

    Times are in seconds; ``series_start`` is seconds since the epoch. With
    ``require_accept_json`` the emulator behaves like Laravel toward clients that do not send
    ``Accept: application/json``: an unauthenticated call answers 500 ``{"message": "Server
    Error"}`` (the redirect to a ``login`` route that does not exist fails) and a validation
    failure redirects (302) instead of answering 422.

    Devices confirm pending commands when they connect (see :mod:`.sync`): ``sync_interval``
    is ``(shortest, longest)`` emulated seconds between two connections of a device (each
    device draws its own interval uniformly from it; one number for the same interval
    everywhere), ``None`` (default) for devices that never confirm on their own;
    ``offline_fraction`` of the devices never connect. ``time_scale`` runs the emulator clock
    faster than real time (60: one real second is one emulated minute); token lifetimes stay in
    real seconds.

    ``server_model`` puts backend workers, a queue and a gateway (timeout, rate limit) with
    drifting cost in front of the bulk endpoint (:mod:`.server_model`): a
    :class:`~.server_model.ServerModelSettings` or the name of a preset
    (``"capacity_bound"``, ``"rate_limited"``, ``"drifting"``, ``"shared"``, ``"fast"``),
    stored as settings.
    """

    host: str = "127.0.0.1"
    port: int = 0
    devices: int = 100
    seed: int = 1
    username: str = "operator@iris360.test"
    password: str = field(default="emulator-password", repr=False)
    tenant: str = "libelium"
    scope: str = "/"
    user_id: int = 17
    no_ota_fraction: float = 0.05
    extra_entities: int = 12
    connectors: int = 10
    token_ttl: float = 300.0
    refresh_ttl: float = 86_400.0
    series_start: int = DEFAULT_SERIES_START
    series_interval: int = 600
    clock_start: float | None = None
    latency: LatencyModel = field(default_factory=LatencyModel)
    capacity: int | None = None
    faults: FaultProfile | None = None
    fault_seed: int | None = None
    auth_rate_limit: int | None = None
    require_accept_json: bool = False
    api_prefix: str = "/api/public/v1"
    paths: EmulatorPaths = field(default_factory=EmulatorPaths)
    sync_interval: tuple[float, float] | float | None = None
    offline_fraction: float = 0.0
    time_scale: float = 1.0
    server_model: ServerModelSettings | str | None = None
    tenants: tuple[tuple[str, int], ...] = ()  # further tenants: (name, devices), see Fleet

    def __post_init__(self) -> None:
        if self.devices < 0:
            raise ValueError("devices must not be negative")
        if not 0.0 <= self.no_ota_fraction <= 1.0:
            raise ValueError("no_ota_fraction must be between 0 and 1")
        if self.token_ttl <= 0 or self.refresh_ttl <= 0:
            raise ValueError("token lifetimes must be positive")
        if self.series_interval < 1:
            raise ValueError("series_interval must be at least one second")
        if self.capacity is not None and self.capacity < 1:
            raise ValueError("capacity must be at least 1 (or None for unlimited)")
        if self.auth_rate_limit is not None and self.auth_rate_limit < 1:
            raise ValueError("auth_rate_limit must be at least 1 (or None)")
        if not self.api_prefix.startswith("/") or self.api_prefix.endswith("/"):
            raise ValueError("api_prefix must start with '/' and not end with '/'")
        object.__setattr__(self, "paths", EmulatorPaths.coerce(self.paths))
        object.__setattr__(self, "sync_interval", _sync_pair(self.sync_interval))
        if not 0.0 <= self.offline_fraction <= 1.0:
            raise ValueError("offline_fraction must be between 0 and 1")
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise ValueError("time_scale must be a positive number")
        model = self.server_model
        if isinstance(model, str):
            object.__setattr__(self, "server_model", ServerModelSettings.preset(model))
        elif model is not None and not isinstance(model, ServerModelSettings):
            raise TypeError(
                "server_model must be ServerModelSettings, a preset name or None, "
                f"not {type(model).__name__}"
            )

    @property
    def sync_range(self) -> tuple[float, float] | None:
        """``sync_interval`` as a ``(shortest, longest)`` pair (``None``: devices never sync)."""
        return _sync_pair(self.sync_interval)


def _sync_pair(value: tuple[float, float] | float | None) -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low = high = float(value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        low, high = (float(v) for v in value)
    else:
        raise TypeError("sync_interval must be seconds or a (shortest, longest) pair")
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ValueError("sync_interval must satisfy 0 < shortest <= longest (seconds)")
    return (low, high)


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", re.IGNORECASE)


def _seconds(text: str) -> float:
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 90, 90s, 15m, 2h)")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_sync_interval(text: str) -> tuple[float, float]:
    """``"1m-15m"`` -> ``(60.0, 900.0)``; ``"5m"`` -> ``(300.0, 300.0)``; units ``s`` (default),
    ``m``, ``h``, ``d``."""
    low, sep, high = text.partition("-")
    pair = (_seconds(low), _seconds(high) if sep else _seconds(low))
    result = _sync_pair(pair)
    assert result is not None
    return result
