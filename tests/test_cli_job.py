"""The command line's job machinery without a server: outcomes of a fake engine counted for the
whole job, problems grouped by cause, reports written whole, outputs that would overwrite an
input refused, and SIGTERM handled like Ctrl-C."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from iris360_async.cli._errors import CliError
from iris360_async.cli._job import JobResult, cli_wording, run_job, write_job_summary
from iris360_async.cli._output import Output
from iris360_async.cli._paths import AtomicTextFile, check_job_paths, same_file
from iris360_async.cli._problems import MAX_CAUSES, Problems, cause_text, journal_cause
from iris360_async.cli._progress import JobProgress
from iris360_async.cli._runtime import Interrupt, Terminated, run_command
from iris360_async.models import CommandOutcome, CommandStatus

SENT, REJECTED, FAILED, UNKNOWN, SKIPPED = (
    CommandStatus.SENT, CommandStatus.REJECTED, CommandStatus.FAILED, CommandStatus.UNKNOWN,
    CommandStatus.SKIPPED,
)  # fmt: skip

GATEWAY_PAGE = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>openresty"
    "</center>\r\n</body>\r\n</html>\r\n"
)


class FakeDevices:
    """``stream_commands`` yielding prepared outcomes (or raising), recording its options."""

    def __init__(
        self, outcomes: list[CommandOutcome], *, error: Exception | None = None, hang: bool = False
    ) -> None:
        self.outcomes = outcomes
        self.error = error
        self.hang = hang
        self.options: dict[str, Any] = {}
        self.drained = asyncio.Event()
        """Set once every prepared outcome was yielded."""

    def stream_commands(
        self, serials: Iterable[str], commands: dict[str, Any], **options: Any
    ) -> AsyncIterator[CommandOutcome]:
        self.options = options
        if self.error is not None:
            raise self.error
        return self._stream()

    async def _stream(self) -> AsyncIterator[CommandOutcome]:
        for outcome in self.outcomes:
            yield outcome
        self.drained.set()
        if self.hang:
            await asyncio.sleep(3600)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


class FakeClient:
    def __init__(self, devices: FakeDevices) -> None:
        self.devices = devices


async def _run(
    devices: FakeDevices, *, report: Path | None = None, interrupt: Interrupt | None = None
) -> JobResult:
    return await run_job(
        FakeClient(devices), [o.serial for o in devices.outcomes], {"w_ota": True},
        total=len(devices.outcomes), chunk_size=10, concurrency=2, journal="job.jsonl",
        report=str(report) if report else None, progress=JobProgress(False, io.StringIO()),
        journal_force=True, interrupt=interrupt or Interrupt(), secrets=["hunter2-secret"],
    )  # fmt: skip


def resumed_outcomes() -> list[CommandOutcome]:
    """A resumed job: two devices sent now, the rest skipped as an earlier run settled them."""
    return [
        CommandOutcome("SN1", SENT),
        CommandOutcome("SN2", SENT),
        CommandOutcome("SN3", SKIPPED, "already sent in journal", earlier=SENT),
        *(
            CommandOutcome(
                f"SN1{i}",
                SKIPPED,
                "already rejected in journal: You cannot send any of: w_ota",
                earlier=REJECTED,
            )
            for i in range(5)
        ),
        CommandOutcome(
            "SN20",
            SKIPPED,
            "already unknown in journal (in flight when a previous run stopped)",
            earlier=UNKNOWN,
        ),
        CommandOutcome("SN21", SKIPPED, "duplicate serial in input"),
    ]


# -- the whole job ------------------------------------------------------------------------------


async def test_earlier_outcomes_count_for_the_whole_job(tmp_path: Path) -> None:
    devices = FakeDevices(resumed_outcomes())
    result = await _run(devices, report=tmp_path / "r.jsonl")
    assert devices.options["journal_force"] is True
    assert result.counts == {"sent": 2, "skipped": 8}
    assert result.earlier == {"sent": 1, "rejected": 5, "unknown": 1}
    assert result.job_counts == {"sent": 3, "rejected": 5, "unknown": 1, "skipped": 1}
    assert result.has_problems  # this run had none; the earlier rejected/unknown remain
    record = result.as_record()
    assert record["counts"]["skipped"] == 8
    assert record["earlier"] == {"sent": 1, "rejected": 5, "failed": 0, "unknown": 1}
    assert record["job_counts"] == {"sent": 3, "rejected": 5, "failed": 0, "unknown": 1,
                                    "skipped": 1}  # fmt: skip
    assert record["problems"] == [
        {"status": "rejected", "cause": "You cannot send any of: w_ota", "earlier": True,
         "devices": 5, "examples": ["SN10", "SN11", "SN12"]},
        {"status": "unknown", "cause": "(in flight when a previous run stopped)",
         "earlier": True, "devices": 1, "examples": ["SN20"]},
    ]  # fmt: skip
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r.get("earlier") for r in lines[2:4]] == ["sent", "rejected"]
    assert "earlier" not in lines[0]


async def test_a_resumed_job_whose_earlier_runs_all_sent_is_a_success() -> None:
    outcomes = [
        CommandOutcome("SN1", SENT),
        CommandOutcome("SN2", SKIPPED, "already sent in journal", earlier=SENT),
    ]
    result = await _run(FakeDevices(outcomes))
    assert not result.has_problems
    assert not result.problems


async def test_summary_table_shows_earlier_runs_and_grouped_causes() -> None:
    result = await _run(FakeDevices(resumed_outcomes()))
    stdout = io.StringIO()
    write_job_summary(Output("table", stdout), result, title="send-commands")
    text = stdout.getvalue()
    assert "earlier runs" in text
    assert "rejected (earlier run)" in text
    assert "problems by cause" in text
    assert text.count("You cannot send any of: w_ota") == 1
    assert "SN10, SN11, SN12" in text
    assert "SN13" not in text


async def test_problems_of_this_run_grouped_and_condensed() -> None:
    outcomes = [
        *(CommandOutcome(f"A{i}", UNKNOWN, f"HTTP 503: {GATEWAY_PAGE}") for i in range(10)),
        CommandOutcome("B1", FAILED, "not sent: login failed: hunter2-secret is wrong"),
        CommandOutcome("B2", SENT),
    ]
    result = await _run(FakeDevices(outcomes))
    groups = [g.as_record() for g in result.problems]
    assert groups == [
        {"status": "unknown", "cause": "HTTP 503: 503 Service Temporarily Unavailable",
         "earlier": False, "devices": 10, "examples": ["A0", "A1", "A2"]},
        {"status": "failed", "cause": "not sent: login failed: *** is wrong",
         "earlier": False, "devices": 1, "examples": ["B1"]},
    ]  # fmt: skip
    stdout = io.StringIO()
    write_job_summary(Output("table", stdout), result, title="send-commands")
    for raw in ("<html", "openresty", "\r", "hunter2-secret"):
        assert raw not in stdout.getvalue()


def test_causes_are_bounded() -> None:
    problems = Problems()
    for i in range(MAX_CAUSES + 20):
        problems.add("failed", f"broker error {i}", f"SN{i}")
    groups = list(problems)
    assert len(groups) == MAX_CAUSES + 1
    other = next(g for g in groups if g.cause == "(other causes)")
    assert other.devices == 20
    assert sum(g.devices for g in groups) == MAX_CAUSES + 20


@pytest.mark.parametrize(
    "hint",
    [
        "journal_force=True",
        "force=True",
        "journal_force=True (--journal-force on the command line)",
    ],
)
def test_engine_messages_name_the_flag(hint: str) -> None:
    message = f"j.jsonl was written for other commands; use a new journal or {hint} to resume"
    assert cli_wording(message) == (
        "j.jsonl was written for other commands; use a new journal or --journal-force to resume"
    )


def test_cause_text_and_journal_cause() -> None:
    assert cause_text(GATEWAY_PAGE) == "503 Service Temporarily Unavailable"
    assert cause_text("a\r\n  b") == "a b"
    assert cause_text(None) == "(no detail)"
    assert len(cause_text("x" * 1000)) <= 160
    assert journal_cause("already failed in journal: broker said no") == "broker said no"
    assert journal_cause("already unknown in journal") == ""


# -- the engine refuses the job -----------------------------------------------------------------


async def test_a_refused_journal_names_the_flag_and_keeps_the_old_report(tmp_path: Path) -> None:
    report = tmp_path / "r.jsonl"
    report.write_text("previous report\n")
    refused = FakeDevices(
        [CommandOutcome("SN1", SENT)],
        error=ValueError(
            "job.jsonl was written for https://a.example (tenant t1); use a new journal or "
            "journal_force=True to resume anyway"
        ),
    )
    with pytest.raises(CliError) as info:
        await _run(refused, report=report)
    assert info.value.exit_code == 2
    assert info.value.message.endswith("use a new journal or --journal-force to resume anyway")
    assert report.read_text() == "previous report\n"
    assert names(tmp_path) == ["r.jsonl"]


async def test_an_interrupted_job_still_renames_its_partial_report(tmp_path: Path) -> None:
    report = tmp_path / "r.jsonl"
    report.write_text("previous report\n")
    interrupt = Interrupt()
    devices = FakeDevices([CommandOutcome("SN1", SENT), CommandOutcome("SN2", SENT)], hang=True)

    task = asyncio.ensure_future(_run(devices, report=report, interrupt=interrupt))
    await devices.drained.wait()
    await asyncio.sleep(0)  # the last outcome is written
    interrupt.requested = True  # as the SIGTERM handler does
    interrupt.signal = signal.SIGTERM
    task.cancel()

    result = await task
    assert result.interrupted
    assert [json.loads(line)["serial"] for line in report.read_text().splitlines()] == [
        "SN1", "SN2",
    ]  # fmt: skip
    assert names(tmp_path) == ["r.jsonl"]
    assert interrupt.exit_code == 143


# -- output paths -------------------------------------------------------------------------------


def test_same_file_by_path_symlink_and_hard_link(tmp_path: Path) -> None:
    target = tmp_path / "journal.jsonl"
    target.write_text("x")
    (tmp_path / "soft").symlink_to(target)
    os.link(target, tmp_path / "hard")
    assert same_file(str(target), str(tmp_path / "soft"))
    assert same_file(str(target), str(tmp_path / "hard"))
    assert same_file(str(tmp_path / "new"), str(tmp_path / "sub" / ".." / "new"))  # neither exists
    assert not same_file(str(target), str(tmp_path / "other"))


def test_job_paths(tmp_path: Path) -> None:
    serials = tmp_path / "serials.txt"
    serials.write_text("SN1\n")
    os.chdir(tmp_path)
    check_job_paths(serials_file="serials.txt", journal="j.jsonl", report="r.jsonl",
                    stdin=io.StringIO())  # fmt: skip
    for journal, report, message in [
        (None, "serials.txt", "--report serials.txt is the same file as --serials-file"),
        ("serials.txt", None, "--journal serials.txt is the same file as --serials-file"),
        ("j.jsonl", "./j.jsonl", "--report ./j.jsonl is the same file as --journal j.jsonl"),
        (None, ".", "--report . is a directory"),
    ]:
        with pytest.raises(CliError, match=message) as info:
            check_job_paths(serials_file="serials.txt", journal=journal, report=report,
                            stdin=io.StringIO())  # fmt: skip
        assert info.value.exit_code == 2


def test_stdin_pipe_is_not_an_output(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(read_end, closefd=False) as stdin:
            with pytest.raises(CliError, match="standard input reads serials from"):
                check_job_paths(serials_file="-", journal=None, report=f"/dev/fd/{read_end}",
                                stdin=stdin)  # fmt: skip
            check_job_paths(serials_file="-", journal=None, report=str(tmp_path / "r"),
                            stdin=stdin)  # fmt: skip
    finally:
        os.close(read_end)
        os.close(write_end)


def test_atomic_file_commit_and_discard(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    path.chmod(0o600)
    kept = AtomicTextFile(str(path))
    kept.write_line("new")
    assert path.read_text() == "old\n"  # nothing visible before the rename
    kept.commit()
    assert path.read_text() == "new\n"
    assert path.stat().st_mode & 0o777 == 0o600
    dropped = AtomicTextFile(str(path))
    dropped.write_line("never")
    dropped.discard()
    assert path.read_text() == "new\n"
    assert names(tmp_path) == ["out.jsonl"]
    with pytest.raises(CliError, match="cannot write report"):
        AtomicTextFile(str(tmp_path / "missing" / "r.jsonl"), what="report")


def test_atomic_file_follows_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.jsonl"
    real.write_text("old\n")
    (tmp_path / "link.jsonl").symlink_to(real)
    with AtomicTextFile(str(tmp_path / "link.jsonl")) as out:
        out.write_line("new")
    assert (tmp_path / "link.jsonl").is_symlink()
    assert real.read_text() == "new\n"


# -- signals ------------------------------------------------------------------------------------

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@posix_only
def test_sigterm_cancels_like_ctrl_c_with_exit_code_143(capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    async def job(interrupt: Interrupt) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            assert interrupt.consume()
            await asyncio.sleep(0)  # the job may still settle and flush after consuming
            return interrupt.exit_code
        return 0

    assert run_command(job) == 143
    err = capsys.readouterr().err
    assert "terminated (SIGTERM), stopping (SIGTERM again to exit now)" in err
    assert "Ctrl-C" not in err
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@posix_only
def test_sigterm_outside_a_job_raises_terminated() -> None:
    async def command(interrupt: Interrupt) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(60)
        return 0

    with pytest.raises(Terminated):
        run_command(command)


@posix_only
def test_ctrl_c_keeps_exit_code_130(capsys: pytest.CaptureFixture[str]) -> None:
    async def job(interrupt: Interrupt) -> int:
        os.kill(os.getpid(), signal.SIGINT)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            interrupt.consume()
        return interrupt.exit_code

    assert run_command(job) == 130
    assert "interrupted, stopping (Ctrl-C again to exit now)" in capsys.readouterr().err
