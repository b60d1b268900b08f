"""``iris360 config show``: every setting, its value and where it came from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._profiles import resolve_settings
from ._errors import EXIT_OK, CliError
from ._output import Column
from ._settings import SETTING_FLAGS, flag_label

if TYPE_CHECKING:
    from ._commands import Context

__all__ = ["config_show"]

_COLUMNS = (Column("setting", "setting"), Column("value", "value"), Column("source", "source"))


def config_show(ctx: Context) -> int:
    """Print the way of authenticating and the resolved settings (flags > ``IRIS360_*`` >
    profile > default) with their sources, secrets masked, credentials that are not used
    marked, without running a ``password_command`` or asking for a password (one that
    would be asked for shows as coming from ``prompt``)."""
    args = ctx.args
    flags = {
        name: getattr(args, name) for name in SETTING_FLAGS if getattr(args, name, None) is not None
    }
    try:
        resolved = resolve_settings(
            flags, environ=ctx.environ, profile=getattr(args, "profile", None),
            run_commands=False, label=flag_label, ask_password=lambda _: "***",
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    rows = [
        {"setting": name, "value": value, "source": source}
        for name, value, source in resolved.rows(flag_label)
    ]
    profile = resolved.profile
    title = f"settings (profile {profile.name})" if profile is not None else "settings"
    ctx.output(default="table").rows(rows, _COLUMNS, title=title)
    return EXIT_OK

