"""Running a command's coroutine: the event loop, and Ctrl-C turned into a clean cancellation.

The first Ctrl-C cancels the command's task; a job catches the cancellation, lets the bulk
engine settle and flush its journal, prints what was settled and exits 130. A second Ctrl-C
while that happens exits at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Interrupt", "run_command"]


class Interrupt:
    """Whether Ctrl-C was pressed during the command."""

    def __init__(self) -> None:
        self.requested = False
        self.message: str | None = "interrupted, stopping (Ctrl-C again to exit now)"
        """Said on stderr at the first Ctrl-C (``None``: nothing)."""

    def consume(self) -> bool:
        """``True`` if a Ctrl-C caused the current cancellation; clears the task's cancel
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


def run_command(factory: Callable[[Interrupt], Awaitable[int]]) -> int:
    """Run ``factory(interrupt)`` in a fresh event loop; returns its exit code.

    Raises:
        KeyboardInterrupt: Ctrl-C reached the command outside a job that handles it.
    """
    interrupt = Interrupt()

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_sigint() -> None:
            if interrupt.requested:
                sys.stderr.write("\niris360: interrupted again, exiting now\n")
                sys.stderr.flush()
                os._exit(130)
            interrupt.requested = True
            if interrupt.message:
                sys.stderr.write(f"\niris360: {interrupt.message}\n")
                sys.stderr.flush()
            task.cancel()

        installed = False
        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
            installed = True
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - Windows
            pass
        try:
            return await factory(interrupt)
        except asyncio.CancelledError:
            if interrupt.requested:
                raise KeyboardInterrupt from None
            raise
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)

    return _run(runner())


def _run(coro: Any) -> int:
    result: int = asyncio.run(coro)
    return result
