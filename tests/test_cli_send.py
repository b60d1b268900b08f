"""``iris360 devices send-commands`` as a real process against an emulator: exit codes, the
report, ``--dry-run``, the journal, stdin, a wrong password and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iris360_async.testing import EmulatorThread, FaultProfile, Iris360Emulator, LatencyModel

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and paths")


def cli_env(emu: Iris360Emulator | None, **extra: str) -> dict[str, str]:
    """The environment of a CLI process: no inherited IRIS360_* settings, the emulator's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRIS360_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if emu is not None:
        env.update(
            IRIS360_BASE_URL=emu.base_url,
            IRIS360_USERNAME=emu.username,
            IRIS360_PASSWORD=emu.password,
        )
    env.update(extra)
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "iris360_async.cli", *args]


def run_cli(
    *args: str,
    emu: Iris360Emulator | None,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: str = "",
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(*args),
        env=env if env is not None else cli_env(emu),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def summary_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    record: dict[str, Any] = json.loads(lines[0])
    return record


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


def write_serials(path: Path, serials: list[str]) -> Path:
    path.write_text("".join(f"{s}\n" for s in serials), encoding="utf-8")
    return path


def rejecting(emu: Iris360Emulator) -> set[str]:
    """Serials of the emulator's devices whose type does not accept ``w_ota``."""
    return {
        serial
        for index, serial in enumerate(emu.fleet.serials)
        if "w_ota" not in emu.fleet.device_type(index).commands
    }


def test_all_sent_exits_0_and_reports_every_serial(
    ota_emu: Iris360Emulator, tmp_path: Path
) -> None:
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials)
    result = run_cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--chunk-size", "7", "--concurrency", "3", "--report", "report.jsonl",
        emu=ota_emu, cwd=tmp_path,
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


def test_some_rejected_exits_1(emu: Iris360Emulator, tmp_path: Path) -> None:
    expected = rejecting(emu)
    assert expected, "the seeded fleet should contain legacy devices"
    serials = write_serials(tmp_path / "serials.txt", emu.fleet.serials)
    result = run_cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--report", "report.jsonl", emu=emu, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    counts = summary_of(result)["counts"]
    assert counts["rejected"] == len(expected)
    assert counts["sent"] == 120 - len(expected)
    report = read_jsonl(tmp_path / "report.jsonl")
    rejected = {r["serial"] for r in report if r["status"] == "rejected"}
    assert rejected == expected
    assert all("You cannot send any of" in r["detail"] for r in report if r["serial"] in rejected)
    assert not emu.stats.commanded_serials("w_ota") & expected


def test_set_values_are_sent_as_json(ota_emu: Iris360Emulator, tmp_path: Path) -> None:
    serial = next(
        s for i, s in enumerate(ota_emu.fleet.serials)
        if {"w_sampling", "w_ota"} <= ota_emu.fleet.device_type(i).commands
    )  # fmt: skip
    result = run_cli(
        "devices", "send-commands", "--serials-file", "-", "--set", "w_sampling=300",
        "--set", "w_ota=true", emu=ota_emu, cwd=tmp_path, stdin=f"{serial}\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    latest = run_cli(
        "entities", "latest", f"urn:ngsi-ld:Device:{serial}", emu=ota_emu, cwd=tmp_path,
        env=cli_env(ota_emu, IRIS360_TENANT=ota_emu.tenant, IRIS360_SCOPE=ota_emu.scope),
    )  # fmt: skip
    assert latest.returncode == 0, latest.stderr
    commands = {
        row["id"]: row for row in map(json.loads, latest.stdout.splitlines())
        if row["type"] == "Command"
    }  # fmt: skip
    assert commands["w_sampling"]["pending_value"] == 300
    assert commands["w_ota"]["pending_value"] is True
    assert commands["w_sampling"]["value"] == {"current": None, "pending": 300}


def test_dry_run_sends_nothing_and_needs_no_server(tmp_path: Path) -> None:
    serials = write_serials(tmp_path / "serials.txt", ["SN1", "SN2", "SN1", "SN3", "SN4"])
    with EmulatorThread(devices=10) as emu:
        env = cli_env(None)  # no server configured at all
        result = run_cli(
            "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
            "--chunk-size", "2", "--dry-run", emu=None, env=env, cwd=tmp_path,
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
        result = run_cli(
            "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
            "--dry-run", "--format", "table", emu=emu, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "nothing is sent" in result.stdout
        assert sum(emu.stats.requests.values()) == 0
        assert emu.stats.logins == 0


def test_journal_resume_skips_everything(emu: Iris360Emulator, tmp_path: Path) -> None:
    serials = write_serials(tmp_path / "serials.txt", emu.fleet.serials)
    args = ("devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
            "--journal", "job.jsonl", "--chunk-size", "25")  # fmt: skip
    first = run_cli(*args, emu=emu, cwd=tmp_path)
    assert first.returncode == 1  # the legacy devices are rejected
    bulk_requests = emu.stats.requests["devices.bulk"]
    assert bulk_requests == 5

    plan = run_cli(*args, "--dry-run", emu=None, env=cli_env(None), cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert summary_of(plan)["already_settled"] == 120
    assert summary_of(plan)["requests"] == 0

    second = run_cli(*args, emu=emu, cwd=tmp_path)
    assert second.returncode == 0, second.stderr  # everything skipped: nothing failed
    counts = summary_of(second)["counts"]
    assert counts == {"sent": 0, "rejected": 0, "failed": 0, "unknown": 0, "skipped": 120}
    assert emu.stats.requests["devices.bulk"] == bulk_requests
    assert emu.stats.max_applications("w_ota") == 1


def test_journal_of_other_commands_is_refused(ota_emu: Iris360Emulator, tmp_path: Path) -> None:
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials[:3])
    base = ("devices", "send-commands", "--serials-file", str(serials), "--journal", "j.jsonl")
    assert run_cli(*base, "--set", "w_ota=true", emu=ota_emu, cwd=tmp_path).returncode == 0
    other = run_cli(*base, "--set", "w_reboot=true", emu=ota_emu, cwd=tmp_path)
    assert other.returncode == 2
    assert "different commands" in other.stderr


def test_wrong_password_one_login_attempt_and_no_secret(
    emu: Iris360Emulator, tmp_path: Path
) -> None:
    secret = "definitely-wrong-password"
    serials = write_serials(tmp_path / "serials.txt", emu.fleet.serials)
    result = run_cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--journal", "job.jsonl", emu=emu, env=cli_env(emu, IRIS360_PASSWORD=secret),
        cwd=tmp_path,
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
    fixed = run_cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--journal", "job.jsonl", emu=emu, cwd=tmp_path,
    )  # fmt: skip
    assert fixed.returncode == 1  # the legacy devices are rejected
    counts = summary_of(fixed)["counts"]
    assert counts["skipped"] == 0
    assert counts["sent"] + counts["rejected"] == 120


def test_server_errors_end_unknown_and_exit_1(ota_emu: Iris360Emulator, tmp_path: Path) -> None:
    ota_emu.set_faults(FaultProfile(error_rate=1.0, error_status=500), endpoint="devices.bulk")
    serials = write_serials(tmp_path / "serials.txt", ota_emu.fleet.serials[:10])
    result = run_cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--format", "table", emu=ota_emu, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "unknown" in result.stdout
    assert "first problems" in result.stdout


def test_ctrl_c_stops_flushes_the_journal_and_resumes(tmp_path: Path) -> None:
    with EmulatorThread(
        devices=200, seed=5, no_ota_fraction=0.0, latency=LatencyModel(base=0.1)
    ) as emu:
        serials = write_serials(tmp_path / "serials.txt", emu.fleet.serials)
        args = ("devices", "send-commands", "--serials-file", str(serials), "--set",
                "w_ota=true", "--chunk-size", "5", "--concurrency", "1", "--journal",
                "job.jsonl")  # fmt: skip
        proc = subprocess.Popen(
            cli(*args, "--report", "report.jsonl"),
            env=cli_env(emu),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        report = tmp_path / "report.jsonl"
        while time.monotonic() < deadline:
            if report.exists() and len(report.read_text().splitlines()) >= 10:
                break
            time.sleep(0.05)  # polling a real child process: no fake clock applies
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        summary = json.loads(stdout)
        assert summary["interrupted"] is True
        assert 10 <= summary["settled"] < 200
        assert "interrupted after" in stderr
        assert "--journal job.jsonl" in stderr

        journaled = [r for r in read_jsonl(tmp_path / "job.jsonl") if "serial" in r]
        assert len(journaled) >= summary["counts"]["sent"]

        resumed = run_cli(*args, emu=emu, cwd=tmp_path)
        counts = summary_of(resumed)["counts"]
        assert counts["skipped"] >= summary["counts"]["sent"]
        assert counts["sent"] + counts["skipped"] + counts["unknown"] == 200
        assert emu.stats.max_applications("w_ota") == 1  # nothing was sent twice
