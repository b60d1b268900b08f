"""``iris360 devices reconcile`` and ``iris360 devices track`` in this process, against an
emulator in a thread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import InProcess, cli_env, write_serials

from iris360_async.testing import EmulatorThread, FaultProfile, Iris360Emulator

LOSSY = FaultProfile(drop_rate=0.3, error_rate=0.1, error_status=503)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(monkeypatch, capsys)


@pytest.fixture
def emu() -> Iterator[Iris360Emulator]:
    """60 devices that accept ``w_ota`` and confirm within 1-2 emulated minutes; the clock
    runs 6000 times faster than real time."""
    with EmulatorThread(devices=60, seed=5, no_ota_fraction=0.0, sync_interval=(60, 120),
                        time_scale=6000) as emulator:
        yield emulator


def send(cli: InProcess, emu: Iris360Emulator, tmp_path: Path) -> Path:
    """A send-commands job with a journal; returns the journal."""
    serials = write_serials(tmp_path / "serials.txt", emu.fleet.serials)
    cli("devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--chunk-size", "5", "--journal", "job.jsonl", "--format", "json",
        env=cli_env(emu), cwd=tmp_path)  # fmt: skip
    return tmp_path / "job.jsonl"


def test_reconcile_resolves_every_unknown_device(
    cli: InProcess, emu: Iris360Emulator, tmp_path: Path
) -> None:
    emu.set_faults(LOSSY, endpoint="devices.bulk")
    journal = send(cli, emu, tmp_path)
    unknown = {
        line["serial"] for line in map(json.loads, journal.read_text().splitlines()[1:])
        if line.get("status") == "unknown"
    }
    assert unknown
    emu.clear_faults()
    result = cli("devices", "reconcile", "--journal", str(journal), "--format", "json",
                 env=cli_env(emu), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["looked_up"] == len(unknown)
    assert record["counts"] == {"sent": len(unknown), "rejected": 0, "failed": 0, "unknown": 0}
    assert record["confirmed"] + record["resent"] == len(unknown)
    assert record["left"] == []
    assert emu.stats.max_applications("w_ota") == 1
    again = cli("devices", "reconcile", "--journal", str(journal), "--format", "json",
                env=cli_env(emu), cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0
    assert json.loads(again.stdout)["looked_up"] == 0


def test_reconcile_with_failing_reads_leaves_them_unknown_and_exits_1(
    cli: InProcess, emu: Iris360Emulator, tmp_path: Path
) -> None:
    emu.set_faults(FaultProfile(drop_rate=1.0), endpoint="devices.bulk")
    journal = send(cli, emu, tmp_path)
    emu.clear_faults()
    emu.set_faults(FaultProfile(error_rate=1.0, error_status=500), endpoint="entities.latest")
    result = cli("devices", "reconcile", "--journal", str(journal), "--set", "w_ota=true",
                 "--format", "table", env=cli_env(emu), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert "looked up" in result.stdout
    assert "left without the command (rejected, failed) or unknown" in result.stdout
    assert "reading urn:" in result.stdout
    assert emu.password not in result.stdout + result.stderr


def test_reconcile_refuses_other_commands(
    cli: InProcess, emu: Iris360Emulator, tmp_path: Path
) -> None:
    journal = send(cli, emu, tmp_path)
    result = cli("devices", "reconcile", "--journal", str(journal), "--set", "w_ota=false",
                 env=cli_env(emu), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert "different commands" in result.stderr
    assert "--journal-force" in result.stderr


def test_track_until_every_device_applied_exits_0(
    cli: InProcess, emu: Iris360Emulator, tmp_path: Path
) -> None:
    journal = send(cli, emu, tmp_path)
    result = cli("devices", "track", "--journal", str(journal), "--interval", "0.02s",
                 "--json", env=cli_env(emu), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["counts"] == {"applied": 60, "pending": 0, "superseded": 0, "unreadable": 0}
    assert record["complete"] is True
    assert record["not_applied"] == []
    # one page of the device list for the 60 rows, then every entity at least once
    assert record["requests"] >= 61


def test_track_until_a_deadline_with_offline_devices_exits_1(
    cli: InProcess, tmp_path: Path
) -> None:
    with EmulatorThread(devices=12, seed=5, no_ota_fraction=0.0, sync_interval=(60, 120),
                        offline_fraction=1.0) as emu:
        journal = send(cli, emu, tmp_path)
        result = cli("devices", "track", "--journal", str(journal), "--until", "0.2",
                     "--interval", "0.05", "--progress", "always", "--format", "table",
                     env=cli_env(emu), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert "--until reached" in result.stdout
    assert "not applied" in result.stdout
    assert "pending" in result.stdout
    assert "applied" in result.stderr  # the live bar


@pytest.mark.parametrize("until", ["soon", "5 minutes", "3w"])
def test_track_refuses_a_bad_duration(cli: InProcess, until: str) -> None:
    result = cli("devices", "track", "--journal", "j.jsonl", "--until", until)
    assert result.returncode == 2
    assert "expected a duration such as 90s" in result.stderr


def test_demo_ends_with_no_unknown_and_follows_devices_until_they_applied(
    cli: InProcess,
) -> None:
    result = cli("demo", "--devices", "400", "--latency-ms", "0", "--format", "json",
                 "--seed", "2", "--track-minutes", "10", env={})  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["counts"]["unknown"] == 0
    assert summary["reconciled"]["left_unknown"] == 0
    assert summary["commands_applied"] == summary["counts"]["sent"]
    resolved = summary["reconciled"]["confirmed"] + summary["reconciled"]["resent"]
    assert ("resolved from their command state" in result.stderr) == (resolved > 0)
    tracking = summary["tracking"]
    # devices connect every 1-10 emulated minutes: ten minutes later every one has applied
    assert tracking["applied"] == tracking["devices"] > 300
    assert tracking["pending"] == tracking["superseded"] == tracking["unreadable"] == 0
    # (how far past the 10 minutes the last sweep ends depends on the machine's speed)
    assert tracking["emulated_minutes"] > 0
    assert "following" in result.stderr
