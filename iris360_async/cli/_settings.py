"""Connection settings of the command line: flags first, then ``IRIS360_*`` variables, then
the profile (``--profile``/``IRIS360_PROFILE``) of the config file, then a hidden password
prompt."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._config import EndpointPaths, Timeout, settings_from_env
from .._profiles import Profile, load_profile, resolve_settings, run_password_command
from ._errors import CliError

__all__ = ["DEFAULT_TIMEOUTS", "ConnectionSettings", "resolve_connection"]

DEFAULT_TIMEOUTS = {"timeseries.get": 240.0}
"""Per command, the time one attempt may take without ``--timeout`` (others: 120 s)."""
_DEFAULT_TIMEOUT = 120.0
_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to connect. Secrets never show in ``repr``."""

    base_url: str
    base_url_source: str = "--base-url"
    """Where ``base_url`` came from: ``"--base-url"``, ``"IRIS360_BASE_URL"`` or
    ``"profile NAME (PATH)"``."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    tenant: str | None = None
    scope: str | None = None
    timeout: float | None = None
    timeout_source: str | None = None
    """Where ``timeout`` came from: ``"--timeout"``, ``"IRIS360_TIMEOUT"`` or
    ``"profile NAME (PATH)"``."""
    client_options: dict[str, Any] = field(default_factory=dict)
    """Further client settings from ``IRIS360_*`` variables or the profile (``proxy``,
    ``max_retries``, ``connection_limit`` …)."""

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.password, self.token)

    def server_origin(self) -> str:
        """The server URL and where it came from, for messages:
        ``https://iris.example.com (IRIS360_BASE_URL)``."""
        return f"{self.base_url} ({self.base_url_source})"

    def attempt_timeout(self, command: str) -> float:
        """Seconds one HTTP attempt of ``command`` may take: ``--timeout`` or the default."""
        if self.timeout is not None:
            return self.timeout
        return DEFAULT_TIMEOUTS.get(command, _DEFAULT_TIMEOUT)

    def client_timeout(self, command: str) -> Timeout:
        """The client's timeouts: the whole attempt and the wait for data both limited by
        :meth:`attempt_timeout` (so raising ``--timeout`` is enough), connecting by 10 s."""
        seconds = self.attempt_timeout(command)
        return Timeout(connect=min(_CONNECT_TIMEOUT, seconds), read=seconds, total=seconds)

    def timeout_origin(self) -> str:
        """How the attempt timeout was chosen, for messages: ``--timeout 30``,
        ``IRIS360_TIMEOUT=30`` or ``the default``."""
        if self.timeout is None:
            return "the default"
        if self.timeout_source == "IRIS360_TIMEOUT":
            return f"IRIS360_TIMEOUT={self.timeout:g}"
        if self.timeout_source is not None and self.timeout_source.startswith("profile "):
            return f"timeout = {self.timeout:g} in {self.timeout_source}"
        return f"--timeout {self.timeout:g}"


def resolve_connection(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    *,
    interactive: bool,
    prompt: Callable[[str], str],
) -> ConnectionSettings:
    """Merge flags and environment; ask for a missing password when ``interactive``.

    Args:
        args: parsed arguments (``base_url``, ``username``, ``token``, ``tenant``, ``scope``,
            ``timeout``; any may be ``None``).
        environ: the environment (``IRIS360_*`` variables).
        interactive: whether a password may be asked for (stdin is a terminal).
        prompt: reads a password without echo (``getpass.getpass``).

    Raises:
        CliError: no server URL, no credentials, or a bad ``IRIS360_TIMEOUT``.
    """
    env = settings_from_env(environ)
    try:
        profile = load_profile(getattr(args, "profile", None), environ)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    layer = profile.values if profile is not None else {}

    def pick(name: str) -> str | None:
        value = getattr(args, name, None)
        if value is not None and value != "":
            return str(value)
        found = env.get(name, layer.get(name))
        return found if isinstance(found, str) else None

    base_url = pick("base_url")
    if getattr(args, "base_url", None):
        base_url_source = "--base-url"
    elif "base_url" in env or profile is None:
        base_url_source = "IRIS360_BASE_URL"
    else:
        base_url_source = profile.origin
    if base_url is None:
        raise CliError(
            "no server: pass --base-url, set IRIS360_BASE_URL or choose a profile with "
            "--profile (or try 'iris360 demo', which needs none)"
        )
    if not base_url.startswith(("http://", "https://")):
        raise CliError(f"--base-url must start with http:// or https:// (got {base_url!r})")
    username = pick("username")
    token = pick("token")
    password = env.get("password", layer.get("password"))
    if username is not None and password is None and profile is not None:
        password = _password_from_command(profile)
    if username is not None and password is None and token is None:
        if not interactive:
            raise CliError(
                f"no password for {username}: set IRIS360_PASSWORD (no terminal to prompt on)"
            )
        password = prompt(f"Password for {username} at {base_url}: ")
        if not password:
            raise CliError("no password given")
    if username is None and token is None:
        raise CliError(
            "no credentials: pass --username (password from IRIS360_PASSWORD or a prompt) "
            "or --token, or set IRIS360_USERNAME / IRIS360_TOKEN"
        )
    if username is None:
        password = None  # a password without a username cannot be used
    elif password is None:
        username = None  # token only

    timeout: float | None = getattr(args, "timeout", None)
    source = None if timeout is None else "--timeout"
    if timeout is None and "timeout" in env:
        source = "IRIS360_TIMEOUT"
        try:
            timeout = float(env["timeout"])
        except ValueError:
            raise CliError(f"IRIS360_TIMEOUT is not a number: {env['timeout']!r}") from None
        if timeout <= 0:
            raise CliError("IRIS360_TIMEOUT must be > 0 seconds")
    profile_timeout = layer.get("timeout")
    if timeout is None and isinstance(profile_timeout, Timeout) and profile_timeout.total:
        assert profile is not None
        timeout, source = profile_timeout.total, profile.origin
    return ConnectionSettings(
        base_url=base_url,
        base_url_source=base_url_source,
        username=username,
        password=password,
        token=token,
        tenant=pick("tenant"),
        scope=pick("scope"),
        timeout=timeout,
        timeout_source=source,
        client_options=_client_options(environ, profile),
    )


_CLIENT_OPTIONS = (
    "max_retries", "connection_limit", "user_agent", "max_response_bytes", "refresh_margin",
    "proxy", "trust_env", "verify_ssl",
)
_PATHS = {
    "login_path": "login",
    "refresh_path": "refresh",
    "import_file_path": "import_file",
    "connector_models_path": "connector_models",
}


def _password_from_command(profile: Profile) -> str | None:
    if "password_command" not in profile.values:
        return None
    try:
        return run_password_command(profile)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _client_options(environ: Mapping[str, str], profile: Profile | None) -> dict[str, Any]:
    """The client settings besides connection, tenancy and timeouts: from ``IRIS360_*``
    variables, else the profile."""
    try:
        values = resolve_settings({}, environ=environ, profile=profile, run_commands=False).values
    except ValueError as exc:
        raise CliError(str(exc)) from None
    options = {key: values[key] for key in _CLIENT_OPTIONS if key in values}
    paths = {attr: values[key] for key, attr in _PATHS.items() if key in values}
    if paths:
        options["paths"] = EndpointPaths(**paths)
    return options
