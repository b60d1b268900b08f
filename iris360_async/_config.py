"""Immutable client configuration: endpoint paths, timeouts and the settings read from the
environment. Pure data, no I/O."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "API_PREFIX",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ENV_PREFIX",
    "NOT_GIVEN",
    "ClientConfig",
    "EndpointPaths",
    "NotGiven",
    "Timeout",
    "check_base_url",
    "check_proxy",
    "check_seconds",
    "hide_credentials",
]

API_PREFIX = "/api/public/v1"
ENV_PREFIX = "IRIS360_"
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""The largest response body read by default (64 MiB)."""


class NotGiven:
    """The type of :data:`NOT_GIVEN`, the default of an argument for which ``None`` has a
    meaning of its own (``timeout=None``: no timeouts)."""

    __slots__ = ()
    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven()
"""An argument left out: the setting comes from the environment or its default."""


def check_seconds(name: str, value: object) -> float:
    """``value`` as a finite, positive number of seconds.

    Raises:
        TypeError: not a number (``bool`` included).
        ValueError: NaN, infinite, zero or negative; the message names ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite, positive number of seconds, not {value!r}")
    return float(value)


def check_base_url(url: object) -> str:
    """``url`` if it is a usable base URL: ``http``/``https``, a host, a valid port, no
    credentials, no query string or fragment. A path (a prefix before ``/api/public/v1``) is
    allowed.

    Raises:
        TypeError: not a string.
        ValueError: naming the problem (the URL itself is not repeated: it may hold a password).
    """
    if not isinstance(url, str):
        raise TypeError(f"base_url must be a string, not {type(url).__name__}")
    if not url.startswith(("http://", "https://")):
        raise ValueError("base_url must start with http:// or https://")
    if any(ch.isspace() for ch in url):
        raise ValueError("base_url must not contain whitespace")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # unbalanced IPv6 brackets, port out of range, ...
        if "out of range" in str(exc):
            raise ValueError("base_url has a port out of range (1-65535)") from None
        if "port" in str(exc).lower():
            raise ValueError("base_url has a port that is not a number") from None
        raise ValueError(f"base_url is not a valid URL: {exc}") from None
    if "@" in parts.netloc:
        raise ValueError(
            "base_url must not contain credentials (user:password@); "
            "pass username= and password= instead"
        )
    if not parts.hostname:
        raise ValueError("base_url has no host")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("base_url has a port out of range (1-65535)")
    if "?" in url:
        raise ValueError("base_url must not contain a query string")
    if "#" in url:
        raise ValueError("base_url must not contain a fragment")
    if parts.path.rstrip("/").endswith(API_PREFIX):
        raise ValueError(
            f"base_url must not end with {API_PREFIX}, which the client adds: "
            "give the server only, e.g. https://iris.example.com"
        )
    return url


def check_proxy(url: object) -> str:
    """``url`` if it is a usable proxy URL: ``http://`` (or ``https://``) with a host and a
    valid port; ``user:password@`` is allowed (sent as ``Proxy-Authorization``).

    Raises:
        TypeError: not a string.
        ValueError: naming the problem (never repeating the URL).
    """
    if not isinstance(url, str):
        raise TypeError(f"proxy must be a string URL, not {type(url).__name__}")
    if not url.startswith(("http://", "https://")):
        raise ValueError("proxy must start with http:// or https://")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("proxy is not a valid URL (host or port)") from None
    if not parts.hostname:
        raise ValueError("proxy has no host")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("proxy has a port out of range (1-65535)")
    return url


def hide_credentials(url: str | None) -> str | None:
    """``url`` with a ``user:password@`` part replaced by ``***@``."""
    if url is None or "@" not in url:
        return url
    parts = urlsplit(url)
    netloc = "***@" + parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=netloc).geturl()


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
            if value is not None:
                check_seconds(f"Timeout.{name}", value)

    @classmethod
    def coerce(cls, value: Timeout | float | None) -> Timeout:
        """``Timeout`` from a ``Timeout``, a single number (the per-attempt total) or ``None``."""
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(connect=None, read=None, total=None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("timeout must be a Timeout, a number of seconds or None")
        return cls(total=check_seconds("timeout", value))


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


def _not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


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
    max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES
    proxy: str | None = field(default=None, repr=False)
    trust_env: bool = False

    def __post_init__(self) -> None:
        check_base_url(self.base_url)
        if self.verify_ssl is not True and self.verify_ssl is not False:
            raise TypeError(
                f"verify_ssl must be True or False, not {self.verify_ssl!r} "
                "(TLS verification is turned off only by an explicit False)"
            )
        if self.proxy is not None:
            check_proxy(self.proxy)
        if self.trust_env is not True and self.trust_env is not False:
            raise TypeError(f"trust_env must be True or False, not {self.trust_env!r}")
        limit = self.max_response_bytes
        if limit is not None and _not_int(limit):
            raise TypeError("max_response_bytes must be an integer number of bytes or None")
        if limit is not None and limit < 1:
            raise ValueError("max_response_bytes must be >= 1 (or None for no limit)")
        if _not_int(self.max_retries) or self.max_retries < 0:
            raise ValueError("max_retries must be an integer >= 0")
        if _not_int(self.connection_limit) or self.connection_limit < 1:
            raise ValueError("connection_limit must be an integer >= 1")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        margin = self.refresh_margin
        if isinstance(margin, bool) or not isinstance(margin, (int, float)):
            raise TypeError("refresh_margin must be a number of seconds")
        if not math.isfinite(margin) or margin < 0:
            raise ValueError("refresh_margin must be a finite number of seconds >= 0")

    def __repr__(self) -> str:
        return (
            f"ClientConfig(base_url={self.base_url!r}, username={self.username!r}, "
            f"password={_secret_repr(self.password)}, token={_secret_repr(self.token)}, "
            f"refresh_token={_secret_repr(self.refresh_token)}, tenant={self.tenant!r}, "
            f"scope={self.scope!r}, timeout={self.timeout!r}, max_retries={self.max_retries}, "
            f"proxy={hide_credentials(self.proxy)!r})"
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

