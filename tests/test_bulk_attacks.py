"""Attacks on the bulk engine's promises: stops that come while a chunk waits for its turn,
stops between ``retry_unknown`` attempts, streams cut by the deadline, a journal whose disk
write fails, answers the engine cannot read, inputs that fail before the first item, and
``max_rate`` together with ``concurrency="auto"``.

Every test drives the engine over a plain async ``send_chunk`` and a clock whose sleeps wait
for the test (no wall-clock timing).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest

from iris360_async import errors
from iris360_async._bulk import CommandDispatcher, send_commands
from iris360_async.models.bulk import CommandReport

SENT_BODY = {"data": "Command sent!!"}
REJECT_BODY = {"errors": "You cannot send any of: w_ota"}
COMMANDS = {"w_ota": True}


class Item(msgspec.Struct):
    original: Any


class HeldClock:
    """A clock whose sleeps wait until the test moves time forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self._waiters: list[tuple[float, anyio.Event]] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    @property
    def sleepers(self) -> int:
        return sum(1 for _, event in self._waiters if not event.is_set())

    async def sleep(self, seconds: float) -> None:
        event = anyio.Event()
        self._waiters.append((self.now + seconds, event))
        await event.wait()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for target, event in self._waiters:
            if target <= self.now:
                event.set()


class Server:
    """Answers each serial ``sent`` (or ``rejected`` for ``rejecting``) once its call's gate
    opens; records every call with the clock's time."""

    def __init__(self, clock: HeldClock | None = None, rejecting: set[str] | None = None) -> None:
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


def serials_(n: int) -> list[str]:
    return [f"SN{i:03d}" for i in range(n)]


def check_accounting(report: CommandReport) -> None:
    assert sum(report.counts.values()) == report.total
    assert len(report.sent) == report.counts["sent"]


def server_error() -> errors.APIStatusError:
    return errors.InternalServerError(
        "err", status=500, method="POST", url="http://x", body={"message": "m"}
    )


# -- max_rate with concurrency="auto" ----------------------------------------------------------


async def test_max_rate_holds_when_the_adaptive_gate_releases_waiting_chunks_together() -> None:
    clock = HeldClock()
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
    clock = HeldClock()
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
