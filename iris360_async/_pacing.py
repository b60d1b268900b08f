"""An adaptive concurrency limit, without I/O: how many requests to keep in flight.

:class:`AdaptiveLimit` is fed one sample per finished request (its latency, how it ended, the
clock reading, and the ``Retry-After`` / ``X-RateLimit-Remaining`` values when the answer carried
them) and answers with :attr:`~AdaptiveLimit.limit`. It never sleeps and never reads a clock of
its own, so tests drive it with synthetic traces.

How it decides, once per *round* -- two windows of answers to requests sent after the last
change; the first lets the queue settle at the new limit, the second is measured:

* **No-load latency**: the lowest round latency seen. When fewer requests were in flight than
  in the round before and latency did not move, they were not waiting in a queue: the work
  itself got dearer, so the no-load latency is re-learnt (cost drift is followed, not fought).
* **Gradient**: ``ratio = round latency / no-load latency``. Above ``tolerance`` (and more
  than ``noise`` seconds above the no-load latency: timer and network jitter of a few
  milliseconds is not a queue) requests queue; the server's useful concurrency (its *knee*)
  is about ``in flight / ratio``, and the limit moves to the knee plus a small headroom
  (``headroom * sqrt(knee)``, at least 1) that keeps every worker busy without filling the
  queue. Decreases take effect at once; increases
  add one headroom per round, and only while the caller uses at least half of the limit.
  When more requests were in flight than in the round before and answers per second grew
  nearly as much, latency rose without a queue (a client's own overhead): the limit holds and
  that latency becomes the no-load latency.
* **Start** (slow start): from a low ``initial`` the limit grows by half a request per answer
  that did not wait -- 1.5 times every round trip -- until an answer comes back later than
  the no-load latency allows. The limit then drops to the knee that late request saw: the
  limit in force when it was sent, divided by its latency ratio (the requests answered first
  after a rise were sent below it, so the current limit would overestimate the knee). One
  slow answer of a server with a long tail ends slow start too early; the undo below resumes
  it. (Doubling every round trip would overshoot to twice the knee before the first late
  answer is back: too close to a gateway timeout of a few times the unloaded latency.)
* **Undo**: a cut on rising latency after which (in the next round) latency is back within
  ``tolerance`` of the no-load latency *and* fewer answers per second come back than before
  the rise was not the server's doing (the client's own event loop, a garbage collection or a
  busy neighbour on the client's machine held every answer back at once): the limit returns
  to where it was. Once: the same rise seen again at the restored limit is believed.
* **Overload** (429, 503, 504, a lost answer): multiplicative decrease. Answers to requests sent
  before the last decrease are not counted again, so one burst counts once. Once the overload
  is over the limit doubles back to where the first decrease put it, then grows as usual.
* ``Retry-After`` pauses new requests (:attr:`~AdaptiveLimit.paused_until`). Slow start ends
  (without a cut) once ``X-RateLimit-Remaining`` is below eight times the limit.
  ``X-RateLimit-Remaining`` that falls during a round (sending faster than the gateway refills)
  or is below two windows stops growth; falling below one window decreases gently; ``0``
  decreases at once.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

__all__ = ["DEFAULT_MAX_LIMIT", "AdaptiveLimit", "Outcome", "outcome_for_status"]

Outcome = Literal["ok", "overload", "error", "dropped"]
"""How a request ended, for the controller:

* ``"ok"``: answered by the server proper (2xx, 207); its latency measures the server's load;
* ``"overload"``: 429, 503 or 504 -- the server or its gateway is saturated;
* ``"error"``: any other failure; neither a load signal nor a latency sample;
* ``"dropped"``: no answer at all (connection lost, client-side timeout) -- counted as overload.
"""

DEFAULT_MAX_LIMIT = 64
"""The default upper bound of the limit (requests in flight)."""

_EPSILON = 1e-9  # seconds
_OUTCOMES = frozenset({"ok", "overload", "error", "dropped"})
_OVERLOAD_STATUSES = frozenset({429, 503, 504})


def outcome_for_status(status: int) -> Outcome:
    """The controller outcome of an HTTP status: 2xx ``ok``, 429/503/504 ``overload``, others
    ``error``."""
    if 200 <= status < 300:
        return "ok"
    if status in _OVERLOAD_STATUSES:
        return "overload"
    return "error"


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return value


def _check_fraction(name: str, value: float, low: float, high: float) -> float:
    if not low < value < high:
        raise ValueError(f"{name} must be between {low} and {high} (exclusive), got {value}")
    return float(value)


class AdaptiveLimit:
    """A latency-gradient concurrency limit with multiplicative decrease on overload.

    Args:
        min_limit: the limit never goes below this (requests in flight, >= 1).
        max_limit: the limit never goes above this (default :data:`DEFAULT_MAX_LIMIT`).
        initial: the starting limit (default 2, clamped into ``[min_limit, max_limit]``).
        headroom: requests kept queued beyond the server's knee, as a factor of
            ``sqrt(knee)`` (at least one request).
        backoff: factor applied to the limit on overload (429, 503, 504, dropped).
        quota_backoff: factor applied when ``X-RateLimit-Remaining`` reaches 0.
        tolerance: round latency up to ``tolerance`` times the no-load latency counts as
            unloaded (measurement noise, not queueing).
        noise: so does round latency up to ``noise`` seconds above the no-load latency (the
            jitter of the client's event loop and the network; matters for quick requests).

    Example::

        limit = AdaptiveLimit(max_limit=32)
        if limit.acquire(now):
            ...                                   # send, then:
            limit.release()
            limit.on_sample(latency, "ok", now=clock.monotonic())
    """

    __slots__ = (
        "_backoff",
        "_decreased_at",
        "_headroom",
        "_limit",
        "_noise",
        "_noload",
        "_prev_round",
        "_quota_backoff",
        "_quota_first",
        "_quota_last",
        "_quota_min",
        "_recover_to",
        "_round_count",
        "_round_peak",
        "_round_start",
        "_round_sum",
        "_slow_start",
        "_ss_answers",
        "_ss_history",
        "_ss_n",
        "_ss_sum",
        "_tolerance",
        "_tracking",
        "_undo",
        "_undone",
        "in_flight",
        "max_limit",
        "min_limit",
        "paused_until",
        "recent_latency",
    )

    def __init__(
        self,
        *,
        min_limit: int = 1,
        max_limit: int = DEFAULT_MAX_LIMIT,
        initial: int = 2,
        headroom: float = 0.5,
        backoff: float = 0.5,
        quota_backoff: float = 0.75,
        tolerance: float = 1.1,
        noise: float = 0.01,
    ) -> None:
        self.min_limit = _check_int("min_limit", min_limit, 1)
        self.max_limit = _check_int("max_limit", max_limit, 1)
        if max_limit < min_limit:
            raise ValueError(f"max_limit ({max_limit}) must not be below min_limit ({min_limit})")
        initial = _check_int("initial", initial, 1)
        if not headroom > 0 or not math.isfinite(headroom):
            raise ValueError(f"headroom must be a positive number, got {headroom}")
        self._headroom = float(headroom)
        self._backoff = _check_fraction("backoff", backoff, 0.0, 1.0)
        self._quota_backoff = _check_fraction("quota_backoff", quota_backoff, 0.0, 1.0)
        self._tolerance = _check_fraction("tolerance", tolerance, 1.0, 2.0)
        if not 0 <= noise < math.inf:
            raise ValueError(f"noise must be a finite number of seconds >= 0, got {noise}")
        self._noise = float(noise)
        self._limit = float(min(max(initial, min_limit), max_limit))
        self._slow_start = True
        self._noload = math.inf
        self._prev_round: tuple[float, float] | None = None  # (in flight, latency)
        self._decreased_at = -math.inf
        self._recover_to = 0.0  # after overload: doubling back up to here is safe
        self._round_start = -math.inf
        self._round_sum = 0.0
        self._round_count = 0
        self._round_peak = 0
        self._quota_first: int | None = None  # X-RateLimit-Remaining: first of the round
        self._quota_last: int | None = None  # and latest
        self._quota_min: int | None = None  # and lowest
        self._tracking = False
        self._ss_history: list[tuple[float, float]] = []  # slow start: (time, limit until)
        # slow start: when the latest answers came back
        self._ss_answers: deque[float] = deque(maxlen=4 * self.max_limit)
        self._ss_sum = 0.0  # slow start: answers that did not wait, their latency summed
        self._ss_n = 0
        # before a latency cut: (limit, answers/s, whether slow start was on)
        self._undo: tuple[float, float, bool] | None = None
        self._undone = 0.0  # the limit an undo returned to (until a round without a queue)
        self.in_flight = 0
        """Requests counted through :meth:`acquire` and not yet :meth:`release`-d."""
        self.paused_until = -math.inf
        """Clock reading before which no request should be sent (``Retry-After``)."""
        self.recent_latency: float | None = None
        """Smoothed latency of recent ``ok`` answers, seconds (``None`` before the first)."""

    # -- what callers read --------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """Requests that may be in flight now (``min_limit`` <= limit <= ``max_limit``)."""
        return max(self.min_limit, min(self.max_limit, int(self._limit)))

    @property
    def noload_latency(self) -> float | None:
        """The estimated latency of a request that does not wait in a queue, seconds."""
        return None if math.isinf(self._noload) else self._noload

    def paused(self, now: float) -> bool:
        """Whether ``Retry-After`` still forbids sending at clock reading ``now``."""
        return now < self.paused_until

    def __repr__(self) -> str:
        return (
            f"<AdaptiveLimit limit={self.limit} in_flight={self.in_flight} "
            f"range=[{self.min_limit}, {self.max_limit}]>"
        )

    # -- in-flight bookkeeping ----------------------------------------------------------------

    def acquire(self, now: float) -> bool:
        """Count one more request in flight if the limit and any pause allow it.

        Counting through ``acquire`` / :meth:`release` also tells the controller whether the
        caller uses its limit: the limit does not grow while fewer than half of it are used.
        """
        self._tracking = True
        if now < self.paused_until or self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        if self.in_flight > self._round_peak:
            self._round_peak = self.in_flight
        return True

    def release(self) -> None:
        """Count one request fewer in flight."""
        if self.in_flight <= 0:
            raise RuntimeError("release() without a matching acquire()")
        self.in_flight -= 1

    # -- samples ------------------------------------------------------------------------------

    def on_sample(
        self,
        latency: float,
        outcome: Outcome,
        now: float,
        retry_after: float | None = None,
        remaining: int | None = None,
    ) -> None:
        """Feed one finished request.

        Args:
            latency: seconds from sending the request to its answer (or its failure).
            outcome: how it ended (:data:`Outcome`; see :func:`outcome_for_status`).
            now: the clock reading when it ended (seconds, any monotonic origin).
            retry_after: the answer's ``Retry-After`` in seconds, if any: nothing is sent
                before ``now + retry_after``.
            remaining: the answer's ``X-RateLimit-Remaining``, if any.
        """
        if outcome not in _OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        if not math.isfinite(latency) or latency < 0:
            raise ValueError(f"latency must be a finite number >= 0, got {latency}")
        if retry_after is not None:
            if not math.isfinite(retry_after) or retry_after < 0:
                raise ValueError(f"retry_after must be a finite number >= 0, got {retry_after}")
            self.paused_until = max(self.paused_until, now + retry_after)
        if remaining is not None:
            _check_int("remaining", remaining, 0)
        sent = now - latency + _EPSILON  # clock rounding: sent at the change counts as after
        if outcome == "overload" or outcome == "dropped":
            self._decrease(self._backoff, sent, now)
            return
        if outcome != "ok":
            return
        if remaining == 0:
            self._decrease(self._quota_backoff, sent, now, recover=False)
        elif remaining is not None:
            if self._quota_first is None:
                self._quota_first = remaining
            low = self._quota_min
            self._quota_min = remaining if low is None else min(low, remaining)
            self._quota_last = remaining
        smooth = self.recent_latency
        self.recent_latency = latency if smooth is None else smooth + 0.2 * (latency - smooth)
        if sent < self._round_start:
            return  # sent under an older limit: says nothing about the current one
        if self._slow_start:
            if remaining is None or remaining >= 8 * self._limit:
                self._slow_start_sample(latency, sent, now)
                return
            # a gateway quota too small for a few more doublings: rounds, which read it
            # with care, from here on
            self._slow_start = False
            self._set(self._limit, now)
            return
        # a round is two windows: the first lets the queue settle at the new limit, the
        # second is measured
        self._round_count += 1
        window = max(1, min(self._round_peak, self.limit) if self._tracking else self.limit)
        if self._round_count > window:
            self._round_sum += latency
            if self._round_count >= 2 * window:
                self._end_round(now, self._round_sum / (self._round_count - window))

    def _decrease(self, factor: float, sent: float, now: float, *, recover: bool = True) -> None:
        """Multiplicative decrease, once per window: requests sent before the last decrease
        reflect the old limit and were already answered for."""
        self._slow_start = False
        self._undo = None
        self._undone = 0.0
        if sent < self._decreased_at:
            return
        self._decreased_at = now
        if recover:
            self._recover_to = max(self._recover_to, self._limit * factor)
        self._set(self._limit * factor, now)

    def _late(self, latency: float, base: float) -> bool:
        """Whether ``latency`` is more than noise above the no-load latency ``base``."""
        return latency > base * self._tolerance and latency - base > self._noise

    def _slow_start_sample(self, latency: float, sent: float, now: float) -> None:
        """Slow start: half a request more per answer that did not wait (1.5 times the limit
        every round trip); the first late answer ends it at the knee it shows."""
        if self._ss_n and self._late(latency, self._ss_sum / self._ss_n):
            self._end_slow_start(latency, sent, now)
            return
        if self._limit >= self._undone:
            self._undone = 0.0  # no queue at the restored limit: the next rise may be undone
        self._ss_sum += latency
        self._ss_n += 1
        self._noload = self._ss_sum / self._ss_n
        self._ss_answers.append(now)
        used = min(self._round_peak, self._limit) if self._tracking else self._limit
        if used * 2 < self._limit or self._limit >= self.max_limit:
            return  # the caller does not use the limit (or it is at the top)
        self._ss_history.append((now, self._limit))
        self._limit = min(float(self.max_limit), self._limit + 0.5)

    def _end_slow_start(self, latency: float, sent: float, now: float) -> None:
        level = self._limit  # the limit in force when the late request was sent
        for at, before in self._ss_history:
            if at > sent:
                level = before
                break
        self._slow_start = False
        self._ss_history = []
        noload = max(self._noload, _EPSILON)  # instant answers so far: no division by zero
        knee = level * noload / latency
        self._prev_round = None
        if not self._undone:  # answers/s in the round trip before the late request was sent
            answered = sum(1 for t in self._ss_answers if sent - noload <= t <= sent)
            self._undo = (self._limit, answered / noload, True)
        self._ss_answers.clear()
        self._set(min(self._limit, knee + self._extra(knee)), now)

    def _restart_slow_start(self, limit: float, now: float) -> None:
        """Back to slow start at ``limit`` (its end was an undone cut)."""
        self._set(limit, now)
        self._slow_start = True
        self._ss_history = []

    def _set(self, value: float, now: float) -> None:
        self._limit = min(float(self.max_limit), max(float(self.min_limit), value))
        self._round_start = now
        self._round_sum = 0.0
        self._round_count = 0
        self._round_peak = self.in_flight
        self._quota_first = self._quota_last = self._quota_min = None

    def _extra(self, level: float) -> float:
        return max(1.0, self._headroom * math.sqrt(max(level, 1.0)))

    def _end_round(self, now: float, latency: float) -> None:
        limit = self._limit
        used = min(self._round_peak, self.limit) if self._tracking else self.limit
        app_limited = used * 2 < limit
        first, last = self._quota_first, self._quota_last
        # X-RateLimit-Remaining: falling means faster than the gateway's refill (no growth);
        # falling below one window's worth means the bucket runs dry (gentle decrease); too
        # low to absorb two windows also stops growth
        falling = last is not None and first is not None and last < first
        draining = falling and last is not None and last < limit
        scarce = falling or (self._quota_min is not None and self._quota_min < 2 * limit)
        prev, self._prev_round = self._prev_round, (used, latency)
        stale = prev is not None and self._stale_noload(prev, used, latency)
        if latency < self._noload or stale:
            self._noload = latency
        ratio = latency / self._noload if self._noload > 0 else 1.0
        undo, self._undo = self._undo, None  # judged on the first round after the cut only
        if draining:
            target = limit * 0.9
        elif ratio <= self._tolerance or latency - self._noload <= self._noise:
            if undo is None:
                self._undone = 0.0
            if (undo is not None and not (app_limited or scarce) and ratio <= self._tolerance
                    and used / latency < 0.9 * undo[1]):
                # the last cut left no queue and cost answers: the rise was not the server's
                target = self._undone = max(limit, undo[0])
                if undo[2]:
                    self._restart_slow_start(target, now)
                    return
            elif app_limited or scarce:
                target = limit
            elif limit < self._recover_to:
                target = min(limit * 2, self._recover_to)
            else:
                target = limit + self._extra(limit)
        elif prev is not None and self._served(prev, used, latency):
            # more in flight, latency up, but answers per second up nearly as much: the added
            # requests were served, not queued (a client's own overhead grows with the load)
            self._noload = latency
            target = limit
        else:
            knee = used / ratio
            target = knee + self._extra(knee)
            if target < limit and not (undo or self._undone) and prev and prev[1] > 0:
                self._undo = (limit, prev[0] / prev[1], False)
            if target > limit:
                target = limit if app_limited or scarce else limit + self._extra(limit)
        if target >= self._recover_to:
            self._recover_to = 0.0
        self._set(target, now)

    @staticmethod
    def _served(prev: tuple[float, float], used: float, latency: float) -> bool:
        """Whether at least 20 % more requests were in flight than in the previous round and
        answers per second (in flight / latency) grew by at least 60 % as much."""
        prev_used, prev_latency = prev
        if prev_used <= 0 or prev_latency <= 0 or latency <= 0 or used < 1.2 * prev_used:
            return False
        rate_gain = (used / latency) / (prev_used / prev_latency) - 1.0
        return rate_gain >= 0.6 * (used / prev_used - 1.0)

    @staticmethod
    def _stale_noload(prev: tuple[float, float], used: float, latency: float) -> bool:
        """Whether fewer requests (by >= 10 %) were in flight than in the previous round
        while latency stayed put: then requests were not queueing, the work itself got
        slower."""
        prev_used, prev_latency = prev
        expected = 1.0 - used / prev_used
        if expected < 0.1 or prev_latency <= 0:
            return False
        observed = 1.0 - latency / prev_latency
        # latency that rose says something else changed too (fewer workers): no conclusion
        return abs(observed) < expected / 3
