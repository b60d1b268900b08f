"""``iris360 devices send-commands`` against an emulator, run in-process through ``main()``:
exit codes, the report, ``--dry-run``, the journal, stdin, a wrong password and Ctrl-C.
(SIGTERM, which needs a real process, is in ``test_cli_signals.py``.)"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from cli_support import (
    InProcess,
    cli_env,
    json_lines,
    read_jsonl,
    settled_in_journal,
    summary_of,
    write_serials,
)

from iris360_async.cli._job import JobResult
from iris360_async.cli._send import _explain_in_flight
from iris360_async.testing import EmulatorThread, FaultProfile, Iris360Emulator, LatencyModel

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and paths")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(monkeypatch, capsys)


@pytest.fixture
def emu() -> Iterator[Iris360Emulator]:
    """120 devices; about 5 % are of the legacy type that rejects ``w_ota``."""
    with EmulatorThread(devices=120, seed=3) as emulator:
        yield emulator


@pytest.fixture
def ota_emu() -> Iterator[Iris360Emulator]:
    """60 devices that all accept ``w_ota``."""
    with EmulatorThread(devices=60, seed=3, no_ota_fraction=0.0) as emulator:
        yield emulator


def rejecting(emu: Iris360Emulator) -> set[str]:
    """Serials of the emulator's devices whose type does not accept ``w_ota``."""
    return {
        serial
        for index, serial in enumerate(emu.fleet.serials)
        if "w_ota" not in emu.fleet.device_type(index).commands
    }


def test_all_sent_exits_0_and_reports_every_serial(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials)
    result = cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--chunk-size", "7", "--concurrency", "3", "--report", "report.jsonl",
        env=cli_env(ota_emu), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    assert summary["counts"] == {"sent": 60, "rejected": 0, "failed": 0, "unknown": 0,
                                 "skipped": 0}  # fmt: skip
    assert summary["requests"] == 9  # ceil(60 / 7)
    report = read_jsonl(tmp_path / "report.jsonl")
    assert sorted(r["serial"] for r in report) == sorted(ota_emu.fleet.serials)
    assert {r["status"] for r in report} == {"sent"}
    assert ota_emu.stats.commanded_serials("w_ota") == set(ota_emu.fleet.serials)
    assert ota_emu.stats.max_applications("w_ota") == 1
    assert ota_emu.stats.logins == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_some_rejected_exits_1(cli: InProcess, emu: Iris360Emulator, tmp_path: Path) -> None:
    expected = rejecting(emu)
    assert expected, "the seeded fleet should contain legacy devices"
    serials = write_serials(tmp_path / "serials.txt", emu.fleet.serials)
    result = cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--report", "report.jsonl", env=cli_env(emu), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    summary = summary_of(result)
    counts = summary["counts"]
    assert counts["rejected"] == len(expected)
    assert counts["sent"] == 120 - len(expected)
    report = read_jsonl(tmp_path / "report.jsonl")
    rejected = {r["serial"] for r in report if r["status"] == "rejected"}
    assert rejected == expected
    assert all("You cannot send any of" in r["detail"] for r in report if r["serial"] in rejected)
    assert not emu.stats.commanded_serials("w_ota") & expected
    # the problems are grouped by cause: one group for every rejected device
    (group,) = summary["problems"]
    assert (group["status"], group["devices"], group["earlier"]) == ("rejected", len(expected),
                                                                     False)  # fmt: skip
    assert "You cannot send any of" in group["cause"]
    assert set(group["examples"]) <= expected
    assert len(group["examples"]) == min(3, len(expected))


def test_set_values_are_sent_as_json(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    serial = next(
        s for i, s in enumerate(ota_emu.fleet.serials)
        if {"w_sampling", "w_ota"} <= ota_emu.fleet.device_type(i).commands
    )  # fmt: skip
    result = cli(
        "devices", "send-commands", "--serials-file", "-", "--set", "w_sampling=300",
        "--set", "w_ota=true", env=cli_env(ota_emu), cwd=tmp_path, stdin=f"{serial}\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    latest = cli(
        "entities", "latest", f"urn:ngsi-ld:Device:{serial}", cwd=tmp_path,
        env=cli_env(ota_emu, tenant=True),
    )  # fmt: skip
    assert latest.returncode == 0, latest.stderr
    commands = {
        row["id"]: row for row in json_lines(latest.stdout) if row["type"] == "Command"
    }  # fmt: skip
    assert commands["w_sampling"]["pending_value"] == 300
    assert commands["w_ota"]["pending_value"] is True
    assert commands["w_sampling"]["value"] == {"current": None, "pending": 300}


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity", "1e999", "[1, NaN]"])
def test_values_json_cannot_carry_exit_2_before_anything_is_sent(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path, value: str
) -> None:
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials[:5])
    result = cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", f"w_cfg={value}",
        "--journal", "job.jsonl", env=cli_env(ota_emu), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("iris360: error: --set w_cfg:")
    assert "JSON cannot carry" in result.stderr or "too large" in result.stderr
    assert ota_emu.stats.logins == 0
    assert sum(ota_emu.stats.requests.values()) == 0
    assert not (tmp_path / "job.jsonl").exists()


def test_a_quoted_nan_is_a_string(cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path) -> None:
    result = cli(
        "devices", "send-commands", "--serials-file", "-", "--set", 'w_mode="nan"', "--dry-run",
        env={}, cwd=tmp_path, stdin="SN1\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert summary_of(result)["commands"] == {"w_mode": "nan"}


def test_dry_run_sends_nothing_and_needs_no_server(cli: InProcess, tmp_path: Path) -> None:
    serials = write_serials(tmp_path / "serials.txt", ["SN1", "SN2", "SN1", "SN3", "SN4"])
    with EmulatorThread(devices=10) as emu:
        result = cli(
            "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
            "--chunk-size", "2", "--dry-run", env={}, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        plan = summary_of(result)
        assert plan["dry_run"] is True
        assert (plan["serials"], plan["duplicates"], plan["to_send"], plan["requests"]) == (
            5, 1, 4, 2,
        )  # fmt: skip
        assert plan["commands"] == {"w_ota": True}
        assert plan["estimated_seconds"] > 0

        # Even with a server configured, a dry run does not contact it.
        result = cli(
            "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
            "--dry-run", "--format", "table", env=cli_env(emu), cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "nothing is sent" in result.stdout
        assert sum(emu.stats.requests.values()) == 0
        assert emu.stats.logins == 0


def test_a_byte_order_mark_is_not_part_of_the_first_serial(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    first, second = ota_emu.fleet.serials[:2]
    path = tmp_path / "serials.txt"
    path.write_text(f"{first}\n{second}\n", encoding="utf-8-sig")  # as Windows Notepad saves
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    result = cli(
        "devices", "send-commands", "--serials-file", str(path), "--set", "w_ota=true",
        "--report", "report.jsonl", env=cli_env(ota_emu), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["serial"] for r in read_jsonl(tmp_path / "report.jsonl")] == [first, second]
    assert ota_emu.stats.commanded_serials("w_ota") == {first, second}

    from_stdin = cli(
        "devices", "send-commands", "--serials-file", "-", "--set", "w_ota=true", "--dry-run",
        env={}, cwd=tmp_path, stdin=f"\ufeff{first}\n{first}\n",
    )  # fmt: skip
    assert summary_of(from_stdin)["duplicates"] == 1  # the same serial twice, BOM or not


def test_journal_resume_skips_everything(
    cli: InProcess, emu: Iris360Emulator, tmp_path: Path
) -> None:
    serials = write_serials(tmp_path / "serials.txt", emu.fleet.serials)
    args = ("devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
            "--journal", "job.jsonl", "--chunk-size", "25")  # fmt: skip
    first = cli(*args, env=cli_env(emu), cwd=tmp_path)
    assert first.returncode == 1  # the legacy devices are rejected
    bulk_requests = emu.stats.requests["devices.bulk"]
    assert bulk_requests == 5

    plan = cli(*args, "--dry-run", env={}, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert summary_of(plan)["already_settled"] == 120
    assert summary_of(plan)["requests"] == 0

    second = cli(*args, env=cli_env(emu), cwd=tmp_path)
    counts = summary_of(second)["counts"]
    assert counts == {"sent": 0, "rejected": 0, "failed": 0, "unknown": 0, "skipped": 120}
    assert emu.stats.requests["devices.bulk"] == bulk_requests
    assert emu.stats.max_applications("w_ota") == 1
    # The legacy devices still lack the command: the whole job is not a success.
    assert second.returncode == 1, second.stderr
    assert summary_of(second)["earlier"]["rejected"] == len(rejecting(emu))


def test_resumed_job_exits_1_and_lists_the_earlier_problems(
    cli: InProcess, emu: Iris360Emulator, tmp_path: Path
) -> None:
    """Run 1 leaves rejected (legacy type) and unknown (a 503 from the gateway) devices; run 2
    with the same journal sends nothing, yet exits 1 and lists those earlier problems."""
    emu.set_faults(FaultProfile(error_rate=1.0, error_status=503, max_faults=1),
                   endpoint="devices.bulk")  # fmt: skip
    serials = write_serials(tmp_path / "serials.txt", emu.fleet.serials)
    args = ("devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
            "--journal", "job.jsonl", "--chunk-size", "20", "--concurrency", "1")  # fmt: skip
    first = cli(*args, env=cli_env(emu), cwd=tmp_path)
    assert first.returncode == 1
    run1 = summary_of(first)["counts"]
    assert run1["unknown"] == 20
    assert run1["rejected"] > 0
    applied = emu.stats.total_applications()

    second = cli(*args, "--format", "table", env=cli_env(emu), cwd=tmp_path)
    assert second.returncode == 1, second.stderr
    assert emu.stats.total_applications() == applied  # nothing sent again
    assert "earlier runs" in second.stdout
    assert "unknown (earlier run)" in second.stdout
    assert "rejected (earlier run)" in second.stdout
    assert "503" in second.stdout  # the cause of the unknown ones, condensed
    assert "<html" not in second.stdout
    named = f"ended rejected ({run1['rejected']:,}) or unknown (20) in an earlier run"
    assert named in second.stderr
    assert "iris360 devices reconcile --journal job.jsonl" in second.stderr
    assert "--resend rejected" in second.stderr
    assert "--resend failed" not in second.stderr  # nothing failed

    third = cli(*args, env=cli_env(emu), cwd=tmp_path)
    summary = summary_of(third)
    assert third.returncode == 1
    assert summary["earlier"] == {"sent": run1["sent"], "rejected": run1["rejected"],
                                  "failed": 0, "unknown": 20}  # fmt: skip
    assert summary["job_counts"] == {**run1, "skipped": 0}
    earlier = {(g["status"], g["devices"]) for g in summary["problems"] if g["earlier"]}
    assert earlier == {("rejected", run1["rejected"]), ("unknown", 20)}


def test_journal_of_other_commands_is_refused(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials[:3])
    base = ("devices", "send-commands", "--serials-file", str(serials), "--journal", "j.jsonl")
    env = cli_env(ota_emu)
    assert cli(*base, "--set", "w_ota=true", env=env, cwd=tmp_path).returncode == 0
    journal = (tmp_path / "j.jsonl").read_bytes()
    other = cli(*base, "--set", "w_reboot=true", "--report", "r.jsonl", env=env, cwd=tmp_path)
    assert other.returncode == 2
    assert "different commands" in other.stderr
    assert "--journal-force" in other.stderr  # the option that overrides it, as a flag
    assert "force=True" not in other.stderr
    assert (tmp_path / "j.jsonl").read_bytes() == journal
    assert not (tmp_path / "r.jsonl").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    plan = cli(*base, "--set", "w_reboot=true", "--dry-run", env={}, cwd=tmp_path)
    assert plan.returncode == 2
    assert "--journal-force" in plan.stderr

    # --journal-force resumes it: the serials it settled are skipped.
    forced = cli(*base, "--set", "w_reboot=true", "--journal-force", env=env, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert summary_of(forced)["counts"]["skipped"] == 3
    assert ota_emu.stats.total_applications() == 3
    plan = cli(*base, "--set", "w_reboot=true", "--dry-run", "--journal-force", env={},
               cwd=tmp_path)  # fmt: skip
    assert summary_of(plan)["already_settled"] == 3


def test_journal_force_needs_a_journal(cli: InProcess, tmp_path: Path) -> None:
    result = cli(
        "devices", "send-commands", "--serials-file", "-", "--set", "w_ota=true",
        "--journal-force", "--dry-run", env={}, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--journal-force needs --journal" in result.stderr


def test_resend_needs_a_journal(cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path) -> None:
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials[:3])
    result = cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--resend", "failed", env=cli_env(ota_emu), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--resend needs --journal" in result.stderr
    assert ota_emu.stats.total_applications() == 0


# -- output paths never destroy inputs ----------------------------------------------------------


def _send_args(serials: Path, *extra: str) -> tuple[str, ...]:
    return ("devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
            *extra)  # fmt: skip


def test_report_on_the_serials_file_is_refused_and_the_input_kept(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials[:50])
    before = serials.read_bytes()
    for report in (str(serials), "serials.txt", "./sub/../serials.txt"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        result = cli(*_send_args(serials, "--report", report), env=cli_env(ota_emu),
                     cwd=tmp_path)  # fmt: skip
        assert result.returncode == 2, report
        assert "same file as --serials-file" in result.stderr
        assert serials.read_bytes() == before
    assert ota_emu.stats.logins == 0
    assert sum(ota_emu.stats.requests.values()) == 0


def test_report_on_the_journal_is_refused_on_resume(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials[:10])
    first = cli(*_send_args(serials, "--journal", "job.jsonl"), env=cli_env(ota_emu),
                cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    journal = (tmp_path / "job.jsonl").read_bytes()
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "job.jsonl")
    os.link(tmp_path / "job.jsonl", tmp_path / "hard.jsonl")
    for report in ("job.jsonl", "link.jsonl", "hard.jsonl"):
        result = cli(*_send_args(serials, "--journal", "job.jsonl", "--report", report),
                     env=cli_env(ota_emu), cwd=tmp_path)  # fmt: skip
        assert result.returncode == 2, report
        assert "same file as --journal" in result.stderr
        assert (tmp_path / "job.jsonl").read_bytes() == journal
    # the reverse: a journal that is the serials file
    result = cli(*_send_args(serials, "--journal", "serials.txt"), env=cli_env(ota_emu),
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert "--journal serials.txt is the same file as --serials-file" in result.stderr
    assert ota_emu.stats.max_applications("w_ota") == 1


def test_report_on_a_new_journal_is_refused(cli: InProcess, tmp_path: Path) -> None:
    result = cli(
        "devices", "send-commands", "--serials-file", "-", "--set", "w_ota=true",
        "--journal", "new.jsonl", "--report", "./new.jsonl", "--dry-run", env={}, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "same file as --journal" in result.stderr
    assert not (tmp_path / "new.jsonl").exists()


def test_report_on_the_file_stdin_reads_is_refused(cli: InProcess, tmp_path: Path) -> None:
    serials = write_serials(tmp_path / "serials.txt", ["SN1", "SN2"])
    before = serials.read_bytes()
    with serials.open(encoding="utf-8") as redirected:  # `... --serials-file - < serials.txt`
        result = cli(
            "devices", "send-commands", "--serials-file", "-", "--set", "w_ota=true",
            "--report", str(serials), "--dry-run", env={}, cwd=tmp_path, stdin=redirected,
        )  # fmt: skip
    assert result.returncode == 2
    assert "standard input reads serials from" in result.stderr
    assert serials.read_bytes() == before


@pytest.mark.parametrize("option", ["--report", "--journal"])
def test_dash_is_not_an_output_file(cli: InProcess, tmp_path: Path, option: str) -> None:
    result = cli(
        "devices", "send-commands", "--serials-file", "-", "--set", "w_ota=true", option, "-",
        "--dry-run", env={}, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{option} needs a file name" in result.stderr


def test_report_replaces_an_old_one_whole(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials[:4])
    report = tmp_path / "report.jsonl"
    report.write_text("old content\n" * 100, encoding="utf-8")
    report.chmod(0o640)
    result = cli(*_send_args(serials, "--report", "report.jsonl"), env=cli_env(ota_emu),
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(report)) == 4
    assert report.stat().st_mode & 0o777 == 0o640
    missing_dir = cli(*_send_args(serials, "--report", "nope/report.jsonl"),
                      env=cli_env(ota_emu), cwd=tmp_path)  # fmt: skip
    assert missing_dir.returncode == 2
    assert "cannot write report nope/report.jsonl" in missing_dir.stderr


# -- failures -------------------------------------------------------------------------------


def test_wrong_password_one_login_attempt_and_no_secret(
    cli: InProcess, emu: Iris360Emulator, tmp_path: Path
) -> None:
    secret = "definitely-wrong-password"
    serials = write_serials(tmp_path / "serials.txt", emu.fleet.serials)
    result = cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--journal", "job.jsonl", env=cli_env(emu, IRIS360_PASSWORD=secret), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("iris360: error: authentication failed")
    assert "nothing was sent" in lines[0]
    assert "rerun with --journal job.jsonl" in lines[0]
    assert secret not in result.stderr
    assert emu.stats.login_failures == 1
    assert emu.stats.logins == 0
    assert emu.stats.total_applications() == 0

    # After fixing the password, the same command sends what the failed run did not send:
    # a failure that provably never reached a device is not settled in the journal.
    fixed = cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--journal", "job.jsonl", env=cli_env(emu), cwd=tmp_path,
    )  # fmt: skip
    assert fixed.returncode == 1  # the legacy devices are rejected
    counts = summary_of(fixed)["counts"]
    assert counts["skipped"] == 0
    assert counts["sent"] + counts["rejected"] == 120


def test_server_errors_end_unknown_and_exit_1(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    ota_emu.set_faults(FaultProfile(error_rate=1.0, error_status=500), endpoint="devices.bulk")
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials[:10])
    result = cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--format", "table", env=cli_env(ota_emu), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "unknown" in result.stdout
    assert "problems by cause" in result.stdout


def test_a_gateway_page_is_one_grouped_line(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    ota_emu.set_faults(FaultProfile(error_rate=1.0, error_status=503), endpoint="devices.bulk")
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials[:30])
    args = ("devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
            "--chunk-size", "10")  # fmt: skip
    table = cli(*args, "--format", "table", env=cli_env(ota_emu), cwd=tmp_path)
    assert table.returncode == 1
    for raw in ("<html", "<title>", "<center>", "openresty", "\r"):
        assert raw not in table.stdout
    problems = table.stdout[table.stdout.index("problems by cause") :]
    assert problems.count("unknown") == 1  # one row for the 30 devices, not 30 rows
    assert " 30 " in problems
    assert "503" in problems

    (group,) = summary_of(cli(*args, env=cli_env(ota_emu), cwd=tmp_path))["problems"]
    assert (group["status"], group["devices"]) == ("unknown", 30)
    assert "<" not in group["cause"]
    assert "\n" not in group["cause"]
    assert len(group["examples"]) == 3


# -- Ctrl-C -------------------------------------------------------------------------------------


def _signal_when_journaled(journal: Path, lines: int, signum: int) -> threading.Thread:
    """A thread that sends ``signum`` to this process once ``journal`` holds ``lines`` settled
    serials (polling a file another thread writes: no fake clock applies)."""

    def wait_and_signal() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and settled_in_journal(journal) < lines:
            time.sleep(0.02)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=wait_and_signal, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_stops_flushes_the_journal_and_resumes(cli: InProcess, tmp_path: Path) -> None:
    late_signals: list[int] = []

    def late(signum: int, _frame: object) -> None:  # a signal after the job: no crash here
        late_signals.append(signum)

    previous = signal.signal(signal.SIGINT, late)
    try:
        with EmulatorThread(
            devices=100, seed=5, no_ota_fraction=0.0, latency=LatencyModel(base=0.1)
        ) as emu:
            serials = write_serials(tmp_path / "serials.txt", emu.fleet.serials)
            args = ("devices", "send-commands", "--serials-file", str(serials), "--set",
                    "w_ota=true", "--chunk-size", "5", "--concurrency", "1", "--journal",
                    "job.jsonl")  # fmt: skip
            sender = _signal_when_journaled(tmp_path / "job.jsonl", 10, signal.SIGINT)
            result = cli(*args, "--report", "report.jsonl", env=cli_env(emu), cwd=tmp_path)
            sender.join()
            assert result.returncode == 130, result.stderr
            summary = summary_of(result)
            assert summary["interrupted"] is True
            assert 10 <= summary["settled"] < 100
            assert "interrupted after" in result.stderr
            assert "--journal job.jsonl" in result.stderr
            journaled = [r for r in read_jsonl(tmp_path / "job.jsonl") if "serial" in r]
            assert len(journaled) >= summary["counts"]["sent"]
            # the partial report landed in place, whole: what was streamed before the signal
            report = read_jsonl(tmp_path / "report.jsonl")
            assert len(report) >= 10
            if summary["counts"]["unknown"]:  # in flight: journaled and reported unknown
                assert "report.jsonl lists them" in result.stderr
                assert "iris360 devices reconcile --journal job.jsonl" in result.stderr
            # every device settled is in the report, once, as it ended in the journal
            assert len(report) == summary["settled"] == len({r["serial"] for r in report})
            last = {r["serial"]: r["status"] for r in journaled}
            assert {r["serial"]: r["status"] for r in report if r["status"] != "skipped"} == {
                s: status for s, status in last.items() if s in {r["serial"] for r in report}
            }
            assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

            resumed = cli(*args, env=cli_env(emu), cwd=tmp_path)
            counts = summary_of(resumed)["counts"]
            assert counts["skipped"] >= summary["counts"]["sent"]
            assert counts["sent"] + counts["skipped"] + counts["unknown"] == 100
            assert emu.stats.max_applications("w_ota") == 1  # nothing was sent twice
        assert signal.getsignal(signal.SIGINT) is late  # the command restored what it found
        assert late_signals == []
    finally:
        signal.signal(signal.SIGINT, previous)


LOSSY = FaultProfile(drop_rate=0.3, error_rate=0.1, error_status=503)


def test_reconcile_resolves_every_unknown_device_and_says_how(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    ota_emu.set_faults(LOSSY, endpoint="devices.bulk")
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials)
    args = ("devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
            "--chunk-size", "5", "--journal", "job.jsonl")  # fmt: skip
    result = cli(*args, "--reconcile", "--report", "out.jsonl", "--format", "json",
                 env=cli_env(ota_emu), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    assert summary["counts"]["sent"] == 60
    assert summary["counts"]["unknown"] == 0
    reconciled = summary["reconciled"]
    assert reconciled["looked_up"] > 0
    assert reconciled["confirmed"] > 0
    assert reconciled["resent"] > 0
    assert reconciled["confirmed"] + reconciled["resent"] == reconciled["looked_up"]
    assert reconciled["left_unknown"] == reconciled["other"] == 0
    report = read_jsonl(tmp_path / "out.jsonl")
    assert sorted(r["serial"] for r in report) == sorted(ota_emu.fleet.serials)
    assert {r["status"] for r in report} == {"sent"}
    assert ota_emu.stats.max_applications("w_ota") == 1
    assert ota_emu.stats.commanded_serials("w_ota") == set(ota_emu.fleet.serials)
    # the journal knows every device now: a rerun sends nothing
    again = cli(*args, "--reconcile", "--format", "json", env=cli_env(ota_emu), cwd=tmp_path)
    assert again.returncode == 0
    assert summary_of(again)["counts"]["skipped"] == 60
    assert summary_of(again)["reconciled"]["looked_up"] == 0
    assert ota_emu.stats.max_applications("w_ota") == 1


def test_reconcile_that_cannot_read_leaves_devices_unknown_and_exits_1(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    ota_emu.set_faults(FaultProfile(drop_rate=1.0), endpoint="devices.bulk")
    ota_emu.set_faults(FaultProfile(error_rate=1.0, error_status=500), endpoint="entities.latest")
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials[:10])
    result = cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--reconcile", "--format", "table", env=cli_env(ota_emu), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "reconciled" in result.stdout
    assert "0 confirmed from command state, 0 re-sent, 10 left unknown" in result.stdout
    assert "unknown after reconciliation" in result.stdout  # the cause, in the problems table
    assert ota_emu.stats.max_applications("w_ota") == 1


def test_without_reconcile_the_summary_has_no_reconciliation(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials[:10])
    result = cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--format", "json", env=cli_env(ota_emu), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0
    assert "reconciled" not in summary_of(result)


def test_the_progress_bar_shows_the_reconciling_state() -> None:
    from iris360_async.cli._progress import format_pace
    from iris360_async.models.bulk import ProgressStats

    counts = dict.fromkeys(("sent", "rejected", "failed", "unknown", "skipped"), 0)
    stats = ProgressStats(elapsed=1.0, read=100, settled=100, counts=counts,
                          in_flight_chunks=0, requests=10, rate=100.0, limit=8, latency=0.2)
    assert format_pace(stats) == "0/8 in flight · 200 ms"
    import msgspec

    assert format_pace(msgspec.structs.replace(stats, reconciling=37)) == \
        "reconciling 37 devices"
    assert format_pace(msgspec.structs.replace(stats, reconciling=1)) == "reconciling 1 device"


@pytest.mark.parametrize(
    ("journal", "report", "expected"),
    [
        ("job.jsonl", "r.jsonl", "; r.jsonl lists them; the journal records them: settle them"
         " with iris360 devices reconcile --journal job.jsonl"),
        (None, None, "ended unknown (they may have the command)"),
    ],
)
def test_devices_in_flight_when_stopped_are_explained(
    journal: str | None, report: str | None, expected: str
) -> None:
    stderr = io.StringIO()
    ctx = argparse.Namespace(args=argparse.Namespace(journal=journal, report=report),
                             stderr=stderr)  # fmt: skip
    result = JobResult(total=10, unstreamed=Counter(unknown=3))
    _explain_in_flight(cast(Any, ctx), result)
    line = stderr.getvalue()
    assert line.startswith("iris360: 3 devices whose request was in flight")
    assert line.endswith(expected + "\n")


def test_an_empty_serials_file_says_there_is_nothing_to_send(
    cli: InProcess, ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n", encoding="utf-8")
    args = ("devices", "send-commands", "--serials-file", "empty.txt", "--set", "w_ota=true")
    result = cli(*args, env=cli_env(ota_emu), cwd=tmp_path)
    assert result.returncode == 0
    assert "empty.txt holds no serials" in result.stderr
    assert summary_of(result)["total"] == 0
    assert ota_emu.stats.total_applications() == 0
