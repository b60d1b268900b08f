"""Retry decisions without I/O: which failures are safe to repeat, how long to wait, how many
repeats a client may spend, and the one 429 gate every request of a client waits behind.

:func:`decide_retry` makes the whole decision after a failed attempt (retryable in this mode,
``Retry-After``, the 429 gate, the retry budget, the call's deadline, backoff with jitter) from
values the transport passes in; the transport only acts on the answer.

Everything here takes its time from an injected :class:`Clock`, so tests drive it with a
:class:`ManualClock` and never sleep for real.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timezone
from typing import Literal, Protocol

import anyio
import anyio.lowlevel

from .errors import APIConnectionError, APIStatusError, Iris360Error, RateLimitError

__all__ = [
    "READ_RETRY_STATUSES",
    "Clock",
    "ManualClock",
    "RateGate",
    "RetryBudget",
    "RetryDecision",
    "RetryMode",
    "RetryPolicy",
    "RetryReason",
    "SystemClock",
    "backoff_ceiling",
    "decide_retry",
    "full_jitter",
    "gate_hold",
    "is_retryable",
    "parse_retry_after",
    "requested_wait",
]

RetryMode = Literal["read", "write", "never"]
"""How a request may be repeated:

* ``"read"``: connection errors, timeouts, 408, 429, 502, 503, 504.
* ``"write"``: only when the server provably did not act: the connection was never
  established (``APIConnectionError.request_sent is False``) or 429.
* ``"never"``: no automatic repetition.
"""

READ_RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 502, 503, 504})


class Clock(Protocol):
    """Where time comes from. ``monotonic`` and ``time`` in seconds; ``sleep`` waits."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals)."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch (for JWT ``exp`` and HTTP dates)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; cancellable at once."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.time`, :func:`anyio.sleep`."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class ManualClock:
    """A clock for tests: time moves only through :meth:`sleep` and :meth:`advance`.

    ``sleep`` advances the clock by the requested seconds at once and yields to the event loop,
    so code under test runs its waits instantly and in order. Every requested sleep is kept in
    :attr:`sleeps`.

    Example:
        >>> clock = ManualClock(start=1_700_000_000.0)
        >>> client = Iris360Client._with_hooks("http://127.0.0.1:1", token="…", clock=clock)
        ... # doctest: +SKIP
    """

    __slots__ = ("_now", "sleeps")

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` without yielding."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        self.sleeps.append(seconds)
        self._now += seconds
        await anyio.lowlevel.checkpoint()


def backoff_ceiling(retry_index: int, base: float, cap: float) -> float:
    """The largest wait before retry number ``retry_index`` (0 for the first retry), seconds.

    ``min(cap, base * 2 ** retry_index)``.
    """
    if retry_index < 0:
        raise ValueError("retry_index must be >= 0")
    if retry_index > 62:  # 2**63 overflows nothing in Python, but keeps the float sane
        return cap
    return min(cap, base * float(1 << retry_index))


def full_jitter(retry_index: int, base: float, cap: float, u: float) -> float:
    """Full-jitter backoff: ``u * backoff_ceiling(...)`` with ``u`` uniform in ``[0, 1)``."""
    return min(max(u, 0.0), 1.0) * backoff_ceiling(retry_index, base, cap)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value.

    Args:
        value: the header value: delay seconds (``"120"``, ``"1.5"``) or an HTTP date.
        now: the current time in seconds since the Unix epoch (for the HTTP-date form).

    Returns:
        The wait in seconds, never negative; ``None`` when the value is missing or unusable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            return None
        return max(0.0, seconds)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:  # pragma: no cover - older Pythons returned None
        return None
    if parsed.tzinfo is None:  # HTTP dates are GMT
        parsed = parsed.replace(tzinfo=timezone.utc)
    return max(0.0, parsed.timestamp() - now)


def is_retryable(error: Iris360Error, mode: RetryMode) -> bool:
    """Whether a failed attempt may be repeated in ``mode``.

    ``read`` repeats connection errors, timeouts and statuses 408, 429, 502, 503, 504;
    ``write`` repeats only never-established connections and 429; ``never`` nothing.
    """
    if mode == "never":
        return False
    if isinstance(error, APIConnectionError):
        return mode == "read" or not error.request_sent
    if isinstance(error, APIStatusError):
        if mode == "read":
            return error.status in READ_RETRY_STATUSES
        return error.status == 429
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is repeated. Immutable; copy with :meth:`replace`.

    Attributes:
        max_retries: repeats after the first attempt (0 disables retries).
        base: the first backoff ceiling, seconds.
        cap: the largest backoff ceiling, seconds.
        max_retry_after: the longest ``Retry-After`` honoured, seconds; a server asking for
            more makes the request fail with :class:`~iris360_async.RateLimitError` at once.
        max_auth_retry_after: the longest ``Retry-After`` of a 429 on login or refresh that is
            waited out, once (one more attempt, never a loop); a longer or missing one makes
            the login/refresh fail with :class:`~iris360_async.RateLimitError` at once.
        random: a function returning a uniform float in ``[0, 1)`` for the jitter; ``None``
            (the default): :func:`random.random`.
    """

    max_retries: int = 3
    base: float = 0.5
    cap: float = 8.0
    max_retry_after: float = 120.0
    max_auth_retry_after: float = 30.0
    random: Callable[[], float] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ValueError("max_retries must be an integer >= 0")
        for name in ("base", "cap", "max_retry_after", "max_auth_retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"RetryPolicy.{name} must be a number of seconds")
            if not math.isfinite(value):
                raise ValueError(f"RetryPolicy.{name} must be finite")
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("backoff needs 0 < base <= cap (seconds)")
        if self.max_retry_after < 0 or self.max_auth_retry_after < 0:
            raise ValueError("max_retry_after and max_auth_retry_after must be >= 0 seconds")
        if self.random is not None and not callable(self.random):
            raise TypeError("RetryPolicy.random must be a function returning a float in [0, 1)")

    def backoff(self, retry_index: int) -> float:
        """The jittered wait before retry number ``retry_index`` (0-based), seconds."""
        u = _random.random() if self.random is None else self.random()
        return full_jitter(retry_index, self.base, self.cap, u)

    def replace(self, **changes: object) -> RetryPolicy:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


class RetryBudget:
    """A token bucket that limits how many retries one client may spend (botocore's standard
    mode): each retry costs ``retry_cost`` tokens, each success refunds ``success_refund`` up
    to ``capacity``; with too few tokens left no more retries happen and the last error is
    raised. This keeps many concurrent requests from hammering a failing server.
    """

    __slots__ = ("_tokens", "capacity", "retry_cost", "success_refund")

    def __init__(
        self, capacity: int = 500, *, retry_cost: int = 5, success_refund: int = 1
    ) -> None:
        if capacity < 0 or retry_cost < 0 or success_refund < 0:
            raise ValueError("retry budget values must be >= 0")
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.success_refund = success_refund
        self._tokens = capacity

    @property
    def tokens(self) -> int:
        """Tokens left."""
        return self._tokens

    @property
    def can_retry(self) -> bool:
        """Whether the bucket holds the cost of one more retry (nothing is spent)."""
        return self._tokens >= self.retry_cost

    def try_acquire(self) -> bool:
        """Spend the cost of one retry; ``False`` (nothing spent) when the bucket is too low."""
        if self._tokens < self.retry_cost:
            return False
        self._tokens -= self.retry_cost
        return True

    def record_success(self) -> None:
        """Refund after a successful response."""
        tokens = self._tokens + self.success_refund
        self._tokens = tokens if tokens < self.capacity else self.capacity


class RateGate:
    """One shared 429 gate per client: after a 429 with ``Retry-After``, every request of the
    client waits until the deadline, not only the one that hit it.

    Waits go through the injected clock's ``sleep`` (anyio by default), so cancellation is
    immediate and tests never sleep for real.
    """

    __slots__ = ("_clock", "until")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.until = 0.0
        """Monotonic time (seconds) before which no request may start; 0 when open."""

    def close_for(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` from now (never shortens a longer hold)."""
        until = self._clock.monotonic() + seconds
        if until > self.until:
            self.until = until

    def remaining(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        until = self.until
        if not until:
            return 0.0
        left = until - self._clock.monotonic()
        if left <= 0:
            self.until = 0.0
            return 0.0
        return left

    async def wait(self) -> None:
        """Return once the gate is open (re-checks, since another 429 may extend the hold)."""
        while True:
            left = self.remaining()
            if left <= 0:
                return
            await self._clock.sleep(left)


# -- the decision after a failed attempt -----------------------------------------------------------

RetryReason = Literal[
    "backoff",
    "retry_after",
    "rate_gate",
    "not_retryable",
    "retries_exhausted",
    "retry_after_too_long",
    "deadline",
    "budget_exhausted",
]
"""Why an attempt is repeated (the first three) or not (the others)."""


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failed attempt.

    Attributes:
        retry: whether to repeat the attempt.
        delay: seconds to sleep before repeating it (0 when not repeated, and for a 429 whose
            wait is spent at the client's gate instead).
        reason: ``"backoff"`` (jittered backoff), ``"retry_after"`` (the server's
            ``Retry-After``), ``"rate_gate"`` (a 429: wait at the gate, then repeat);
            ``"not_retryable"`` (in this mode), ``"retries_exhausted"``,
            ``"retry_after_too_long"``, ``"deadline"`` (the wait would pass the call's
            deadline), ``"budget_exhausted"`` (the client's retry budget).
    """

    retry: bool
    delay: float
    reason: RetryReason


def requested_wait(error: Iris360Error, epoch: float) -> float | None:
    """The wait the server asked for with ``Retry-After`` (seconds or HTTP date), if any.

    Args:
        error: the failed attempt's error (only a status error can carry the header).
        epoch: the current time in seconds since the Unix epoch (for an HTTP date).
    """
    if isinstance(error, RateLimitError):
        return error.retry_after
    if not isinstance(error, APIStatusError):
        return None
    for name, value in error.headers.items():
        if name.lower() == "retry-after":
            return parse_retry_after(value, epoch)
    return None


def gate_hold(error: Iris360Error, *, policy: RetryPolicy, authenticated: bool) -> float | None:
    """Seconds every request of the client must hold back after ``error`` (the 429 gate), or
    ``None``: a 429 with a ``Retry-After`` of at most ``policy.max_retry_after`` on an
    authenticated call closes the gate, whether or not the call itself is repeated. Login and
    refresh (unauthenticated) are limited per route and leave the gate open."""
    if not authenticated or not isinstance(error, RateLimitError):
        return None
    asked = error.retry_after
    if asked is None or asked > policy.max_retry_after:
        return None
    return asked


def decide_retry(
    error: Iris360Error,
    *,
    attempt: int,
    mode: RetryMode,
    policy: RetryPolicy,
    now: float,
    epoch: float,
    deadline_at: float | None = None,
    gate_remaining: float = 0.0,
    budget_ok: bool = True,
    authenticated: bool = True,
) -> RetryDecision:
    """Whether, and after how long, a failed attempt is repeated. No I/O, no side effects
    beyond drawing the jitter from ``policy.random``.

    In order: the failure must be retryable in ``mode`` (:func:`is_retryable`) and retries
    left; a ``Retry-After`` longer than ``policy.max_retry_after`` ends the call at once; the
    wait is the server's ``Retry-After`` (for a 429 on an authenticated call it is spent at the
    client's gate, see :func:`gate_hold`), otherwise full-jitter backoff; a wait (or a gate)
    that reaches the call's deadline ends the call; so does an empty retry budget.

    Args:
        error: why the attempt failed.
        attempt: retries already made for this call (0 after the first attempt).
        mode: the call's :data:`RetryMode`.
        policy: the retry policy.
        now: the current monotonic time, seconds (the clock of ``deadline_at``).
        epoch: the current time in seconds since the Unix epoch (HTTP-date ``Retry-After``).
        deadline_at: the monotonic time at which the call's deadline passes, if it has one.
        gate_remaining: seconds until the client's 429 gate opens (0 when open).
        budget_ok: whether the client's retry budget can pay for one more retry.
        authenticated: whether the call carries an access token (login and refresh do not).
    """
    if not is_retryable(error, mode):
        return RetryDecision(False, 0.0, "not_retryable")
    if attempt >= policy.max_retries:
        return RetryDecision(False, 0.0, "retries_exhausted")
    asked = requested_wait(error, epoch)
    delay: float
    reason: RetryReason
    if asked is None:
        delay, reason = policy.backoff(attempt), "backoff"
    elif asked > policy.max_retry_after:
        return RetryDecision(False, 0.0, "retry_after_too_long")
    elif authenticated and isinstance(error, RateLimitError):
        delay, reason = 0.0, "rate_gate"
    else:
        delay, reason = asked, "retry_after"
    if deadline_at is not None and now + max(delay, gate_remaining) >= deadline_at:
        return RetryDecision(False, 0.0, "deadline")
    if not budget_ok:
        return RetryDecision(False, 0.0, "budget_exhausted")
    return RetryDecision(True, delay, reason)
