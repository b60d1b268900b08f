"""``Iris360Client``: configuration, the aiohttp session's lifecycle and the resource
namespaces."""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp

from ._auth import TokenManager
from ._config import (
    NOT_GIVEN,
    ClientConfig,
    EndpointPaths,
    NotGiven,
    Timeout,
    settings_from_env,
)
from ._logging import get_logger
from ._retry import Clock, RateGate, RetryBudget, RetryPolicy, SystemClock
from ._transport import HTTPPool, Transport, TransportStats
from ._version import __version__

if TYPE_CHECKING:
    from .resources.auth import AuthResource
    from .resources.connectors import ConnectorsResource
    from .resources.devices import DevicesResource
    from .resources.entities import EntitiesResource
    from .resources.timeseries import TimeseriesResource

__all__ = ["DEFAULT_USER_AGENT", "Iris360Client"]

DEFAULT_USER_AGENT = f"iris360-async/{__version__}"

_log = get_logger(__name__)
_WITH_OPTIONS = frozenset(
    {
        "timeout", "timeseries_timeout", "max_retries", "tenant", "scope", "user_agent",
        "max_response_bytes",
    }
)
_ENV_PATHS = {
    "login_path": "login",
    "refresh_path": "refresh",
    "import_file_path": "import_file",
    "connector_models_path": "connector_models",
}


@dataclass(frozen=True)
class _Hooks:
    """What tests replace in a client (see :meth:`Iris360Client._with_hooks`)."""

    clock: Clock | None = None
    random: Callable[[], float] | None = None
    environ: Mapping[str, str] | None = None


_HOOKS: ContextVar[_Hooks | None] = ContextVar("iris360_client_hooks", default=None)


def _env_number(env: Mapping[str, str], key: str, kind: Callable[[str], Any]) -> Any:
    """``kind(value)`` of ``IRIS360_<KEY>``; any refusal names the variable."""
    raw = env[key]
    try:
        return kind(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"IRIS360_{key.upper()}={raw!r} is not valid: {exc}") from None


def _env_timeout(raw: str) -> Timeout:
    return Timeout.coerce(float(raw))


def _env_count(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if value < minimum:
            raise ValueError(f"must be an integer >= {minimum}")
        return value

    return parse


def _env_byte_limit(raw: str) -> int | None:
    if raw.strip().lower() == "none":
        return None
    return _env_count(1)(raw)


class Iris360Client:
    """Asynchronous client of the IRIS360 public API.

    Every setting can also come from an ``IRIS360_*`` environment variable
    (``IRIS360_BASE_URL``, ``IRIS360_USERNAME``, ``IRIS360_PASSWORD``, ``IRIS360_TOKEN``,
    ``IRIS360_REFRESH_TOKEN``, ``IRIS360_TENANT``, ``IRIS360_SCOPE``, ``IRIS360_TIMEOUT``,
    ``IRIS360_MAX_RETRIES``, ``IRIS360_CONNECTION_LIMIT``, ``IRIS360_MAX_RESPONSE_BYTES``,
    ``IRIS360_USER_AGENT``,
    ``IRIS360_LOGIN_PATH``, ``IRIS360_REFRESH_PATH``, ``IRIS360_IMPORT_FILE_PATH``,
    ``IRIS360_CONNECTOR_MODELS_PATH``); explicit arguments win.

    Args:
        base_url: scheme and host, e.g. ``"https://iris.example.com"``; the client adds
            ``/api/public/v1``.
        username: the user's e-mail address (login).
        password: the password (login).
        token: an access token to start with.
        refresh_token: a refresh token to start with.
        tenant: default FIWARE tenant for calls that need one.
        scope: default FIWARE scope (service path) for calls that need one.
        timeout: per-attempt timeouts and whole-call deadline, a :class:`Timeout`, a number
            of seconds (the per-attempt total) or ``None`` (no timeouts); left out:
            ``IRIS360_TIMEOUT`` if set, else ``Timeout()``.
        timeseries_timeout: the same for ``POST /timeseries`` (the server may take 180 s);
            left out: ``Timeout(connect=10, read=200, total=240)``.
        max_retries: repeats after the first attempt of a retryable failure (default 3).
        connection_limit: concurrent requests and pooled connections at most (default 100).
        user_agent: the ``User-Agent`` header (default ``iris360-async/<version>``).
        paths: the endpoint paths that may differ between deployments.
        session: a caller-owned :class:`aiohttp.ClientSession`; the client never closes it.
        verify_ssl: verify TLS certificates (default ``True``); exactly ``True`` or ``False``.
            ``False`` logs a warning once per client.
        max_response_bytes: the largest response body read, in bytes (``None``: no limit;
            left out: ``IRIS360_MAX_RESPONSE_BYTES`` if set, else 64 MiB); a larger one raises
            :class:`~iris360_async.ResponseTooLargeError` without being read whole.
        refresh_margin: refresh the access token this many seconds before it expires.
        retry_policy: backoff settings (base and cap in seconds, ``Retry-After`` limit); its
            ``max_retries`` is used unless ``max_retries`` is given too.

    Example:
        >>> async with Iris360Client("https://iris.example.com", username="ops@example.com",
        ...                          password="…", tenant="libelium", scope="/") as iris:
        ...     async for device in iris.devices.paginate(page_size=500):
        ...         print(device.serial)
    """

    _owner: bool
    _closed: bool

    def __init__(
        self,
        base_url: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        refresh_token: str | None = None,
        tenant: str | None = None,
        scope: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        timeseries_timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        connection_limit: int | None = None,
        user_agent: str | None = None,
        paths: EndpointPaths | None = None,
        session: aiohttp.ClientSession | None = None,
        verify_ssl: bool = True,
        max_response_bytes: int | NotGiven | None = NOT_GIVEN,
        refresh_margin: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self._owner = False  # set first: __del__ must work even if validation fails
        self._closed = False
        hooks = _HOOKS.get() or _Hooks()
        env = settings_from_env(hooks.environ)
        explicit: dict[str, Any] = {
            "base_url": base_url,
            "username": username,
            "password": password,
            "token": token,
            "refresh_token": refresh_token,
            "tenant": tenant,
            "scope": scope,
            "user_agent": user_agent,
        }
        values: dict[str, Any] = {}
        for key, value in explicit.items():
            chosen = value if value is not None else env.get(key)
            if chosen is not None:
                values[key] = chosen
        if "base_url" not in values:
            raise ValueError("base_url is required (pass base_url= or set IRIS360_BASE_URL)")
        values.setdefault("user_agent", DEFAULT_USER_AGENT)
        if isinstance(timeout, NotGiven):
            timeout = _env_number(env, "timeout", _env_timeout) if "timeout" in env else Timeout()
        values["timeout"] = Timeout.coerce(timeout)
        if not isinstance(timeseries_timeout, NotGiven):
            values["timeseries_timeout"] = Timeout.coerce(timeseries_timeout)
        if max_retries is None and "max_retries" in env:
            max_retries = _env_number(env, "max_retries", _env_count(0))
        if max_retries is not None:
            values["max_retries"] = max_retries
        if connection_limit is None and "connection_limit" in env:
            connection_limit = _env_number(env, "connection_limit", _env_count(1))
        if connection_limit is not None:
            values["connection_limit"] = connection_limit
        if paths is None:
            env_paths = {attr: env[key] for key, attr in _ENV_PATHS.items() if key in env}
            paths = EndpointPaths(**env_paths)
        values["paths"] = paths
        values["verify_ssl"] = verify_ssl
        if isinstance(max_response_bytes, NotGiven) and "max_response_bytes" in env:
            max_response_bytes = _env_number(env, "max_response_bytes", _env_byte_limit)
        if not isinstance(max_response_bytes, NotGiven):
            values["max_response_bytes"] = max_response_bytes
        if refresh_margin is not None:
            values["refresh_margin"] = refresh_margin
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError("session must be an aiohttp.ClientSession")
        config = ClientConfig(**values)
        if not config.verify_ssl and _log.isEnabledFor(logging.WARNING):
            _log.warning(
                "TLS certificate verification is off for %s (verify_ssl=False)",
                config.base_url,
            )

        clock: Clock = hooks.clock if hooks.clock is not None else SystemClock()
        if retry_policy is None:
            policy = RetryPolicy(config.max_retries)
        elif max_retries is None:
            policy = retry_policy
            config = config.replace(max_retries=policy.max_retries)
        else:
            policy = retry_policy.replace(max_retries=config.max_retries)
        if hooks.random is not None:
            policy = policy.replace(random=hooks.random)
        tokens = TokenManager(config, clock=clock)
        pool = HTTPPool(
            session=session,
            connection_limit=config.connection_limit,
            verify_ssl=config.verify_ssl,
        )
        transport = Transport(
            config,
            pool=pool,
            tokens=tokens,
            gate=RateGate(clock),
            budget=RetryBudget(),
            clock=clock,
            policy=policy,
        )
        tokens.bind(transport.auth_send)
        self._config = config
        self._transport = transport
        self._owner = True

    @classmethod
    def _with_hooks(
        cls,
        *args: Any,
        clock: Clock | None = None,
        random: Callable[[], float] | None = None,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Iris360Client:
        """A client built with test hooks (not part of the public API): ``clock`` gives time
        and sleeps (a ``ManualClock`` makes every wait instant), ``random`` the backoff jitter,
        ``environ`` replaces ``os.environ`` for the ``IRIS360_*`` settings. ``args`` and
        ``options`` are those of the constructor.

        Example:
            >>> iris = Iris360Client._with_hooks(url, token="t", clock=ManualClock())
            ... # doctest: +SKIP
        """
        reset = _HOOKS.set(_Hooks(clock, random, environ))
        try:
            return cls(*args, **options)
        finally:
            _HOOKS.reset(reset)

    # -- configuration ------------------------------------------------------------------------

    @property
    def config(self) -> ClientConfig:
        """The immutable configuration."""
        return self._config

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def tenant(self) -> str | None:
        """The default tenant, if configured."""
        return self._config.tenant

    @property
    def scope(self) -> str | None:
        """The default scope (service path), if configured."""
        return self._config.scope

    @property
    def stats(self) -> TransportStats:
        """Requests, retries, 401 replays, 429s, refreshes and logins so far."""
        return self._transport.stats

    def require_tenant_scope(self, tenant: str | None, scope: str | None) -> tuple[str, str]:
        """The call's ``tenant``/``scope``, falling back to the client's defaults.

        Raises:
            ValueError: neither the call nor the client gives one of them.
        """
        tenant = tenant if tenant is not None else self._config.tenant
        scope = scope if scope is not None else self._config.scope
        missing = [name for name, value in (("tenant", tenant), ("scope", scope)) if not value]
        if missing:
            names = " and ".join(missing)
            raise ValueError(
                f"{names} required: pass {'/'.join(m + '=' for m in missing)} to the call or set "
                f"it on the client (Iris360Client({missing[0]}=...) or "
                f"IRIS360_{missing[0].upper()})"
            )
        assert tenant is not None
        assert scope is not None
        return tenant, scope

    def with_options(self, **overrides: Any) -> Iris360Client:
        """A copy with some settings changed, sharing this client's session and connection
        pool, token manager, retry budget and 429 gate.

        Allowed: ``timeout``, ``timeseries_timeout``, ``max_retries``, ``tenant``, ``scope``,
        ``user_agent``, ``max_response_bytes``. The copy does not own the session: close the
        original client (closing the copy does not close the shared session).

        Example:
            >>> patient = iris.with_options(timeout=300, max_retries=6)
        """
        unknown = set(overrides) - _WITH_OPTIONS
        if unknown:
            raise TypeError(
                f"with_options() does not accept {', '.join(sorted(unknown))}; "
                f"allowed: {', '.join(sorted(_WITH_OPTIONS))}"
            )
        for key in ("timeout", "timeseries_timeout"):
            if key in overrides:
                overrides[key] = Timeout.coerce(overrides[key])
        config = self._config.replace(**overrides)
        clone = object.__new__(type(self))
        clone._owner = False
        clone._closed = False
        clone._config = config
        clone._transport = self._transport.derive(config)
        return clone

    def __repr__(self) -> str:
        return (
            f"Iris360Client(base_url={self._config.base_url!r}, tenant={self._config.tenant!r}, "
            f"scope={self._config.scope!r})"
        )

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called (on this client, or on the original for a copy)."""
        return self._closed or self._transport.pool.closed

    async def __aenter__(self) -> Iris360Client:
        if self.closed:
            raise RuntimeError("the client is closed")
        self._transport.pool.get()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session the client created (waits for its connections to close).

        Idempotent. A caller-owned session stays open; a ``with_options`` copy leaves the
        shared session to the original client.
        """
        if self._closed:
            return
        self._closed = True
        if self._owner:
            await self._transport.pool.aclose()

    def __del__(self) -> None:
        # No I/O here: only tell the developer.
        if getattr(self, "_owner", False) and not getattr(self, "_closed", True):
            transport = self.__dict__.get("_transport")
            if transport is not None and transport.pool.needs_close:
                warnings.warn(
                    f"unclosed {self!r}: use 'async with Iris360Client(...)' or "
                    "'await client.aclose()'",
                    ResourceWarning,
                    stacklevel=2,
                    source=self,
                )

    # -- resource namespaces ------------------------------------------------------------------

    @functools.cached_property
    def devices(self) -> DevicesResource:
        """Devices: paginate, bulk commands, file import."""
        from .resources.devices import DevicesResource

        return DevicesResource(self)

    @functools.cached_property
    def entities(self) -> EntitiesResource:
        """Entities: paginate, latest values."""
        from .resources.entities import EntitiesResource

        return EntitiesResource(self)

    @functools.cached_property
    def timeseries(self) -> TimeseriesResource:
        """Time series: raw requests and the fan-out query helper."""
        from .resources.timeseries import TimeseriesResource

        return TimeseriesResource(self)

    @functools.cached_property
    def connectors(self) -> ConnectorsResource:
        """Connectors (``.out``: outbound connectors)."""
        from .resources.connectors import ConnectorsResource

        return ConnectorsResource(self)

    @functools.cached_property
    def auth(self) -> AuthResource:
        """Explicit login/refresh (normally automatic)."""
        from .resources.auth import AuthResource

        return AuthResource(self)
