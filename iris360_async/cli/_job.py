"""A bulk command job as the command line runs it: stream outcomes from the bulk engine, draw
progress, write the report, stop cleanly on Ctrl-C, and summarise."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._errors import CliError
from ._output import Output
from ._progress import OUTCOME_ORDER, JobProgress
from ._runtime import Interrupt

__all__ = ["PROBLEM_STATUSES", "JobResult", "run_job", "write_job_summary"]

PROBLEM_STATUSES = ("rejected", "failed", "unknown")

OUTCOME_MEANINGS = {
    "sent": "the device accepted the command",
    "rejected": "the device does not accept a command; nothing was sent to it",
    "failed": "the platform could not deliver the command",
    "unknown": "ambiguous: the device may or may not have the command",
    "skipped": "not sent on purpose: duplicate, already in the journal, or job stopped",
}


@dataclass
class JobResult:
    """What a job settled, also when it was interrupted."""

    total: int
    counts: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    interrupted: bool = False
    problems: list[dict[str, Any]] = field(default_factory=list)
    stopped_reason: str | None = None
    requests: int = 0
    unstreamed: Counter[str] = field(default_factory=Counter)
    """Outcomes settled when the job was cancelled (in-flight requests end ``unknown``): in
    the counts and the journal, not in the report file."""

    @property
    def settled(self) -> int:
        return sum(self.counts.values())

    @property
    def throughput(self) -> float:
        """Settled devices per second (skipped ones excluded)."""
        worked = self.settled - self.counts.get("skipped", 0)
        return worked / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def has_problems(self) -> bool:
        """Whether a serial ended rejected/failed/unknown, or the job stopped early."""
        stopped = self.stopped_reason is not None and not self.interrupted
        return stopped or any(self.counts.get(s, 0) for s in PROBLEM_STATUSES)

    @property
    def authentication_failed(self) -> bool:
        return (self.stopped_reason or "").startswith("authentication")

    def as_record(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "settled": self.settled,
            "counts": {name: self.counts.get(name, 0) for name in OUTCOME_ORDER},
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
    """One line of ``--report``: serial, status, detail and the raw item when there is one."""
    import msgspec

    record: dict[str, Any] = {
        "serial": outcome.serial,
        "status": _status_name(outcome.status),
        "detail": outcome.detail,
    }
    raw = getattr(outcome, "raw", None)
    if raw is not None:
        record["raw"] = msgspec.to_builtins(raw, str_keys=True, enc_hook=str)
    return record


def _open_report(path: str) -> IO[str]:
    try:
        return Path(path).open("w", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write report {path}: {exc.strerror or exc}") from None


async def run_job(
    client: Any,
    serials: Iterable[str],
    commands: dict[str, Any],
    *,
    total: int,
    chunk_size: int,
    concurrency: int,
    journal: str | None,
    report: str | None,
    progress: JobProgress,
    resend: list[str] | None = None,
    interrupt: Interrupt,
    description: str = "commands",
) -> JobResult:
    """Send ``commands`` to ``serials`` through ``client.devices.stream_commands``.

    Ctrl-C (``interrupt``) stops the job: the engine cancels what is in flight and flushes
    the journal, and the result holds what was settled until then.
    """
    result = JobResult(total=total)
    report_file = _open_report(report) if report is not None else None
    last: list[Any] = []

    def on_progress(stats: Any) -> None:
        if last:
            last[0] = stats
        else:
            last.append(stats)

    kwargs: dict[str, Any] = {
        "chunk_size": chunk_size,
        "concurrency": concurrency,
        "on_progress": on_progress,
        "progress_interval": 0.5,
    }
    if journal is not None:
        kwargs["journal"] = journal
    if resend:
        kwargs["resend"] = tuple(resend)
    bar = progress.add(description, total)
    started = time.perf_counter()
    try:
        stream = client.devices.stream_commands(serials, commands, **kwargs)
        async with aclosing(stream) as outcomes:
            async for outcome in outcomes:
                status = _status_name(outcome.status)
                result.counts[status] += 1
                if status in PROBLEM_STATUSES and len(result.problems) < 10:
                    result.problems.append(outcome_record(outcome))
                if report_file is not None:
                    report_file.write(
                        json.dumps(outcome_record(outcome), separators=(",", ":"), default=str)
                        + "\n"
                    )
                progress.advance(bar, 1, status)
    except asyncio.CancelledError:
        if not interrupt.consume():
            raise
        result.interrupted = True
    finally:
        result.elapsed = time.perf_counter() - started
        if last:
            _take_final_stats(result, last[0])
        if report_file is not None:
            report_file.close()
    return result


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


def write_job_summary(out: Output, result: JobResult, *, title: str) -> None:
    """The job summary: a table of outcomes (with meanings) or one JSON/CSV record."""
    if out.format != "table":
        out.record(result.as_record(), title=title)
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("outcome")
    table.add_column("devices", justify="right")
    table.add_column("meaning")
    for name in OUTCOME_ORDER:
        table.add_row(name, f"{result.counts.get(name, 0):,}", OUTCOME_MEANINGS[name])
    table.add_section()
    table.add_row("total", f"{result.settled:,} / {result.total:,}", "settled / in input")
    table.add_row("elapsed", f"{result.elapsed:.1f} s", "")
    table.add_row("throughput", f"{result.throughput:,.0f} devices/s", "")
    if result.requests:
        table.add_row("requests", f"{result.requests:,}", "retries included")
    if result.interrupted:
        table.add_row("interrupted", "yes", "the rest was not sent; rerun with the journal")
    elif result.stopped_reason:
        table.add_row("stopped early", result.stopped_reason, "the rest was not sent")
    out.render(table)
    if result.problems:
        problems = Table(title="first problems", title_justify="left")
        problems.add_column("serial")
        problems.add_column("outcome")
        problems.add_column("detail", overflow="fold")
        for item in result.problems:
            problems.add_row(item["serial"], item["status"], str(item.get("detail") or ""))
        out.render(problems)
