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
    backoff_ceiling,
    full_jitter,
    is_retryable,
    parse_retry_after,
)
from iris360_async.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    InternalServerError,
    RateLimitError,
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
