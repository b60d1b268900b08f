"""Immutable client configuration: endpoint paths, timeouts and the settings read from the
environment. Pure data, no I/O."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["API_PREFIX", "ENV_PREFIX", "ClientConfig", "EndpointPaths", "Timeout"]

API_PREFIX = "/api/public/v1"
ENV_PREFIX = "IRIS360_"


@dataclass(frozen=True)
class Timeout:
    """Timeouts in seconds; ``None`` disables one.

    Attributes:
        connect: to establish a connection (counted after a connection slot was obtained).
        read: the longest wait for data from the server: for the response to begin once the
            request is on its way, then between two pieces of it.
        total: one attempt, from sending the request to the end of the body.
        deadline: the whole call, all retries and backoff included.
    """

    connect: float | None = 10.0
    read: float | None = 60.0
    total: float | None = 120.0
    deadline: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total", "deadline"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"Timeout.{name} must be a positive number of seconds or None")

    @classmethod
    def coerce(cls, value: Timeout | float | None) -> Timeout:
        """``Timeout`` from a ``Timeout``, a single number (the per-attempt total) or ``None``."""
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(connect=None, read=None, total=None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("timeout must be a Timeout, a number of seconds or None")
        return cls(total=float(value))


@dataclass(frozen=True)
class EndpointPaths:
    """Paths under ``/api/public/v1``. The four whose public path is not verified are here so
    a deployment that differs can be served without a new release."""

    login: str = "/login"
    refresh: str = "/refresh-token"
    import_file: str = "/devices/importFile"
    connector_models: str = "/connectors/out/{id}/models"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str) or not value.startswith("/"):
                raise ValueError(f"EndpointPaths.{f.name} must be a path starting with '/'")
        if "{id}" not in self.connector_models:
            raise ValueError("EndpointPaths.connector_models must contain '{id}'")


def _secret_repr(value: str | None) -> str:
    return "None" if value is None else "'***'"


@dataclass(frozen=True)
class ClientConfig:
    """Everything an :class:`Iris360Client` is configured with. Secrets never show in repr."""

    base_url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    tenant: str | None = None
    scope: str | None = None
    timeout: Timeout = field(default_factory=Timeout)
    timeseries_timeout: Timeout = field(
        default_factory=lambda: Timeout(connect=10.0, read=200.0, total=240.0)
    )
    max_retries: int = 3
    connection_limit: int = 100
    user_agent: str = "iris360-async"
    paths: EndpointPaths = field(default_factory=EndpointPaths)
    api_prefix: str = API_PREFIX
    refresh_margin: float = 30.0
    verify_ssl: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not self.base_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("base_url must start with http:// or https://")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError("max_retries must be an integer >= 0")
        if not isinstance(self.connection_limit, int) or self.connection_limit < 1:
            raise ValueError("connection_limit must be an integer >= 1")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.refresh_margin < 0:
            raise ValueError("refresh_margin must be >= 0 seconds")

    def __repr__(self) -> str:
        return (
            f"ClientConfig(base_url={self.base_url!r}, username={self.username!r}, "
            f"password={_secret_repr(self.password)}, token={_secret_repr(self.token)}, "
            f"refresh_token={_secret_repr(self.refresh_token)}, tenant={self.tenant!r}, "
            f"scope={self.scope!r}, timeout={self.timeout!r}, max_retries={self.max_retries})"
        )

    @property
    def api_root(self) -> str:
        """``https://host/api/public/v1`` without a trailing slash."""
        return self.base_url.rstrip("/") + self.api_prefix

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as ``/devices/paginate``."""
        return self.api_root + path

    @property
    def has_credentials(self) -> bool:
        return self.username is not None and self.password is not None

    def replace(self, **changes: Any) -> ClientConfig:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``IRIS360_*`` variables that are set, as keyword names of :class:`ClientConfig`.

    Recognised: ``IRIS360_BASE_URL``, ``IRIS360_USERNAME``, ``IRIS360_PASSWORD``,
    ``IRIS360_TOKEN``, ``IRIS360_REFRESH_TOKEN``, ``IRIS360_TENANT``, ``IRIS360_SCOPE``,
    ``IRIS360_TIMEOUT``, ``IRIS360_MAX_RETRIES``, ``IRIS360_CONNECTION_LIMIT``,
    ``IRIS360_USER_AGENT``, ``IRIS360_LOGIN_PATH``, ``IRIS360_REFRESH_PATH``,
    ``IRIS360_IMPORT_FILE_PATH``, ``IRIS360_CONNECTOR_MODELS_PATH``.
    """
    env = os.environ if environ is None else environ
    names = (
        "BASE_URL", "USERNAME", "PASSWORD", "TOKEN", "REFRESH_TOKEN", "TENANT", "SCOPE",
        "TIMEOUT", "MAX_RETRIES", "CONNECTION_LIMIT", "USER_AGENT", "LOGIN_PATH",
        "REFRESH_PATH", "IMPORT_FILE_PATH", "CONNECTOR_MODELS_PATH",
    )
    out: dict[str, str] = {}
    for name in names:
        value = env.get(ENV_PREFIX + name)
        if value is not None and value != "":
            out[name.lower()] = value
    return out
