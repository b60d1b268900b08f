"""A bulk command job as the command line runs it: stream outcomes from the bulk engine, draw
progress, write the report, stop cleanly on Ctrl-C or SIGTERM, and summarise the whole job
(serials an earlier run settled in the journal counted at the status they ended with then)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import aclosing, nullcontext
from dataclasses import dataclass, field
from typing import Any

from ._errors import CliError
from ._output import Output
from ._paths import AtomicTextFile
from ._problems import IN_FLIGHT_CAUSE, Problems, journal_cause
from ._progress import OUTCOME_ORDER, JobProgress
from ._runtime import Interrupt

__all__ = ["PROBLEM_STATUSES", "JobResult", "cli_wording", "run_job", "write_job_summary"]

PROBLEM_STATUSES = ("rejected", "failed", "unknown")
EARLIER_ORDER = ("sent", *PROBLEM_STATUSES)
"""Statuses a serial settled in the journal by an earlier run can have."""

OUTCOME_MEANINGS = {
    "sent": "the device accepted the command",
    "rejected": "the device does not accept a command; nothing was sent to it",
    "failed": "the platform could not deliver the command",
    "unknown": "ambiguous: the device may or may not have the command",
    "skipped": "not sent now: duplicate, settled by an earlier run (journal), or job stopped",
}


@dataclass
class JobResult:
    """What a job settled, also when it was interrupted."""

    total: int
    counts: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    interrupted: bool = False
    problems: Problems = field(default_factory=Problems)
    """Devices that ended rejected/failed/unknown, now or in an earlier run, by cause."""
    stopped_reason: str | None = None
    requests: int = 0
    unstreamed: Counter[str] = field(default_factory=Counter)
    """Outcomes settled when the job was cancelled (in-flight requests end ``unknown``), by
    status: in the counts, the journal and the report file, but never streamed."""
    earlier: Counter[str] = field(default_factory=Counter)
    """Serials skipped because the journal settled them, by the status they ended with then."""
    sent_details: Counter[str] = field(default_factory=Counter)
    """``sent`` outcomes with a detail (reconciliation: confirmed, re-sent), by detail."""
    reconcile: bool = False
    """The job reconciled its ``unknown`` devices (``--reconcile``)."""
    reconciling: int = 0
    """Devices that ended ``unknown`` and had their command state read (0: none, or the job
    stopped before reconciling)."""

    @property
    def settled(self) -> int:
        return sum(self.counts.values())

    @property
    def throughput(self) -> float:
        """Settled devices per second (skipped ones excluded)."""
        worked = self.settled - self.counts.get("skipped", 0)
        return worked / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def job_counts(self) -> Counter[str]:
        """The whole job: this run's counts, with serials the journal settled in an earlier
        run counted at the status they ended with then instead of ``skipped``."""
        counts = Counter(self.counts)
        counts["skipped"] -= sum(self.earlier.values())
        counts.update(self.earlier)
        return counts

    @property
    def has_problems(self) -> bool:
        """Whether a device remains without the command: a serial ended rejected/failed/unknown
        in this run or an earlier one (journal), or the job stopped early."""
        stopped = self.stopped_reason is not None and not self.interrupted
        counts = self.job_counts
        return stopped or any(counts.get(s, 0) for s in PROBLEM_STATUSES)

    @property
    def reconciled(self) -> dict[str, int] | None:
        """What reconciliation did (``None`` without ``--reconcile``): devices looked up, then
        ``confirmed`` from their command state, ``resent`` (not applied: sent again, and
        sent), ``left_unknown``, and ``other`` (a re-send rejected or failed, or still not
        applied)."""
        if not self.reconcile:
            return None
        from .._bulk.reconcile import RESEND_DETAIL
        from .._lifecycle import CONFIRMED_DETAIL

        confirmed = self.sent_details[CONFIRMED_DETAIL]
        resent = self.sent_details[RESEND_DETAIL]
        left = self.counts.get("unknown", 0)
        looked_up = self.reconciling
        return {
            "looked_up": looked_up,
            "confirmed": confirmed,
            "resent": resent,
            "left_unknown": left,
            "other": max(0, looked_up - confirmed - resent - left) if looked_up else 0,
        }

    @property
    def authentication_failed(self) -> bool:
        return (self.stopped_reason or "").startswith("authentication")

    def as_record(self) -> dict[str, Any]:
        job_counts = self.job_counts
        reconciled = self.reconciled
        return {
            **({"reconciled": reconciled} if reconciled is not None else {}),
            "total": self.total,
            "settled": self.settled,
            "counts": {name: self.counts.get(name, 0) for name in OUTCOME_ORDER},
            "earlier": {name: self.earlier.get(name, 0) for name in EARLIER_ORDER},
            "job_counts": {name: job_counts.get(name, 0) for name in OUTCOME_ORDER},
            "problems": [group.as_record() for group in self.problems],
            "elapsed_seconds": round(self.elapsed, 3),
            "devices_per_second": round(self.throughput, 1),
            "requests": self.requests,
            "interrupted": self.interrupted,
            "stopped_reason": self.stopped_reason,
        }


def _status_name(status: Any) -> str:
    value = getattr(status, "value", status)
    return str(value)


def outcome_record(outcome: Any) -> dict[str, Any]:
    """One line of ``--report``: serial, status, detail, the raw item when there is one, and
    for a serial the journal settled in an earlier run the status it ended with then."""
    import msgspec

    record: dict[str, Any] = {
        "serial": outcome.serial,
        "status": _status_name(outcome.status),
        "detail": outcome.detail,
    }
    raw = getattr(outcome, "raw", None)
    if raw is not None:
        record["raw"] = msgspec.to_builtins(raw, str_keys=True, enc_hook=str)
    earlier = getattr(outcome, "earlier", None)
    if earlier is not None:
        record["earlier"] = _status_name(earlier)
    return record


def _count(result: JobResult, outcome: Any) -> str:
    """Count ``outcome`` in ``result`` (counts, earlier runs, problems); returns its status."""
    status = _status_name(outcome.status)
    result.counts[status] += 1
    if status == "sent" and outcome.detail:
        result.sent_details[outcome.detail] += 1
    if status in PROBLEM_STATUSES:
        result.problems.add(status, outcome.detail, outcome.serial)
        return status
    earlier = getattr(outcome, "earlier", None)
    if earlier is not None:
        before = _status_name(earlier)
        result.earlier[before] += 1
        if before in PROBLEM_STATUSES:
            cause = journal_cause(outcome.detail)
            result.problems.add(before, cause, outcome.serial, earlier=True)
    return status


_FORCE_HINT = re.compile(r"(?:journal_)?force=True(?: \(--journal-force on the command line\))?")


def cli_wording(message: str) -> str:
    """An engine message as the command line says it: ``--journal-force``, not the keyword
    ``journal_force=True``."""
    return _FORCE_HINT.sub("--journal-force", message)


async def run_job(
    client: Any,
    serials: Iterable[str],
    commands: dict[str, Any],
    *,
    total: int,
    chunk_size: int,
    concurrency: int | str,
    journal: str | None,
    report: str | None,
    progress: JobProgress,
    resend: list[str] | None = None,
    journal_force: bool = False,
    interrupt: Interrupt,
    secrets: Iterable[str | None] = (),
    description: str = "commands",
    reconcile: bool = False,
) -> JobResult:
    """Send ``commands`` to ``serials`` through ``client.devices.stream_commands``.

    Ctrl-C or SIGTERM (``interrupt``) stops the job: the engine cancels what is in flight and
    flushes the journal, and the result holds what was settled until then. The report is
    written to a temporary file and renamed into place when the job ends (also when it was
    interrupted); a job refused before any outcome leaves an existing report untouched.

    Raises:
        CliError: the engine refused the job (a journal of another job, bad values …).
    """
    result = JobResult(total=total, problems=Problems(secrets), reconcile=reconcile)
    report_file = AtomicTextFile(report, what="report") if report is not None else None
    last: list[Any] = []

    def on_progress(stats: Any) -> None:
        progress.pace(bar, stats)
        result.reconciling = max(result.reconciling, int(getattr(stats, "reconciling", 0)))
        if last:
            last[0] = stats
        else:
            last.append(stats)

    cancelled: list[Any] = []  # the engine's report, when the job is cancelled
    kwargs: dict[str, Any] = {
        "chunk_size": chunk_size,
        "concurrency": concurrency,
        "on_progress": on_progress,
        "progress_interval": 0.5,
        "on_cancel": cancelled.append,
    }
    if journal is not None:
        kwargs["journal"] = journal
        if journal_force:
            kwargs["journal_force"] = True
    if resend:
        kwargs["resend"] = tuple(resend)
    if reconcile:
        kwargs["reconcile"] = True
    bar = progress.add(description, total)
    started = time.perf_counter()
    try:
        with report_file or nullcontext():  # renamed into place as the block ends
            try:
                await _stream(client, serials, commands, kwargs, result, report_file, progress, bar)
            except asyncio.CancelledError:
                if not interrupt.consume():
                    raise
                result.interrupted = True
                if cancelled:  # what the stream settled but could not yield
                    _add_unstreamed(result, cancelled[0].unstreamed, report_file)
    finally:
        result.elapsed = time.perf_counter() - started
        if last:
            _take_final_stats(result, last[0])
    return result


def _add_unstreamed(
    result: JobResult, outcomes: Iterable[Any], report_file: AtomicTextFile | None
) -> None:
    """Count and report the outcomes the cancelled job settled without streaming them."""
    for outcome in outcomes:
        result.unstreamed[_take(result, outcome, report_file)] += 1


def _take(result: JobResult, outcome: Any, report_file: AtomicTextFile | None) -> str:
    """Count ``outcome`` in ``result`` and write its report line; returns its status."""
    status = _count(result, outcome)
    if report_file is not None:
        record = outcome_record(outcome)
        report_file.write_line(json.dumps(record, separators=(",", ":"), default=str))
    return status


async def _stream(
    client: Any,
    serials: Iterable[str],
    commands: dict[str, Any],
    options: dict[str, Any],
    result: JobResult,
    report_file: AtomicTextFile | None,
    progress: JobProgress,
    bar: Any,
) -> None:
    try:
        stream = client.devices.stream_commands(serials, commands, **options)
        async with aclosing(stream) as outcomes:
            async for outcome in outcomes:
                progress.advance(bar, 1, _take(result, outcome, report_file))
    except (ValueError, TypeError) as exc:  # refused by the engine before anything was sent
        raise CliError(cli_wording(str(exc))) from None


def _take_final_stats(result: JobResult, stats: Any) -> None:
    """Complete ``result`` from the engine's last progress report.

    After a cancellation the engine settles the chunks that were in flight as ``unknown``
    (and journals them) without streaming them; its final counts include them.
    """
    result.stopped_reason = getattr(stats, "stopped_reason", None)
    result.requests = int(getattr(stats, "requests", 0))
    counts = getattr(stats, "counts", None)
    if getattr(stats, "done", False) and isinstance(counts, dict):
        for name, value in counts.items():
            extra = int(value) - result.counts.get(name, 0)
            if extra > 0:
                result.unstreamed[name] += extra
                result.counts[name] += extra
                if name in PROBLEM_STATUSES:
                    result.problems.add_many(name, IN_FLIGHT_CAUSE, extra)


def write_job_summary(out: Output, result: JobResult, *, title: str) -> None:
    """The job summary: a table of outcomes (with meanings; a column for serials the journal
    settled in earlier runs, when there are any) and the problems by cause, or one JSON/CSV
    record."""
    if out.format != "table":
        out.record(result.as_record(), title=title)
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("outcome")
    table.add_column("devices", justify="right")
    if result.earlier:
        table.add_column("earlier runs", justify="right")
    table.add_column("meaning")
    for name in OUTCOME_ORDER:
        cells = [name, f"{result.counts.get(name, 0):,}"]
        if result.earlier:
            cells.append(f"{result.earlier[name]:,}" if name in EARLIER_ORDER else "")
        table.add_row(*cells, OUTCOME_MEANINGS[name])
    table.add_section()

    def row(name: str, value: str, meaning: str) -> None:
        table.add_row(name, value, *([""] if result.earlier else []), meaning)

    row("total", f"{result.settled:,} / {result.total:,}", "settled / in input")
    if result.earlier:
        row(
            "earlier runs",
            f"{sum(result.earlier.values()):,}",
            "skipped now: settled in the journal by an earlier run, counted at that outcome",
        )
    row("elapsed", f"{result.elapsed:.1f} s", "")
    row("throughput", f"{result.throughput:,.0f} devices/s", "")
    if result.requests:
        row("requests", f"{result.requests:,}", "retries included")
    reconciled = result.reconciled
    if reconciled is not None:
        row("reconciled", f"{reconciled['looked_up']:,}", _reconciled_meaning(reconciled))
    if result.interrupted:
        row("interrupted", "yes", "serials not settled above were not sent")
    elif result.stopped_reason:
        row("stopped early", result.stopped_reason, "the rest was not sent")
    out.render(table)
    if result.problems:
        out.render(_problems_table(result.problems))


def _reconciled_meaning(reconciled: dict[str, int]) -> str:
    """What reconciling the ``unknown`` devices ended with, for the summary table."""
    if not reconciled["looked_up"]:
        if reconciled["left_unknown"]:
            return "none: the job stopped before reconciling (iris360 devices reconcile)"
        return "no device ended unknown"
    text = (
        f"unknown looked up: {reconciled['confirmed']:,} confirmed from command state, "
        f"{reconciled['resent']:,} re-sent, {reconciled['left_unknown']:,} left unknown"
    )
    if reconciled["other"]:
        text += f", {reconciled['other']:,} failed or rejected"
    return text


def _problems_table(problems: Problems) -> Any:
    from rich.table import Table

    table = Table(title="problems by cause", title_justify="left")
    table.add_column("outcome", no_wrap=True)
    table.add_column("devices", justify="right")
    table.add_column("cause", overflow="fold")
    table.add_column("e.g.", overflow="fold")
    for group in problems:
        outcome = f"{group.status} (earlier run)" if group.earlier else group.status
        table.add_row(outcome, f"{group.devices:,}", group.cause, ", ".join(group.examples))
    return table
