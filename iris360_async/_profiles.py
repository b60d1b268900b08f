"""Where each client setting comes from: arguments, then ``IRIS360_*`` variables, then the
selected profile of the configuration file, then the default.

The file is ``$XDG_CONFIG_HOME/iris360/config.toml`` (``~/.config/iris360/config.toml``
without ``XDG_CONFIG_HOME``; ``IRIS360_CONFIG_FILE`` names another one)::

    default_profile = "prod"            # optional; else a profile named "default", if any

    [profiles.prod]
    base_url = "https://iris.example.com"
    username = "ops@example.com"
    password_command = "pass show iris360/prod"   # or IRIS360_PASSWORD; never required here
    tenant = "libelium"
    scope = "/"
    timeout = 30                        # or a table: {connect = 10, read = 60, total = 120}

The profile is ``profile=``, else ``IRIS360_PROFILE``, else the file's default. Reading the
file is synchronous and happens once, when a client is built.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ._config import ENV_PREFIX, ClientConfig, EndpointPaths, Timeout, hide_credentials
from ._credentials import AuthChoice, Ignored, Label, argument_label, choose_auth, describe
from .errors import condense

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "SECRET_SETTINGS",
    "SETTINGS",
    "Profile",
    "ResolvedSettings",
    "config_file",
    "load_profile",
    "resolve_settings",
]

SECRET_SETTINGS = frozenset({"password", "token", "refresh_token"})
"""Settings shown as ``***`` and whose presence in a readable file is warned about."""

_PATHS = {
    "login_path": "login",
    "refresh_path": "refresh",
    "import_file_path": "import_file",
    "connector_models_path": "connector_models",
}
_PASSWORD_COMMAND_SECONDS = 60.0


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, not {type(value).__name__}")
    return value


def _timeout(value: Any) -> Timeout:
    if isinstance(value, str):
        value = float(value)
    if isinstance(value, dict):
        unknown = set(value) - {"connect", "read", "total", "deadline"}
        if unknown:
            raise ValueError(f"unknown timeout field(s): {', '.join(sorted(unknown))}")
        return Timeout(**value)
    return Timeout.coerce(value)


def _count(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, str):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be an integer >= {minimum}")
        return value

    return parse


def _byte_limit(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lower() == "none":
        return None
    return _count(1)(value)


def _margin(value: Any) -> float:
    if isinstance(value, str):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError("must be a number of seconds >= 0")
    return float(value)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


SETTINGS: dict[str, Callable[[Any], Any]] = {
    "base_url": _text,
    "username": _text,
    "password": _text,
    "token": _text,
    "refresh_token": _text,
    "tenant": _text,
    "scope": _text,
    "timeout": _timeout,
    "timeseries_timeout": _timeout,
    "max_retries": _count(0),
    "connection_limit": _count(1),
    "max_response_bytes": _byte_limit,
    "user_agent": _text,
    "refresh_margin": _margin,
    "proxy": _text,
    "trust_env": _flag,
    **dict.fromkeys(_PATHS, _text),
}
"""Every setting read from the environment or a profile, with its parser (which accepts a
string, as an environment variable gives it, or the TOML value)."""
_PROFILE_ONLY: dict[str, Callable[[Any], Any]] = {
    "verify_ssl": _flag,
    "password_command": lambda value: value,
}


@dataclass(frozen=True)
class Profile:
    """One profile of the configuration file.

    Attributes:
        name: the profile's name.
        path: the file it is in.
        values: its settings, parsed (``password_command`` kept as written).
    """

    name: str
    path: Path
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        """``profile NAME (PATH)``, for messages and ``config show``."""
        return f"profile {self.name} ({self.path})"


@dataclass(frozen=True)
class ResolvedSettings:
    """The settings that were given somewhere, and where each came from.

    Attributes:
        values: setting name -> parsed value (only those given somewhere).
        sources: setting name -> ``argument``, ``IRIS360_<NAME>``, ``profile NAME (PATH)`` or
            ``password_command of profile NAME``.
        profile: the profile used, if any.
        choice: the way of authenticating, and the credentials left out.
    """

    values: dict[str, Any]
    sources: dict[str, str]
    profile: Profile | None = None
    choice: AuthChoice = field(default_factory=lambda: AuthChoice("none", {}))

    @property
    def auth(self) -> str:
        """The way of authenticating: ``token``, ``login``, ``token, then login`` or
        ``none``."""
        return self.choice.method

    @property
    def ignored(self) -> dict[str, Ignored]:
        """The credentials given somewhere but not used, and why."""
        return self.choice.ignored

    def rows(self, label: Label = lambda _, source: source) -> list[tuple[str, str, str]]:
        """``(setting, value, source)`` for every client setting, secrets as ``***``, and
        ``auth`` (the way of authenticating and its sources) before them; credentials that
        are not used say so in their source; settings given nowhere show their default.
        ``label`` names a source (``(setting, source) -> text``)."""
        defaults = {f.name: f for f in fields(ClientConfig)}
        out: list[tuple[str, str, str]] = [
            ("auth", *describe(self.choice, self.values, self.sources, label))
        ]
        names = [*SETTINGS, "verify_ssl"]
        if "password_command" in self.values:
            names.insert(names.index("password") + 1, "password_command")
        for name in names:
            ignored = self.ignored.get(name)
            if name in self.values or ignored is not None:
                value = self.values[name] if ignored is None else ignored.value
                shown = "***" if name in SECRET_SETTINGS else _show(value)
                if name == "proxy":
                    shown = hide_credentials(shown) or shown
                if ignored is None:
                    source = label(name, self.sources[name])
                else:
                    why = ignored.explain(self.sources, label)
                    source = f"{label(name, ignored.source)} (ignored: {why})"
                out.append((name, shown, source))
            elif name in defaults:
                spec = defaults[name]
                default = spec.default_factory() if callable(spec.default_factory) else spec.default
                if name == "user_agent":
                    continue  # the client's own default is set by the client
                out.append((name, _show(default), "default"))
            elif name in _PATHS:
                out.append((name, getattr(EndpointPaths(), _PATHS[name]), "default"))
        return out


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Timeout):
        parts = [f"{f.name}={getattr(value, f.name)}" for f in fields(value)]
        return ", ".join(parts)
    if isinstance(value, list):
        return shlex.join(str(v) for v in value)
    return str(value)


def config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The configuration file's path (it may not exist): ``IRIS360_CONFIG_FILE``, else
    ``$XDG_CONFIG_HOME/iris360/config.toml``, else ``$HOME/.config/iris360/config.toml``;
    ``None`` when neither variable is set."""
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_PREFIX + "CONFIG_FILE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "iris360" / "config.toml"
    home = env.get("HOME")
    return Path(home) / ".config" / "iris360" / "config.toml" if home else None


def load_profile(name: str | None, environ: Mapping[str, str] | None = None) -> Profile | None:
    """The profile ``name`` (else ``IRIS360_PROFILE``, else the file's default) of the
    configuration file; ``None`` when none is asked for and the file has no default.

    Raises:
        ValueError: the profile asked for does not exist, the file is not valid TOML, or a
            setting is unknown or not valid (naming the file, the profile and the setting).
    """
    env = os.environ if environ is None else environ
    if name is None:
        name = env.get(ENV_PREFIX + "PROFILE") or None
    path = config_file(env)
    if path is None or not path.is_file():
        if name is not None:
            where = path if path is not None else "$XDG_CONFIG_HOME/iris360/config.toml"
            raise ValueError(f"profile {name!r} asked for, but there is no config file at {where}")
        return None
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ValueError(f"{path}: 'profiles' must hold tables ([profiles.NAME])")
    if name is None:
        name = document.get("default_profile")
        if name is None and "default" not in profiles:
            return None
        name = "default" if name is None else str(name)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ValueError(f"no profile {name!r} in {path} (profiles: {known})")
    profile = Profile(name, path, _parse_profile(profiles[name], name, path))
    _warn_if_readable(profile)
    return profile


def _parse_profile(raw: Mapping[str, Any], name: str, path: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        parser = _PROFILE_ONLY.get(key) or SETTINGS.get(key)
        if parser is None:
            allowed = sorted((*SETTINGS, *_PROFILE_ONLY))
            raise ValueError(
                f"{path}, profile {name!r}: unknown setting {key!r} (known: {', '.join(allowed)})"
            )
        try:
            values[key] = parser(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}, profile {name!r}: {key} {exc}") from None
    command = values.get("password_command")
    is_list = isinstance(command, list) and all(isinstance(c, str) for c in command)
    if command is not None and not (isinstance(command, str) or is_list):
        raise ValueError(f"{path}, profile {name!r}: password_command must be a string or a list")
    return values


def _warn_if_readable(profile: Profile) -> None:
    secrets = sorted(SECRET_SETTINGS & set(profile.values))
    if not secrets or os.name != "posix":
        return
    mode = stat.S_IMODE(profile.path.stat().st_mode)
    if mode & 0o077:
        warnings.warn(
            f"{profile.path} holds a {'/'.join(secrets)} (profile {profile.name}) and other "
            f"users may read it (mode {mode:o}): run 'chmod 600 {profile.path}', or take the "
            "secret from IRIS360_PASSWORD or a password_command",
            UserWarning,
            stacklevel=4,
        )


def run_password_command(profile: Profile) -> str:
    """The password printed by the profile's ``password_command`` (its first line).

    Raises:
        ValueError: the command could not run, failed or printed nothing.
    """
    command = profile.values["password_command"]
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    label = f"password_command of profile {profile.name}"
    if not argv:
        raise ValueError(f"{label} is empty")
    try:
        done = subprocess.run(  # the user's own command, no shell
            argv, capture_output=True, text=True, timeout=_PASSWORD_COMMAND_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"{label} could not run: {type(exc).__name__}: {exc}") from None
    password = done.stdout.splitlines()[0] if done.stdout.strip() else ""
    if done.returncode != 0:
        detail = condense(done.stderr, secrets=(password,) if password else ())
        raise ValueError(f"{label} failed (exit status {done.returncode}): {detail}")
    if not password:
        raise ValueError(f"{label} printed no password")
    return password


def resolve_settings(
    arguments: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    profile: str | Profile | None = None,
    run_commands: bool = True,
    ask_password: Callable[[Mapping[str, Any]], str | None] | None = None,
    label: Label = argument_label,
) -> ResolvedSettings:
    """Merge ``arguments`` (the settings given to the call), the ``IRIS360_*`` variables and
    the profile, in that order of precedence, then choose the way of authenticating (see
    :mod:`iris360_async._credentials`): the token or the login of the highest source; the
    other way's settings are left out (:attr:`ResolvedSettings.ignored`). A login's missing
    password comes from the profile's ``password_command`` (run when ``run_commands``), else
    from ``ask_password`` (given the settings so far; not asked when a token is used too).
    ``profile``: a name, or a profile already loaded (:func:`load_profile`); ``label``
    names a source in messages.

    Raises:
        ValueError: a variable or profile setting that is not valid, a profile that cannot
            be used (see :func:`load_profile`, :func:`run_password_command`), or a half pair
            of username and password that cannot be used.
    """
    env = os.environ if environ is None else environ
    chosen = profile if isinstance(profile, Profile) else load_profile(profile, env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, value in arguments.items():
        values[key], sources[key] = value, "argument"
    for key, parse in SETTINGS.items():
        if key in values:
            continue
        variable = ENV_PREFIX + key.upper()
        raw = env.get(variable)
        if raw is not None and raw != "":
            try:
                values[key] = parse(raw)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{variable}={raw!r} is not valid: {exc}") from None
            sources[key] = variable
        elif chosen is not None and key in chosen.values:
            values[key], sources[key] = chosen.values[key], chosen.origin
    if chosen is not None:
        for key in _PROFILE_ONLY:
            if key in chosen.values and key not in values:
                values[key], sources[key] = chosen.values[key], chosen.origin

    def complete_password(with_token: bool) -> tuple[str, str] | None:
        if chosen is not None and "password_command" in chosen.values:
            password = run_password_command(chosen) if run_commands else "***"
            return password, f"password_command of profile {chosen.name}"
        if ask_password is None or with_token:
            return None
        typed = ask_password(values)
        return (typed, "prompt") if typed else None

    choice = choose_auth(values, sources, complete_password=complete_password, label=label)
    return ResolvedSettings(values, sources, chosen, choice)
