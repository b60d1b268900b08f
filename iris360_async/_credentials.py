"""Which way of authenticating is used when the settings come from several sources.

There are two ways: a **token** (``token`` and/or ``refresh_token``) and a **login**
(``username`` with its ``password``). Each way counts as coming from the highest source that
gives one of its settings (argument > ``IRIS360_*`` variable > profile). The way of the higher
source is used and the other one's settings are ignored; when both come from the same source,
both are kept (the token first, the login when it is refused or expires). A half pair — a
password without a user name, or a user name whose password cannot be found — is refused when
it was given as an argument or nothing else authenticates, and ignored beside a token. Pure
decisions, apart from the callbacks that complete a missing password.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._config import ENV_PREFIX

__all__ = [
    "AUTH_SETTINGS", "AuthChoice", "Ignored", "Label", "argument_label", "choose_auth", "describe",
]

AUTH_SETTINGS = ("token", "refresh_token", "username", "password")
_TOKEN = ("token", "refresh_token")
_LOGIN = ("username", "password")

Label = Callable[[str, str], str]
"""``(setting, source) -> text`` naming where a setting came from in a message."""


def _rank(source: str) -> int:
    if source == "argument":
        return 0
    return 1 if source.startswith(ENV_PREFIX) else 2  # a profile or its password_command


def argument_label(name: str, source: str) -> str:
    """``username=`` for an argument, else the source itself (``IRIS360_PASSWORD`` …)."""
    return f"{name}=" if source == "argument" else source


@dataclass(frozen=True)
class Ignored:
    """A credential that was given but is not used.

    Attributes:
        value: the value (shown masked when secret).
        source: where it came from.
        reason: ``"token"``/``"login"`` (that way, from a higher source, wins),
            ``"no username"`` or ``"no password"`` (a half pair beside a token).
        winner: the setting whose source made the other way win (for ``token``/``login``).
    """

    value: Any
    source: str
    reason: str
    winner: str | None = None

    def explain(self, sources: Mapping[str, str], label: Label) -> str:
        """``token from --token wins``, ``no username`` …"""
        if self.winner is None:
            return self.reason
        return f"{self.reason} from {label(self.winner, sources[self.winner])} wins"


@dataclass(frozen=True)
class AuthChoice:
    """The outcome of :func:`choose_auth`.

    Attributes:
        method: ``"token"``, ``"login"``, ``"token, then login"`` or ``"none"``.
        ignored: setting -> the credential left out, with why.
    """

    method: str
    ignored: dict[str, Ignored]


def _best(names: tuple[str, ...], sources: Mapping[str, str]) -> str | None:
    given = [name for name in names if name in sources]
    return min(given, key=lambda name: _rank(sources[name])) if given else None


def choose_auth(
    values: dict[str, Any],
    sources: dict[str, str],
    *,
    complete_password: Callable[[bool], tuple[str, str] | None],
    label: Label = argument_label,
) -> AuthChoice:
    """Decide the way of authenticating; ``values``/``sources`` are changed in place: the
    settings left out move to :attr:`AuthChoice.ignored`, a completed password is added.

    Args:
        complete_password: called when a login is used and its password is missing, with
            whether a token is used too; returns ``(password, source)`` (a profile's
            ``password_command``, a prompt) or ``None``.
        label: names a source in messages.

    Raises:
        ValueError: a half pair given as an argument, or one with nothing else to
            authenticate with (never showing a secret).
    """
    ignored: dict[str, Ignored] = {}

    def drop(names: tuple[str, ...], reason: str, winner: str | None = None) -> None:
        for name in names:
            if name in values:
                ignored[name] = Ignored(values.pop(name), sources.pop(name), reason, winner)

    token = _best(_TOKEN, sources)
    if "password" in values and "username" not in values:
        if sources["password"] == "argument" or token is None:
            raise ValueError(_no_username(sources["password"], label))
        drop(("password",), "no username")
    login = _best(_LOGIN, sources)
    if login is None or (token is not None and _rank(sources[token]) < _rank(sources[login])):
        drop(_LOGIN, "token", token)
        return AuthChoice("token" if token else "none", ignored)
    if token is not None and _rank(sources[login]) < _rank(sources[token]):
        drop(_TOKEN, "login", login)
        token = None
    if "password" not in values:
        found = complete_password(token is not None)
        if found is not None:
            values["password"], sources["password"] = found
        elif token is not None and sources["username"] != "argument":
            drop(("username",), "no password")
            return AuthChoice("token", ignored)
        else:
            raise ValueError(_no_password(label("username", sources["username"])))
    return AuthChoice("login" if token is None else "token, then login", ignored)


def _no_username(source: str, label: Label) -> str:
    where = label("password", source)
    if source == "argument":
        return f"{where} was given without a username (username= or IRIS360_USERNAME)"
    if source.startswith(ENV_PREFIX):
        return f"{where} is set but no username is given (username= or IRIS360_USERNAME)"
    return f"the password from {where} has no username (username= or IRIS360_USERNAME)"


def _no_password(where: str) -> str:
    if where.endswith("="):
        return f"{where} was given without a password (password= or IRIS360_PASSWORD)"
    if where.startswith("--"):
        return f"{where} was given without a password: set IRIS360_PASSWORD"
    return (
        f"no password for the username from {where}: set IRIS360_PASSWORD, or a "
        "password_command in the profile"
    )


def describe(
    choice: AuthChoice, values: Mapping[str, Any], sources: Mapping[str, str], label: Label
) -> tuple[str, str]:
    """``(method, source)`` for ``config show``: ``("login (ops@example.com)",
    "IRIS360_USERNAME, password_command of profile prod")``, ``("token", "--token")``."""
    method = choice.method
    if "login" in method:
        method = f"{method} ({values['username']})"
    used = [label(name, sources[name]) for name in AUTH_SETTINGS if name in sources]
    return method, ", ".join(dict.fromkeys(used)) or "-"
