"""SIGTERM stops a job like Ctrl-C: a real ``iris360`` process against an emulator."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_support import (
    cli_command,
    cli_env,
    process_env,
    read_jsonl,
    settled_in_journal,
    write_serials,
)

from iris360_async.testing import EmulatorThread, LatencyModel

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_sigterm_stops_flushes_summarises_and_resumes(tmp_path: Path) -> None:
    with EmulatorThread(
        devices=100, seed=5, no_ota_fraction=0.0, latency=LatencyModel(base=0.1)
    ) as emu:
        serials = write_serials(tmp_path / "serials.txt", emu.fleet.serials)
        args = ("devices", "send-commands", "--serials-file", str(serials), "--set",
                "w_ota=true", "--chunk-size", "5", "--concurrency", "2", "--journal",
                "job.jsonl")  # fmt: skip
        proc = subprocess.Popen(
            cli_command(*args, "--report", "report.jsonl"),
            env=process_env(cli_env(emu)),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and settled_in_journal(tmp_path / "job.jsonl") < 10:
            time.sleep(0.02)  # polling a real child process: no fake clock applies
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)

        assert proc.returncode == 143, stderr
        summary = json.loads(stdout)  # the summary was printed
        assert summary["interrupted"] is True
        assert 10 <= summary["settled"] < 100
        assert "terminated (SIGTERM), stopping" in stderr
        assert "terminated after" in stderr
        assert "rerun with --journal job.jsonl to resume" in stderr
        report = read_jsonl(tmp_path / "report.jsonl")  # renamed into place, whole
        assert len(report) >= 10
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

        resumed = subprocess.run(
            cli_command(*args), env=process_env(cli_env(emu)), cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert resumed.returncode in (0, 1), resumed.stderr  # 1 while devices ended unknown
        resumed_summary = json.loads(resumed.stdout)
        assert resumed_summary["interrupted"] is False
        counts = resumed_summary["counts"]
        assert counts["skipped"] >= summary["counts"]["sent"]
        assert counts["sent"] + counts["skipped"] + counts["unknown"] == 100
        assert emu.stats.max_applications("w_ota") == 1  # no device commanded twice
