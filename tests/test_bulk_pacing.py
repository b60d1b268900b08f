"""``concurrency="auto"`` in the bulk engine, over fake ``send_chunk`` callables (no HTTP): the
adaptive limit gates dispatch, and every request's latency, outcome, ``Retry-After`` and
``X-RateLimit-Remaining`` reach it. The controller's dynamics are tested on synthetic traces in
test_pacing_controller.py; the whole stack against the emulator's server model in
test_bulk_pacing_emulator.py."""

from __future__ import annotations

import inspect
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest

from iris360_async import errors
from iris360_async._bulk import CommandDispatcher, JobOptions, jobs, send_commands
from iris360_async._bulk.options import DEFAULT_MAX_CONCURRENCY
from iris360_async._bulk.pacer import AnsweredItems, sample_of
from iris360_async._retry import ManualClock
from iris360_async.models.bulk import ProgressStats
from iris360_async.resources.devices import DevicesResource

SERIALS = [f"SN{i:05d}" for i in range(40)]


class Item(msgspec.Struct):
    original: Any
    headers: dict[str, Any] = {}
    exception: Any = None


def sent(serials: list[str], headers: dict[str, str] | None = None) -> list[Item]:
    items = [Item({"data": "Command sent!!"}) for _ in serials]
    return items if headers is None else AnsweredItems(items, 207, headers)


def status_error(status: int, headers: dict[str, str] | None = None) -> errors.APIStatusError:
    cls = errors.status_error_class(status)
    kw: dict[str, Any] = {}
    if status == 429:
        kw["retry_after"] = float((headers or {}).get("Retry-After", 0)) or None
    return cls(f"POST /devices/sendCommandsBulk -> {status}", status=status, method="POST",
               url="http://127.0.0.1/devices/sendCommandsBulk", headers=headers, **kw)


class Held:
    """A sender whose requests wait until released; records requests in flight."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self.release = anyio.Event()

    async def __call__(self, serials: list[str]) -> list[Item]:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return sent(serials)


async def test_auto_starts_low_and_never_exceeds_the_limit() -> None:
    sender = Held()
    dispatcher = CommandDispatcher(
        sender, {"w_ota": True}, chunk_size=1, concurrency="auto", max_concurrency=8
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.run, SERIALS)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        # the adaptive limit starts at 2: only two requests went out, the others wait
        assert sender.calls == 2
        assert dispatcher.in_flight == 2
        assert dispatcher.limit == 2
        sender.release.set()
    assert sender.peak <= 8
    assert dispatcher.report.counts["sent"] == len(SERIALS)


async def test_fixed_concurrency_is_unchanged_by_pacing() -> None:
    sender = Held()
    dispatcher = CommandDispatcher(sender, {"w_ota": True}, chunk_size=1, concurrency=5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.run, SERIALS)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert sender.calls == 5
        assert dispatcher.limit == 5
        sender.release.set()
    assert dispatcher.report.counts["sent"] == len(SERIALS)


class Scripted:
    """Answers request ``n`` with ``script[n]`` (an exception to raise, or headers of a 207);
    ``latency`` seconds on the manual clock each."""

    def __init__(self, clock: ManualClock, script: dict[int, Any], latency: float = 0.1) -> None:
        self.clock = clock
        self.script = script
        self.latency = latency
        self.started: list[float] = []

    async def __call__(self, serials: list[str]) -> list[Item]:
        n = len(self.started)
        self.started.append(self.clock.monotonic())
        await self.clock.sleep(self.latency)
        answer = self.script.get(n)
        if isinstance(answer, BaseException):
            raise answer
        return sent(serials, answer)


@pytest.mark.parametrize(
    "failure",
    [
        status_error(504),
        status_error(503),
        errors.APITimeoutError("timed out", request_sent=True),
        errors.APIConnectionError("connection lost", request_sent=True),
    ],
    ids=["504", "503", "timeout", "lost"],
)
async def test_overload_or_a_lost_answer_halves_the_limit(failure: Exception) -> None:
    clock = ManualClock()
    limits: list[int] = []
    script: dict[int, Any] = {3: failure}

    async def record(stats: ProgressStats) -> None:
        assert stats.limit is not None
        limits.append(stats.limit)

    dispatcher = CommandDispatcher(
        Scripted(clock, script), {"w_ota": True}, chunk_size=1, concurrency="auto",
        clock=clock, on_progress=record, progress_interval=0,
    )
    assert dispatcher.pacer is not None
    dispatcher.pacer.limit._limit = 16.0  # as if it had grown, and found the knee
    dispatcher.pacer.limit._slow_start = False
    report = await dispatcher.run(SERIALS[:8])
    assert report.counts["unknown"] == 1
    assert report.counts["sent"] == 7
    assert limits[0] == 16
    assert 8 in limits  # halved by the one failure
    assert max(limits[limits.index(8):]) <= 8


async def test_an_error_that_is_no_load_signal_leaves_the_limit() -> None:
    clock = ManualClock()
    script: dict[int, Any] = {i: status_error(500) for i in range(8)}
    dispatcher = CommandDispatcher(
        Scripted(clock, script), {"w_ota": True}, chunk_size=1, concurrency="auto", clock=clock
    )
    report = await dispatcher.run(SERIALS[:8])
    assert report.counts["unknown"] == 8
    assert dispatcher.limit == 2
    assert dispatcher.latency is None  # no answer, no latency


async def test_retry_after_pauses_new_requests() -> None:
    clock = ManualClock(start=1000.0)
    script: dict[int, Any] = {0: status_error(429, {"Retry-After": "7"})}
    sender = Scripted(clock, script, latency=0.1)
    report = await send_commands(
        sender, SERIALS[:3], {"w_ota": True}, chunk_size=1, concurrency="auto", clock=clock
    )
    assert report.counts["sent"] == 2
    # the first answer (a 429 after 0.1 s) paused the job until 1000.1 + 7
    later = [t for t in sender.started[1:] if t > 1000.0 + 0.1]
    assert later
    assert min(later) >= 1007.1 - 1e-9


async def test_rate_limit_remaining_of_a_207_reaches_the_limit() -> None:
    clock = ManualClock()
    script: dict[int, Any] = {i: {"X-RateLimit-Remaining": "0"} for i in range(8)}
    dispatcher = CommandDispatcher(
        Scripted(clock, script), {"w_ota": True}, chunk_size=1, concurrency="auto", clock=clock
    )
    assert dispatcher.pacer is not None
    dispatcher.pacer.limit._limit = 16.0
    await dispatcher.run(SERIALS[:4])
    assert dispatcher.limit <= 12  # the bucket is empty: decreased by a quarter (or more)


async def test_progress_reports_limit_in_flight_and_latency() -> None:
    clock = ManualClock()
    seen: list[ProgressStats] = []
    await send_commands(
        Scripted(clock, {}, latency=0.25), SERIALS[:6], {"w_ota": True}, chunk_size=1,
        concurrency="auto", max_concurrency=1, clock=clock, on_progress=seen.append,
        progress_interval=0,
    )
    final = seen[-1]
    assert final.done
    assert final.limit == 1
    assert final.latency == pytest.approx(0.25)
    assert final.in_flight_chunks == 0
    seen.clear()
    await send_commands(
        Scripted(clock, {}, latency=0.25), SERIALS[:6], {"w_ota": True}, chunk_size=1,
        concurrency=3, clock=clock, on_progress=seen.append, progress_interval=0,
    )
    assert {s.limit for s in seen} == {3}
    assert seen[-1].latency is not None
    assert seen[-1].latency >= 0.25


async def test_cancelled_while_waiting_for_a_slot_nothing_is_lost() -> None:
    sender = Held()
    dispatcher = CommandDispatcher(sender, {"w_ota": True}, chunk_size=1, concurrency="auto")
    with anyio.move_on_after(0.05):
        await dispatcher.run(SERIALS)
    report = dispatcher.report
    assert report.total == sum(report.counts.values())
    assert report.counts["unknown"] == sender.calls == 2  # on the wire when cancelled
    assert report.counts["sent"] == 0


def test_sample_of() -> None:
    assert sample_of(sent(["a"], {"x-ratelimit-remaining": "3"})) == ("ok", None, 3)
    assert sample_of(sent(["a"], {"X-RateLimit-Remaining": "many"})) == ("ok", None, None)
    assert sample_of([]) == ("ok", None, None)
    limited = status_error(429, {"Retry-After": "2", "X-RateLimit-Remaining": "0"})
    assert sample_of(limited) == ("overload", 2.0, 0)
    assert sample_of(status_error(504)) == ("overload", None, None)
    assert sample_of(status_error(422)) == ("error", None, None)
    assert sample_of(errors.APIConnectionError("refused", request_sent=False)) == (
        "error", None, None)
    assert sample_of(errors.APITimeoutError("slow")) == ("dropped", None, None)
    assert sample_of(RuntimeError("bug")) == ("error", None, None)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"concurrency": "fast"}, ValueError),
        ({"concurrency": "AUTO"}, ValueError),
        ({"concurrency": 1.5}, TypeError),
        ({"concurrency": 0}, ValueError),
        ({"max_concurrency": 0}, ValueError),
        ({"max_concurrency": 1025}, ValueError),
        ({"max_concurrency": "64"}, TypeError),
    ],
)
def test_bad_concurrency_is_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        JobOptions(**kwargs)


def test_auto_options() -> None:
    options = JobOptions(concurrency="auto", max_concurrency=32)
    assert options.auto
    assert options.workers == 32
    assert JobOptions(concurrency=7, max_concurrency=32).workers == 7


def test_auto_is_the_default_of_every_bulk_entry_point() -> None:
    assert JobOptions().concurrency == "auto"
    assert JobOptions().workers == DEFAULT_MAX_CONCURRENCY
    for function in (DevicesResource.send_commands, DevicesResource.stream_commands,
                     jobs.send_commands, jobs.stream_commands):
        default = inspect.signature(function).parameters["concurrency"].default
        assert default == "auto", function.__qualname__
