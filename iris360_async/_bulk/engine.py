"""The engine: workers, dispatch and retry, deadline, settling, progress.

Workers (at most ``concurrency``, one anyio task each) take turns reading the next chunk from
the :class:`~.intake.Intake`, send it through ``send_chunk``, classify the answer
(:mod:`.classify`) and settle its outcomes into the report, the journal and the caller's
stream. Under ``concurrency="auto"`` (at most ``max_concurrency`` workers) every request first
waits for a slot of the adaptive limit (:mod:`.pacer`). The rules a job follows are in
docs/bulk.md; the layout in docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math
import random
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from functools import partial
from typing import Any

import anyio
import anyio.abc

from .._pacing import AdaptiveLimit
from .._retry import Clock, SystemClock
from .._validation import validate_commands
from ..models.bulk import (
    FAILURE_STATUSES,
    CommandOutcome,
    CommandReport,
    CommandStatus,
    OutcomeBatch,
    ProgressStats,
    estimate_eta,
    input_total,
)
from .classify import BulkItem, classify_chunk, classify_exception, not_sent
from .intake import Intake, check_input
from .journal import Journal, JournalTarget
from .options import JobOptions
from .pacer import Pacer
from .planner import ChunkPlanner, body_base_size

__all__ = ["CommandDispatcher", "SendChunk"]

SendChunk = Callable[[list[str]], Awaitable[Sequence[BulkItem]]]
"""The raw call: serials in, one item per serial (request order) out; raises ``errors.*``."""

_Sink = Callable[[Collection[CommandOutcome]], Awaitable[None]]


class _RateLimiter:
    """Spaces request starts at least ``1 / rate`` seconds apart (a token bucket of depth 1)."""

    __slots__ = ("_clock", "_interval", "_next")

    def __init__(self, rate: float, clock: Clock) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._next = -math.inf

    async def acquire(self) -> None:
        now = self._clock.monotonic()
        start = self._next if self._next > now else now
        self._next = start + self._interval
        if start > now:
            await self._clock.sleep(start - now)


class _Ledger:
    """Where outcomes settle: the report, the journal, the failure budget and progress."""

    __slots__ = ("_borrowed", "_clock", "_failures", "_last", "_options", "journal", "keep",
                 "report", "settled", "started", "total")

    def __init__(self, options: JobOptions, clock: Clock, journal: Journal | None) -> None:
        self._options = options
        self._clock = clock
        self.report = CommandReport()
        self.keep = True  # False: counts only (streaming jobs)
        self.journal: Journal | None = journal
        self._borrowed = journal is not None  # opened (and closed) by the caller
        self.settled = 0
        self._failures = 0
        self.started = self._last = 0.0
        self.total: int | None = None  # the input's length, when known (progress ETA)

    def open_journal(self, commands: Mapping[str, Any], target: JournalTarget | None) -> None:
        """Open and lock the job's journal, when it has one."""
        opts = self._options
        if opts.journal is not None and not self._borrowed:
            self.journal = Journal.open(
                opts.journal, commands, target=target, force=opts.journal_force,
                fsync=opts.journal_fsync,
            )

    def start(self) -> None:
        self.started = self._last = self._clock.monotonic()

    def close(self, stopped_reason: str | None) -> None:
        """The job ended: elapsed time and stop reason into the report; the journal closed."""
        self.report.elapsed = self._clock.monotonic() - self.started
        self.report.stopped_reason = stopped_reason
        if self.journal is not None:
            if self._borrowed:
                self.journal.flush()
            else:
                self.journal.close()

    def settle(self, outcomes: Collection[CommandOutcome]) -> bool:
        """Account ``outcomes`` (synchronous: also runs while cancelled); whether the
        ``max_failures`` budget is spent."""
        batch = OutcomeBatch.of(outcomes)
        self.report._record(batch, keep=self.keep)
        self.settled += len(batch)
        if self.journal is not None:
            self.journal.write_outcomes(batch)
            self.journal.flush()
        limit = self._options.max_failures
        if limit is None:
            return False
        self._failures += sum(1 for o in batch.others.values() if o.status in FAILURE_STATUSES)
        return self._failures >= limit

    async def progress(
        self,
        in_flight: int,
        stopped: str | None,
        final: bool = False,
        *,
        limit: int | None = None,
        latency: float | None = None,
    ) -> None:
        """Call ``on_progress`` when due (at most every ``progress_interval``; always when
        ``final``)."""
        callback = self._options.on_progress
        if callback is None:
            return
        now = self._clock.monotonic()
        if not final and now - self._last < self._options.progress_interval:
            return
        self._last = now
        elapsed = now - self.started
        report = self.report
        result = callback(
            ProgressStats(
                elapsed=elapsed,
                read=report.total,
                settled=self.settled,
                counts=dict(report.counts),
                in_flight_chunks=in_flight,
                requests=report.requests,
                rate=self.settled / elapsed if elapsed > 0 else 0.0,
                done=final,
                stopped_reason=stopped,
                limit=limit,
                latency=latency,
                total=self.total,
                eta=estimate_eta(self.total, self.settled, elapsed, final),
            )
        )
        if inspect.isawaitable(result):
            await result


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
        rate = options.max_rate
        self._limiter = _RateLimiter(rate, self._clock) if rate is not None else None
        self._pacer = (
            Pacer(AdaptiveLimit(max_limit=options.max_concurrency), self._clock)
            if options.auto else None
        )
        self._latency: float | None = None
        self._random = random.Random()

        self._ledger = _Ledger(options, self._clock, shared_journal)
        self.report = self._ledger.report
        self._used = False
        self._intake: Intake | None = None
        self._stop_reason: str | None = None
        self._read_lock = asyncio.Lock()  # taken without yielding when free
        self._chunk_index = 0
        self._job_scope: anyio.CancelScope | None = None
        self._workers_group: anyio.abc.TaskGroup | None = None
        self._workers = 0
        self._cancel_detail = "the job was cancelled while the request was in flight"
        self._fatal: BaseException | None = None
        self._in_flight = 0

    # -- public ----------------------------------------------------------------------------

    @property
    def stopped_reason(self) -> str | None:
        """Why the job stopped early, once it did."""
        return self._stop_reason

    @property
    def in_flight(self) -> int:
        """Requests on the wire right now."""
        return self._in_flight

    @property
    def limit(self) -> int:
        """Requests allowed in flight now: the adaptive limit under ``concurrency="auto"``,
        else ``concurrency``."""
        if self._pacer is not None:
            return self._pacer.limit.limit
        return self.options.workers

    @property
    def pacer(self) -> Pacer | None:
        """The gate of the adaptive limit under ``concurrency="auto"`` (``None`` otherwise);
        reconciliation reads through it after the job."""
        return self._pacer

    @property
    def latency(self) -> float | None:
        """Smoothed latency of recent answered requests, seconds (``None`` before the
        first)."""
        return self._latency

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
        self._ledger.keep = False
        return _batches_of(partial(self._execute, serials), self.options.workers)

    # -- job -------------------------------------------------------------------------------

    async def _execute(
        self, serials: Iterable[Any] | AsyncIterable[Any], sink: _Sink | None
    ) -> None:
        if self._used:
            raise RuntimeError("a CommandDispatcher runs one job; create another")
        self._used = True
        check_input(serials)
        opts = self.options
        self._ledger.total = input_total(serials, opts.total)
        self._ledger.open_journal(self._commands, self._journal_target)

        async def emit(outcomes: list[CommandOutcome]) -> None:
            await self._deliver(outcomes, sink)

        planner = ChunkPlanner(opts.chunk_size, opts.max_body_bytes, self._base_bytes)
        self._intake = Intake(
            serials, planner, self.report, emit, dedupe=opts.dedupe,
            journal=self._ledger.journal, resend=frozenset(opts.resend or ()),
        )
        self._ledger.start()
        cancelled = False
        try:
            async with anyio.create_task_group() as outer:
                if opts.deadline is not None:
                    outer.start_soon(self._watch_deadline, opts.deadline)
                async with anyio.create_task_group() as tg:
                    self._job_scope = tg.cancel_scope
                    self._workers_group = tg
                    self._add_worker(sink)
                outer.cancel_scope.cancel()
            stranded = self._stranded()
            if stranded:
                await self._deliver(stranded, sink)
        except BaseException as exc:
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            if cancelled and self._stop_reason is None:
                self._stop_reason = "cancelled"
            self._settle(self._stranded())
            raise
        finally:
            self._ledger.close(self._stop_reason)
            with anyio.CancelScope(shield=True):
                try:
                    await self._progress(final=True)
                finally:
                    if cancelled and opts.on_cancel is not None:
                        opts.on_cancel(self.report)
        if self._fatal is not None:
            raise self._fatal

    def _stranded(self) -> list[CommandOutcome]:
        """Outcomes read but not delivered, and serials read but never sent (job stopped)."""
        assert self._intake is not None
        out = self._intake.take_outcomes()
        unsent = self._intake.unsent()
        if unsent:
            out.extend(not_sent(unsent, self._stop_reason or "cancelled"))
        return out

    def _request_stop(self, reason: str) -> None:
        """Stop reading input; in-flight chunks settle (or are cancelled by the caller)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._intake is not None:
            self._intake.stop()

    def _abort(self, exc: BaseException) -> None:
        """Stop the job because of ``exc`` (raised once in-flight chunks settled)."""
        if self._fatal is None:
            self._fatal = exc
        self._request_stop(f"error: {type(exc).__name__}")

    async def _watch_deadline(self, deadline: float) -> None:
        await self._clock.sleep(deadline)
        self._request_stop("deadline")
        grace = self.options.deadline_grace
        if grace is None:
            return
        if grace > 0:
            await self._clock.sleep(grace)
        if self._job_scope is not None:
            self._cancel_detail = "the job deadline passed while the request was in flight"
            self._job_scope.cancel()

    # -- workers ---------------------------------------------------------------------------

    def _add_worker(self, sink: _Sink | None) -> None:
        """Start one more worker, up to ``concurrency``: once at the start and once per chunk
        read, so the job never has more workers than chunks (plus one that finds the end)."""
        if self._workers < self.options.workers and self._workers_group is not None:
            self._workers += 1
            self._workers_group.start_soon(self._worker, sink)

    async def _next_chunk(self, sink: _Sink | None) -> tuple[int, list[str]] | None:
        """The next chunk and its index, read by whichever worker is free (one at a time);
        ``None`` when the input is exhausted or the job stopped."""
        assert self._intake is not None
        async with self._read_lock:
            if self._stop_reason is not None:
                return None
            try:
                serials = await self._intake.next_chunk()
            except Exception as exc:  # the input itself failed: stop, raise it at the end
                self._abort(exc)
                return None
            if serials is None:
                return None
            index = self._chunk_index
            self._chunk_index += 1
            self._add_worker(sink)
            return index, serials

    async def _worker(self, sink: _Sink | None) -> None:
        while True:
            try:
                chunk = await self._next_chunk(sink)
                if chunk is None:
                    return
                outcomes: Collection[CommandOutcome]
                if self._stop_reason is not None:
                    outcomes = not_sent(chunk[1], self._stop_reason)
                else:
                    outcomes = await self._dispatch(*chunk)
                await self._deliver(outcomes, sink)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:  # a callback or the consumer failed
                self._abort(exc)
                return

    async def _dispatch(self, index: int, serials: list[str]) -> Collection[CommandOutcome]:
        """Send one chunk (re-sending a wholly ``unknown`` one if ``retry_unknown`` asks)."""
        opts = self.options
        sent_once = False
        attempt = 0
        self.report.chunks += 1
        try:
            while True:
                if self._limiter is not None:
                    await self._limiter.acquire()
                pacer = self._pacer
                if pacer is not None:
                    await pacer.acquire()
                try:
                    journal = self._ledger.journal
                    if not sent_once and journal is not None:
                        journal.write_inflight(index, serials)
                        journal.flush()
                    sent_once = True
                    outcomes, retryable = await self._send(serials)
                finally:
                    if pacer is not None:
                        pacer.release()
                if not retryable or attempt >= opts.retry_unknown or self._stop_reason:
                    return outcomes
                attempt += 1
                self.report.retried_chunks += 1
                cap = min(30.0, opts.retry_backoff * (2 ** (attempt - 1)))
                await self._clock.sleep(self._random.uniform(0, cap))
        except anyio.get_cancelled_exc_class():
            if sent_once:
                self._settle([CommandOutcome(s, CommandStatus.UNKNOWN, self._cancel_detail)
                              for s in serials])
            else:
                self._settle(not_sent(serials, self._stop_reason or "cancelled"))
            raise

    async def _send(self, serials: list[str]) -> tuple[Collection[CommandOutcome], bool]:
        """One request: the chunk's outcomes, and whether a re-send may help."""
        self._in_flight += 1
        self.report.requests += 1
        clock = self._clock
        started = clock.monotonic()
        try:
            items = await self._send_chunk(serials)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            self._observe(clock.monotonic() - started, exc)
            verdict = classify_exception(exc)
            if verdict.stop:
                self._request_stop(verdict.stop_reason or f"error: {type(exc).__name__}")
            outcomes = [CommandOutcome(s, verdict.status, verdict.detail, exc) for s in serials]
            return outcomes, verdict.retryable
        finally:
            self._in_flight -= 1
        self._observe(clock.monotonic() - started, items)
        return classify_chunk(serials, items)

    def _observe(self, latency: float, answer: object) -> None:
        """One request ended: its latency into the recent average (answers only) and, under
        ``"auto"``, the sample into the adaptive limit."""
        if not isinstance(answer, BaseException):
            smooth = self._latency
            self._latency = latency if smooth is None else smooth + 0.2 * (latency - smooth)
        if self._pacer is not None:
            self._pacer.observe(latency, answer)

    # -- settling --------------------------------------------------------------------------

    def _settle(self, outcomes: Collection[CommandOutcome]) -> None:
        if self._ledger.settle(outcomes):
            self._request_stop("max_failures")

    async def _deliver(
        self, outcomes: Collection[CommandOutcome], sink: _Sink | None
    ) -> None:
        self._settle(outcomes)
        if self.options.on_progress is not None:
            await self._progress()
        if sink is not None and outcomes:
            await sink(outcomes)

    async def _progress(self, final: bool = False) -> None:
        await self._ledger.progress(
            self._in_flight, self._stop_reason, final, limit=self.limit, latency=self._latency
        )


async def _batches_of(
    produce: Callable[[_Sink], Awaitable[None]], capacity: int
) -> AsyncGenerator[CommandOutcome, None]:
    """Run ``produce(sink)`` as a task and yield the outcomes it sends; leaving early cancels
    the task and waits for it."""
    tx, rx = anyio.create_memory_object_stream[Collection[CommandOutcome]](capacity)

    async def run() -> None:
        with tx:
            await produce(tx.send)

    task = asyncio.get_running_loop().create_task(run())
    try:
        async for batch in rx:
            for outcome in batch:
                yield outcome
        await task
    finally:
        if not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task})
        rx.close()
        if not task.cancelled():
            task.exception()  # retrieved (raised above when it ended the loop)
