"""Attacks on the bulk engine's promises: stops that come while a chunk waits for its turn,
stops between ``retry_unknown`` attempts, streams cut by the deadline, a journal whose disk
write fails, answers the engine cannot read, inputs that fail before the first item, and
``max_rate`` together with ``concurrency="auto"``.

Every test drives the engine over a plain async ``send_chunk`` and a clock whose sleeps wait
for the test (no wall-clock timing).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
from test_bulk_engine import StepClock
from test_bulk_reconcile import Fleet

from iris360_async import errors
from iris360_async._bulk import CommandDispatcher, send_commands, stream_commands
from iris360_async._bulk.journal import Journal
from iris360_async.models.bulk import CommandOutcome, CommandReport, CommandStatus, ProgressStats

SENT_BODY = {"data": "Command sent!!"}
REJECT_BODY = {"errors": "You cannot send any of: w_ota"}
COMMANDS = {"w_ota": True}


class Item(msgspec.Struct):
    original: Any


class Server:
    """Answers each serial ``sent`` (or ``rejected`` for ``rejecting``) once its call's gate
    opens; records every call with the clock's time."""

    def __init__(self, clock: StepClock | None = None, rejecting: set[str] | None = None) -> None:
        self.clock = clock
        self.rejecting = rejecting or set()
        self.calls: list[tuple[float, list[str]]] = []
        self.gates: dict[int, anyio.Event] = {}
        self.held: set[int] = set()  # call numbers that wait for their gate
        self.errors: dict[int, BaseException] = {}
        self.in_flight = 0

    def hold(self, *calls: int) -> None:
        for n in calls:
            self.held.add(n)
            self.gates[n] = anyio.Event()

    def answer(self, n: int) -> None:
        self.gates[n].set()

    async def __call__(self, serials: list[str]) -> Sequence[Item]:
        n = len(self.calls)
        self.calls.append((self.clock.now if self.clock else 0.0, list(serials)))
        self.in_flight += 1
        try:
            await anyio.lowlevel.checkpoint()
            if n in self.held:
                await self.gates[n].wait()
            if n in self.errors:
                raise self.errors[n]
            return [Item(REJECT_BODY if s in self.rejecting else SENT_BODY) for s in serials]
        finally:
            self.in_flight -= 1

    @property
    def sent(self) -> list[str]:
        return [s for _, call in self.calls for s in call]


async def settle_loop(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(condition: Any, rounds: int = 200) -> None:
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def streaming(
    dispatcher: CommandDispatcher, serials: list[str], got: list[CommandOutcome]
) -> asyncio.Future[None]:
    """A task streaming ``dispatcher``'s job over ``serials`` into ``got``."""

    async def consume() -> None:
        async with contextlib.aclosing(dispatcher.stream(serials)) as outcomes:
            async for outcome in outcomes:
                got.append(outcome)

    return asyncio.ensure_future(consume())


def serials_(n: int) -> list[str]:
    return [f"SN{i:03d}" for i in range(n)]


def check_accounting(report: CommandReport) -> None:
    assert sum(report.counts.values()) == report.total
    assert len(report.sent) == report.counts["sent"]


def server_error() -> errors.APIStatusError:
    return errors.InternalServerError(
        "err", status=500, method="POST", url="http://x", body={"message": "m"}
    )


# -- a stop while a chunk waits for its turn ---------------------------------------------------


async def test_max_failures_while_a_chunk_waits_for_its_rate_slot_sends_nothing_more() -> None:
    clock = StepClock()
    server = Server(clock, rejecting={"SN000"})
    server.hold(0)
    task = asyncio.ensure_future(send_commands(
        server, serials_(3), COMMANDS, chunk_size=1, concurrency=2, max_rate=1.0,
        max_failures=1, clock=clock,
    ))
    await until(lambda: len(server.calls) == 1 and clock.sleepers == 1)  # SN001 waits its slot
    server.answer(0)  # rejected: the failure budget is spent, the job stops
    await settle_loop()
    clock.advance(1.0)
    report = await task
    check_accounting(report)
    assert report.stopped_reason == "max_failures"
    assert server.sent == ["SN000"]
    assert report.outcome("SN001") == CommandOutcome(
        "SN001", CommandStatus.SKIPPED, "not sent: job stopped (max_failures)"
    )
    assert report.chunks == report.requests == 1


async def test_deadline_while_a_chunk_waits_at_the_adaptive_gate_sends_nothing_more() -> None:
    clock = StepClock()
    server = Server(clock)
    server.hold(0, 1)
    task = asyncio.ensure_future(send_commands(
        server, serials_(4), COMMANDS, chunk_size=1, concurrency="auto", max_concurrency=8,
        deadline=5.0, deadline_grace=None, clock=clock,
    ))
    await until(lambda: len(server.calls) == 2)  # the gate starts at 2; the others wait there
    await settle_loop()
    clock.advance(5.0)  # the deadline: in-flight requests may settle, nothing new starts
    await settle_loop()
    server.answer(0)
    server.answer(1)
    report = await task
    check_accounting(report)
    assert report.stopped_reason == "deadline"
    assert server.sent == ["SN000", "SN001"]
    assert report.counts["sent"] == 2
    assert report.counts["skipped"] == report.total - 2
    assert report.chunks == report.requests == 2


async def test_retry_unknown_does_not_resend_after_the_job_stopped_during_the_backoff() -> None:
    clock = StepClock()
    server = Server(clock)
    server.errors[0] = server_error()  # wholly unknown: retry_unknown would send it again
    server.hold(1)
    task = asyncio.ensure_future(send_commands(
        server, serials_(2), COMMANDS, chunk_size=1, concurrency=2, retry_unknown=2,
        retry_backoff=1.0, deadline=5.0, deadline_grace=None, clock=clock,
    ))
    await until(lambda: len(server.calls) == 2 and clock.sleepers == 2)  # backoff + deadline
    clock.advance(5.0)  # the deadline passes (and the backoff with it)
    await settle_loop()
    server.answer(1)
    report = await task
    check_accounting(report)
    assert report.stopped_reason == "deadline"
    assert server.sent == ["SN000", "SN001"]  # SN000 not sent again after the deadline
    assert report.outcome("SN000").status is CommandStatus.UNKNOWN  # type: ignore[union-attr]
    assert report.retried_chunks == 0
    assert report.requests == 2


# -- max_rate with concurrency="auto" ----------------------------------------------------------


async def test_max_rate_holds_when_the_adaptive_gate_releases_waiting_chunks_together() -> None:
    clock = StepClock()
    server = Server(clock)
    server.hold(0, 1)
    task = asyncio.ensure_future(send_commands(
        server, serials_(4), COMMANDS, chunk_size=1, concurrency="auto", max_concurrency=8,
        max_rate=1.0, clock=clock,
    ))
    await until(lambda: len(server.calls) == 1)
    await settle_loop(50)
    clock.advance(1.0)
    await until(lambda: len(server.calls) == 2)
    clock.advance(2.0)  # the slots of SN002 and SN003 passed; the gate (2) is full
    await settle_loop()
    server.answer(0)
    server.answer(1)
    await settle_loop()
    for _ in range(5):
        clock.advance(1.0)
        await settle_loop()
    report = await task
    assert report.counts["sent"] == 4
    starts = [t for t, _ in server.calls]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 1.0 for gap in gaps), starts


async def test_cancelled_while_waiting_for_its_rate_slot_gives_back_the_gate_slot() -> None:
    clock = StepClock()
    server = Server(clock)
    server.hold(0)
    dispatcher = CommandDispatcher(
        server, COMMANDS, chunk_size=1, concurrency="auto", max_rate=1.0, clock=clock
    )
    task = asyncio.ensure_future(dispatcher.run(serials_(4)))
    await until(lambda: len(server.calls) == 1 and clock.sleepers == 1)  # SN001 waits its slot
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dispatcher.pacer is not None
    assert dispatcher.pacer.limit.in_flight == 0
    assert dispatcher.in_flight == 0
    report = dispatcher.report
    check_accounting(report)
    assert report.serials("unknown") == ["SN000"]
    assert report.requests == report.chunks == 1


# -- streams cut by the deadline ---------------------------------------------------------------


async def test_stream_yields_the_chunks_the_deadline_cut_off() -> None:
    clock = StepClock()
    server = Server(clock)
    server.hold(0, 1)
    dispatcher = CommandDispatcher(
        server, COMMANDS, chunk_size=2, concurrency=2, deadline=5.0, deadline_grace=0.0,
        clock=clock,
    )
    got: list[CommandOutcome] = []
    task = streaming(dispatcher, serials_(10), got)
    await until(lambda: server.in_flight == 2)
    clock.advance(5.0)
    await task
    report = dispatcher.report
    assert report.stopped_reason == "deadline"
    assert report.counts["unknown"] == 4
    assert sorted(o.serial for o in got) == sorted({o.serial for o in got})
    assert len(got) == report.total  # every serial read is yielded once


async def test_stream_with_a_slow_consumer_yields_what_the_deadline_cut_off() -> None:
    clock = StepClock()
    server = Server(clock)
    dispatcher = CommandDispatcher(
        server, COMMANDS, chunk_size=1, concurrency=1, deadline=5.0, deadline_grace=0.0,
        clock=clock,
    )
    got: list[CommandOutcome] = []
    resume = anyio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(dispatcher.stream(serials_(10))) as outcomes:
            async for outcome in outcomes:
                got.append(outcome)
                if len(got) == 1:
                    await resume.wait()

    task = asyncio.ensure_future(consume())
    await until(lambda: len(got) == 1)
    await settle_loop(50)  # the worker fills the stream's buffer and waits to hand more
    clock.advance(5.0)
    await settle_loop()
    resume.set()
    await task
    report = dispatcher.report
    assert report.stopped_reason == "deadline"
    assert len(got) == report.total == len({o.serial for o in got})


# -- a journal that cannot be written ----------------------------------------------------------


def fail_on_call(monkeypatch: pytest.MonkeyPatch, name: str, call: int) -> None:
    """Make ``Journal.<name>`` raise ``OSError`` (disk full) from its ``call``-th call on."""
    original = getattr(Journal, name)
    calls = iter(range(1, 1_000_000))

    def failing(self: Journal, *args: Any) -> Any:
        if next(calls) >= call:
            raise OSError(28, "No space left on device")
        return original(self, *args)

    monkeypatch.setattr(Journal, name, failing)


def journal_reopens(path: Path) -> bool:
    journal = Journal.open(path, COMMANDS)
    journal.close()
    return True


@pytest.mark.parametrize("method", ["write_inflight", "write_outcomes"])
async def test_journal_write_failure_stops_the_job_with_every_serial_accounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    path = tmp_path / "j.jsonl"
    server = Server()
    fail_on_call(monkeypatch, method, 2)
    dispatcher = CommandDispatcher(server, COMMANDS, chunk_size=2, concurrency=1, journal=path)
    with pytest.raises(OSError, match="No space left"):
        await dispatcher.run(serials_(10))
    report = dispatcher.report
    check_accounting(report)
    assert report.stopped_reason == "error: OSError"
    assert report.total >= 4
    assert {o.serial for o in report.outcomes()} == set(serials_(report.total))
    assert report.requests == len(server.calls) == report.chunks
    monkeypatch.undo()
    assert journal_reopens(path)  # the lock was released


async def test_stream_yields_every_outcome_before_raising_the_journal_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Server()
    fail_on_call(monkeypatch, "write_outcomes", 2)
    dispatcher = CommandDispatcher(
        server, COMMANDS, chunk_size=2, concurrency=1, journal=tmp_path / "j.jsonl"
    )
    got: list[CommandOutcome] = []

    async def consume() -> None:
        async with contextlib.aclosing(dispatcher.stream(serials_(10))) as outcomes:
            async for outcome in outcomes:
                got.append(outcome)

    with pytest.raises(OSError, match="No space left"):
        await consume()
    assert len(got) == dispatcher.report.total


# -- answers and inputs the engine cannot use --------------------------------------------------


@pytest.mark.parametrize("answer", [None, 42])
async def test_an_answer_that_is_not_a_list_ends_its_chunk_unknown(answer: Any) -> None:
    calls: list[list[str]] = []

    async def send(serials: list[str]) -> Any:
        calls.append(serials)
        await anyio.lowlevel.checkpoint()
        if len(calls) == 2:
            return answer
        return [Item(SENT_BODY) for _ in serials]

    report = await send_commands(send, serials_(6), COMMANDS, chunk_size=2, concurrency=1)
    check_accounting(report)
    assert report.total == 6
    assert report.serials("unknown") == ["SN002", "SN003"]
    assert report.counts["sent"] == 4


class BadIterable:
    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("the input cannot be opened")


class BadAsyncIterable:
    def __aiter__(self) -> Any:
        raise RuntimeError("the input cannot be opened")


@pytest.mark.parametrize("source", [BadIterable(), BadAsyncIterable()])
async def test_an_input_that_fails_to_open_releases_the_journal(
    tmp_path: Path, source: Any
) -> None:
    path = tmp_path / "j.jsonl"
    with pytest.raises(RuntimeError, match="cannot be opened"):
        await send_commands(Server(), source, COMMANDS, journal=path)
    assert journal_reopens(path)


# -- two jobs at once on one dispatcher --------------------------------------------------------


async def test_a_refused_second_job_leaves_the_running_report_whole() -> None:
    server = Server()
    server.hold(0)
    dispatcher = CommandDispatcher(server, COMMANDS, chunk_size=2, concurrency=1)
    task = asyncio.ensure_future(dispatcher.run(serials_(4)))
    await until(lambda: len(server.calls) == 1)
    with pytest.raises(RuntimeError, match="one job"):
        async for _ in dispatcher.stream(["X"]):
            pass
    server.answer(0)
    report = await task
    assert sorted(report.sent) == serials_(4)


# -- callbacks that fail while the job is being cancelled --------------------------------------


@pytest.mark.parametrize("failing", ["on_progress", "on_cancel"])
async def test_a_callback_failing_during_cancellation_does_not_replace_it(
    failing: str, caplog: pytest.LogCaptureFixture
) -> None:
    cancelled: list[CommandReport] = []

    def on_progress(stats: ProgressStats) -> None:
        if stats.done and failing == "on_progress":
            raise ValueError("progress display broke")

    def on_cancel(report: CommandReport) -> None:
        cancelled.append(report)
        if failing == "on_cancel":
            raise ValueError("summary broke")

    server = Server()
    server.hold(0)
    task = asyncio.ensure_future(send_commands(
        server, serials_(4), COMMANDS, chunk_size=1, concurrency=1, on_progress=on_progress,
        on_cancel=on_cancel,
    ))
    await until(lambda: len(server.calls) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(cancelled) == 1
    assert cancelled[0].stopped_reason == "cancelled"
    assert "broke" in caplog.text  # not silently dropped


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_final_progress_failing_while_a_reconciling_job_is_cancelled_does_not_replace_it(
    streaming: bool, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = Fleet()
    server = Server()
    server.hold(0)

    def on_progress(stats: ProgressStats) -> None:
        if stats.done:
            raise ValueError("progress display broke")

    async def job() -> None:
        if streaming:
            async for _ in stream_commands(server, serials_(3), COMMANDS, chunk_size=1,
                                           reconcile_with=fleet.reader(),
                                           on_progress=on_progress):
                pass
        else:
            await send_commands(server, serials_(3), COMMANDS, chunk_size=1,
                                reconcile_with=fleet.reader(), on_progress=on_progress)

    task = asyncio.ensure_future(job())
    await until(lambda: len(server.calls) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "broke" in caplog.text


# -- what a stream settled but did not yield ---------------------------------------------------


def yielded_and_unstreamed(got: list[CommandOutcome], report: CommandReport) -> list[str]:
    """Every serial the job read, once: the outcomes yielded plus ``report.unstreamed``."""
    serials = [o.serial for o in got] + [o.serial for o in report.unstreamed]
    assert len(serials) == len(set(serials)), "a serial both yielded and unstreamed"
    assert len(serials) == report.total
    return serials


async def test_a_cancelled_stream_keeps_what_it_did_not_yield_in_the_report() -> None:
    server = Server()
    server.hold(2, 3)  # two chunks in flight when the job is cancelled
    dispatcher = CommandDispatcher(server, COMMANDS, chunk_size=2, concurrency=2)
    got: list[CommandOutcome] = []
    task = streaming(dispatcher, serials_(10), got)
    await until(lambda: server.in_flight == 2 and len(server.calls) == 4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    report = dispatcher.report
    assert sorted(yielded_and_unstreamed(got, report)) == serials_(report.total)
    cut = {o.serial: o.status for o in report.unstreamed}
    assert {s for s, status in cut.items() if status is CommandStatus.UNKNOWN} == {
        "SN004", "SN005", "SN006", "SN007"
    }
    assert all(o.status is CommandStatus.SENT for o in got)
    assert report.counts["unknown"] == 4


async def test_leaving_a_stream_early_keeps_the_rest_in_the_report() -> None:
    server = Server()
    dispatcher = CommandDispatcher(server, COMMANDS, chunk_size=3, concurrency=2)
    got: list[CommandOutcome] = []
    async with contextlib.aclosing(dispatcher.stream(serials_(30))) as outcomes:
        async for outcome in outcomes:
            got.append(outcome)
            if len(got) == 4:  # in the middle of the second chunk's outcomes
                break
    report = dispatcher.report
    yielded_and_unstreamed(got, report)
    assert len(got) == 4
    assert report.unstreamed
    assert sum(report.counts.values()) == report.total


async def test_a_finished_job_has_nothing_unstreamed() -> None:
    server = Server()
    dispatcher = CommandDispatcher(server, COMMANDS, chunk_size=3, concurrency=2)
    got = [o async for o in dispatcher.stream(serials_(10))]
    assert len(got) == 10
    assert dispatcher.report.unstreamed == []
    report = await send_commands(Server(), serials_(10), COMMANDS, chunk_size=3)
    assert report.unstreamed == []


async def test_a_reconciling_stream_cancelled_keeps_the_held_outcomes() -> None:
    fleet = Fleet(plan={"SN001": ["drop"]})  # applied, answer lost: held for reconciliation
    reading = anyio.Event()
    find_device = fleet.find_device

    async def never_answers(serial: str) -> Any:  # the job is cancelled while reconciling
        reading.set()
        await anyio.sleep_forever()
        return await find_device(serial)

    fleet.find_device = never_answers  # type: ignore[method-assign]
    reports: list[CommandReport] = []
    got: list[CommandOutcome] = []

    async def job() -> None:
        async for outcome in stream_commands(fleet.send, serials_(4), COMMANDS, chunk_size=1,
                                             reconcile_with=fleet.reader(),
                                             on_cancel=reports.append):
            got.append(outcome)

    task = asyncio.ensure_future(job())
    await until(lambda: len(got) == 3 and reading.is_set(), rounds=2000)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (report,) = reports
    assert [o.serial for o in report.unstreamed] == ["SN001"]
    assert report.unstreamed[0].status is CommandStatus.UNKNOWN
    assert sorted(yielded_and_unstreamed(got, report)) == serials_(4)
