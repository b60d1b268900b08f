"""Dispatch of the parsed command line to the command implementations, and what they share:
the streams, the output format and the connected client."""

from __future__ import annotations

import argparse
import getpass
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from ._errors import CliError
from ._output import Output, choose_format
from ._runtime import Interrupt
from ._settings import ConnectionSettings, resolve_connection

if TYPE_CHECKING:
    from .._client import Iris360Client

__all__ = ["Context", "dispatch", "prepare"]


@dataclass
class Context:
    """Everything a command needs besides its arguments."""

    args: argparse.Namespace
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    environ: Mapping[str, str]
    secrets: list[str | None] = field(default_factory=list)
    _settings: ConnectionSettings | None = None

    @property
    def needs_connection(self) -> bool:
        """Whether the command talks to a server (``demo``, ``emulator`` and dry runs do
        not)."""
        return self.args.command not in ("demo", "emulator", "config.show") and not getattr(
            self.args, "dry_run", False
        )

    def output(self, default: str | None = None) -> Output:
        """The output in the ``--format`` asked for (``default`` when none was asked)."""
        requested = self.args.format or default
        return Output(choose_format(requested, self.stdout), self.stdout)

    def connection(self) -> ConnectionSettings:
        """Connection settings from flags, environment and (maybe) a password prompt.

        Resolved once; call it before the event loop starts, so Ctrl-C at the prompt works.
        """
        if self._settings is not None:
            return self._settings
        interactive = _isatty(self.stdin) and getattr(self.args, "serials_file", None) != "-"
        settings = resolve_connection(
            self.args, self.environ, interactive=interactive, prompt=getpass.getpass
        )
        self.secrets.extend(settings.secrets)
        self._settings = settings
        return settings

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Iris360Client]:
        """A connected client, closed when the block ends."""
        from .._client import Iris360Client

        settings = self.connection()
        options: dict[str, Any] = {
            "username": settings.username,
            "password": settings.password,
            "token": settings.token,
            "tenant": settings.tenant,
            "scope": settings.scope,
        }
        timeout = settings.client_timeout(self.args.command)
        options["timeout"] = options["timeseries_timeout"] = timeout
        options.update(settings.client_options)
        async with Iris360Client(settings.base_url, **options) as client:
            yield client

    @property
    def settings(self) -> ConnectionSettings | None:
        """The connection settings once :meth:`connection` resolved them, else ``None``."""
        return self._settings

    def timeout_hint(self) -> tuple[float, str] | None:
        """The attempt timeout of this command and where it came from (``None`` before the
        settings are resolved)."""
        if self._settings is None:
            return None
        settings = self._settings
        return settings.attempt_timeout(self.args.command), settings.timeout_origin()

    def tenant_scope(self, client: Any) -> tuple[str | None, str | None]:
        """The tenant and scope from the flags, else the client defaults (may be ``None``)."""
        tenant = getattr(self.args, "tenant", None) or getattr(client, "tenant", None)
        scope = getattr(self.args, "scope", None) or getattr(client, "scope", None)
        return tenant, scope

    def required_tenant_scope(self, client: Any) -> tuple[str, str]:
        """Like :meth:`tenant_scope`, for calls that need both.

        Raises:
            CliError: one of them is missing.
        """
        tenant, scope = self.tenant_scope(client)
        if not tenant or not scope:
            raise CliError(
                "a tenant and a scope are needed: pass --tenant and --scope "
                "or set IRIS360_TENANT and IRIS360_SCOPE"
            )
        return tenant, scope


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def prepare(ctx: Context) -> None:
    """Checks of the arguments that need no server, run before any password prompt.

    Raises:
        CliError: bad arguments (exit 2).
    """
    from ._global_options import unused_global_option

    complaint = unused_global_option(ctx.args)
    if complaint is not None:
        raise CliError(complaint)
    fields = getattr(ctx.args, "fields", None)
    if fields is not None:
        from ._fields import FIELDS_OF

        if getattr(ctx.args, "serials_only", False):
            raise CliError("--fields and --serials-only cannot be combined")
        FIELDS_OF[ctx.args.command].columns(fields)
    if ctx.args.command == "devices.send-commands":
        from ._send import check_arguments

        check_arguments(ctx)


async def dispatch(ctx: Context, interrupt: Interrupt) -> int:
    """Run the command named by ``ctx.args.command``; returns the exit code."""
    command: str = ctx.args.command
    if command == "demo":
        from ._demo import run_demo

        return await run_demo(ctx, interrupt)
    if command == "emulator":
        from ._emulator_command import run_emulator

        return await run_emulator(ctx, interrupt)
    if command == "devices.send-commands":
        from ._send import send_commands

        return await send_commands(ctx, interrupt)
    if command == "config.show":
        from ._config_command import config_show

        return config_show(ctx)
    if command in ("devices.reconcile", "devices.track"):
        from ._lifecycle import reconcile_command, track_command

        run = reconcile_command if command == "devices.reconcile" else track_command
        return await run(ctx, interrupt)
    from . import _read

    handlers = {
        "devices.list": _read.devices_list,
        "entities.list": _read.entities_list,
        "entities.latest": _read.entities_latest,
        "timeseries.get": _read.timeseries_get,
        "connectors.list": _read.connectors_list,
        "connectors.get": _read.connectors_get,
    }
    handler = handlers.get(command)
    if handler is None:  # pragma: no cover - the parser only produces known commands
        raise CliError(f"unknown command {command!r}")
    return await handler(ctx)
