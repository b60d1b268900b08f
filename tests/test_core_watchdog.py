"""The watchdog that keeps the timeouts of every request in flight with one timer."""

from __future__ import annotations

import asyncio

import anyio

from iris360_async._watchdog import Watchdog


async def test_one_timer_at_the_earliest_expiry_cancels_only_what_expired() -> None:
    dog = Watchdog()
    loop = asyncio.get_running_loop()
    late, early, never = anyio.CancelScope(), anyio.CancelScope(), anyio.CancelScope()
    w_late = dog.start(late, total=30.0, read=None)
    first_at = dog._handle_at
    w_early = dog.start(early, total=None, read=0.05)
    assert dog._handle_at < first_at  # re-armed for the earlier expiry
    assert dog._handle_at <= loop.time() + 0.05
    w_never = dog.start(never, total=None, read=None)
    assert len(dog) == 2  # nothing to watch for an attempt without limits
    await asyncio.sleep(0.2)
    assert early.cancel_called
    assert w_early.expired == "read"
    assert not late.cancel_called
    assert w_late.expired is None
    assert len(dog) == 1
    assert dog.armed  # now for the late one
    assert abs(dog._handle_at - w_late.total_at) < 1e-9
    dog.stop(w_late)
    dog.stop(w_never)
    dog.close()
    assert not dog.armed
    assert not never.cancel_called


async def test_progress_postpones_the_read_expiry_but_not_the_total() -> None:
    dog = Watchdog()
    scope = anyio.CancelScope()
    watch = dog.start(scope, total=0.5, read=0.15)
    for _ in range(5):  # data every 0.05 s: the read timeout never runs out
        await asyncio.sleep(0.05)
        watch.progress()
    assert not scope.cancel_called
    await asyncio.sleep(0.6)
    assert scope.cancel_called
    assert watch.expired in ("total", "read")
    assert len(dog) == 0
    assert not dog.armed


async def test_total_expiry_is_named_total() -> None:
    dog = Watchdog()
    scope = anyio.CancelScope()
    watch = dog.start(scope, total=0.05, read=30.0)
    await asyncio.sleep(0.2)
    assert scope.cancel_called
    assert watch.expired == "total"


async def test_a_stopped_watch_is_never_cancelled() -> None:
    dog = Watchdog()
    scope = anyio.CancelScope()
    watch = dog.start(scope, total=0.05, read=0.05)
    dog.stop(watch)
    await asyncio.sleep(0.2)
    assert not scope.cancel_called
    assert watch.expired is None
    assert not dog.armed  # the timer fired, found nothing and was not armed again
