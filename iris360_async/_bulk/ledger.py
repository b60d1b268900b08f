"""Where a job's outcomes settle: the report, the journal, the failure budget and progress.

The engine hands every outcome here exactly once (:meth:`Ledger.settle`, synchronous, so it
also runs while the job is being cancelled); nothing here sends or reads input.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Mapping
from typing import Any

import anyio

from .._logging import get_logger
from .._retry import Clock
from ..models.bulk import (
    FAILURE_STATUSES,
    CommandOutcome,
    CommandReport,
    OutcomeBatch,
    ProgressStats,
    estimate_eta,
)
from .journal import Journal, JournalTarget
from .options import JobOptions
from .pacer import Pacing

__all__ = ["Ledger"]

_log = get_logger(__name__)


class Ledger:
    """The report, the journal, the ``max_failures`` budget and ``on_progress`` of one job.

    Args:
        options: the job's options.
        clock: the job's clock.
        pacing: read by progress (requests in flight, limit, latency).
        journal: an open journal to write to instead of ``options.journal``; the caller
            closes it.
    """

    __slots__ = ("_borrowed", "_clock", "_failures", "_last", "_options", "_pacing",
                 "journal", "keep", "report", "settled", "started", "total")

    def __init__(
        self, options: JobOptions, clock: Clock, pacing: Pacing, journal: Journal | None
    ) -> None:
        self._options = options
        self._clock = clock
        self._pacing = pacing
        self.report = CommandReport()
        self.keep = True  # False: counts only (streaming jobs)
        self.journal: Journal | None = journal
        self._borrowed = journal is not None  # opened (and closed) by the caller
        self.settled = 0
        self._failures = 0
        self.started = self._last = 0.0
        self.total: int | None = None  # the input's length, when known (progress ETA)

    def start(
        self, commands: Mapping[str, Any], target: JournalTarget | None, total: int | None
    ) -> None:
        """The job starts: its journal opened and locked (when it has one), the clock read."""
        opts = self._options
        if opts.journal is not None and not self._borrowed:
            self.journal = Journal.open(
                opts.journal, commands, target=target, force=opts.journal_force,
                fsync=opts.journal_fsync,
            )
        self.total = total
        self.started = self._last = self._clock.monotonic()

    def sending(self, index: int, serials: list[str]) -> None:
        """Chunk ``index`` is about to be sent for the first time (journaled as in flight)."""
        journal = self.journal
        if journal is not None:
            journal.write_inflight(index, serials)
            journal.flush()

    def close(self, stopped_reason: str | None) -> None:
        """The job ended: elapsed time and stop reason into the report; the journal closed."""
        self.report.elapsed = self._clock.monotonic() - self.started
        self.report.stopped_reason = stopped_reason
        if self.journal is not None:
            if self._borrowed:
                self.journal.flush()
            else:
                self.journal.close()

    async def end(self, stopped_reason: str | None, cancelled: bool) -> None:
        """The job ended: :meth:`close`, then (shielded) the final ``on_progress`` and, when
        cancelled, ``on_cancel``. A callback that fails while the job is being cancelled is
        logged and does not replace the cancellation."""
        try:
            self.close(stopped_reason)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    try:
                        await self.progress(stopped_reason, final=True)
                    finally:
                        if cancelled and self._options.on_cancel is not None:
                            self._options.on_cancel(self.report)
                except Exception:
                    if not cancelled:
                        raise
                    _log.warning("a callback of a cancelled bulk job failed", exc_info=True)

    def settle(self, outcomes: Collection[CommandOutcome], *, streamed: bool = True) -> bool:
        """Account ``outcomes``; whether the ``max_failures`` budget is spent.
        ``streamed=False``: a stream will not yield them (see :meth:`not_streamed`).

        Raises:
            OSError: the journal could not be written (the report has the outcomes).
        """
        if not streamed:
            self.not_streamed(outcomes)
        batch = OutcomeBatch.of(outcomes)
        self.report._record(batch, keep=self.keep)
        self.settled += len(batch)
        limit = self._options.max_failures
        if limit is not None:
            self._failures += sum(
                1 for o in batch.others.values() if o.status in FAILURE_STATUSES
            )
        if self.journal is not None:
            self.journal.write_outcomes(batch)
            self.journal.flush()
        return limit is not None and self._failures >= limit

    def not_streamed(self, outcomes: Collection[CommandOutcome]) -> None:
        """Settled outcomes a stream will not yield (the job is being cancelled or was left):
        a streaming job keeps them in ``report.unstreamed``."""
        if not self.keep:
            self.report.unstreamed.extend(outcomes)

    async def progress(self, stopped: str | None, final: bool = False) -> None:
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
        report, pacing = self.report, self._pacing
        result = callback(
            ProgressStats(
                elapsed=elapsed,
                read=report.total,
                settled=self.settled,
                counts=dict(report.counts),
                in_flight_chunks=pacing.in_flight,
                requests=report.requests,
                rate=self.settled / elapsed if elapsed > 0 else 0.0,
                done=final,
                stopped_reason=stopped,
                limit=pacing.limit,
                latency=pacing.latency,
                total=self.total,
                eta=estimate_eta(self.total, self.settled, elapsed, final),
            )
        )
        if inspect.isawaitable(result):
            await result
