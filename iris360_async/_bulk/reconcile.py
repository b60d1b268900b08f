"""Reconciliation inside a bulk job: every serial that ended ``unknown`` is looked up in the
command state its send left behind (:mod:`iris360_async._lifecycle`) and ends with one
definite outcome where that state allows.

* confirmed -> ``sent``, detail ``"confirmed from command state"``;
* not applied -> sent again in the same job (the engine's write-safety rules), at most
  :data:`RESEND_ROUNDS` times; a re-send that ends ``unknown`` is looked up again;
* mixed or unreadable -> stays ``unknown`` with the reason.

Every verdict is journaled (:meth:`~.journal.Journal.write_verdict`) under the job's journal
lock, so a resumed job neither reads a decided serial again nor sends a confirmed one. The
rules, with the lifecycle drawn once, are in docs/bulk.md ("What happened to every device").
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import msgspec

from .._lifecycle import CONFIRMED_DETAIL, CommandStateReader, Verdict, reconcile
from .._lifecycle.reconcile import OnVerdict
from .._logging import get_logger
from .._pacing import AdaptiveLimit
from .._retry import Clock, SystemClock
from .._validation import validate_commands
from ..models.bulk import (
    CommandOutcome,
    CommandReport,
    CommandStatus,
    ProgressStats,
    Reconciliation,
)
from .engine import CommandDispatcher, SendChunk
from .intake import check_input
from .journal import INFLIGHT, Journal, JournalTarget, journal_commands
from .options import JobOptions
from .pacer import Pacer
from .planner import body_base_size

__all__ = [
    "RESEND_DETAIL",
    "RESEND_ROUNDS",
    "PacedReads",
    "Reconciler",
    "journal_values",
    "read_concurrency",
    "reconcile_journal",
    "unsettled",
]

RESEND_ROUNDS = 2
"""Re-sends of a serial whose command state shows it was not applied, at most."""

RESEND_DETAIL = "re-sent: the command state showed the first send was not applied"
"""The detail of a ``sent`` outcome that came from a re-send."""

_UNKNOWN = CommandStatus.UNKNOWN
_SENT = CommandStatus.SENT

_log = get_logger(__name__)


def read_concurrency(options: JobOptions) -> int:
    """Reads in flight while reconciling, at most: the job's ``concurrency``, or under
    ``"auto"`` its ``max_concurrency`` -- there the job's adaptive limit (:class:`PacedReads`)
    decides how many of them are in flight."""
    return options.workers


class PacedReads:
    """Reads under a job's ``concurrency="auto"`` limit (a :class:`~.._lifecycle.ReadGate`).

    Each read request waits for a slot of the adaptive limit (and for a ``Retry-After``
    pause), and what it met feeds the limit like a bulk request does: its latency, a 429 /
    503 / 504 or a lost answer (multiplicative decrease), ``Retry-After``. So reads start at
    the concurrency the job found the server could take, and back off when it struggles.
    """

    __slots__ = ("_clock", "pacer")

    def __init__(self, pacer: Pacer, clock: Clock) -> None:
        self.pacer = pacer
        self._clock = clock

    @asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        pacer = self.pacer
        clock = self._clock
        await pacer.acquire()
        started = clock.monotonic()
        try:
            yield
        except Exception as exc:
            pacer.observe(clock.monotonic() - started, exc)
            raise
        else:
            pacer.observe(clock.monotonic() - started, None)
        finally:
            pacer.release()


def _held(outcome: CommandOutcome, journal: Journal | None) -> bool:
    """Whether ``outcome`` waits for reconciliation: ``unknown`` now, or skipped because an
    earlier run left it ``unknown`` (or in flight) and no verdict was journaled for it."""
    if outcome.status is _UNKNOWN:
        return True
    return (
        outcome.status is CommandStatus.SKIPPED
        and outcome.earlier is _UNKNOWN
        and not (journal is not None and outcome.serial in journal.reconciled)
    )


class Reconciler:
    """Runs a bulk job and reconciles its ``unknown`` serials (the engine side).

    Args:
        send_chunk: the raw call (as for :class:`~.engine.CommandDispatcher`).
        commands: ``name -> value``; validated here.
        options: the job's options.
        reader: where command state is read (:meth:`CommandStateReader.for_client`).
        clock, journal_target: as for :class:`~.engine.CommandDispatcher`.
        rounds: re-sends of a serial at most (:data:`RESEND_ROUNDS`).

    Reconciliation runs when the job read its whole input; a job stopped early (deadline,
    ``max_failures``, an error) keeps its ``unknown`` serials for ``devices.reconcile``.
    """

    def __init__(
        self,
        send_chunk: SendChunk,
        commands: Mapping[str, Any],
        options: JobOptions,
        reader: CommandStateReader,
        *,
        clock: Clock | None = None,
        journal_target: JournalTarget | None = None,
        rounds: int = RESEND_ROUNDS,
    ) -> None:
        self._commands = validate_commands(commands)
        options.check_body_room(body_base_size(self._commands))
        self._send_chunk = send_chunk
        self.options = options
        self._reader = reader
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._target = journal_target
        self._rounds = rounds
        self.reconciliation = Reconciliation()
        self.report = CommandReport()
        """The job's report: live while the job runs (empty before)."""
        self.requests = 0  # re-send requests
        self.chunks = 0
        self._used = False
        self._pacer: Pacer | None = None  # the job's, under concurrency="auto"

    # -- the job ---------------------------------------------------------------------------

    async def run(self, serials: Iterable[Any] | AsyncIterable[Any]) -> CommandReport:
        """Run the job, reconcile its ``unknown`` serials, return the report (each serial
        once; a reconciled outcome replaces the ``unknown`` one)."""
        check_input(serials)
        progress = _FinalProgress(self.options.on_progress)
        with self._journal() as journal:
            first = self._dispatcher(journal, progress=progress)
            report = self.report = first.report
            self._pacer = first.pacer
            try:
                await first.run(serials)
                held = [
                    o for o in (*report.failures, *report.previous_failures)
                    if _held(o, journal)
                ]
                try:
                    pairs = await self._settle(held, report, journal, progress)
                except anyio.get_cancelled_exc_class():
                    self._cancelled(report)
                    raise
                report._replace(pairs, keep=True)
            finally:
                await progress.finish(report)
        return report

    def stream(
        self, serials: Iterable[Any] | AsyncIterable[Any]
    ) -> AsyncGenerator[CommandOutcome, None]:
        """Run the job, yielding outcomes as chunks settle; ``unknown`` outcomes are held
        back until reconciled, so each serial is yielded once, with its final outcome."""
        check_input(serials)
        return self._stream(serials)

    async def _stream(
        self, serials: Iterable[Any] | AsyncIterable[Any]
    ) -> AsyncGenerator[CommandOutcome, None]:
        progress = _FinalProgress(self.options.on_progress)
        with self._journal() as journal:
            first = self._dispatcher(journal, progress=progress)
            self.report = first.report
            self._pacer = first.pacer
            held: list[CommandOutcome] = []
            rest: Iterator[CommandOutcome] | None = None  # the held ones, final, to yield
            try:
                try:
                    async with aclosing(first.stream(serials)) as outcomes:
                        async for outcome in outcomes:
                            if _held(outcome, journal):
                                held.append(outcome)
                            else:
                                yield outcome
                    report = first.report
                    try:
                        pairs = await self._settle(held, report, journal, progress)
                    except anyio.get_cancelled_exc_class():
                        self._cancelled(report)
                        raise
                    report._replace(pairs, keep=False)
                finally:
                    await progress.finish(first.report)
                # a job that stopped early reconciles nothing: its held outcomes are final
                rest = iter([new for _, new in pairs] if pairs else held)
                for outcome in rest:
                    yield outcome
            finally:  # left early: what was held back is not yielded (see report.unstreamed)
                first.report.unstreamed.extend(held if rest is None else rest)

    def _cancelled(self, report: CommandReport) -> None:
        """Cancelled while reconciling: the serials not decided yet stay ``unknown`` in the
        report (the journal has every verdict reached); ``on_cancel`` is called."""
        report.stopped_reason = report.stopped_reason or "cancelled"
        if self.options.on_cancel is not None:
            self.options.on_cancel(report)

    async def _settle(
        self,
        held: list[CommandOutcome],
        report: CommandReport,
        journal: Journal | None,
        progress: _FinalProgress,
    ) -> list[tuple[CommandOutcome, CommandOutcome]]:
        """The ``(held, final)`` pairs of the held outcomes (none when the job stopped early:
        the held outcomes stand); the reconciliation and the re-sends' requests are added to
        ``report``, and progress says how many serials are being reconciled."""
        report.reconciliation = self.reconciliation
        if not held or report.stopped_reason is not None:
            return []
        await progress.reconciling(len(held))
        final = await self.resolve([o.serial for o in held], journal)
        report.requests += self.requests
        report.chunks += self.chunks
        return [(o, final[o.serial]) for o in held]

    # -- the reconciliation ----------------------------------------------------------------

    async def resolve(
        self, serials: list[str], journal: Journal | None
    ) -> dict[str, CommandOutcome]:
        """A final outcome for each of ``serials`` (``unknown`` ones of a job): read, decide,
        re-send the not-applied ones, read the re-sends that ended ``unknown`` again.

        Verdicts go to ``journal`` as they are reached; :attr:`reconciliation` counts.
        """
        stats = self.reconciliation
        stats.looked_up += len(serials)
        final: dict[str, CommandOutcome] = {}
        todo = list(dict.fromkeys(serials))
        resends = 0
        resent: set[str] = set(stats.resent)
        while todo:
            stats.rounds += 1
            before = self._reader.requests
            verdicts = await reconcile(
                self._reader, todo, self._commands,
                concurrency=read_concurrency(self.options),
                on_verdict=_journaler(journal), gate=self._read_gate(),
            )
            stats.reads += self._reader.requests - before
            again: list[str] = []
            for serial, verdict in verdicts.items():
                if verdict.resolved:
                    final[serial] = CommandOutcome(serial, _SENT, CONFIRMED_DETAIL)
                    stats.confirmed.append(serial)
                elif verdict.resend and resends < self._rounds:
                    again.append(serial)
                else:
                    final[serial] = _left_unknown(serial, verdict, resends)
            todo = []
            if again:
                resends += 1
                stats.resent.extend(s for s in again if s not in resent)
                resent.update(again)
                for outcome in await self._resend(again, journal):
                    if outcome.status is _UNKNOWN:
                        todo.append(outcome.serial)
                    elif outcome.status is _SENT:
                        final[outcome.serial] = CommandOutcome(outcome.serial, _SENT, RESEND_DETAIL)
                    else:
                        final[outcome.serial] = outcome
        stats.unresolved = sum(1 for o in final.values() if o.status is _UNKNOWN)
        return final

    async def _resend(self, serials: list[str], journal: Journal | None) -> list[CommandOutcome]:
        """Send the commands to ``serials`` again: a job of their own under the same options
        (no deadline, failure budget or progress of its own) and the same journal."""
        dispatcher = self._dispatcher(
            journal, progress=None, deadline=None, max_failures=None, resend=(), dedupe=True,
            on_cancel=None,
        )
        report = await dispatcher.run(serials)
        self.requests += report.requests
        self.chunks += report.chunks
        return list(report.outcomes())

    # -- plumbing --------------------------------------------------------------------------

    def _read_gate(self) -> PacedReads | None:
        """Under ``concurrency="auto"``: the job's adaptive limit (a limit of its own when
        there was no job, as for a journal of an earlier one); else ``None``."""
        if not self.options.auto:
            return None
        if self._pacer is None:
            limit = AdaptiveLimit(max_limit=self.options.max_concurrency)
            self._pacer = Pacer(limit, self._clock)
        return PacedReads(self._pacer, self._clock)

    def _journal(self) -> _JournalScope:
        opts = self.options
        if opts.journal is None:
            return _JournalScope(None)
        return _JournalScope(
            Journal.open(
                opts.journal, self._commands, target=self._target, force=opts.journal_force,
                fsync=opts.journal_fsync,
            )
        )

    def _dispatcher(
        self, journal: Journal | None, *, progress: _FinalProgress | None, **changes: Any
    ) -> CommandDispatcher:
        options = dataclasses.replace(
            self.options, journal=None,
            on_progress=progress.forward if progress is not None else None, **changes,
        )
        return CommandDispatcher(
            self._send_chunk, self._commands, options, clock=self._clock,
            journal_target=self._target, shared_journal=journal,
        )


def _left_unknown(serial: str, verdict: Verdict, resends: int) -> CommandOutcome:
    """The outcome of a serial reconciliation could not settle."""
    if verdict.resend:  # not applied, and no re-send left
        when = f"after {resends} re-send{'s' if resends != 1 else ''}" if resends else \
            "(not re-sent)"
        return CommandOutcome(
            serial, CommandStatus.FAILED, f"not applied {when}: {verdict.detail}"
        )
    return CommandOutcome(serial, _UNKNOWN, f"unknown after reconciliation: {verdict.detail}")


def _journaler(journal: Journal | None) -> OnVerdict | None:
    if journal is None:
        return None

    def write(serial: str, verdict: Verdict) -> None:
        status = _SENT if verdict.resolved else _UNKNOWN
        detail = CONFIRMED_DETAIL if verdict.resolved else verdict.detail
        journal.write_verdict(serial, verdict.kind.value, status, detail)
        journal.flush()

    return write


class _JournalScope:
    """``with`` over an optional open journal: closes (and unlocks) it at the end."""

    def __init__(self, journal: Journal | None) -> None:
        self.journal = journal

    def __enter__(self) -> Journal | None:
        return self.journal

    def __exit__(self, *exc: object) -> None:
        if self.journal is not None:
            self.journal.close()


class _FinalProgress:
    """Forwards the job's progress to ``on_progress`` but holds its final call back until
    reconciliation ended, then calls it with the reconciled counts."""

    def __init__(self, callback: Any) -> None:
        self._callback = callback
        self._last: ProgressStats | None = None
        self._done = False

    async def forward(self, stats: ProgressStats) -> None:
        if stats.done:
            self._last = stats
            stats = msgspec.structs.replace(stats, done=False)
        await self._call(stats)

    async def reconciling(self, serials: int) -> None:
        """Say that the job sent everything and now reconciles ``serials`` serials."""
        if self._last is not None and not self._done:
            await self._call(msgspec.structs.replace(
                self._last, done=False, reconciling=serials))

    async def finish(self, report: CommandReport) -> None:
        if self._done or self._last is None:
            return
        self._done = True
        last = self._last
        with anyio.CancelScope(shield=True):
            try:
                await self._call(msgspec.structs.replace(
                    last, counts=dict(report.counts), requests=report.requests,
                    stopped_reason=report.stopped_reason, done=True,
                ))
            except Exception:
                if report.stopped_reason != "cancelled":
                    raise
                # the job is being cancelled: the cancellation goes on
                _log.warning("on_progress of a cancelled bulk job failed", exc_info=True)

    async def _call(self, stats: ProgressStats) -> None:
        if self._callback is None:
            return
        result = self._callback(stats)
        if inspect.isawaitable(result):
            await result


# -- an earlier job's journal ------------------------------------------------------------------


def journal_values(
    path: str | os.PathLike[str], commands: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The commands of the job of the journal at ``path``: ``commands`` when given (the
    journal then checks they are its job's), else the values its header records.

    Raises:
        ValueError: the journal records no values and ``commands`` is ``None``; not a journal.
    """
    if commands is not None:
        return validate_commands(commands)
    values = journal_commands(path)
    if values is None:
        raise ValueError(
            f"{os.fspath(path)} does not record the command values (written by an earlier "
            "release); pass the commands that job sent"
        )
    return values


def unsettled(journal: Journal) -> list[str]:
    """The serials ``journal`` leaves ``unknown`` (in flight when a run stopped included), and
    those a reconciliation found not applied and that were not sent again since (a run
    stopped between the verdict and the re-send): they are read again before any re-send."""
    left = [s for s, state in journal.previous.items() if state in (INFLIGHT, "unknown")]
    return left + sorted(journal.not_applied)


async def reconcile_journal(reconciler: Reconciler, clock: Clock | None = None) -> CommandReport:
    """Reconcile the ``unknown`` serials of the journal of ``reconciler.options.journal`` (an
    earlier or killed job), under its lock; the report has one outcome per such serial."""
    clock = clock if clock is not None else SystemClock()
    started = clock.monotonic()
    report = CommandReport()
    report.reconciliation = reconciler.reconciliation
    with reconciler._journal() as journal:
        assert journal is not None
        serials = unsettled(journal)
        final = await reconciler.resolve(serials, journal) if serials else {}
    report.total = len(serials)
    report._record([final[s] for s in serials], keep=True)
    report.requests = reconciler.requests
    report.chunks = reconciler.chunks
    report.elapsed = clock.monotonic() - started
    return report
