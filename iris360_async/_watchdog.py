"""The timeouts of every request in flight, kept by one event-loop timer.

aiohttp's own per-request timeouts arm two to four event-loop timers for each request (the
attempt's total, and a socket-read timer re-armed on every read). Under uvloop that costs
about a fifth of the CPU time of a small request, which is most of what a bulk job does.
Here each attempt in flight is one :class:`Watch` in a set, and a single timer is armed for
the earliest moment any of them could expire. When it fires, the task of each expired attempt
is cancelled, the way ``asyncio.timeout`` (and aiohttp's own timer) does it: the attempt turns
that cancellation, and only that one, into a timeout (:meth:`Watch.timed_out`), and a
cancellation from elsewhere still propagates. The timer is then armed for the next expiry.
Requests that finish in time, nearly all of them, cost a set insertion and removal.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Literal

__all__ = ["Expiry", "Watch", "Watchdog"]

Expiry = Literal["total", "read"]

_INF = float("inf")
_EARLY = 0.001  # a timer may fire this early (the loop's clock resolution); still expired


class Watch:
    """One attempt's timeouts: a fixed end (``total``) and a read deadline that moves on with
    every piece of the response received (:meth:`progress`)."""

    __slots__ = (
        "_cancelling", "_loop", "_timed_out", "expired", "read", "read_at", "task", "total_at",
    )

    def __init__(
        self,
        task: asyncio.Task[Any],
        loop: asyncio.AbstractEventLoop,
        total_at: float,
        read: float,
    ) -> None:
        self.task = task
        self._cancelling = _cancelling(task)
        self._loop = loop
        self.total_at = total_at
        self.read = read
        self.read_at = loop.time() + read
        self.expired: Expiry | None = None
        """Which timeout cancelled the attempt, if one did."""
        self._timed_out: bool | None = None

    def progress(self) -> None:
        """Data arrived: the read timeout starts again."""
        self.read_at = self._loop.time() + self.read

    def due(self) -> float:
        """The loop time at which the attempt expires unless more data arrives."""
        return self.total_at if self.total_at < self.read_at else self.read_at

    def timed_out(self) -> bool:
        """Once the attempt is over: whether the watchdog cancelled it and no one else did
        (the attempt then raises a timeout instead of the ``CancelledError``). The first call
        after an expiry takes the watchdog's cancellation back from the task's count."""
        if self.expired is None:
            return False
        if self._timed_out is None:
            self._timed_out = _uncancel(self.task) <= self._cancelling
        return self._timed_out


if sys.version_info >= (3, 11):

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return task.cancelling()

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return task.uncancel()

else:  # pragma: no cover - no cancellation counts: as aiohttp's own timer does on 3.10

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return 0

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return 0


class Watchdog:
    """The attempts in flight on one client (and its copies), and the one timer for them."""

    def __init__(self) -> None:
        self._watches: set[Watch] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = _INF

    def __len__(self) -> int:
        return len(self._watches)

    @property
    def armed(self) -> bool:
        """Whether the timer is set."""
        return self._handle is not None

    def start(self, task: asyncio.Task[Any], total: float | None, read: float | None) -> Watch:
        """Watch an attempt of ``task`` that starts now: cancel the task once ``total``
        seconds have passed, or ``read`` seconds without :meth:`Watch.progress` (``None``: no
        limit)."""
        loop = asyncio.get_running_loop()
        watch = Watch(
            task,
            loop,
            _INF if total is None else loop.time() + total,
            _INF if read is None else read,
        )
        due = watch.due()
        if due != _INF:
            self._watches.add(watch)
            if due < self._handle_at:
                self._arm(loop, due)
        return watch

    def stop(self, watch: Watch) -> None:
        """The attempt is over (however it ended)."""
        self._watches.discard(watch)

    def close(self) -> None:
        """Disarm the timer (the client is closing)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._handle_at = _INF

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = loop.call_at(when, self._fire, loop)
        self._handle_at = when

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = None
        self._handle_at = _INF
        now = loop.time() + _EARLY
        following = _INF
        expired: list[Watch] = []
        for watch in self._watches:
            due = watch.due()
            if due <= now:
                expired.append(watch)
            elif due < following:
                following = due
        for watch in expired:
            self._watches.discard(watch)
            watch.expired = "total" if watch.total_at <= now else "read"
            watch.task.cancel()
        if following != _INF:
            self._arm(loop, following)
