"""The watchdog that keeps the timeouts of every request in flight with one timer."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from iris360_async._watchdog import Watch, Watchdog


async def attempt(dog: Watchdog, total: float | None, read: float | None,
                  seconds: float, progress_every: float | None = None) -> tuple[str, Watch]:
    """What the transport does: watch, wait ``seconds`` (reporting progress if asked), and
    tell a timeout from a cancellation from elsewhere."""
    task = asyncio.current_task()
    assert task is not None
    watch = dog.start(task, total, read)
    try:
        if progress_every is None:
            await asyncio.sleep(seconds)
        else:
            for _ in range(round(seconds / progress_every)):
                await asyncio.sleep(progress_every)
                watch.progress()
    except asyncio.CancelledError:
        if not watch.timed_out():
            raise
        return f"timeout ({watch.expired})", watch
    finally:
        dog.stop(watch)
        watch.timed_out()
    return "done", watch


async def test_one_timer_at_the_earliest_expiry_ends_only_what_expired() -> None:
    dog = Watchdog()
    late = asyncio.create_task(attempt(dog, total=30.0, read=None, seconds=0.4))
    await asyncio.sleep(0)
    first_at = dog._handle_at
    early = asyncio.create_task(attempt(dog, total=None, read=0.05, seconds=30))
    unbounded = asyncio.create_task(attempt(dog, total=None, read=None, seconds=0.1))
    await asyncio.sleep(0)
    assert dog._handle_at < first_at  # re-armed for the earlier expiry
    assert len(dog) == 2  # nothing to watch for an attempt without limits
    assert (await early)[0] == "timeout (read)"
    assert dog.armed  # now for the late one
    assert (await unbounded)[0] == "done"
    assert (await late)[0] == "done"
    assert len(dog) == 0
    dog.close()
    assert not dog.armed


async def test_progress_postpones_the_read_expiry_but_not_the_total() -> None:
    dog = Watchdog()
    result, _ = await attempt(dog, total=30, read=0.3, seconds=0.6, progress_every=0.03)
    assert result == "done"  # 0.6 s in all, data every 0.03 s
    result, _ = await attempt(dog, total=0.3, read=30, seconds=30, progress_every=0.03)
    assert result == "timeout (total)"
    assert len(dog) == 0
    assert not dog.armed  # the last expiry left nothing to wait for


async def test_a_cancellation_from_elsewhere_is_not_a_timeout() -> None:
    dog = Watchdog()
    task = asyncio.create_task(attempt(dog, total=30, read=30, seconds=30))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(dog) == 0


@pytest.mark.skipif(sys.version_info < (3, 11), reason="no cancellation counts before 3.11")
async def test_an_outer_cancellation_at_the_moment_of_expiry_still_propagates() -> None:
    dog = Watchdog()
    outcome: dict[str, Any] = {}

    async def body() -> None:
        task = asyncio.current_task()
        assert task is not None
        watch = dog.start(task, 0.05, None)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome["timed_out"] = watch.timed_out()
            raise
        finally:
            dog.stop(watch)

    task = asyncio.create_task(body())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    # at the moment of the watchdog's own cancellation, before the task runs again
    loop.call_at(dog._handle_at, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == {"timed_out": False}  # two cancellations: not the watchdog's alone
    assert task.cancelling() == 1  # the watchdog took its own back; the caller's remains


async def test_a_finished_watch_is_never_cancelled() -> None:
    dog = Watchdog()
    result, watch = await attempt(dog, total=0.05, read=0.05, seconds=0)
    await asyncio.sleep(0.2)
    assert result == "done"
    assert watch.expired is None
    assert not dog.armed  # the timer fired, found nothing and was not armed again
