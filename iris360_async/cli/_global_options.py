"""The global options of ``iris360`` (connection, tenancy, output, debug) and which command
uses which: a command shows and accepts only those, and says why it refuses the others."""

from __future__ import annotations

import argparse
from typing import Any

from ._argparse import positive_float

__all__ = [
    "CONNECTION_OPTIONS",
    "GLOBAL_OPTIONS",
    "GLOBAL_OPTIONS_USED",
    "TENANCY_OPTIONS",
    "add_global_options",
    "unused_global_option",
    "why_not",
]

CONNECTION_OPTIONS = ("--profile", "--base-url", "--username", "--token", "--timeout")
TENANCY_OPTIONS = ("--tenant", "--scope")
GLOBAL_OPTIONS = (*CONNECTION_OPTIONS, *TENANCY_OPTIONS, "--format", "--debug")
_LISTS_ALL = (*CONNECTION_OPTIONS, "--format", "--debug")

GLOBAL_OPTIONS_USED: dict[str, tuple[str, ...]] = {
    "demo": ("--format", "--debug"),
    "emulator": ("--debug",),
    "completion": ("--debug",),
    "devices.list": _LISTS_ALL,
    "devices.send-commands": GLOBAL_OPTIONS,
    "devices.reconcile": GLOBAL_OPTIONS,
    "devices.track": GLOBAL_OPTIONS,
    "entities.list": GLOBAL_OPTIONS,
    "entities.latest": GLOBAL_OPTIONS,
    "timeseries.get": GLOBAL_OPTIONS,
    "connectors.list": _LISTS_ALL,
    "connectors.get": _LISTS_ALL,
    "config.show": GLOBAL_OPTIONS,
}
"""The global options each command uses; it neither shows nor accepts the others."""


def why_not(command: str, option: str) -> str:
    """Why ``iris360 <command>`` does not take the global ``option``."""
    name = "iris360 " + command.replace(".", " ")
    if option in TENANCY_OPTIONS and command.startswith("devices."):
        return (
            "the device list is not filtered by tenant or scope (the server has no such "
            "filter: it lists every device your user may access); to list one tenant's "
            "devices, list their main entities: iris360 entities list --tenant TENANT "
            "--scope SCOPE --type Device"
        )
    if option in TENANCY_OPTIONS and command.startswith("connectors."):
        return (
            "outbound connectors are not filtered by tenant or scope (the server lists every "
            "connector your user may access)"
        )
    if option in CONNECTION_OPTIONS + TENANCY_OPTIONS and command in ("demo", "emulator"):
        return f"{name} runs its own emulator and connects to no server"
    return f"{name} does not use it"


def unused_global_option(args: argparse.Namespace) -> str | None:
    """The complaint about a global option given before a command that does not use it
    (``iris360 --tenant x devices list``), or ``None``."""
    command = getattr(args, "command", None)
    used = GLOBAL_OPTIONS_USED.get(command or "", GLOBAL_OPTIONS)
    for option in GLOBAL_OPTIONS:
        value = getattr(args, option[2:].replace("-", "_"), None)
        if option not in used and value is not None and value is not False:
            return f"{option} is not accepted here: {why_not(str(command), option)}"
    return None


_OPTIONS: dict[str, dict[str, Any]] = {
    "--profile": {
        "metavar": "NAME",
        "help": "profile of the config file (~/.config/iris360/config.toml) to take settings "
        "from, env IRIS360_PROFILE; flags and IRIS360_* variables win over it",
    },
    "--base-url": {"metavar": "URL", "help": "server URL (scheme and host), env IRIS360_BASE_URL"},
    "--username": {
        "metavar": "NAME",
        "help": "login name, env IRIS360_USERNAME (password: IRIS360_PASSWORD or a prompt)",
    },
    "--token": {"metavar": "TOKEN", "help": "access token instead of a login, env IRIS360_TOKEN"},
    "--tenant": {
        "metavar": "TENANT",
        "help": "tenant (FIWARE service) of the call, env IRIS360_TENANT",
    },
    "--scope": {"metavar": "SCOPE", "help": "scope (service path) of the call, env IRIS360_SCOPE"},
    "--timeout": {
        "metavar": "SECONDS",
        "type": positive_float,
        "help": "how long one HTTP attempt may take, in seconds (default 120), env "
        "IRIS360_TIMEOUT",
    },
    "--format": {
        "choices": ("table", "json", "csv"),
        "help": "output format (default: table on a terminal, JSON lines otherwise)",
    },
    "--debug": {
        "action": "store_true",
        "default": False,
        "help": "show tracebacks and debug logs on stderr",
    },
}
"""``add_argument`` settings of each global option (``default``: ``None`` unless given)."""


def add_global_options(
    parser: argparse.ArgumentParser, *, suppress: bool, only: tuple[str, ...] = GLOBAL_OPTIONS
) -> None:
    """The options accepted before and after the command name (``only`` those named).

    On sub-commands the defaults are suppressed, so a value given there overrides the one given
    before the command, and an absent one leaves it alone.
    """

    group = parser.add_argument_group("global options")
    for name, settings in _OPTIONS.items():
        if name in only:
            options = dict(settings)
            value = options.pop("default", None)
            group.add_argument(name, default=argparse.SUPPRESS if suppress else value, **options)
