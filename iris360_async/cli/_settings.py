"""Connection settings of the command line: flags first, then ``IRIS360_*`` variables, then
the profile (``--profile``/``IRIS360_PROFILE``) of the config file, then a hidden password
prompt. The token or login of the highest of these sources is used (see
docs/configuration.md#which-credentials-are-used)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._config import EndpointPaths, Timeout
from .._profiles import resolve_settings
from ._errors import CliError

__all__ = [
    "DEFAULT_TIMEOUTS", "SETTING_FLAGS", "ConnectionSettings", "flag_label", "resolve_connection",
]

DEFAULT_TIMEOUTS = {"timeseries.get": 240.0}
"""Per command, the time one attempt may take without ``--timeout`` (others: 120 s)."""
_DEFAULT_TIMEOUT = 120.0
SETTING_FLAGS = ("base_url", "username", "token", "tenant", "scope", "timeout")
"""The settings the global connection and tenancy flags give."""
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
    """Merge flags, environment and profile (:func:`resolve_settings`: the token or login of
    the highest source is used); ask for a missing password when ``interactive``.

    Args:
        args: parsed arguments (``base_url``, ``username``, ``token``, ``tenant``, ``scope``,
            ``timeout``, ``profile``; any may be ``None``).
        environ: the environment (``IRIS360_*`` variables).
        interactive: whether a password may be asked for (stdin is a terminal).
        prompt: reads a password without echo (``getpass.getpass``).

    Raises:
        CliError: no server URL, no credentials, a half pair of username and password, or a
            bad ``IRIS360_*`` variable or profile.
    """
    flags = {name: getattr(args, name, None) for name in SETTING_FLAGS}
    flags = {name: value for name, value in flags.items() if value is not None and value != ""}

    def ask(values: Mapping[str, Any]) -> str:
        base_url = _server(values)
        if not interactive:
            raise CliError(
                f"no password for {values['username']}: set IRIS360_PASSWORD (no terminal to "
                "prompt on)"
            )
        password = prompt(f"Password for {values['username']} at {base_url}: ")
        if not password:
            raise CliError("no password given")
        return password

    try:
        resolved = resolve_settings(
            flags, environ=environ, profile=getattr(args, "profile", None),
            ask_password=ask, label=flag_label,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    values, sources = resolved.values, resolved.sources
    base_url = _server(values)
    if resolved.auth == "none":
        raise CliError(
            "no credentials: pass --username (password from IRIS360_PASSWORD or a prompt) "
            "or --token, or set IRIS360_USERNAME / IRIS360_TOKEN"
        )
    timeout, source = _timeout(values.get("timeout"), sources.get("timeout"))
    return ConnectionSettings(
        base_url=base_url,
        base_url_source=flag_label("base_url", sources["base_url"]),
        username=values.get("username"),
        password=values.get("password"),
        token=values.get("token"),
        tenant=values.get("tenant"),
        scope=values.get("scope"),
        timeout=timeout,
        timeout_source=source,
        client_options=_client_options(values),
    )


def flag_label(name: str, source: str) -> str:
    """Where a setting came from, as the user wrote it: ``--base-url``, ``IRIS360_TOKEN``,
    ``profile NAME (PATH)``."""
    return "--" + name.replace("_", "-") if source == "argument" else source


def _server(values: Mapping[str, Any]) -> str:
    base_url = values.get("base_url")
    if base_url is None:
        raise CliError(
            "no server: pass --base-url, set IRIS360_BASE_URL or choose a profile with "
            "--profile (or try 'iris360 demo', which needs none)"
        )
    if not str(base_url).startswith(("http://", "https://")):
        raise CliError(f"--base-url must start with http:// or https:// (got {base_url!r})")
    return str(base_url)


def _timeout(value: Any, source: str | None) -> tuple[float | None, str | None]:
    """The attempt timeout in seconds and where it came from (``--timeout``,
    ``IRIS360_TIMEOUT`` or the profile); a table's ``total``."""
    if isinstance(value, Timeout):
        value = value.total
    if value is None or source is None:
        return None, None
    return float(value), flag_label("timeout", source)


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


def _client_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The client settings besides connection, tenancy and timeouts (from ``IRIS360_*``
    variables or the profile)."""
    options = {key: values[key] for key in _CLIENT_OPTIONS if key in values}
    paths = {attr: values[key] for key, attr in _PATHS.items() if key in values}
    if paths:
        options["paths"] = EndpointPaths(**paths)
    return options
