"""The timeouts of every request in flight, kept by one event-loop timer.

aiohttp's own per-request timeouts arm two to four event-loop timers for each request (the
attempt's total, and a socket-read timer re-armed on every read). Under uvloop that costs
about a fifth of the CPU time of a small request, which is most of what a bulk job does.
Here each attempt in flight is one :class:`Watch` in a set, and a single timer is armed for
the earliest moment any of them could expire. When it fires, the expired attempts are
cancelled (through their anyio cancel scopes) and the timer is armed for the next one.
Requests that finish in time, nearly all of them, cost a set insertion and removal.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import anyio

__all__ = ["Expiry", "Watch", "Watchdog"]

Expiry = Literal["total", "read"]

_INF = float("inf")
_EARLY = 0.001  # a timer may fire this early (the loop's clock resolution); still expired


class Watch:
    """One attempt's timeouts: a fixed end (``total``) and a read deadline that moves on with
    every piece of the response received (:meth:`progress`)."""

    __slots__ = ("_loop", "expired", "read", "read_at", "scope", "total_at")

    def __init__(
        self,
        scope: anyio.CancelScope,
        loop: asyncio.AbstractEventLoop,
        total_at: float,
        read: float,
    ) -> None:
        self.scope = scope
        self._loop = loop
        self.total_at = total_at
        self.read = read
        self.read_at = loop.time() + read
        self.expired: Expiry | None = None
        """Which timeout cancelled the attempt, if one did."""

    def progress(self) -> None:
        """Data arrived: the read timeout starts again."""
        self.read_at = self._loop.time() + self.read

    def due(self) -> float:
        """The loop time at which the attempt expires unless more data arrives."""
        return self.total_at if self.total_at < self.read_at else self.read_at


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

    def start(self, scope: anyio.CancelScope, total: float | None, read: float | None) -> Watch:
        """Watch an attempt that starts now: cancel ``scope`` once ``total`` seconds have
        passed, or ``read`` seconds without :meth:`Watch.progress` (``None``: no limit)."""
        loop = asyncio.get_running_loop()
        watch = Watch(
            scope,
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
            watch.scope.cancel()
        if following != _INF:
            self._arm(loop, following)
