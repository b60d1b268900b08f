"""Running a command's coroutine: the event loop, and Ctrl-C or SIGTERM turned into a clean
cancellation.

The first Ctrl-C (SIGINT) or SIGTERM cancels the command's task; a job catches the
cancellation, lets the bulk engine settle and flush its journal, prints what was settled and
exits 130 (Ctrl-C) or 143 (SIGTERM). A second signal while that happens exits at once. The
handlers are installed for the command only: the ones in place before are restored afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ._errors import EXIT_INTERRUPTED, EXIT_TERMINATED

__all__ = ["Interrupt", "Terminated", "run_command"]

_HANDLED = (signal.SIGINT, signal.SIGTERM)
_NAMES: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)"}


class Terminated(KeyboardInterrupt):
    """SIGTERM reached a command outside a job that handles it (exit code 143)."""

    exit_code = EXIT_TERMINATED


class Interrupt:
    """Whether Ctrl-C or SIGTERM asked the command to stop, and which."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        """``signal.SIGINT`` or ``signal.SIGTERM`` once one arrived."""
        self.message: str | None = "stopping"
        """Said on stderr after the first signal's name (``None``: nothing), followed by how
        to exit at once (:func:`again_hint`)."""

    @property
    def exit_code(self) -> int:
        """130 after Ctrl-C, 143 after SIGTERM."""
        return EXIT_TERMINATED if self.signal == signal.SIGTERM else EXIT_INTERRUPTED

    @property
    def verb(self) -> str:
        """``"interrupted"`` or ``"terminated"``, for messages."""
        return "terminated" if self.signal == signal.SIGTERM else "interrupted"

    def consume(self) -> bool:
        """``True`` if a signal caused the current cancellation; clears the task's cancel
        request so the command can still print its summary."""
        if not self.requested:
            return False
        task = asyncio.current_task()
        uncancel: Callable[[], int] | None = getattr(task, "uncancel", None)
        cancelling: Callable[[], int] | None = getattr(task, "cancelling", None)
        if uncancel is not None and cancelling is not None:  # Python 3.11+
            while cancelling():
                uncancel()
        return True


def again_hint(signum: int) -> str:
    """How to exit at once after the first ``signum``: the same signal again."""
    if signum == signal.SIGTERM:
        return "SIGTERM again to exit now"
    return "Ctrl-C again to exit now"


def run_command(factory: Callable[[Interrupt], Awaitable[int]]) -> int:
    """Run ``factory(interrupt)`` in a fresh event loop; returns its exit code.

    Raises:
        KeyboardInterrupt: Ctrl-C reached the command outside a job that handles it
            (:class:`Terminated` for SIGTERM).
    """
    interrupt = Interrupt()

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(signum: int) -> None:
            if interrupt.requested:
                sys.stderr.write(f"\niris360: {_NAMES[signum]} again, exiting now\n")
                sys.stderr.flush()
                os._exit(interrupt.exit_code)
            interrupt.requested = True
            interrupt.signal = signum
            if interrupt.message:
                sys.stderr.write(
                    f"\niris360: {_NAMES[signum]}, {interrupt.message} ({again_hint(signum)})\n"
                )
                sys.stderr.flush()
            task.cancel()

        previous = _install(loop, on_signal)
        try:
            return await factory(interrupt)
        except asyncio.CancelledError:
            if interrupt.requested:
                if interrupt.signal == signal.SIGTERM:
                    raise Terminated from None
                raise KeyboardInterrupt from None
            raise
        finally:
            _restore(loop, previous)

    return _run(runner())


def _install(
    loop: asyncio.AbstractEventLoop, handler: Callable[[int], None]
) -> dict[int, Any]:
    """Route SIGINT and SIGTERM to ``handler``; returns the handlers they had before."""
    previous: dict[int, Any] = {}
    for signum in _HANDLED:
        before = signal.getsignal(signum)
        try:
            loop.add_signal_handler(signum, handler, signum)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - Windows
            continue
        previous[signum] = before
    return previous


def _restore(loop: asyncio.AbstractEventLoop, previous: dict[int, Any]) -> None:
    for signum, before in previous.items():
        loop.remove_signal_handler(signum)
        if before is not None:
            signal.signal(signum, before)


def _run(coro: Any) -> int:
    result: int = asyncio.run(coro)
    return result
