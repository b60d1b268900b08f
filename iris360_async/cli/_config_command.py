"""``iris360 config show``: every setting, its value and where it came from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._profiles import resolve_settings
from ._errors import EXIT_OK, CliError
from ._output import Column

if TYPE_CHECKING:
    from ._commands import Context

__all__ = ["config_show"]

_FLAGS = ("base_url", "username", "token", "tenant", "scope", "timeout")
_COLUMNS = (Column("setting", "setting"), Column("value", "value"), Column("source", "source"))


def config_show(ctx: Context) -> int:
    """Print the resolved settings (flags > ``IRIS360_*`` > profile > default), secrets
    masked, without running a ``password_command`` or asking for a password."""
    args = ctx.args
    flags = {
        name: getattr(args, name) for name in _FLAGS if getattr(args, name, None) is not None
    }
    try:
        resolved = resolve_settings(
            flags, environ=ctx.environ, profile=getattr(args, "profile", None),
            run_commands=False,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    rows = [
        {"setting": name, "value": value, "source": _flag_source(name, source)}
        for name, value, source in resolved.rows()
    ]
    profile = resolved.profile
    title = f"settings (profile {profile.name})" if profile is not None else "settings"
    ctx.output(default="table").rows(rows, _COLUMNS, title=title)
    return EXIT_OK


def _flag_source(name: str, source: str) -> str:
    return "--" + name.replace("_", "-") if source == "argument" else source
