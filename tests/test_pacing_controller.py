"""The adaptive concurrency limit on synthetic traces: pure, instant, no I/O.

A small discrete-event simulation stands for the server: ``W`` workers behind a FIFO queue, a
service time per request, a gateway that answers 504 past its timeout (the backend still does
the work) and optionally a token-bucket rate limit answering 429. A job of ``N`` requests is
driven either by a fixed limit or by :class:`AdaptiveLimit`.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from iris360_async._pacing import (
    DEFAULT_MAX_LIMIT,
    AdaptiveLimit,
    Outcome,
    outcome_for_status,
)
from iris360_async.testing.server_model import PRESETS, ServerModelSettings

# -- the simulator -------------------------------------------------------------------------------


@dataclass
class Profile:
    """A server: ``workers(t)`` and ``service(t)`` may change over (simulated) time."""

    workers: Callable[[float], int]
    service: Callable[[float], float]
    timeout: float | None = None
    rtt: float = 0.002  # network round trip, seconds
    rate: float | None = None  # gateway token bucket: requests per second
    burst: int = 1
    retry_after: float = 1.0
    changes: tuple[float, ...] = ()  # instants where workers(t) changes
    storm: tuple[float, float] | None = None  # every request in [a, b) is answered 429
    jitter: float = 0.1  # each service time is scaled by a uniform factor in [1 - j, 1 + j]
    seed: int = 1


@dataclass
class Run:
    elapsed: float = 0.0
    timeouts: int = 0
    rate_limited: int = 0
    requests: int = 0
    latencies: list[float] = field(default_factory=list)
    trace: list[tuple[float, int, int]] = field(default_factory=list)  # (t, limit, in_flight)

    def limits_between(self, a: float, b: float) -> list[int]:
        return [limit for t, limit, _ in self.trace if a <= t < b]


def simulate(profile: Profile, limiter: AdaptiveLimit, jobs: int) -> Run:
    """Run a job of ``jobs`` requests; a 429 is sent again, a 504 is final (unknown)."""
    run = Run()
    events: list[tuple[float, int, str, int]] = []
    seq = 0

    def at(t: float, kind: str, rid: int = -1) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, rid))

    sent_at: dict[int, float] = {}
    header: dict[int, int] = {}
    finished: set[int] = set()  # answered to the client (done or timed out)
    queue: deque[int] = deque()
    busy = 0
    pending = jobs
    settled = 0
    next_id = 0
    tokens = float(profile.burst)
    rng = random.Random(profile.seed)
    refilled = 0.0

    def take_token(now: float) -> int | None:
        nonlocal tokens, refilled
        if profile.rate is None:
            return None
        tokens = min(float(profile.burst), tokens + (now - refilled) * profile.rate)
        refilled = now
        if tokens < 1:
            return -1
        tokens -= 1
        return int(tokens)

    def serve(now: float) -> None:
        nonlocal busy
        while queue and busy < profile.workers(now):
            rid = queue.popleft()
            busy += 1
            spread = 1.0 + profile.jitter * (2.0 * rng.random() - 1.0)
            at(now + profile.service(now) * spread, "done", rid)

    def answer(now: float, rid: int, outcome: str, remaining: int | None = None) -> None:
        latency = now - sent_at[rid]
        limiter.release()
        retry_after = profile.retry_after if outcome == "rate_limited" else None
        kind: Outcome = "ok" if outcome == "ok" else "overload"
        limiter.on_sample(latency, kind, now, retry_after=retry_after, remaining=remaining)
        if outcome == "ok":
            run.latencies.append(latency)
        run.trace.append((now, limiter.limit, limiter.in_flight))
        dispatch(now)
        if limiter.paused(now):
            at(limiter.paused_until, "wake")

    def dispatch(now: float) -> None:
        nonlocal pending, next_id
        while pending and limiter.acquire(now):
            pending -= 1
            rid = next_id
            next_id += 1
            sent_at[rid] = now
            run.requests += 1
            at(now + profile.rtt / 2, "arrive", rid)

    dispatch(0.0)
    for change in profile.changes:
        at(change, "serve")
    while events:
        now, _, kind, rid = heapq.heappop(events)
        if kind == "arrive":
            storm = profile.storm
            remaining = take_token(now)
            if remaining == -1 or (storm is not None and storm[0] <= now < storm[1]):
                run.rate_limited += 1
                pending += 1
                at(now + profile.rtt / 2, "limited", rid)
                continue
            if profile.timeout is not None:
                at(now + profile.timeout, "timeout", rid)
            if remaining is not None:
                header[rid] = remaining  # X-RateLimit-Remaining of its answer
            queue.append(rid)
            serve(now)
        elif kind == "limited":
            answer(now, rid, "rate_limited", remaining=0)
        elif kind == "done":
            busy -= 1
            serve(now)
            if rid not in finished:
                finished.add(rid)
                at(now + profile.rtt / 2, "answer", rid)
        elif kind == "answer":
            settled += 1
            answer(now, rid, "ok", header.pop(rid, None))
        elif kind == "timeout":
            if rid not in finished:
                finished.add(rid)
                run.timeouts += 1
                settled += 1
                at(now + profile.rtt / 2, "gateway", rid)
        elif kind == "gateway":
            answer(now, rid, "gateway_timeout")
        elif kind == "wake":
            dispatch(now)
        elif kind == "serve":
            serve(now)
        if settled == jobs and run.elapsed == 0.0:
            run.elapsed = now
    return run


def fixed(limit: int) -> AdaptiveLimit:
    return AdaptiveLimit(min_limit=limit, max_limit=limit, initial=limit)


def best_fixed(profile: Profile, jobs: int, limits: range = range(1, 25)) -> tuple[int, float]:
    """The oracle: the fixed limit with the shortest job (ties: the smaller limit); a limit
    that runs into gateway timeouts loses devices and does not count."""
    runs = {c: simulate(profile, fixed(c), jobs) for c in limits}
    times = {c: run.elapsed for c, run in runs.items() if run.timeouts == 0}
    best = min(times, key=lambda c: (times[c], c))
    return best, times[best]


def const(value: float) -> Callable[[float], float]:
    return lambda _t: value


def workers(n: int) -> Callable[[float], int]:
    return lambda _t: n


# The measured case: 4 workers, 0.2 s per 100-device request, 0.7 s gateway timeout.
CAPACITY_BOUND = Profile(workers=workers(4), service=const(0.2), timeout=0.7)


# -- traces --------------------------------------------------------------------------------------


def test_capacity_bound_converges_near_the_knee_and_stays() -> None:
    run = simulate(CAPACITY_BOUND, AdaptiveLimit(), jobs=400)
    best, best_time = best_fixed(CAPACITY_BOUND, 400)
    assert run.timeouts == 0
    assert best_time / run.elapsed >= 0.9
    assert statistics.median(run.latencies) <= 2 * 0.2 + CAPACITY_BOUND.rtt
    settled = run.limits_between(run.elapsed / 3, math.inf)
    assert min(settled) >= 4  # the knee is 4 workers
    assert max(settled) <= 7
    assert best <= 7


def test_todays_default_of_16_times_out_where_auto_does_not() -> None:
    run = simulate(CAPACITY_BOUND, fixed(16), jobs=400)
    assert run.timeouts > 100
    assert simulate(CAPACITY_BOUND, AdaptiveLimit(), jobs=400).timeouts == 0


def test_fast_server_grows_quickly_to_the_maximum() -> None:
    fast = Profile(workers=workers(64), service=const(0.02), timeout=1.0)
    run = simulate(fast, AdaptiveLimit(), jobs=20_000)
    oracle = simulate(fast, fixed(DEFAULT_MAX_LIMIT), jobs=20_000)
    assert oracle.elapsed / run.elapsed >= 0.9
    assert run.trace[-200][1] == DEFAULT_MAX_LIMIT
    # doubling from 2 every other round trip: the maximum is reached within 15
    first_max = next(t for t, limit, _ in run.trace if limit == DEFAULT_MAX_LIMIT)
    assert first_max < 15 * 0.02


def test_cost_step_up_mid_job_is_followed_without_gateway_timeouts() -> None:
    # the per-device cost doubles at t=10 s; the gateway timeout is 3x the unloaded time
    # (at the higher cost: 1.5x would leave no room for even one queued request)
    drifting = Profile(
        workers=workers(4), service=lambda t: 0.1 if t < 10 else 0.2, timeout=0.6
    )
    jobs = 600
    run = simulate(drifting, AdaptiveLimit(), jobs=jobs)
    _, best_time = best_fixed(drifting, jobs)
    assert run.timeouts == 0
    assert best_time / run.elapsed >= 0.85
    # the limit stays around the knee (4 workers) after the step instead of collapsing
    after = run.limits_between(12, run.elapsed)
    assert statistics.median(after) >= 4


def test_capacity_step_down_roughly_halves_the_limit() -> None:
    # 8 workers, then other load takes 4 of them from t=5 s on
    profile = Profile(
        workers=lambda t: 8 if t < 5 else 4, service=const(0.2), timeout=0.7, changes=(5.0,)
    )
    run = simulate(profile, AdaptiveLimit(), jobs=600)
    before = statistics.median(run.limits_between(2, 5))
    after = statistics.median(run.limits_between(8, run.elapsed))
    assert run.timeouts == 0
    assert 8 <= before <= 12
    assert 4 <= after <= 7
    assert after <= 0.7 * before


def test_capacity_step_up_is_found() -> None:
    # 4 workers, 16 from t=5 s on
    profile = Profile(
        workers=lambda t: 4 if t < 5 else 16, service=const(0.2), timeout=0.7, changes=(5.0,)
    )
    run = simulate(profile, AdaptiveLimit(), jobs=1200)
    assert statistics.median(run.limits_between(2, 5)) <= 7
    assert statistics.median(run.limits_between(9, run.elapsed)) >= 16
    assert run.timeouts == 0


def test_429_storm_drops_fast_and_recovers() -> None:
    profile = Profile(
        workers=workers(32), service=const(0.05), storm=(1.0, 2.0), retry_after=0.1
    )
    run = simulate(profile, AdaptiveLimit(max_limit=32), jobs=2000)
    before = run.limits_between(0.7, 1.0)
    during = run.limits_between(1.5, 2.0)
    assert min(before) == 32
    assert max(during) <= 2  # halved per Retry-After round: 32 -> 1 in half a second
    # doubling back to half the old limit within a few round trips, then on to the maximum
    assert min(run.limits_between(2.8, 3.0)) >= 16
    assert set(run.limits_between(4.0, 4.5)) == {32}


def test_rate_limited_gateway_gets_few_429s() -> None:
    # 32 workers would take 32 requests at once; the gateway allows 40 per second, burst 10
    profile = Profile(
        workers=workers(32), service=const(0.1), rate=40.0, burst=10, retry_after=1.0
    )
    jobs = 2000
    run = simulate(profile, AdaptiveLimit(), jobs=jobs)
    assert run.rate_limited <= 0.02 * run.requests
    assert run.elapsed <= jobs / 40.0 / 0.85


# -- the emulator's server-model presets, simulated -----------------------------------------------

PRESET_JOBS = {"capacity_bound": 600, "rate_limited": 600, "drifting": 600, "shared": 600,
               "fast": 10_000}  # 100-device requests; long enough to span each drift


def preset_profile(settings: ServerModelSettings) -> Profile:
    """The simulation of a server model preset, for requests of 100 devices."""
    return Profile(
        workers=settings.free_workers,
        service=lambda t: settings.cost(100, t),
        timeout=settings.gateway_timeout,
        rate=settings.rate,
        burst=settings.burst,
        retry_after=1.0,  # a gateway's Retry-After is whole seconds
        changes=tuple(x for load in settings.tenants for x in (load.start, load.end)),
    )


@pytest.mark.parametrize("name", sorted(PRESET_JOBS))
def test_auto_against_the_best_fixed_limit_on_every_preset(name: str) -> None:
    settings = PRESETS[name]
    profile = preset_profile(settings)
    jobs = PRESET_JOBS[name]
    run = simulate(profile, AdaptiveLimit(), jobs)
    sweep = range(16, 65, 16) if name == "fast" else range(1, 25)
    _, best_time = best_fixed(profile, jobs, sweep)
    assert best_time / run.elapsed >= 0.85
    assert run.timeouts == 0
    assert run.rate_limited <= 0.02 * run.requests
    if name == "capacity_bound":
        assert statistics.median(run.latencies) <= 2 * settings.unloaded_time(100)
    if name in ("capacity_bound", "drifting"):  # where today's default of 16 loses devices
        assert simulate(profile, fixed(16), jobs).timeouts > 0


# -- single samples -----------------------------------------------------------------------------


def feed_round(limit: AdaptiveLimit, latency: float, now: float) -> float:
    """Answer one round (two windows) of ``ok`` requests sent at ``now``; returns the new
    time."""
    end = now + latency
    for _ in range(2 * limit.limit):
        limit.on_sample(latency, "ok", end)
    return end


def feed_window(limit: AdaptiveLimit, latency: float, now: float) -> float:
    """Answer one window (the limit's worth: one round trip) of ``ok`` requests sent at
    ``now``; returns the new time."""
    end = now + latency
    for _ in range(limit.limit):
        limit.on_sample(latency, "ok", end)
    return end


def past_slow_start(level: int, **kwargs: float) -> AdaptiveLimit:
    """A limit at ``level`` after slow start: two overloads halved it from ``4 * level``, so
    it doubles back to ``2 * level`` first."""
    limit = AdaptiveLimit(initial=4 * level, **kwargs)  # type: ignore[arg-type]
    limit.on_sample(0.0, "overload", now=-2.0)
    limit.on_sample(0.0, "overload", now=-1.0)
    assert limit.limit == level
    return limit


def test_starts_low_and_grows_every_round_trip_while_latency_is_flat() -> None:
    limit = AdaptiveLimit()
    assert limit.limit == 2
    now = 0.0
    seen = []
    for _ in range(5):
        now = feed_window(limit, 0.1, now)  # half a request more per answer
        seen.append(limit.limit)
    assert seen == [3, 4, 6, 9, 14]


def test_fast_ramp_reaches_the_maximum_in_a_few_round_trips() -> None:
    # 64 workers, 20 ms: from 2 to 64 is 8.5 round trips growing 1.5 times each
    fast = Profile(workers=workers(64), service=const(0.02), timeout=1.0)
    run = simulate(fast, AdaptiveLimit(), jobs=2_000)
    first_max = next(t for t, limit, _ in run.trace if limit == DEFAULT_MAX_LIMIT)
    assert first_max < 10 * (0.02 + fast.rtt)
    assert run.timeouts == 0
    assert set(run.limits_between(first_max, math.inf)) == {DEFAULT_MAX_LIMIT}


def test_slow_start_ends_at_the_knee_the_first_late_answer_shows() -> None:
    limit = AdaptiveLimit(initial=32)
    now = feed_window(limit, 0.1, 0.0)  # 32 answers at no-load latency: 48 sent at 0.1
    assert limit.limit == 48
    limit.on_sample(0.4, "ok", now + 0.4)  # 4x late: about 12 of those 48 were served
    assert 12 <= limit.limit <= 14


def test_slow_start_after_instant_answers_ends_without_dividing_by_zero() -> None:
    limit = AdaptiveLimit(initial=8)
    now = feed_window(limit, 0.0, 1.0)
    limit.on_sample(0.05, "ok", now + 0.05)
    assert limit.limit == 1  # everything the instant answers promised was queueing


def test_latency_rise_cuts_to_the_knee_at_once() -> None:
    limit = past_slow_start(16)
    now = feed_round(limit, 0.1, 0.0)  # no-load latency: back up to 32
    assert limit.limit == 32
    feed_round(limit, 0.4, now)  # 4x the latency: about 8 requests were being served
    assert 8 <= limit.limit <= 10


def test_a_cut_that_left_no_queue_and_cost_answers_is_undone() -> None:
    # 32 in flight at 20 ms; every answer of one round is 40 ms late (the client's event loop
    # was busy): the cut to about 16 leaves no queue and halves the answers per second, so
    # the limit goes straight back
    limit = past_slow_start(16, noise=0.0)
    now = feed_round(limit, 0.020, 0.0)
    assert limit.limit == 32
    now = feed_round(limit, 0.020, now)
    level = limit.limit
    now = feed_round(limit, 0.060, now)
    assert limit.limit < level / 2
    feed_round(limit, 0.020, now)
    assert limit.limit >= level


def test_a_pause_during_slow_start_is_undone_and_slow_start_goes_on() -> None:
    limit = AdaptiveLimit(initial=16)
    now = feed_window(limit, 0.020, 0.0)
    assert limit.limit == 24
    for _ in range(3):  # every answer held back 40 ms at once (the client was busy), or
        limit.on_sample(0.060, "ok", now + 0.060)  # one slow answer of a long tail
    now += 0.060
    assert limit.limit < 16
    now = feed_round(limit, 0.020, now)  # no queue, and far fewer answers per second
    assert limit.limit == 24
    feed_window(limit, 0.020, now)  # slow start again: 1.5 times per round trip
    assert limit.limit == 36


def test_a_cut_that_kept_the_answers_per_second_stays() -> None:
    # 16 in flight at 20 ms (800/s); at 32 latency doubles (a queue: the knee is 16); after
    # the cut the answers per second are what they were: the cut stands
    limit = past_slow_start(16, noise=0.0)
    now = feed_round(limit, 0.020, 0.0)
    assert limit.limit == 32
    now = feed_round(limit, 0.040, now)
    cut = limit.limit
    assert cut < 20
    feed_round(limit, 0.021, now)
    assert cut <= limit.limit < 24


def test_a_rise_seen_again_at_the_restored_limit_is_believed() -> None:
    limit = past_slow_start(16, noise=0.0)
    now = feed_round(limit, 0.020, 0.0)
    now = feed_round(limit, 0.020, now)
    level = limit.limit
    now = feed_round(limit, 0.060, now)  # a pause: cut, then undone
    now = feed_round(limit, 0.020, now)
    assert limit.limit == level
    now = feed_round(limit, 0.060, now)  # the same rise at the same limit: a real queue
    cut = limit.limit
    assert cut < level / 2
    feed_round(limit, 0.020, now)
    assert limit.limit < level


def test_overload_halves_once_per_window() -> None:
    limit = AdaptiveLimit(initial=32)
    for _ in range(20):  # a burst of 504s, all sent before the first one came back
        limit.on_sample(0.7, "overload", now=10.0)
    assert limit.limit == 16
    limit.on_sample(0.7, "overload", now=10.8)  # sent at 10.1, after the decrease
    assert limit.limit == 8


def test_retry_after_pauses_sending() -> None:
    limit = AdaptiveLimit(initial=8)
    assert limit.acquire(100.0)
    limit.release()
    limit.on_sample(0.01, "overload", now=100.0, retry_after=2.5)
    assert limit.paused_until == 102.5
    assert limit.paused(101.0)
    assert not limit.acquire(102.4)
    assert limit.acquire(102.5)
    # a shorter Retry-After later does not shorten the pause
    limit.on_sample(0.01, "overload", now=100.1, retry_after=0.5)
    assert limit.paused_until == 102.5


def test_remaining_zero_decreases_and_low_remaining_stops_growth() -> None:
    limit = AdaptiveLimit(initial=16)
    end = 0.1
    for _ in range(16):
        limit.on_sample(0.1, "ok", end, remaining=5)  # fewer tokens left than the limit
    assert limit.limit == 16
    limit.on_sample(0.1, "ok", 0.3, remaining=0)
    assert limit.limit == 12
    limit.on_sample(0.1, "ok", 0.3, remaining=0)  # same window: counted once
    assert limit.limit == 12
    now = 0.3
    for _ in range(5):
        now = feed_round(limit, 0.1, now)
    assert limit.limit > 12  # plenty of quota again: growth resumes


def test_errors_and_stale_samples_do_not_move_the_limit() -> None:
    limit = AdaptiveLimit(initial=8)
    for _ in range(50):
        limit.on_sample(0.001, "error", now=1.0)
    assert limit.limit == 8
    assert limit.noload_latency is None


def test_app_limited_caller_does_not_inflate_the_limit() -> None:
    limit = AdaptiveLimit(initial=8)
    now = 0.0
    for _ in range(20):  # only one request at a time, ever
        assert limit.acquire(now)
        now += 0.1
        limit.release()
        limit.on_sample(0.1, "ok", now)
    assert limit.limit == 8


def test_limit_respects_bounds() -> None:
    limit = AdaptiveLimit(min_limit=3, max_limit=5, initial=4)
    now = 0.0
    for _ in range(10):
        now = feed_round(limit, 0.1, now)
    assert limit.limit == 5
    for i in range(10):
        limit.on_sample(0.1, "dropped", now=now + i)
    assert limit.limit == 3


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"min_limit": 0}, ValueError),
        ({"max_limit": 2, "min_limit": 3}, ValueError),
        ({"initial": 1.5}, TypeError),
        ({"max_limit": True}, TypeError),
        ({"backoff": 1.0}, ValueError),
        ({"headroom": 0.0}, ValueError),
        ({"tolerance": 0.9}, ValueError),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        AdaptiveLimit(**kwargs)  # type: ignore[arg-type]


def test_bad_samples_are_refused() -> None:
    limit = AdaptiveLimit()
    with pytest.raises(ValueError, match="outcome"):
        limit.on_sample(0.1, "fine", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency"):
        limit.on_sample(-0.1, "ok", 1.0)
    with pytest.raises(ValueError, match="retry_after"):
        limit.on_sample(0.1, "overload", 1.0, retry_after=math.nan)
    with pytest.raises(ValueError, match="remaining"):
        limit.on_sample(0.1, "ok", 1.0, remaining=-1)
    with pytest.raises(RuntimeError):
        limit.release()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "ok"), (207, "ok"), (429, "overload"), (503, "overload"), (504, "overload"),
     (500, "error"), (502, "error"), (403, "error")],
)
def test_outcome_for_status(status: int, outcome: str) -> None:
    assert outcome_for_status(status) == outcome


def test_a_rise_within_the_noise_floor_is_not_a_queue() -> None:
    # 20 ms requests; +6 ms is a ratio of 1.3 but within the 10 ms floor: growth goes on
    limit = AdaptiveLimit(initial=8)
    now = feed_window(limit, 0.020, 0.0)
    assert limit.limit == 12
    feed_window(limit, 0.026, now)
    assert limit.limit == 18
    strict = AdaptiveLimit(initial=8, noise=0.0)
    now = feed_window(strict, 0.020, 0.0)
    feed_window(strict, 0.026, now)
    assert strict.limit < 12  # without the floor: cut to the knee


def test_latency_up_but_answers_per_second_up_as_much_holds_the_limit() -> None:
    # 16 in flight at 20 ms, then 32 at 30 ms: 800 -> 1067 answers/s (+33 % for +100 % in
    # flight: a queue) versus 32 at 22.5 ms: 1422/s (+78 %: served, the client's overhead)
    queued = past_slow_start(16, noise=0.0)
    now = feed_round(queued, 0.020, 0.0)
    assert queued.limit == 32
    feed_round(queued, 0.030, now)
    assert queued.limit < 32
    served = past_slow_start(16, noise=0.0)
    now = feed_round(served, 0.020, 0.0)
    now = feed_round(served, 0.0225, now)
    assert served.limit == 32
    assert served.noload_latency == pytest.approx(0.0225)


def test_bad_noise_is_refused() -> None:
    with pytest.raises(ValueError, match="noise"):
        AdaptiveLimit(noise=-0.001)
    with pytest.raises(ValueError, match="noise"):
        AdaptiveLimit(noise=math.inf)
