"""``iris360 completion bash|zsh|fish``: a completion script generated from the parser by
``shtab`` (part of the ``cli`` extra)."""

from __future__ import annotations

import argparse

from ._errors import CliError

__all__ = ["completion_script"]


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``parser`` for ``shell``; options taking a ``FILE`` complete
    file names.

    Raises:
        CliError: ``shtab`` is not installed.
    """
    try:
        import shtab
    except ImportError:
        raise CliError(
            "shell completion needs the 'cli' extra: pip install 'iris360-async[cli]'"
        ) from None
    for sub in _parsers(parser):
        for action in sub._actions:
            if action.metavar == "FILE":
                action.complete = shtab.FILE  # type: ignore[attr-defined]
    script: str = shtab.complete(parser, shell=shell)
    return script if script.endswith("\n") else script + "\n"


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found.extend(_parsers(sub))
    return found
