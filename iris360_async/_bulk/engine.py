"""The engine: workers, dispatch and ``retry_unknown``, stopping (deadline, errors).

Workers (at most ``concurrency``, one anyio task each) take turns reading the next chunk from
the :class:`~.intake.Intake`, wait for their turn (:class:`~.pacer.Pacing`: ``max_rate``, the
adaptive limit under ``concurrency="auto"``), send it through ``send_chunk``, classify the
answer (:mod:`.classify`) and settle its outcomes (:class:`~.ledger.Ledger`: report, journal,
progress) and into the caller's stream. The rules a job follows are in docs/bulk.md; the
layout in docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from functools import partial
from typing import Any

import anyio
import anyio.abc

from .._pacing import AdaptiveLimit
from .._retry import Clock, SystemClock, full_jitter
from .._validation import validate_commands
from ..models.bulk import CommandOutcome, CommandReport, CommandStatus, input_total
from .classify import BulkItem, classify_chunk, classify_exception, not_sent
from .intake import Intake, check_input
from .journal import Journal, JournalTarget
from .ledger import Ledger
from .options import JobOptions
from .pacer import Pacer, Pacing
from .planner import ChunkPlanner, body_base_size

__all__ = ["CommandDispatcher", "SendChunk"]

SendChunk = Callable[[list[str]], Awaitable[Sequence[BulkItem]]]
"""The raw call: serials in, one item per serial (request order) out; raises ``errors.*``."""

_Sink = Callable[[Collection[CommandOutcome]], Awaitable[None]]


class _Stop:
    """Why a job stops early (the first reason wins), the error to raise once it settled, and
    the detail of chunks in flight when it is cut short."""

    __slots__ = ("_chunks", "error", "in_flight_detail", "intake", "reason")

    def __init__(self) -> None:
        self.reason: str | None = None
        self.error: BaseException | None = None
        self.in_flight_detail = "the job was cancelled while the request was in flight"
        self.intake: Intake | None = None  # told to read no further
        self._chunks: set[anyio.CancelScope] = set()  # chunks being sent, cut after the grace

    def request(self, reason: str) -> None:
        """Stop reading input; in-flight chunks settle (or are cancelled by the caller)."""
        if self.reason is None:
            self.reason = reason
        if self.intake is not None:
            self.intake.stop()

    def abort(self, exc: BaseException) -> None:
        """Stop because of ``exc`` (raised once in-flight chunks settled)."""
        if self.error is None:
            self.error = exc
        self.request(f"error: {type(exc).__name__}")

    async def at_deadline(self, deadline: float, grace: float | None, clock: Clock) -> None:
        """Stop reading after ``deadline`` seconds; cancel the requests still in flight
        ``grace`` seconds later (never when ``None``)."""
        await clock.sleep(deadline)
        self.request("deadline")
        if grace is None:
            return
        if grace > 0:
            await clock.sleep(grace)
        self.in_flight_detail = "the job deadline passed while the request was in flight"
        for scope in self._chunks:  # their outcomes are still delivered (the stream's too)
            scope.cancel()

    def cut_short(self, serials: list[str], sent: bool) -> list[CommandOutcome]:
        """The outcomes of a chunk the job's end cut short: ``unknown`` once sent, else
        ``skipped`` (``not sent:``)."""
        if not sent:
            return not_sent(serials, self.reason or "cancelled")
        return [CommandOutcome(s, CommandStatus.UNKNOWN, self.in_flight_detail) for s in serials]

    @contextmanager
    def cuttable(self) -> Iterator[None]:
        """Sending one chunk, which the deadline's grace may cut short (the ``with`` block
        then ends early, without an exception)."""
        with anyio.CancelScope() as scope:
            self._chunks.add(scope)
            try:
                yield
            finally:
                self._chunks.discard(scope)


class CommandDispatcher:
    """Runs one bulk command job over a ``send_chunk`` callable (the rules: docs/bulk.md).

    Use :meth:`run` (returns a :class:`CommandReport`) or :meth:`stream` (an async generator of
    outcomes as chunks settle), once per dispatcher. :attr:`report` is live while the job runs
    and holds the partial result after a cancellation.

    Args:
        send_chunk: the raw call, ``await send_chunk(serials) -> items`` (one per serial, in
            order). It raises ``iris360_async.errors`` exceptions and repeats the provably safe
            failures itself; the engine never repeats a chunk unless ``retry_unknown`` asks.
        commands: ``name -> value``; validated at construction (``TypeError``/``ValueError``).
        options: the job's options (:class:`~iris360_async._bulk.JobOptions`); they may also
            be given as keyword arguments (``chunk_size=50``), which override ``options``.
        clock: the time source (tests inject a manual clock).
        journal_target: the server, tenant and scope the journal is bound to (set by
            ``devices.send_commands`` from the client's configuration).
        shared_journal: an open journal to write to instead of ``options.journal``; the
            caller closes it (reconciliation runs several jobs under one journal lock).
    """

    def __init__(
        self,
        send_chunk: SendChunk,
        commands: Mapping[str, Any],
        options: JobOptions | None = None,
        *,
        clock: Clock | None = None,
        journal_target: JournalTarget | None = None,
        shared_journal: Journal | None = None,
        **option_values: Any,
    ) -> None:
        self._commands = validate_commands(commands)
        if options is None:
            options = JobOptions(**option_values)
        elif option_values:
            options = dataclasses.replace(options, **option_values)
        self._base_bytes = body_base_size(self._commands)
        options.check_body_room(self._base_bytes)
        self.options = options
        self._send_chunk = send_chunk
        self._journal_target = journal_target
        self._clock: Clock = clock if clock is not None else SystemClock()
        pacer = (
            Pacer(AdaptiveLimit(max_limit=options.max_concurrency), self._clock)
            if options.auto else None
        )
        self._pacing = Pacing(
            options.workers, self._clock, max_rate=options.max_rate, pacer=pacer
        )
        self._ledger = Ledger(options, self._clock, self._pacing, shared_journal)
        self.report = self._ledger.report
        self._random = random.Random()
        self._used = False
        self._intake: Intake | None = None
        self._stop = _Stop()
        self._workers_group: anyio.abc.TaskGroup | None = None
        self._workers = 0
        self._sink: _Sink | None = None  # where outcomes go besides the report (stream)

    # -- public ----------------------------------------------------------------------------

    @property
    def stopped_reason(self) -> str | None:
        """Why the job stopped early, once it did."""
        return self._stop.reason

    @property
    def in_flight(self) -> int:
        """Requests on the wire right now."""
        return self._pacing.in_flight

    @property
    def limit(self) -> int:
        """Requests allowed in flight now: the adaptive limit under ``concurrency="auto"``,
        else ``concurrency``."""
        return self._pacing.limit

    @property
    def pacer(self) -> Pacer | None:
        """The adaptive limit's gate under ``concurrency="auto"`` (``None`` otherwise);
        reconciliation reads through it after the job."""
        return self._pacing.pacer

    @property
    def latency(self) -> float | None:
        """Smoothed latency of recent answered requests, seconds (``None`` before the
        first)."""
        return self._pacing.latency

    async def run(self, serials: Iterable[Any] | AsyncIterable[Any]) -> CommandReport:
        """Run the job over ``serials`` and return the full report.

        Cancelling the calling task stops reading, ends in-flight chunks ``unknown``, flushes
        the journal, calls ``on_cancel(report)`` and the final ``on_progress``, and lets the
        cancellation propagate; :attr:`report` keeps the partial result.

        Raises:
            TypeError: ``serials`` is a string or not iterable.
            ValueError: the journal belongs to other commands.
        """
        await self._execute(serials, None)
        return self.report

    def stream(
        self, serials: Iterable[Any] | AsyncIterable[Any]
    ) -> AsyncGenerator[CommandOutcome, None]:
        """Run the job over ``serials``, yielding every outcome as its chunk settles.

        Safe to leave early: ``break``, an exception in the loop, or ``aclose()`` cancel the
        job (in-flight chunks end ``unknown`` and are journaled) and wait for its tasks; use
        ``contextlib.aclosing`` to make that deterministic. :attr:`report` keeps counts only.
        """
        check_input(serials)
        return _batches_of(
            partial(self._execute, serials), self.options.workers, self.report.unstreamed.extend
        )

    # -- job -------------------------------------------------------------------------------

    async def _execute(
        self, serials: Iterable[Any] | AsyncIterable[Any], sink: _Sink | None
    ) -> None:
        if self._used:
            raise RuntimeError("a CommandDispatcher runs one job; create another")
        self._used = True
        check_input(serials)
        opts = self.options
        self._ledger.keep = sink is None  # a stream's report keeps counts only
        self._ledger.start(
            self._commands, self._journal_target, input_total(serials, opts.total)
        )

        self._sink = sink
        planner = ChunkPlanner(opts.chunk_size, opts.max_body_bytes, self._base_bytes)
        self._intake = self._stop.intake = intake = Intake(
            serials, planner, self.report, self._deliver, dedupe=opts.dedupe,
            journal=self._ledger.journal, resend=frozenset(opts.resend or ()),
        )
        cancelled = False
        try:
            async with anyio.create_task_group() as outer:
                if opts.deadline is not None:
                    outer.start_soon(
                        self._stop.at_deadline, opts.deadline, opts.deadline_grace, self._clock
                    )
                async with anyio.create_task_group() as tg:
                    self._workers_group = tg
                    self._add_worker()
                outer.cancel_scope.cancel()
            stranded = intake.drain(self._stop.reason or "cancelled")
            if stranded:
                await self._deliver(stranded)
        except BaseException as exc:
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            if cancelled:
                self._stop.request("cancelled")
            self._settle(intake.drain(self._stop.reason or "cancelled"), streamed=False)
            raise
        finally:
            await self._ledger.end(self._stop.reason, cancelled)
        if self._stop.error is not None:
            raise self._stop.error

    # -- workers ---------------------------------------------------------------------------

    def _add_worker(self) -> None:
        """Start one more worker, up to ``concurrency``: once at the start and once per chunk
        read, so the job never has more workers than chunks (plus one that finds the end)."""
        if self._workers < self.options.workers and self._workers_group is not None:
            self._workers += 1
            self._workers_group.start_soon(self._worker)

    async def _next_chunk(self) -> tuple[int, list[str]] | None:
        """The next chunk and its index (see :meth:`Intake.next_chunk`); ``None`` when the
        input is exhausted or the job stopped."""
        assert self._intake is not None
        try:
            chunk = await self._intake.next_chunk()
        except Exception as exc:  # the input itself failed: stop, raise it at the end
            self._stop.abort(exc)
            return None
        if chunk is not None:
            self._add_worker()
        return chunk

    async def _worker(self) -> None:
        while True:
            try:
                chunk = await self._next_chunk()
                if chunk is None:
                    return
                outcomes: Collection[CommandOutcome]
                if self._stop.reason is not None:
                    outcomes = not_sent(chunk[1], self._stop.reason)
                else:
                    outcomes = await self._dispatch(*chunk)
                await self._deliver(outcomes)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:  # a callback or the consumer failed
                self._stop.abort(exc)
                return

    async def _dispatch(self, index: int, serials: list[str]) -> Collection[CommandOutcome]:
        """Send one chunk (re-sending a wholly ``unknown`` one if ``retry_unknown`` asks).

        Nothing is sent once the job stopped, also when the stop came while the chunk waited
        for its turn or between two attempts. A chunk the deadline's grace cuts short ends
        ``unknown`` (``skipped`` if never sent) and is delivered like any other."""
        opts, pacing, stop = self.options, self._pacing, self._stop
        sent = False
        outcomes: Collection[CommandOutcome] = ()
        try:
            with stop.cuttable():
                for attempt in range(opts.retry_unknown + 1):
                    if attempt:
                        u = self._random.random()
                        await self._clock.sleep(full_jitter(attempt - 1, opts.retry_backoff, 30, u))
                    await pacing.acquire()
                    try:
                        if stop.reason is not None or not (sent or self._journaled(index, serials)):
                            break  # stopped while this chunk waited, or not journaled
                        if sent:
                            self.report.retried_chunks += 1
                        else:
                            self.report.chunks += 1
                        sent = True
                        outcomes, retryable = await self._send(serials)
                    finally:
                        pacing.release()
                    if not retryable or stop.reason:
                        break
                return outcomes if sent else not_sent(serials, stop.reason or "cancelled")
        except anyio.get_cancelled_exc_class():  # the job is cancelled
            self._settle(stop.cut_short(serials, sent), streamed=False)
            raise
        return stop.cut_short(serials, sent)  # the deadline's grace cut it

    def _journaled(self, index: int, serials: list[str]) -> bool:
        """Journal chunk ``index`` as in flight; ``False`` (the job stopped) when the journal
        cannot be written: a chunk not journaled is not sent."""
        try:
            self._ledger.sending(index, serials)
        except OSError as exc:
            self._stop.abort(exc)
            return False
        return True

    async def _send(self, serials: list[str]) -> tuple[Collection[CommandOutcome], bool]:
        """One request: the chunk's outcomes, and whether a re-send may help."""
        self.report.requests += 1
        started = self._clock.monotonic()
        try:
            items = await self._send_chunk(serials)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            self._pacing.observe(started, exc)
            verdict = classify_exception(exc)
            if verdict.stop:
                self._stop.request(verdict.stop_reason or f"error: {type(exc).__name__}")
            outcomes = [CommandOutcome(s, verdict.status, verdict.detail, exc) for s in serials]
            return outcomes, verdict.retryable
        self._pacing.observe(started, items)
        return classify_chunk(serials, items)

    # -- settling --------------------------------------------------------------------------

    def _settle(self, outcomes: Collection[CommandOutcome], *, streamed: bool = True) -> None:
        try:
            spent = self._ledger.settle(outcomes, streamed=streamed)
        except OSError as exc:  # the journal cannot be written: stop (raised at the end)
            self._stop.abort(exc)
            return
        if spent:
            self._stop.request("max_failures")

    async def _deliver(self, outcomes: Collection[CommandOutcome]) -> None:
        self._settle(outcomes)
        try:
            if self.options.on_progress is not None:
                await self._ledger.progress(self._stop.reason)
            if self._sink is not None and outcomes:
                await self._sink(outcomes)
        except BaseException:
            self._ledger.not_streamed(outcomes)
            raise


async def _batches_of(
    produce: Callable[[_Sink], Awaitable[None]],
    capacity: int,
    unyielded: Callable[[Iterable[CommandOutcome]], None],
) -> AsyncGenerator[CommandOutcome, None]:
    """Run ``produce(sink)`` as a task and yield the outcomes it sends; leaving early cancels
    the task and waits for it, and hands the outcomes sent but not yielded to ``unyielded``."""
    tx, rx = anyio.create_memory_object_stream[Collection[CommandOutcome]](capacity)

    async def run() -> None:
        with tx:
            await produce(tx.send)

    task = asyncio.get_running_loop().create_task(run())
    rest: Iterator[CommandOutcome] = iter(())
    try:
        async for batch in rx:
            rest = iter(batch)
            for outcome in rest:
                yield outcome
        await task
    finally:
        if not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task})
        unyielded(rest)
        while True:
            try:
                unyielded(rx.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        rx.close()
        if not task.cancelled():
            task.exception()  # retrieved (raised above when it ended the loop)
