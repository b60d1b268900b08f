"""Pure retry decisions: Retry-After, backoff, retryability, budget, the shared 429 gate."""

from __future__ import annotations

import email.utils

import anyio
import pytest

from iris360_async import RetryPolicy
from iris360_async._retry import (
    ManualClock,
    RateGate,
    RetryBudget,
    RetryDecision,
    RetryMode,
    backoff_ceiling,
    decide_retry,
    full_jitter,
    gate_hold,
    is_retryable,
    parse_retry_after,
)
from iris360_async.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    InternalServerError,
    Iris360Error,
    RateLimitError,
    RedirectError,
    ResponseTooLargeError,
    status_error_class,
)

NOW = 1_700_000_000.0


# -- Retry-After -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), (" 3 ", 3.0), ("1.5", 1.5), ("0", 0.0), ("-5", 0.0), ("-0.1", 0.0)],
)
def test_retry_after_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_http_date_in_the_future() -> None:
    value = email.utils.formatdate(NOW + 42, usegmt=True)
    assert parse_retry_after(value, NOW) == pytest.approx(42.0)


def test_retry_after_http_date_in_the_past_is_clamped_to_zero() -> None:
    value = email.utils.formatdate(NOW - 3600, usegmt=True)
    assert parse_retry_after(value, NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "nan", "inf", "Mon, 99 Foo 2024", "1e"])
def test_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


# -- backoff -------------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_and_caps() -> None:
    assert [backoff_ceiling(i, 0.5, 8.0) for i in range(7)] == [0.5, 1, 2, 4, 8, 8, 8]
    assert backoff_ceiling(500, 0.5, 8.0) == 8.0
    with pytest.raises(ValueError, match="retry_index"):
        backoff_ceiling(-1, 0.5, 8.0)


@pytest.mark.parametrize("index", range(8))
@pytest.mark.parametrize("u", [0.0, 0.25, 0.999999])
def test_full_jitter_stays_within_zero_and_the_ceiling(index: int, u: float) -> None:
    value = full_jitter(index, 0.5, 8.0, u)
    assert 0.0 <= value <= backoff_ceiling(index, 0.5, 8.0)
    assert value == pytest.approx(u * backoff_ceiling(index, 0.5, 8.0))


def test_policy_backoff_uses_the_injected_random() -> None:
    policy = RetryPolicy(max_retries=5, random=lambda: 0.5)
    assert [policy.backoff(i) for i in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert RetryPolicy(random=lambda: 0.0).backoff(3) == 0.0


def test_policy_is_immutable_and_validated() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.base, policy.cap) == (3, 0.5, 8.0)
    with pytest.raises(AttributeError):
        policy.max_retries = 5  # type: ignore[misc]
    assert policy.replace(max_retries=7).max_retries == 7
    assert policy.max_retries == 3
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="base"):
        RetryPolicy(base=2.0, cap=1.0)


# -- retryability per mode -----------------------------------------------------------------------


def _status(status: int) -> APIStatusError:
    return status_error_class(status)("x", status=status, method="GET", url="http://h/x")


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
def test_read_retries_transient_statuses(status: int) -> None:
    assert is_retryable(_status(status), "read")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500, 501])
def test_read_does_not_retry_other_statuses(status: int) -> None:
    assert not is_retryable(_status(status), "read")


def test_read_retries_every_connection_error_and_timeout() -> None:
    assert is_retryable(APIConnectionError("x", request_sent=True), "read")
    assert is_retryable(APITimeoutError("x", request_sent=True), "read")


def test_write_retries_only_provably_unsent_requests_and_429() -> None:
    assert is_retryable(APIConnectionError("x", request_sent=False), "write")
    assert is_retryable(APITimeoutError("x", request_sent=False), "write")
    assert not is_retryable(APIConnectionError("x", request_sent=True), "write")
    assert not is_retryable(APITimeoutError("x", request_sent=True), "write")
    assert is_retryable(_status(429), "write")
    for status in (408, 500, 502, 503, 504):
        assert not is_retryable(_status(status), "write"), status


def test_never_retries_nothing() -> None:
    assert not is_retryable(APIConnectionError("x", request_sent=False), "never")
    assert not is_retryable(_status(429), "never")
    assert not is_retryable(_status(503), "never")


def test_status_classes_used_by_the_checks() -> None:
    assert isinstance(_status(429), RateLimitError)
    assert isinstance(_status(503), InternalServerError)
    assert isinstance(_status(400), BadRequestError)


# -- budget --------------------------------------------------------------------------------------


def test_budget_spends_five_per_retry_until_empty() -> None:
    budget = RetryBudget()
    spent = 0
    while budget.try_acquire():
        spent += 1
    assert spent == 100  # 500 tokens / 5 per retry
    assert budget.tokens == 0
    assert not budget.try_acquire()


def test_budget_refunds_one_per_success_up_to_capacity() -> None:
    budget = RetryBudget(capacity=10)
    assert budget.try_acquire()
    assert budget.try_acquire()
    assert budget.tokens == 0
    for _ in range(4):
        budget.record_success()
    assert budget.tokens == 4
    assert not budget.try_acquire()  # needs 5
    budget.record_success()
    assert budget.try_acquire()
    for _ in range(100):
        budget.record_success()
    assert budget.tokens == 10


# -- clock and gate ------------------------------------------------------------------------------


async def test_manual_clock_sleep_advances_instantly() -> None:
    clock = ManualClock(start=100.0)
    await clock.sleep(2.5)
    await clock.sleep(-1)
    assert clock.monotonic() == 102.5
    assert clock.time() == 102.5
    assert clock.sleeps == [2.5, 0.0]
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


async def test_open_gate_does_not_wait() -> None:
    clock = ManualClock()
    gate = RateGate(clock)
    await gate.wait()
    assert clock.sleeps == []
    assert gate.remaining() == 0.0


async def test_rate_gate_makes_every_waiter_wait_until_the_deadline() -> None:
    clock = ManualClock()
    gate = RateGate(clock)
    start = clock.monotonic()
    gate.close_for(5.0)
    woke: list[float] = []

    async def waiter() -> None:
        await gate.wait()
        woke.append(clock.monotonic())

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(waiter)
    assert len(woke) == 3
    assert all(t >= start + 5.0 for t in woke)
    assert gate.remaining() == 0.0


async def test_rate_gate_never_shortens_a_longer_hold() -> None:
    clock = ManualClock()
    gate = RateGate(clock)
    gate.close_for(10.0)
    gate.close_for(2.0)
    assert gate.remaining() == 10.0
    clock.advance(4.0)
    assert gate.remaining() == 6.0
    clock.advance(6.0)
    assert gate.remaining() == 0.0


async def test_rate_gate_wait_is_cancellable() -> None:
    class Never(ManualClock):
        async def sleep(self, seconds: float) -> None:
            await anyio.sleep_forever()

    gate = RateGate(Never())
    gate.close_for(60.0)
    finished = False

    async def waiter() -> None:
        nonlocal finished
        await gate.wait()
        finished = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert not finished


# -- the decision after a failed attempt ---------------------------------------------------------

POLICY = RetryPolicy(max_retries=3, base=0.5, cap=8.0, max_retry_after=120.0, random=lambda: 0.5)


def _answer(status: int, retry_after: str | None = None) -> APIStatusError:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    cls = status_error_class(status)
    kw: dict[str, object] = {}
    if cls is RateLimitError:
        kw["retry_after"] = parse_retry_after(retry_after, NOW)
    return cls("x", status=status, method="GET", url="http://h/x", headers=headers, **kw)


def decide(error: Iris360Error, clock: ManualClock, **kw: object) -> RetryDecision:
    """``decide_retry`` at the clock's current time, with the defaults of a first failure."""
    options: dict[str, object] = {
        "attempt": 0, "mode": "read", "policy": POLICY, "now": clock.monotonic(),
        "epoch": clock.time(),
    }
    options.update(kw)
    return decide_retry(error, **options)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=NOW)


@pytest.mark.parametrize(("attempt", "delay"), [(0, 0.25), (1, 0.5), (2, 1.0)])
def test_no_retry_after_means_jittered_backoff(
    clock: ManualClock, attempt: int, delay: float
) -> None:
    decision = decide(_answer(503), clock, attempt=attempt)
    assert decision == RetryDecision(True, delay, "backoff")


def test_retries_end_after_max_retries(clock: ManualClock) -> None:
    assert decide(_answer(503), clock, attempt=3) == RetryDecision(
        False, 0.0, "retries_exhausted"
    )


def test_retry_after_seconds_replace_the_backoff(clock: ManualClock) -> None:
    assert decide(_answer(503, "4"), clock) == RetryDecision(True, 4.0, "retry_after")
    assert decide(_answer(503, "0"), clock) == RetryDecision(True, 0.0, "retry_after")


def test_retry_after_http_date_counts_from_the_epoch_time(clock: ManualClock) -> None:
    when = email.utils.formatdate(NOW + 30, usegmt=True)
    decision = decide(_answer(503, when), clock)
    assert decision.retry
    assert decision.reason == "retry_after"
    assert decision.delay == pytest.approx(30.0)
    clock.advance(10)
    assert decide(_answer(503, when), clock).delay == pytest.approx(20.0)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_beyond_the_limit_ends_the_call(clock: ManualClock, status: int) -> None:
    decision = decide(_answer(status, "121"), clock)
    assert decision == RetryDecision(False, 0.0, "retry_after_too_long")
    assert decide(_answer(status, "120"), clock).retry


def test_429_of_an_authenticated_call_waits_at_the_gate(clock: ManualClock) -> None:
    error = _answer(429, "7")
    assert gate_hold(error, policy=POLICY, authenticated=True) == 7.0
    decision = decide(error, clock, gate_remaining=7.0)
    assert decision == RetryDecision(True, 0.0, "rate_gate")


def test_429_of_login_or_refresh_waits_itself_and_leaves_the_gate_open(
    clock: ManualClock,
) -> None:
    error = _answer(429, "7")
    assert gate_hold(error, policy=POLICY, authenticated=False) is None
    assert decide(error, clock, authenticated=False) == RetryDecision(True, 7.0, "retry_after")


def test_the_gate_closes_only_for_a_usable_retry_after() -> None:
    assert gate_hold(_answer(429), policy=POLICY, authenticated=True) is None
    assert gate_hold(_answer(429, "121"), policy=POLICY, authenticated=True) is None
    assert gate_hold(_answer(503, "5"), policy=POLICY, authenticated=True) is None


def test_429_without_retry_after_backs_off(clock: ManualClock) -> None:
    assert decide(_answer(429), clock) == RetryDecision(True, 0.25, "backoff")


def test_an_empty_budget_ends_the_call(clock: ManualClock) -> None:
    decision = decide(_answer(503), clock, budget_ok=False)
    assert decision == RetryDecision(False, 0.0, "budget_exhausted")
    budget = RetryBudget(capacity=5)
    assert budget.can_retry
    assert budget.try_acquire()
    assert not budget.can_retry
    assert budget.tokens == 0


@pytest.mark.parametrize(
    ("error", "gate", "left", "retry"),
    [
        (_answer(503), 0.0, 0.26, True),  # backoff 0.25 fits
        (_answer(503), 0.0, 0.25, False),  # the retry would start as the deadline passes
        (_answer(503, "4"), 0.0, 3.0, False),  # Retry-After longer than what is left
        (_answer(429, "7"), 7.0, 6.0, False),  # the gate opens after the deadline
        (_answer(429, "7"), 7.0, 8.0, True),
    ],
)
def test_a_wait_that_would_pass_the_deadline_ends_the_call(
    clock: ManualClock, error: Iris360Error, gate: float, left: float, retry: bool
) -> None:
    deadline_at = clock.monotonic() + left
    decision = decide(error, clock, deadline_at=deadline_at, gate_remaining=gate)
    assert decision.retry is retry
    if not retry:
        assert decision == RetryDecision(False, 0.0, "deadline")


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("write", _answer(503)),
        ("write", _answer(502, "1")),
        ("write", APITimeoutError("x", request_sent=True)),
        ("write", APIConnectionError("x", request_sent=True)),
        ("never", _answer(429, "1")),
        ("never", APIConnectionError("x", request_sent=False)),
        ("read", _answer(500)),
    ],
)
def test_not_retryable_in_its_mode(
    clock: ManualClock, mode: RetryMode, error: Iris360Error
) -> None:
    assert decide(error, clock, mode=mode) == RetryDecision(False, 0.0, "not_retryable")


def test_write_retries_what_provably_was_not_sent(clock: ManualClock) -> None:
    unsent = APITimeoutError("x", request_sent=False)
    assert decide(unsent, clock, mode="write") == RetryDecision(True, 0.25, "backoff")
    assert decide(_answer(429, "2"), clock, mode="write").reason == "rate_gate"


@pytest.mark.parametrize("mode", ["read", "write"])
def test_a_redirect_is_never_retried(clock: ManualClock, mode: RetryMode) -> None:
    for status in (301, 302, 303, 307, 308):
        error = _answer(status, "1")
        assert isinstance(error, RedirectError)
        assert decide(error, clock, mode=mode) == RetryDecision(False, 0.0, "not_retryable")


def test_a_too_large_response_is_never_retried(clock: ManualClock) -> None:
    error = ResponseTooLargeError("x", limit=10, method="GET", url="http://h/x", status=200)
    assert decide(error, clock) == RetryDecision(False, 0.0, "not_retryable")


def test_the_decision_has_no_side_effects(clock: ManualClock) -> None:
    draws: list[int] = []

    def random() -> float:
        draws.append(1)
        return 0.5

    policy = POLICY.replace(random=random)
    for _ in range(3):
        assert decide(_answer(503), clock, policy=policy).delay == 0.25
    assert decide(_answer(503, "3"), clock, policy=policy).delay == 3.0
    assert len(draws) == 3  # jitter drawn only where the backoff is used
    assert clock.sleeps == []
