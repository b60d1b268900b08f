"""``iris360 devices send-commands``: the plan (``--dry-run``) or the job."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from ._errors import EXIT_FAILED, EXIT_OK, CliError, credentials_advice, timeout_advice
from ._job import PROBLEM_STATUSES, JobResult, cli_wording, run_job, write_job_summary
from ._output import Output
from ._paths import check_job_paths
from ._progress import JobProgress, progress_enabled
from ._serials import JobPlan, open_serials, parse_assignments, plan_job

if TYPE_CHECKING:
    from ._commands import Context
    from ._runtime import Interrupt

__all__ = ["check_arguments", "journal_settled", "send_commands"]


def check_arguments(ctx: Context) -> dict[str, Any]:
    """The commands of ``--set``, after checking the arguments that need no server: values
    JSON can carry, and output files that are not inputs. Nothing is opened for writing.

    Raises:
        CliError: (exit 2) a bad value, or an output that is the same file as an input.
    """
    args = ctx.args
    commands = parse_assignments(args.commands)
    check_job_paths(
        serials_file=args.serials_file, journal=args.journal, report=args.report, stdin=ctx.stdin
    )
    if args.journal_force and not args.journal:
        raise CliError("--journal-force needs --journal")
    if args.resend and not args.journal:
        raise CliError(
            "--resend needs --journal: it sends again to the serials the journal recorded "
            "with that outcome (without a journal every serial is sent anyway)"
        )
    return commands


def journal_settled(path: str, commands: dict[str, Any], *, force: bool = False) -> frozenset[str]:
    """Serials a journal already settled for ``commands`` (read only; nothing is written).

    Raises:
        CliError: the file is not a journal, or belongs to another job (unless ``force``).
    """
    from .._journal import read_previous

    try:
        previous = read_previous(path, commands, force=force)
    except OSError as exc:
        raise CliError(f"cannot read journal {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(cli_wording(str(exc))) from None
    return frozenset(previous)


def _write_plan(out: Output, plan: JobPlan, source: str) -> None:
    if out.format != "table":
        out.record(plan.as_record(), title="plan")
        return
    import json

    from rich.table import Table

    table = Table(title="dry run: nothing is sent", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("serials read", f"{plan.serials:,} from {source}")
    table.add_row(
        "duplicates",
        f"{plan.duplicates:,}"
        + (f" (e.g. {', '.join(plan.first_duplicates[:3])})" if plan.duplicates else ""),
    )
    table.add_row("already settled in journal", f"{plan.already_settled:,}")
    table.add_row("to send", f"{plan.to_send:,}")
    table.add_row("commands", json.dumps(plan.commands))
    table.add_row("chunk size", f"{plan.chunk_size:,}")
    table.add_row("chunks / requests", f"{plan.requests:,}")
    table.add_row("concurrency", f"{plan.concurrency:,}" if isinstance(plan.concurrency, int)
                  else str(plan.concurrency))
    table.add_row("estimated time", f"~{plan.estimated_seconds:,.0f} s")
    out.render(table)


async def send_commands(ctx: Context, interrupt: Interrupt) -> int:
    args = ctx.args
    commands = check_arguments(ctx)
    source = open_serials(args.serials_file, ctx.stdin)
    if source.total == 0:
        ctx.stderr.write(
            f"iris360: {source.name} holds no serials (blank lines and # comments are not "
            "serials): nothing to send\n"
        )
    if args.dry_run:
        settled = (
            journal_settled(args.journal, commands, force=args.journal_force)
            if args.journal
            else frozenset()
        )
        plan = plan_job(
            source,
            commands,
            chunk_size=args.chunk_size,
            concurrency=args.concurrency,
            settled=settled,
            request_seconds=args.assume_request_ms / 1000.0,
            device_seconds=args.assume_device_ms / 1000.0,
        )
        _write_plan(ctx.output(), plan, source.name)
        return EXIT_OK
    out = ctx.output()
    async with ctx.client() as client:
        with JobProgress(progress_enabled(args.progress, ctx.stderr), ctx.stderr) as progress:
            result = await run_job(
                client,
                source,
                commands,
                total=source.total,
                chunk_size=args.chunk_size,
                concurrency=args.concurrency,
                journal=args.journal,
                report=args.report,
                resend=args.resend,
                journal_force=args.journal_force,
                progress=progress,
                interrupt=interrupt,
                secrets=ctx.secrets,
                reconcile=args.reconcile,
            )
    if result.authentication_failed and not result.counts.get("sent"):
        detail = result.problems.first_cause() or str(result.stopped_reason)
        hint = f"; then rerun with --journal {args.journal}" if args.journal else ""
        token = ctx.settings is not None and ctx.settings.password is None
        raise CliError(
            f"authentication failed: {detail.removeprefix('not sent: ')}; nothing was sent; "
            f"{credentials_advice(token)}{hint}"
        )
    write_job_summary(out, result, title="send-commands")
    if result.stopped_reason and not result.interrupted:
        ctx.stderr.write(f"iris360: the job stopped early: {result.stopped_reason}\n")
    _explain_timeouts(ctx, result)
    _explain_in_flight(ctx, result)
    if result.interrupted:
        where = (
            f"; rerun with --journal {args.journal} to resume"
            if args.journal
            else " (without --journal, running the command again sends to every device again)"
        )
        ctx.stderr.write(
            f"iris360: {interrupt.verb} after {result.settled:,} of {result.total:,} "
            f"devices{where}\n"
        )
        return interrupt.exit_code
    _explain_earlier(ctx, result, args.journal)
    return EXIT_FAILED if result.has_problems else EXIT_OK


def _explain_in_flight(ctx: Context, result: JobResult) -> None:
    """A line on the devices whose request was in flight when the job stopped: they ended
    ``unknown`` (counts, journal, report) and may have the command."""
    in_flight = result.unstreamed.get("unknown", 0)
    if not in_flight:
        return
    journal, report = ctx.args.journal, ctx.args.report
    line = (
        f"iris360: {in_flight:,} devices whose request was in flight when the job stopped "
        "ended unknown (they may have the command)"
    )
    if report is not None:
        line += f"; {report} lists them"
    if journal is not None:
        line += (
            f"; the journal records them: settle them with "
            f"iris360 devices reconcile --journal {journal}"
        )
    ctx.stderr.write(line + "\n")


def _explain_earlier(ctx: Context, result: JobResult, journal: str | None) -> None:
    """Lines on the serials skipped because an earlier run left them rejected, failed or
    unknown: how many, and what to do about each."""
    earlier = {s: result.earlier.get(s, 0) for s in PROBLEM_STATUSES if result.earlier.get(s)}
    if not earlier or journal is None:
        return
    total = sum(earlier.values())
    parts = " or ".join(f"{status} ({n:,})" for status, n in earlier.items())
    lines = [
        f"{total:,} devices skipped now ended {parts} in an earlier run (journal {journal}) "
        "and may still lack the command"
    ]
    if "unknown" in earlier:
        lines.append(
            "settle the unknown ones from their command state, without sending twice: "
            f"iris360 devices reconcile --journal {journal}"
        )
    if "failed" in earlier:
        lines.append("send to the failed ones again: rerun with --resend failed")
    if "rejected" in earlier:
        lines.append(
            "rejected devices do not accept the command; --resend rejected sends to them "
            "again once that has changed"
        )
    ctx.stderr.write("".join(f"iris360: {line}\n" for line in lines))


def _explain_timeouts(ctx: Context, result: JobResult) -> None:
    """One line naming ``--timeout`` and its value when requests of this run timed out after
    they were sent (connect timeouts leave devices ``failed`` and resumable: not these)."""
    timed_out = Counter[str]()
    for group in result.problems:
        cause = group.cause
        if not group.earlier and "timed out" in cause and "timed out connecting" not in cause:
            timed_out[group.status] += group.devices
    hint = ctx.timeout_hint()
    if not timed_out or hint is None:
        return
    seconds, origin = hint
    counts = " and ".join(f"{n:,} {status}" for status, n in timed_out.most_common())
    ctx.stderr.write(
        f"iris360: {counts} after requests timed out after {seconds:g} s ({origin}); "
        f"{timeout_advice(seconds)}\n"
    )
