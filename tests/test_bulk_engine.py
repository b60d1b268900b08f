"""The bulk engine over a fake ``send_chunk`` (no HTTP: the engine takes a callable)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import pydoc
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest

from iris360_async import errors
from iris360_async._bulk import CommandDispatcher, JobOptions, send_commands, stream_commands
from iris360_async._retry import ManualClock
from iris360_async.models.bulk import CommandOutcome, CommandReport, CommandStatus, ProgressStats
from iris360_async.resources.devices import DevicesResource

SENT_BODY = {"data": "Command sent!!"}
REJECT_BODY = {"errors": "You cannot send any of: w_ota"}


class Item(msgspec.Struct):
    original: Any
    headers: dict[str, Any] = {}
    exception: Any = None


class FakeServer:
    """Applies commands per serial like the real endpoint and records what happened.

    ``rejecting``: serials answered with the "cannot send" item (nothing applied);
    ``unknown_serials``: answered "Device not found"; ``plan``: per call number (0-based),
    an exception to raise (``after=True`` applies the chunk first) or a callable.
    """

    def __init__(
        self,
        *,
        rejecting: set[str] | None = None,
        unknown_serials: set[str] | None = None,
        steps: int = 2,
    ) -> None:
        self.rejecting = rejecting or set()
        self.unknown_serials = unknown_serials or set()
        self.applied: Counter[str] = Counter()
        self.calls: list[list[str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.steps = steps
        self.errors: dict[int, tuple[BaseException, bool]] = {}
        self.gate: anyio.Event | None = None
        self._in_flight_waiters: list[tuple[int, anyio.Event]] = []
        self.hooks: list[Callable[[int, list[str]], None]] = []

    async def wait_in_flight(self, n: int) -> None:
        """Return once ``n`` requests are in flight together."""
        event = anyio.Event()
        self._in_flight_waiters.append((n, event))
        if self.in_flight >= n:
            event.set()
        await event.wait()

    def fail(self, call: int, exc: BaseException, *, applied: bool = False) -> None:
        self.errors[call] = (exc, applied)

    def _apply(self, serials: list[str]) -> list[Item]:
        out = []
        for s in serials:
            if s in self.unknown_serials:
                out.append(Item(f"Device not found: {s}"))
            elif s in self.rejecting:
                out.append(Item(REJECT_BODY))
            else:
                self.applied[s] += 1
                out.append(Item(SENT_BODY))
        return out

    async def __call__(self, serials: list[str]) -> Sequence[Item]:
        n = len(self.calls)
        self.calls.append(list(serials))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        for target, event in self._in_flight_waiters:
            if self.in_flight >= target:
                event.set()
        try:
            for hook in self.hooks:
                hook(n, serials)
            for _ in range(self.steps + n % 3):
                await anyio.lowlevel.checkpoint()
            if self.gate is not None:
                await self.gate.wait()
            if n in self.errors:
                exc, applied = self.errors[n]
                if applied:
                    self._apply(serials)
                raise exc
            return self._apply(serials)
        finally:
            self.in_flight -= 1


def serials_(n: int, prefix: str = "SN") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


def check_accounting(report: CommandReport) -> None:
    assert set(report.counts) == {"sent", "rejected", "failed", "unknown", "skipped"}
    assert sum(report.counts.values()) == report.total
    assert len(report.sent) == report.counts["sent"]
    assert len(report.failures) == sum(
        report.counts[k] for k in ("rejected", "failed", "unknown")
    )
    assert len(report.serials("skipped")) == report.counts["skipped"]


def http_error(cls: type[errors.APIStatusError], status: int, **kw: Any) -> errors.APIStatusError:
    return cls("err", status=status, method="POST", url="http://x", body={"message": "m"}, **kw)


def token_lost() -> errors.APIStatusError:
    """A 401 the client could not answer with a new token (no credentials, no refresh)."""
    exc = http_error(errors.AuthenticationError, 401)
    exc.while_authenticating = True
    return exc


# -- accounting -------------------------------------------------------------------------------


async def test_string_subclasses_are_serials_and_bytes_are_not() -> None:
    class Serial(str):
        pass

    base = serials_(20)
    server = FakeServer()
    inputs: list[Any] = [*base[:5], Serial(" SN-X "), b"SN-B", *base[5:], Serial(base[3])]
    report = await send_commands(server, inputs, {"w_ota": True}, chunk_size=4, concurrency=2)
    check_accounting(report)
    assert report.counts == {"sent": 21, "rejected": 0, "failed": 1, "unknown": 0, "skipped": 1}
    assert "SN-X" in report.sent
    assert server.applied["SN-X"] == 1
    assert server.applied[base[3]] == 1
    (failure,) = report.failures
    assert failure.serial == repr(b"SN-B")
    assert failure.detail == "not sent: invalid serial: expected str, got bytes"
    assert report.outcome(base[3]).status is CommandStatus.SENT


async def test_exact_accounting_mix() -> None:
    base = serials_(250)
    server = FakeServer(rejecting=set(base[10:20]), unknown_serials={"NOPE1", "NOPE2"})
    inputs: list[Any] = [*base, "NOPE1", base[0], base[5], "NOPE2", "  SN00007 \n", "", "  ", 17]
    report = await send_commands(server, inputs, {"w_ota": True}, chunk_size=7, concurrency=3)
    check_accounting(report)
    assert report.total == 250 + 2 + 3 + 1  # blank strings are not serials
    assert report.counts == {"sent": 240, "rejected": 10, "failed": 3, "unknown": 0, "skipped": 3}
    assert report.completed
    assert report.stopped_reason is None
    assert sorted(report.serials("rejected")) == base[10:20]
    assert report.outcome("NOPE1") == CommandOutcome(
        "NOPE1", CommandStatus.FAILED, "Device not found: NOPE1", "Device not found: NOPE1"
    )
    invalid = report.outcome("17")
    assert invalid is not None
    assert invalid.status is CommandStatus.FAILED
    assert "invalid serial" in (invalid.detail or "")
    dup = [o for o in report.skipped]
    assert {o.serial for o in dup} == {base[0], base[5], "SN00007"}
    assert all(o.detail == "duplicate serial in input" for o in dup)
    # nobody commanded twice, nobody sent twice
    assert max(server.applied.values()) == 1
    sent_serials = [s for call in server.calls for s in call]
    assert len(sent_serials) == len(set(sent_serials)) == 252
    assert report.requests == len(server.calls) == report.chunks
    assert report.throughput >= 0


async def test_input_kinds_generator_async_iterable_and_file_lines(tmp_path: Any) -> None:
    path = tmp_path / "serials.txt"
    path.write_text("A1\nA2\n\nA3\r\nA1\n")
    server = FakeServer()
    with path.open() as fh:
        report = await send_commands(server, fh, {"w_ota": True}, chunk_size=2)
    assert report.counts["sent"] == 3
    assert report.counts["skipped"] == 1
    assert report.total == 4

    async def agen() -> AsyncIterator[str]:
        for s in ("B1", "B2", "B1"):
            await anyio.lowlevel.checkpoint()
            yield s

    report = await send_commands(FakeServer(), agen(), {"w_ota": True}, chunk_size=2)
    assert report.counts["sent"] == 2
    assert report.counts["skipped"] == 1
    report = await send_commands(FakeServer(), (s for s in ["C1"]), {"w_ota": True})
    assert report.sent == ["C1"]
    report = await send_commands(FakeServer(), [], {"w_ota": True})
    assert report.total == 0
    assert report.requests == 0
    assert report.ok


async def test_bad_arguments_raise_before_anything_is_sent() -> None:
    server = FakeServer()
    with pytest.raises(TypeError):
        await send_commands(server, "SN1", {"w_ota": True})
    with pytest.raises(TypeError):
        await send_commands(server, 5, {"w_ota": True})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        await send_commands(server, ["SN1"], {})
    with pytest.raises(ValueError, match="device_serials"):
        await send_commands(server, ["SN1"], {"device_serials": [1]})
    with pytest.raises(ValueError, match="chunk_size"):
        await send_commands(server, ["SN1"], {"w_ota": True}, chunk_size=0)
    with pytest.raises(ValueError, match="resend"):
        await send_commands(server, ["SN1"], {"w_ota": True}, resend=["sent"])
    with pytest.raises(ValueError, match="max_body_bytes"):
        await send_commands(server, ["SN1"], {"w_ota": True}, max_body_bytes=10)
    with pytest.raises(ValueError, match="at least one"):
        stream_commands(server, ["SN1"], {})
    assert server.calls == []


async def test_dispatcher_runs_once() -> None:
    d = CommandDispatcher(FakeServer(), {"w_ota": True})
    await d.run(["A"])
    with pytest.raises(RuntimeError):
        await d.run(["A"])


async def test_dedupe_off_sends_duplicates() -> None:
    server = FakeServer()
    report = await send_commands(server, ["A", "A"], {"w_ota": True}, dedupe=False)
    assert report.counts["sent"] == 2
    assert server.applied["A"] == 2


async def test_max_body_bytes_cuts_chunks_and_refuses_oversized_serials() -> None:
    server = FakeServer()
    commands = {"w_ota": True}
    base = len(msgspec.json.encode({"device_serials": [], **commands}))
    limit = base + 40
    serials = [f"S{i:03d}" for i in range(30)] + ["X" * 60]
    report = await send_commands(
        server, serials, commands, chunk_size=100, max_body_bytes=limit
    )
    for call in server.calls:
        assert len(msgspec.json.encode({"device_serials": call, **commands})) <= limit
    assert report.counts["sent"] == 30
    bad = report.outcome("X" * 60)
    assert bad is not None
    assert bad.status is CommandStatus.FAILED
    assert "max_body_bytes" in (bad.detail or "")


# -- concurrency and backpressure -------------------------------------------------------------


@pytest.mark.parametrize(("concurrency", "chunk_size"), [(1, 1), (3, 5), (8, 4)])
async def test_in_flight_never_above_concurrency_and_read_ahead_bounded(
    concurrency: int, chunk_size: int
) -> None:
    server = FakeServer(steps=4 * concurrency)
    dispatcher = CommandDispatcher(
        server, {"w_ota": True}, chunk_size=chunk_size, concurrency=concurrency
    )
    max_unsettled = 0
    read = 0

    def gen() -> Iterator[str]:
        nonlocal read, max_unsettled
        for s in serials_(400):
            read += 1
            max_unsettled = max(max_unsettled, read - dispatcher._ledger.settled)
            yield s

    report = await dispatcher.run(gen())
    assert report.counts["sent"] == 400
    assert server.max_in_flight <= concurrency
    assert server.max_in_flight == concurrency  # the pool is actually used
    assert max_unsettled <= (concurrency + 1) * chunk_size


async def test_stream_read_ahead_bounded_with_a_slow_consumer() -> None:
    server = FakeServer()
    concurrency, chunk_size = 2, 3
    dispatcher = CommandDispatcher(
        server, {"w_ota": True}, chunk_size=chunk_size, concurrency=concurrency
    )
    read = 0
    consumed = 0
    max_ahead = 0

    def gen() -> Iterator[str]:
        nonlocal read, max_ahead
        for s in serials_(200):
            read += 1
            max_ahead = max(max_ahead, read - consumed)
            yield s

    async for _ in dispatcher.stream(gen()):
        consumed += 1
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
    assert consumed == 200
    # settled-but-not-consumed outcomes wait in a buffer of `concurrency` chunks
    assert max_ahead <= (2 * concurrency + 2) * chunk_size


async def test_stream_yields_every_outcome_once() -> None:
    server = FakeServer(rejecting={"SN00003"})
    got = [
        o
        async for o in stream_commands(
            server, [*serials_(50), "SN00001"], {"w_ota": True}, chunk_size=4, concurrency=4
        )
    ]
    assert len(got) == 51
    assert Counter(o.status for o in got) == {
        CommandStatus.SENT: 49,
        CommandStatus.REJECTED: 1,
        CommandStatus.SKIPPED: 1,
    }


async def test_breaking_out_of_stream_leaves_no_task_and_settles_in_flight() -> None:
    server = FakeServer()
    before = set(asyncio.all_tasks())
    dispatcher = CommandDispatcher(server, {"w_ota": True}, chunk_size=5, concurrency=4)
    agen = dispatcher.stream(serials_(10_000))
    async with contextlib.aclosing(agen):
        async for n, _ in _enumerate(agen):
            if n == 12:
                break
    assert set(asyncio.all_tasks()) == before
    assert server.in_flight == 0
    report = dispatcher.report
    assert report.stopped_reason == "cancelled"
    assert sum(report.counts.values()) == report.total < 10_000
    assert max(server.applied.values()) == 1


async def test_break_without_aclose_is_cleaned_up_by_the_loop() -> None:
    server = FakeServer()
    before = set(asyncio.all_tasks())
    async for _ in stream_commands(server, serials_(10_000), {"w_ota": True}, chunk_size=5,
                                   concurrency=16):
        break
    for _ in range(20):
        await asyncio.sleep(0)
        if set(asyncio.all_tasks()) == before:
            break
    assert set(asyncio.all_tasks()) == before
    assert server.in_flight == 0


async def _enumerate(agen: AsyncIterator[CommandOutcome]) -> AsyncIterator[tuple[int, Any]]:
    n = 0
    async for item in agen:
        yield n, item
        n += 1


# -- exceptions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.APITimeoutError("t", request_sent=True), CommandStatus.UNKNOWN),
        (errors.APIConnectionError("c", request_sent=True), CommandStatus.UNKNOWN),
        (errors.APIConnectionError("c", request_sent=False), CommandStatus.FAILED),
        (http_error(errors.InternalServerError, 502), CommandStatus.UNKNOWN),
        (http_error(errors.PermissionDeniedError, 403), CommandStatus.UNKNOWN),
        (errors.ResponseDecodeError("bad"), CommandStatus.UNKNOWN),
        (http_error(errors.BadRequestError, 400), CommandStatus.FAILED),
        (http_error(errors.NotFoundError, 404), CommandStatus.FAILED),
        (http_error(errors.UnprocessableEntityError, 422), CommandStatus.FAILED),
        (http_error(errors.RateLimitError, 429), CommandStatus.FAILED),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
async def test_each_exception_settles_its_chunk(exc: BaseException, status: CommandStatus) -> None:
    server = FakeServer()
    server.fail(1, exc)
    report = await send_commands(server, serials_(9), {"w_ota": True}, chunk_size=3, concurrency=1)
    check_accounting(report)
    assert report.counts["sent"] == 6
    assert report.counts[status.value] == 3
    chunk = server.calls[1]
    assert [report.outcome(s).status for s in chunk] == [status] * 3  # type: ignore[union-attr]
    assert all(o.raw is exc for o in report.failures)
    assert report.completed


async def test_authentication_failure_stops_the_job() -> None:
    server = FakeServer()
    server.fail(2, token_lost())
    report = await send_commands(
        server, serials_(300), {"w_ota": True}, chunk_size=3, concurrency=1
    )
    check_accounting(report)
    assert report.stopped_reason == "authentication failed"
    assert report.counts["failed"] == 3
    assert report.counts["sent"] == 6
    assert len(server.calls) == 3
    assert report.total == 9  # the job stopped reading: serials are read only when a worker is free
    assert report.counts["skipped"] == 0


async def test_a_401_despite_renewed_tokens_fails_its_chunk_and_the_job_goes_on() -> None:
    server = FakeServer()
    server.fail(2, http_error(errors.AuthenticationError, 401))  # renewals did not help
    report = await send_commands(
        server, serials_(30), {"w_ota": True}, chunk_size=3, concurrency=1
    )
    check_accounting(report)
    assert report.completed
    assert report.counts["sent"] == 27
    (failed,) = {o.detail for o in report.failures}
    assert failed.startswith("not sent: the server refused the token, also after renewing it")


async def test_stop_leaves_serials_read_but_unsent_skipped() -> None:
    server = FakeServer()
    server.fail(0, token_lost())
    report = await send_commands(
        server, serials_(300), {"w_ota": True}, chunk_size=3, concurrency=4, max_body_bytes=10_000
    )
    check_accounting(report)
    assert report.stopped_reason == "authentication failed"
    assert len(server.calls) <= 4
    sent_to_server = {s for call in server.calls for s in call}
    for o in report.skipped:
        assert o.detail == "not sent: job stopped (authentication failed)"
        assert o.serial not in sent_to_server


async def test_unexpected_exception_stops_the_job_without_losing_items() -> None:
    server = FakeServer()
    server.fail(0, RuntimeError("bug in sender"))
    report = await send_commands(server, serials_(30), {"w_ota": True}, chunk_size=3, concurrency=2)
    check_accounting(report)
    assert report.stopped_reason == "error: RuntimeError"
    assert report.counts["unknown"] >= 3


async def test_max_failures_stops_early() -> None:
    server = FakeServer(rejecting=set(serials_(100)))
    report = await send_commands(
        server, serials_(100), {"w_ota": True}, chunk_size=5, concurrency=1, max_failures=10
    )
    check_accounting(report)
    assert report.stopped_reason == "max_failures"
    assert report.counts["rejected"] == 10
    assert report.total < 100


# -- retry_unknown ----------------------------------------------------------------------------


async def test_retry_unknown_resends_ambiguous_chunks() -> None:
    server = FakeServer()
    server.fail(0, http_error(errors.InternalServerError, 500))
    server.fail(1, errors.APITimeoutError("t", request_sent=True))
    clock = ManualClock()
    report = await send_commands(
        server, serials_(2), {"w_ota": True}, chunk_size=2, concurrency=1,
        retry_unknown=3, retry_backoff=0.5, clock=clock,
    )
    assert report.counts["sent"] == 2
    assert report.retried_chunks == 2
    assert report.requests == 3
    assert report.chunks == 1
    assert len(clock.sleeps) == 2
    assert clock.sleeps[0] <= 0.5
    assert clock.sleeps[1] <= 1.0


async def test_retry_unknown_gives_up_after_n() -> None:
    server = FakeServer()
    for i in range(5):
        server.fail(i, http_error(errors.InternalServerError, 500))
    report = await send_commands(
        server, serials_(2), {"w_ota": True}, chunk_size=2, retry_unknown=2, clock=ManualClock()
    )
    assert report.counts["unknown"] == 2
    assert report.requests == 3


async def test_no_retry_by_default_and_never_for_failed_or_403() -> None:
    server = FakeServer()
    server.fail(0, http_error(errors.InternalServerError, 500))
    report = await send_commands(server, ["A"], {"w_ota": True}, clock=ManualClock())
    assert report.requests == 1
    assert report.counts["unknown"] == 1
    server = FakeServer()
    server.fail(0, http_error(errors.PermissionDeniedError, 403))
    server.fail(1, http_error(errors.BadRequestError, 400))
    report = await send_commands(
        server, ["A", "B"], {"w_ota": True}, chunk_size=1, concurrency=1,
        retry_unknown=5, clock=ManualClock(),
    )
    assert report.requests == 2
    assert report.counts == {"sent": 0, "rejected": 0, "failed": 1, "unknown": 1, "skipped": 0}


# -- cancellation and deadline ----------------------------------------------------------------


async def test_cancellation_marks_in_flight_unknown_and_leaves_no_task() -> None:
    server = FakeServer()
    server.gate = anyio.Event()
    seen: list[CommandReport] = []
    final: list[ProgressStats] = []
    before = set(asyncio.all_tasks())
    task = asyncio.ensure_future(
        send_commands(
            server, serials_(1000), {"w_ota": True}, chunk_size=10, concurrency=4,
            on_cancel=seen.append, on_progress=final.append,
        )
    )
    await server.wait_in_flight(4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert set(asyncio.all_tasks()) == before
    assert server.in_flight == 0
    (report,) = seen
    check_accounting(report)
    assert report.stopped_reason == "cancelled"
    assert report.counts["unknown"] == 40
    assert report.counts["sent"] == 0
    assert report.total <= 60  # 4 in flight + at most one chunk read ahead + one being built
    assert final[-1].done
    assert final[-1].stopped_reason == "cancelled"


class StepClock:
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
        """Sleeps not yet over."""
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


async def test_deadline_cancels_in_flight_and_reports() -> None:
    server = FakeServer()
    server.gate = anyio.Event()
    clock = StepClock()
    before = set(asyncio.all_tasks())
    task = asyncio.ensure_future(
        send_commands(
            server, serials_(1000), {"w_ota": True}, chunk_size=10, concurrency=3,
            deadline=5.0, clock=clock,
        )
    )
    await server.wait_in_flight(3)
    clock.advance(4.0)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(1.0)
    report = await task
    check_accounting(report)
    assert report.stopped_reason == "deadline"
    assert report.counts["unknown"] == 30
    assert all("deadline" in (o.detail or "") for o in report.failures)
    assert set(asyncio.all_tasks()) == before
    assert report.elapsed == 5.0


async def test_deadline_with_grace_lets_in_flight_settle() -> None:
    server = FakeServer()
    server.gate = anyio.Event()
    clock = StepClock()
    task = asyncio.ensure_future(
        send_commands(
            server, serials_(1000), {"w_ota": True}, chunk_size=10, concurrency=3,
            deadline=5.0, deadline_grace=None, clock=clock,
        )
    )
    await server.wait_in_flight(3)
    clock.advance(5.0)
    for _ in range(10):
        await asyncio.sleep(0)
    server.gate.set()
    report = await task
    check_accounting(report)
    assert report.stopped_reason == "deadline"
    assert report.counts["sent"] == 30
    assert report.counts["unknown"] == 0
    assert report.total < 1000


# -- rate and progress ------------------------------------------------------------------------


class FrozenClock:
    """Time stands still; sleeps are recorded and return at once."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return 0.0

    def time(self) -> float:
        return 1_700_000_000.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await anyio.lowlevel.checkpoint()


async def test_max_rate_spaces_requests() -> None:
    clock = FrozenClock()
    server = FakeServer()
    report = await send_commands(
        server, serials_(10), {"w_ota": True}, chunk_size=1, concurrency=4,
        max_rate=5.0, clock=clock,
    )
    assert report.counts["sent"] == 10
    # ten request starts reserved 0.2 s apart: the first at once, the others waiting
    assert sorted(clock.sleeps) == pytest.approx([0.2 * k for k in range(1, 10)])


async def test_progress_is_throttled_and_final() -> None:
    clock = ManualClock(start=0.0)
    calls: list[ProgressStats] = []
    server = FakeServer()
    server.hooks.append(lambda n, s: clock.advance(0.03))
    report = await send_commands(
        server, serials_(120), {"w_ota": True}, chunk_size=4, concurrency=2,
        on_progress=calls.append, clock=clock,
    )
    assert calls, "progress never reported"
    periodic, last = calls[:-1], calls[-1]
    times = [c.elapsed for c in periodic]
    assert all(b - a >= 0.1 - 1e-9 for a, b in zip([0.0, *times], times, strict=False))
    assert len(periodic) <= 30 * 0.03 / 0.1 + 1
    assert len(periodic) >= 3
    assert last.done
    assert last.settled == 120
    assert last.counts["sent"] == 120
    assert last.read == report.total == 120
    assert all(not c.done for c in periodic)
    assert all(0 <= c.in_flight_chunks <= 2 for c in calls)


async def test_async_progress_callback_and_its_errors() -> None:
    got: list[int] = []

    async def on_progress(stats: ProgressStats) -> None:
        await anyio.lowlevel.checkpoint()
        got.append(stats.settled)

    await send_commands(
        FakeServer(), serials_(10), {"w_ota": True}, on_progress=on_progress, clock=ManualClock()
    )
    assert got[-1] == 10

    def broken(stats: ProgressStats) -> None:
        raise ZeroDivisionError("callback bug")

    clock = ManualClock()
    server = FakeServer()
    server.hooks.append(lambda n, s: clock.advance(1))
    with pytest.raises(ZeroDivisionError):
        await send_commands(
            server, serials_(50), {"w_ota": True}, chunk_size=5, on_progress=broken, clock=clock
        )


async def test_input_error_stops_the_job_and_is_raised() -> None:
    server = FakeServer()

    def gen() -> Iterator[str]:
        yield from serials_(7)
        raise OSError("disk gone")

    d = CommandDispatcher(server, {"w_ota": True}, chunk_size=3)
    with pytest.raises(OSError, match="disk gone"):
        await d.run(gen())
    check_accounting(d.report)
    assert d.report.total == 7
    # what was handed to the workers but not yet sent when the input failed is not sent
    assert d.report.counts["sent"] + d.report.counts["skipped"] == 7
    assert d.report.counts["sent"] >= 3
    assert all("not sent: job stopped" in (o.detail or "") for o in d.report.skipped)
    assert sorted(server.applied) == sorted(d.report.sent)
    assert d.report.stopped_reason == "error: OSError"


# -- long inputs in memory ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", [list, tuple])
async def test_long_distinct_input_is_sent_once(kind: type[Any]) -> None:
    base = serials_(25_000)
    server = FakeServer(steps=0)
    d = CommandDispatcher(server, {"w_ota": True}, chunk_size=500, concurrency=4)
    report = await d.run(kind(base))
    check_accounting(report)
    assert report.counts["sent"] == 25_000
    assert sorted(server.applied) == base
    assert set(server.applied.values()) == {1}


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([" SN00007 "], id="repeat-once-stripped"),
        pytest.param(["SN24999"], id="repeat-at-the-end"),
        pytest.param(["", "  "], id="blanks"),
        pytest.param([42], id="not-a-string"),
    ],
)
async def test_long_input_with_repeats_blanks_or_junk_is_still_exact(extra: list[Any]) -> None:
    base = serials_(25_000)
    server = FakeServer(steps=0)
    d = CommandDispatcher(server, {"w_ota": True}, chunk_size=500, concurrency=4)
    report = await d.run([*base[:12_000], *extra, *base[12_000:]])
    check_accounting(report)
    assert report.counts["sent"] == 25_000
    assert set(server.applied.values()) == {1}
    strings = [e for e in extra if isinstance(e, str) and e.strip()]
    assert report.counts["skipped"] == len(strings)
    assert report.counts["failed"] == len(extra) - len(strings) - sum(
        1 for e in extra if isinstance(e, str) and not e.strip()
    )


# -- options: one dataclass, visible in every entry point --------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        send_commands,
        stream_commands,
        DevicesResource.send_commands,
        DevicesResource.stream_commands,
    ],
    ids=["send_commands", "stream_commands", "devices.send_commands", "devices.stream_commands"],
)
def test_entry_points_show_every_option_by_name_type_and_default(entry: Any) -> None:
    params = inspect.signature(entry).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for field in dataclasses.fields(JobOptions):
        param = params[field.name]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, field.name
        assert param.default == field.default, field.name
        assert param.annotation == field.type, field.name
    shown = pydoc.render_doc(entry, renderer=pydoc.plaintext)
    assert re.search(r"chunk_size: '?int'? = 100", shown), shown


def test_options_are_frozen_and_validated_once() -> None:
    options = JobOptions(chunk_size=5, resend="failed, unknown")
    assert options.resend == frozenset({"failed", "unknown"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.chunk_size = 6  # type: ignore[misc]
    with pytest.raises(ValueError, match="concurrency must be <= 1024"):
        JobOptions(concurrency=1025)
    with pytest.raises(TypeError, match="chunk_size must be an int"):
        JobOptions(chunk_size=True)
    d = CommandDispatcher(FakeServer(), {"w_ota": True}, options, concurrency=2)
    assert (d.options.chunk_size, d.options.concurrency) == (5, 2)
