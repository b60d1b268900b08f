"""``main()``: parse, run the command, turn failures into one line and an exit code."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from ._errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    CliError,
    describe_error,
    redact,
)
from ._parser import build_parser

__all__ = ["main"]

_RICH_MISSING = (
    "iris360: error: the command line needs the 'cli' extra: pip install 'iris360-async[cli]'\n"
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("iris360-async")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``iris360`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        code = exc.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_USAGE)
    if args.version:
        sys.stdout.write(f"iris360 {_version()}\n")
        return EXIT_OK
    if getattr(args, "command", None) is None:
        _print_help_for(parser, args)
        return EXIT_USAGE
    if args.command == "completion":
        return _completion(parser, args.shell)
    try:
        import rich  # noqa: F401
    except ImportError:
        sys.stderr.write(_RICH_MISSING)
        return EXIT_USAGE
    if args.debug:
        logging.basicConfig(
            level=logging.DEBUG,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )

    from ._commands import Context, dispatch, prepare
    from ._runtime import Terminated, run_command

    ctx = Context(
        args=args, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr, environ=os.environ
    )
    try:
        prepare(ctx)
        if ctx.needs_connection:
            ctx.connection()  # may prompt for the password: before the event loop
        return run_command(lambda interrupt: dispatch(ctx, interrupt))
    except Terminated:  # SIGTERM outside a job that handles it
        sys.stderr.write("\niris360: terminated\n")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        sys.stderr.write("\niris360: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `iris360 devices list | head`
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:
        settings = ctx.settings
        message, code = describe_error(
            exc,
            timeout=ctx.timeout_hint(),
            server=settings.server_origin() if settings is not None else None,
            token=settings is not None and settings.password is None,
        )
        if args.debug:
            sys.stderr.write(redact(traceback.format_exc(), ctx.secrets))
        sys.stderr.write(f"iris360: error: {redact(message, ctx.secrets)}\n")
        return code


def _completion(parser: argparse.ArgumentParser, shell: str) -> int:
    from ._completion import completion_script

    try:
        sys.stdout.write(completion_script(parser, shell))
    except CliError as exc:
        sys.stderr.write(f"iris360: error: {exc.message}\n")
        return exc.exit_code
    return EXIT_OK


def _print_help_for(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    group = getattr(args, "group", None)
    if group is None:
        sys.stderr.write(parser.format_help())
        return
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict) and group in choices:
            sys.stderr.write(choices[group].format_help())
            return
    sys.stderr.write(parser.format_usage())


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter exits quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
