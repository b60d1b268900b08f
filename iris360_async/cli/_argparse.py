"""An ``ArgumentParser`` whose errors help: the command at fault prints its own usage, a
mistyped option or command gets a "did you mean" (``difflib``), and an option the command does
not take says why. Also the argument types the commands share (positive numbers).

Only the standard library is imported here (``iris360 --help`` works without the extras).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

__all__ = ["Parser", "non_negative_float", "positive_float", "positive_int", "selected_parser"]

_N = TypeVar("_N", int, float)
_INVALID_CHOICE = re.compile(r"argument (?P<name>.+?): invalid choice: (?P<value>.+?) \(")


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with helpful errors.

    ``refusals`` maps an option this command does not take (but others do) to the reason, so
    ``iris360 devices list --tenant x`` is told why instead of "unrecognized arguments".
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusals: dict[str, str] = {}
        self._given: list[str] = []
        self._namespace: argparse.Namespace | None = None

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        parsed, extras = super().parse_known_args(args, namespace)
        self._namespace = parsed
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        """Print the usage of the command at fault and the message (with a hint); exit 2."""
        if message.startswith("unrecognized arguments") and self._namespace is not None:
            target = selected_parser(self, self._namespace)
            if target is not self and isinstance(target, Parser):
                target.error(message)
        refusal = self._refusal()
        if refusal is not None:
            message = refusal
        else:
            message += self._hint(message)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")

    # -- hints ---------------------------------------------------------------------------------
    def _options(self) -> list[str]:
        return [o for a in self._actions for o in a.option_strings if o.startswith("--")]

    def _unknown_options(self) -> list[str]:
        """The ``--options`` given to this parser that it does not know (nor abbreviates)."""
        known = self._options()
        unknown = []
        for token in self._given:
            if token == "--":
                break
            if not token.startswith("--"):
                continue
            name = token.split("=", 1)[0]
            if name in known:
                continue
            if self.allow_abbrev and sum(o.startswith(name) for o in known) == 1:
                continue
            unknown.append(name)
        return unknown

    def _refusal(self) -> str | None:
        for name in self._unknown_options():
            reason = self.refusals.get(name)
            if reason is not None:
                return f"{name} is not accepted here: {reason}"
        return None

    def _hint(self, message: str) -> str:
        match = _INVALID_CHOICE.match(message)
        if match:
            value = match.group("value").strip("'\"")
            choices = self._choices_of(match.group("name"))
            close = difflib.get_close_matches(value, choices, n=1)
            return f" (did you mean {close[0]}?)" if close else ""
        suggestions = []
        strangers = []
        for name in self._unknown_options():
            close = difflib.get_close_matches(name, self._options(), n=1, cutoff=0.6)
            if close:
                suggestions.append((name, close[0]))
            else:
                strangers.append(name)
        if len(suggestions) == 1:
            return f" (did you mean {suggestions[0][1]}?)"
        if suggestions:
            pairs = ", ".join(f"{good} for {bad}" for bad, good in suggestions)
            return f" (did you mean {pairs}?)"
        if strangers and message.startswith("the following arguments are required"):
            # argparse names the missing option, not the unknown one given instead
            listed = ", ".join(strangers)
            return f" ({listed}: no such option here; see {self.prog} --help)"
        return ""

    def _choices_of(self, name: str) -> list[str]:
        for action in self._actions:
            if action.choices is None:
                continue
            label = "/".join(action.option_strings) or action.metavar or action.dest
            if label == name:
                return [str(choice) for choice in action.choices]
        return []


def selected_parser(
    parser: argparse.ArgumentParser, namespace: argparse.Namespace
) -> argparse.ArgumentParser:
    """The deepest sub-command parser ``namespace`` selected (``parser`` itself if none)."""
    current = parser
    while True:
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                name = getattr(namespace, action.dest, None)
                if isinstance(name, str) and name in action.choices:
                    current = action.choices[name]
                    break
        else:
            return current


def _number(text: str, kind: Callable[[str], _N], ok: Callable[[_N], bool], rule: str) -> _N:
    try:
        value = kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}: {text!r}")
    return value


def positive_float(text: str) -> float:
    """A number > 0 (an ``argparse`` type)."""
    return _number(text, float, lambda v: v > 0, "> 0")


def positive_int(text: str) -> int:
    """An integer >= 1 (an ``argparse`` type)."""
    return _number(text, int, lambda v: v >= 1, ">= 1")


def non_negative_float(text: str) -> float:
    """A number >= 0 (an ``argparse`` type)."""
    return _number(text, float, lambda v: v >= 0, ">= 0")
