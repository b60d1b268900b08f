"""What stands between a chunk and the wire: :class:`Pacing` (``max_rate``, and under
``concurrency="auto"`` the async gate in front of :class:`~.._pacing.AdaptiveLimit`).

The controller itself is pure (:mod:`iris360_async._pacing`); :class:`Pacer` waits when it
refuses a request (woken by a release, a change of the limit or the end of a ``Retry-After``
pause) and turns what one request of the engine ended with -- the items, or the exception --
into the controller's sample: latency on the job's clock, outcome, ``Retry-After`` and
``X-RateLimit-Remaining``.

The sender tells the engine its answer's headers through an optional ``headers`` attribute of
the items it returns (``devices.bulk_sender`` returns :class:`AnsweredItems`); errors carry
``headers`` already (:class:`~iris360_async.errors.APIStatusError`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeVar

import anyio

from .._pacing import AdaptiveLimit, Outcome, outcome_for_status
from .._retry import Clock
from ..errors import APIConnectionError, APIStatusError, RateLimitError

__all__ = ["AnsweredItems", "Pacer", "Pacing", "RateLimiter", "sample_of"]

T = TypeVar("T")


class AnsweredItems(list[T]):
    """A list of answer items that also carries the answer's HTTP ``status`` and ``headers``
    (what pacing reads: ``X-RateLimit-Remaining``)."""

    __slots__ = ("headers", "status")

    def __init__(self, items: list[T], status: int, headers: Mapping[str, str]) -> None:
        super().__init__(items)
        self.status = status
        self.headers = headers


def _header(headers: Any, name: str) -> str | None:
    """``headers[name]`` of a mapping, case-insensitively (``None`` when absent)."""
    if not isinstance(headers, Mapping):
        return None
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        for key, item in headers.items():
            if isinstance(key, str) and key.lower() == lower:
                return str(item)
        return None
    return str(value)


def _remaining(headers: Any) -> int | None:
    text = _header(headers, "X-RateLimit-Remaining")
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None  # a header we cannot read is no signal
    return value if value >= 0 else None


def sample_of(answer: object) -> tuple[Outcome, float | None, int | None]:
    """The controller's view of one request: ``(outcome, retry_after, remaining)``.

    ``answer`` is what the sender returned (items, maybe with ``headers``) or the exception it
    raised: a status error by its status (429/503/504 overload), no answer after sending
    (lost connection, timeout) ``dropped``, anything else ``error``.
    """
    if isinstance(answer, APIStatusError):
        retry_after = answer.retry_after if isinstance(answer, RateLimitError) else None
        if retry_after is not None and not retry_after >= 0:
            retry_after = None
        return outcome_for_status(answer.status), retry_after, _remaining(answer.headers)
    if isinstance(answer, APIConnectionError):
        return ("dropped" if answer.request_sent else "error"), None, None
    if isinstance(answer, BaseException):
        return "error", None, None
    return "ok", None, _remaining(getattr(answer, "headers", None))


class Pacer:
    """Requests in flight under an :class:`AdaptiveLimit`, with waiting.

    Args:
        limit: the controller.
        clock: the job's clock (latencies, ``Retry-After`` pauses).
    """

    __slots__ = ("_changed", "_clock", "limit")

    def __init__(self, limit: AdaptiveLimit, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._changed = anyio.Event()

    def __repr__(self) -> str:
        return f"<Pacer {self.limit!r}>"

    async def acquire(self) -> None:
        """Wait until one more request may be in flight, and count it."""
        limit = self.limit
        clock = self._clock
        while True:
            now = clock.monotonic()
            if limit.acquire(now):
                return
            if limit.paused(now):
                await clock.sleep(limit.paused_until - now)
            else:
                await self._changed.wait()

    def release(self) -> None:
        """One request fewer in flight (call once per :meth:`acquire`)."""
        self.limit.release()
        self._notify()

    def observe(self, latency: float, answer: object) -> None:
        """Feed one finished request (see :func:`sample_of`)."""
        outcome, retry_after, remaining = sample_of(answer)
        self.limit.on_sample(
            max(0.0, latency), outcome, self._clock.monotonic(),
            retry_after=retry_after, remaining=remaining,
        )
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()


class RateLimiter:
    """Spaces request starts at least ``1 / rate`` seconds apart (a token bucket of depth 1)."""

    __slots__ = ("_clock", "_interval", "_next")

    def __init__(self, rate: float, clock: Clock) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._next = -math.inf

    async def acquire(self) -> None:
        now = self._clock.monotonic()
        start = self._next if self._next > now else now
        self._next = start + self._interval
        if start > now:
            await self._clock.sleep(start - now)


class Pacing:
    """The pace of one job's requests: waits before each (``max_rate``, the adaptive limit
    under ``"auto"``), counts those in flight, and learns from each answer.

    Args:
        workers: the fixed ``concurrency`` (the limit when there is no ``pacer``).
        clock: the job's clock.
        max_rate: at most this many request starts per second (``None``: no limit).
        pacer: the adaptive limit's gate (``concurrency="auto"``), or ``None``.
    """

    __slots__ = ("_clock", "_limiter", "_workers", "in_flight", "latency", "pacer")

    def __init__(
        self, workers: int, clock: Clock, *, max_rate: float | None, pacer: Pacer | None
    ) -> None:
        self._workers = workers
        self._clock = clock
        self._limiter = RateLimiter(max_rate, clock) if max_rate is not None else None
        self.pacer = pacer
        self.in_flight = 0
        self.latency: float | None = None
        """Smoothed latency of recent answered requests, seconds (``None`` before the
        first)."""

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return self.pacer.limit.limit if self.pacer is not None else self._workers

    async def acquire(self) -> None:
        """Wait until one more request may start, and count it in flight.

        The adaptive gate first, ``max_rate`` last: requests the gate lets through together
        still start ``1 / max_rate`` apart."""
        pacer = self.pacer
        if pacer is not None:
            await pacer.acquire()
        if self._limiter is not None:
            try:
                await self._limiter.acquire()
            except BaseException:
                if pacer is not None:
                    pacer.release()
                raise
        self.in_flight += 1

    def release(self) -> None:
        """One request fewer in flight (once per :meth:`acquire`, answered or not)."""
        self.in_flight -= 1
        if self.pacer is not None:
            self.pacer.release()

    def observe(self, started: float, answer: object) -> None:
        """A request sent at ``started`` (the clock's time) ended with ``answer`` (the items,
        or the exception): its latency into :attr:`latency` (answers only) and, under
        ``"auto"``, the sample into the adaptive limit."""
        latency = self._clock.monotonic() - started
        if not isinstance(answer, BaseException):
            smooth = self.latency
            self.latency = latency if smooth is None else smooth + 0.2 * (latency - smooth)
        if self.pacer is not None:
            self.pacer.observe(latency, answer)
