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
)
from ._http_pool import HTTPPool
from ._logging import get_logger
from ._profiles import resolve_settings
from ._retry import Clock, RateGate, RetryBudget, RetryPolicy, SystemClock
from ._transport import Transport, TransportStats
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
_SETTINGS = frozenset(
    {
        "base_url", "username", "password", "token", "refresh_token", "tenant", "scope",
        "timeout", "timeseries_timeout", "max_retries", "connection_limit", "user_agent",
        "paths", "session", "verify_ssl", "max_response_bytes", "refresh_margin",
        "retry_policy", "proxy", "trust_env",
    }
)
_WITH_OPTIONS = _SETTINGS
_NONE_MEANS = frozenset(
    {"timeout", "timeseries_timeout", "max_response_bytes", "verify_ssl", "trust_env"}
)  # settings for which an explicit None is a value (or refused by ClientConfig)
_POOL_SETTINGS = frozenset({"connection_limit", "session", "verify_ssl", "trust_env"})
_TOKEN_SETTINGS = frozenset(
    {"base_url", "username", "password", "token", "refresh_token", "refresh_margin"}
)
_PATH_SETTINGS = {
    "login_path": "login",
    "refresh_path": "refresh",
    "import_file_path": "import_file",
    "connector_models_path": "connector_models",
}


def _config_values(resolved: Mapping[str, Any], paths: EndpointPaths | None) -> dict[str, Any]:
    """:class:`ClientConfig` keywords from the resolved settings."""
    values = {key: value for key, value in resolved.items() if key != "password_command"}
    if "base_url" not in values:
        raise ValueError(
            "base_url is required (pass base_url= or set IRIS360_BASE_URL, or use a profile "
            "with a base_url)"
        )
    given_paths = {attr: values.pop(key) for key, attr in _PATH_SETTINGS.items() if key in values}
    if paths is not None and not isinstance(paths, EndpointPaths):
        raise TypeError("paths must be an EndpointPaths")
    values["paths"] = paths if paths is not None else EndpointPaths(**given_paths)
    values.setdefault("user_agent", DEFAULT_USER_AGENT)
    for key in ("timeout", "timeseries_timeout"):
        if key in values:
            values[key] = Timeout.coerce(values[key])
    return values


def _retry_policy(
    config: ClientConfig, retry_policy: RetryPolicy | None, max_retries_given: bool
) -> tuple[ClientConfig, RetryPolicy]:
    """The policy (``max_retries`` given anywhere overrides the policy's own) and the
    configuration with the policy's ``max_retries``."""
    if retry_policy is None:
        return config, RetryPolicy(config.max_retries)
    if not isinstance(retry_policy, RetryPolicy):
        raise TypeError(f"retry_policy must be a RetryPolicy, not {type(retry_policy).__name__}")
    if max_retries_given:
        return config, retry_policy.replace(max_retries=config.max_retries)
    return config.replace(max_retries=retry_policy.max_retries), retry_policy


def _pool(config: ClientConfig, session: aiohttp.ClientSession | None) -> HTTPPool:
    return HTTPPool(
        session=session,
        connection_limit=config.connection_limit,
        verify_ssl=config.verify_ssl,
        trust_env=config.trust_env,
    )


@dataclass(frozen=True)
class _Hooks:
    """What tests replace in a client (see :meth:`Iris360Client._with_hooks`)."""

    clock: Clock | None = None
    random: Callable[[], float] | None = None
    environ: Mapping[str, str] | None = None


_HOOKS: ContextVar[_Hooks | None] = ContextVar("iris360_client_hooks", default=None)


class Iris360Client:
    """Asynchronous client of the IRIS360 public API.

    Every setting can also come from an ``IRIS360_*`` environment variable
    (``IRIS360_BASE_URL``, ``IRIS360_USERNAME``, ``IRIS360_PASSWORD``, ``IRIS360_TOKEN``,
    ``IRIS360_REFRESH_TOKEN``, ``IRIS360_TENANT``, ``IRIS360_SCOPE``, ``IRIS360_TIMEOUT``,
    ``IRIS360_TIMESERIES_TIMEOUT``, ``IRIS360_MAX_RETRIES``, ``IRIS360_CONNECTION_LIMIT``,
    ``IRIS360_MAX_RESPONSE_BYTES``, ``IRIS360_USER_AGENT``, ``IRIS360_REFRESH_MARGIN``,
    ``IRIS360_PROXY``, ``IRIS360_TRUST_ENV``, ``IRIS360_LOGIN_PATH``,
    ``IRIS360_REFRESH_PATH``, ``IRIS360_IMPORT_FILE_PATH``,
    ``IRIS360_CONNECTOR_MODELS_PATH``) or from a profile of the configuration file
    (``~/.config/iris360/config.toml``, see docs/configuration.md). Precedence: arguments,
    then the environment, then the profile. Of the two ways to authenticate (a token, a
    login), the one from the highest source is used: ``token=`` is not disturbed by an
    ``IRIS360_PASSWORD`` or a profile's login, and ``username=``/``password=`` win over an
    ``IRIS360_TOKEN``; both ways from one source are both kept.

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
        proxy: an HTTP proxy for every request, e.g. ``"http://proxy.example.com:3128"``
            (``user:password@`` allowed, never shown); also with a caller-owned session.
        trust_env: let a session created by the client take its proxy from ``HTTP_PROXY``/
            ``HTTPS_PROXY``/``NO_PROXY`` (default ``False``); ``proxy=`` wins over them.
        profile: the profile of the configuration file to read settings from (default:
            ``IRIS360_PROFILE``, else the file's ``default_profile``, else ``default`` if
            there is one).

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
        verify_ssl: bool | NotGiven = NOT_GIVEN,
        max_response_bytes: int | NotGiven | None = NOT_GIVEN,
        refresh_margin: float | None = None,
        retry_policy: RetryPolicy | None = None,
        proxy: str | None = None,
        trust_env: bool | NotGiven = NOT_GIVEN,
        profile: str | None = None,
    ) -> None:
        self._owner = False  # set first: __del__ must work even if validation fails
        self._closed = False
        hooks = _HOOKS.get() or _Hooks()
        given = {key: value for key, value in locals().items() if key in _SETTINGS}
        arguments = {
            key: value
            for key, value in given.items()
            if not isinstance(value, NotGiven) and (value is not None or key in _NONE_MEANS)
            and key not in ("session", "retry_policy", "paths")
        }
        if profile is not None and not isinstance(profile, str):
            raise TypeError(f"profile must be a profile name, not {type(profile).__name__}")
        resolved = resolve_settings(arguments, environ=hooks.environ, profile=profile)
        values = _config_values(resolved.values, paths)
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError("session must be an aiohttp.ClientSession")
        config = ClientConfig(**values)
        if not config.verify_ssl and _log.isEnabledFor(logging.WARNING):
            _log.warning(
                "TLS certificate verification is off for %s (verify_ssl=False)",
                config.base_url,
            )
        clock: Clock = hooks.clock if hooks.clock is not None else SystemClock()
        config, policy = _retry_policy(config, retry_policy, "max_retries" in values)
        if hooks.random is not None:
            policy = policy.replace(random=hooks.random)
        tokens = TokenManager(config, clock=clock)
        transport = Transport(
            config,
            pool=_pool(config, session),
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
        """A copy with some settings changed; it accepts every setting of the constructor
        (except ``profile``) and shares what those settings leave unchanged:

        * request settings (``timeout``, ``timeseries_timeout``, ``max_retries``,
          ``retry_policy``, ``tenant``, ``scope``, ``user_agent``, ``max_response_bytes``,
          ``proxy``, the import and connector ``paths``): the copy shares the session and
          connection pool, the tokens, the retry budget and the 429 gate;
        * credentials (``username``/``password``, ``token``, ``refresh_token``,
          ``refresh_margin``, the login/refresh ``paths``): a token manager of its own;
          ``base_url`` also gives it its own 429 gate and retry budget;
        * pool settings (``connection_limit``, ``session``, ``verify_ssl``, ``trust_env``): a
          connection pool of its own; the copy then owns that pool's session and must be
          closed itself (``async with``).

        A copy that shares the pool does not own it: close the original client.

        Example:
            >>> patient = iris.with_options(timeout=300, max_retries=6)
            >>> async with iris.with_options(connection_limit=5) as gentle: ...
        """
        unknown = set(overrides) - _WITH_OPTIONS
        if unknown:
            raise TypeError(
                f"with_options() does not accept {', '.join(sorted(unknown))}; "
                f"allowed: {', '.join(sorted(_WITH_OPTIONS))}"
            )
        changes = dict(overrides)
        session = changes.pop("session", None)
        retry_policy = changes.pop("retry_policy", None)
        if "username" in changes and "password" not in changes:
            raise ValueError("with_options(username=...) needs password= too")
        for key in ("timeout", "timeseries_timeout"):
            if key in changes:
                changes[key] = Timeout.coerce(changes[key])
        if "paths" in changes and not isinstance(changes["paths"], EndpointPaths):
            raise TypeError("paths must be an EndpointPaths")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError("session must be an aiohttp.ClientSession")
        old = self._config
        config = old.replace(**changes)
        transport = self._transport
        if retry_policy is None:
            policy = transport.policy.replace(max_retries=config.max_retries)
        else:
            config, policy = _retry_policy(config, retry_policy, "max_retries" in changes)
        pool = None
        if set(overrides) & _POOL_SETTINGS:
            if session is None and not transport.pool.owned:
                session = transport.pool.session  # keep the caller's session, own limits
            pool = _pool(config, session)
        tokens = None
        new_login = (old.paths.login, old.paths.refresh) != (
            config.paths.login, config.paths.refresh
        )
        if set(overrides) & _TOKEN_SETTINGS or new_login:
            tokens = TokenManager(config, clock=transport.clock)
        clone = object.__new__(type(self))
        clone._owner = pool is not None
        clone._closed = False
        clone._config = config
        clone._transport = transport.derive(
            config, policy, pool=pool, tokens=tokens, own_limits="base_url" in overrides
        )
        if tokens is not None:
            tokens.bind(clone._transport.auth_send)
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
