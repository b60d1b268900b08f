"""``iris360 devices reconcile`` and ``iris360 devices track``: what happened to every device
of a send-commands job, from its journal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from ._errors import EXIT_FAILED, EXIT_OK, CliError
from ._job import cli_wording
from ._output import Output
from ._progress import progress_enabled
from ._serials import parse_assignments

if TYPE_CHECKING:
    from .._lifecycle import TrackSummary, TrackUpdate
    from ..models.bulk import CommandReport
    from ._commands import Context
    from ._runtime import Interrupt

__all__ = [
    "TrackProgress",
    "TrackResult",
    "follow",
    "reconcile_command",
    "track_command",
    "write_reconcile_summary",
    "write_track_summary",
]

TRACK_STATES = ("applied", "pending", "superseded", "unreadable")
TRACK_MEANINGS = {
    "applied": "no longer pending; the current value is the value sent",
    "pending": "waiting for the device to connect and confirm",
    "superseded": "no longer pending; another value is current",
    "unreadable": "the state could not be read (see the reason)",
}
_STYLES = {"applied": "green", "pending": "cyan", "superseded": "yellow", "unreadable": "red"}
_EXAMPLES = 10  # devices listed per state in the final table


def _commands(ctx: Context) -> dict[str, Any] | None:
    items = ctx.args.commands
    return parse_assignments(items) if items else None


def _engine_error(exc: ValueError | TypeError) -> CliError:
    return CliError(cli_wording(str(exc)))


# -- reconcile -----------------------------------------------------------------------------------


async def reconcile_command(ctx: Context, interrupt: Interrupt) -> int:
    args = ctx.args
    commands = _commands(ctx)
    out = ctx.output()
    started = time.perf_counter()
    async with ctx.client() as client:
        try:
            report = await client.devices.reconcile(
                args.journal, commands, resend=args.resend, chunk_size=args.chunk_size,
                concurrency=args.concurrency, journal_force=args.journal_force,
            )
        except OSError as exc:
            raise CliError(f"cannot open journal {args.journal}: {exc.strerror or exc}") from None
        except (ValueError, TypeError) as exc:
            raise _engine_error(exc) from None
        except asyncio.CancelledError:
            if not interrupt.consume():
                raise
            ctx.stderr.write(
                f"iris360: {interrupt.verb}; the verdicts reached so far are in the journal, "
                "run the command again to go on\n"
            )
            return interrupt.exit_code
    write_reconcile_summary(out, report, elapsed=time.perf_counter() - started)
    left = sum(report.counts[s] for s in ("rejected", "failed", "unknown"))
    return EXIT_FAILED if left else EXIT_OK


def write_reconcile_summary(out: Output, report: CommandReport, *, elapsed: float) -> None:
    """What reconciliation did: the outcomes of the devices looked up, and the ones left."""
    stats = report.reconciliation
    record: dict[str, Any] = {
        "looked_up": report.total,
        "confirmed": len(stats.confirmed) if stats is not None else 0,
        "resent": len(stats.resent) if stats is not None else 0,
        "counts": {k: v for k, v in report.counts.items() if k != "skipped"},
        "reads": stats.reads if stats is not None else 0,
        "resend_requests": report.requests,
        "elapsed_seconds": round(elapsed, 3),
        "left": [
            {"serial": o.serial, "status": o.status.value, "detail": o.detail}
            for o in report.failures
        ],
    }
    if out.format != "table":
        out.record(record, title="reconcile")
        return
    from rich.table import Table

    table = Table(title="reconcile: the unknown devices of the journal", title_justify="left",
                  show_header=False)
    table.add_column("what", style="bold")
    table.add_column("devices", justify="right")
    table.add_row("looked up", f"{record['looked_up']:,}")
    table.add_row("confirmed from command state (now sent)", f"{record['confirmed']:,}")
    table.add_row("re-sent (not applied before)", f"{record['resent']:,}")
    for name in ("sent", "rejected", "failed", "unknown"):
        table.add_row(f"  ended {name}", f"{report.counts[name]:,}")
    table.add_section()
    table.add_row("reads", f"{record['reads']:,}")
    table.add_row("re-send requests", f"{record['resend_requests']:,}")
    table.add_row("elapsed", f"{elapsed:.1f} s")
    out.render(table)
    if report.failures:
        left = Table(
            title="left without the command (rejected, failed) or unknown", title_justify="left"
        )
        left.add_column("serial", no_wrap=True)
        left.add_column("outcome")
        left.add_column("reason", overflow="fold")
        for outcome in report.failures[:_EXAMPLES]:
            left.add_row(outcome.serial, outcome.status.value, outcome.detail or "")
        if len(report.failures) > _EXAMPLES:
            left.caption = f"{len(report.failures) - _EXAMPLES:,} more (--format json lists all)"
        out.render(left)


# -- track -------------------------------------------------------------------------------------


class TrackResult:
    """The last summary of a tracking run and where each device that is not applied stands."""

    def __init__(self) -> None:
        self.summary: TrackSummary | None = None
        self.states: dict[str, tuple[str, str | None]] = {}
        self.interrupted = False

    def take(self, update: TrackUpdate) -> None:
        self.summary = update.summary
        for change in update.changes:
            self.states[change.serial] = (change.state.value, change.detail)

    def not_applied(self) -> list[tuple[str, str, str | None]]:
        return [(serial, state, detail) for serial, (state, detail) in self.states.items()
                if state != "applied"]

    def as_record(self) -> dict[str, Any]:
        s = self.summary
        return {
            "total": s.total if s is not None else 0,
            "counts": s.counts if s is not None else dict.fromkeys(TRACK_STATES, 0),
            "complete": bool(s and s.complete),
            "sweeps": s.sweeps if s is not None else 0,
            "requests": s.requests if s is not None else 0,
            "elapsed_seconds": round(s.elapsed, 3) if s is not None else 0.0,
            "interrupted": self.interrupted,
            "not_applied": [{"serial": serial, "state": state, "detail": detail}
                            for serial, state, detail in self.not_applied()],
        }

    @property
    def all_applied(self) -> bool:
        s = self.summary
        return s is not None and s.applied == s.total and not self.interrupted


class TrackProgress:
    """A live bar of applied devices with the four states beside it (rich, on ``stream``);
    nothing when disabled."""

    def __init__(self, enabled: bool, stream: TextIO, description: str = "applied") -> None:
        self._progress: Any = None
        self._task: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[states]}"),
                console=Console(file=stream, force_terminal=True), refresh_per_second=8,
            )
            self._task = self._progress.add_task(description, total=None, states="")

    def __enter__(self) -> TrackProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, summary: TrackSummary) -> None:
        if self._progress is None:
            return
        counts = summary.counts
        states = " · ".join(
            f"[{_STYLES[name]}]{counts[name]:,} {name}[/]" for name in TRACK_STATES
            if counts[name] or name in ("applied", "pending")
        )
        self._progress.update(self._task, total=summary.total, completed=summary.applied,
                              states=f"{states} · sweep {summary.sweeps}")


async def follow(
    updates: AsyncIterator[TrackUpdate], progress: TrackProgress, result: TrackResult
) -> None:
    """Consume ``updates`` into ``result``, drawing each on ``progress``."""
    async for update in updates:
        result.take(update)
        progress.update(update.summary)


async def track_command(ctx: Context, interrupt: Interrupt) -> int:
    args = ctx.args
    commands = _commands(ctx)
    out = ctx.output()
    result = TrackResult()
    async with ctx.client() as client:
        try:
            updates = client.devices.track_commands(
                journal=args.journal, commands=commands, until=args.until,
                interval=args.interval, concurrency=args.concurrency,
            )
        except OSError as exc:
            raise CliError(f"cannot read journal {args.journal}: {exc.strerror or exc}") from None
        except (ValueError, TypeError) as exc:
            raise _engine_error(exc) from None
        with TrackProgress(progress_enabled(args.progress, ctx.stderr), ctx.stderr) as bar:
            try:
                await follow(updates, bar, result)
            except asyncio.CancelledError:
                if not interrupt.consume():
                    raise
                result.interrupted = True
    write_track_summary(out, result)
    if result.interrupted:
        ctx.stderr.write(f"iris360: {interrupt.verb} while tracking\n")
        return interrupt.exit_code
    return EXIT_OK if result.all_applied else EXIT_FAILED


def write_track_summary(out: Output, result: TrackResult, *, title: str = "track") -> None:
    """The final table of a tracking run (or one JSON record)."""
    if out.format != "table":
        out.record(result.as_record(), title=title)
        return
    from rich.table import Table

    record = result.as_record()
    counts = record["counts"]
    table = Table(title=f"{title}: {record['total']:,} devices", title_justify="left")
    table.add_column("state")
    table.add_column("devices", justify="right")
    table.add_column("meaning")
    for name in TRACK_STATES:
        table.add_row(name, f"{counts[name]:,}", TRACK_MEANINGS[name])
    table.add_section()
    table.add_row("sweeps", f"{record['sweeps']:,}", "passes over the devices not done")
    table.add_row("requests", f"{record['requests']:,}", "reads of device rows and entities")
    table.add_row("elapsed", f"{record['elapsed_seconds']:.1f} s", "")
    if not record["complete"]:
        table.add_row("stopped", "interrupted" if result.interrupted else "--until reached",
                      "devices still pending may apply later")
    out.render(table)
    rows = result.not_applied()
    if rows:
        left = Table(title="not applied", title_justify="left")
        left.add_column("serial", no_wrap=True)
        left.add_column("state")
        left.add_column("detail", overflow="fold")
        for serial, state, detail in rows[:_EXAMPLES]:
            left.add_row(serial, state, detail or "")
        if len(rows) > _EXAMPLES:
            left.caption = f"{len(rows) - _EXAMPLES:,} more (--json lists all)"
        out.render(left)
