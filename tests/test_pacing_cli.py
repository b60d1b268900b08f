"""``--concurrency auto`` on the command line, and the pacing shown next to the progress bar."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import InProcess, cli_env, summary_of, write_serials

from iris360_async.cli._parser import build_parser
from iris360_async.cli._progress import JobProgress, format_pace
from iris360_async.models.bulk import ProgressStats
from iris360_async.testing import EmulatorThread, Iris360Emulator

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(monkeypatch, capsys)


@pytest.fixture
def emu() -> Iterator[Iris360Emulator]:
    with EmulatorThread(devices=60, seed=3, no_ota_fraction=0.0) as emulator:
        yield emulator


def stats(**kw: object) -> ProgressStats:
    base: dict[str, object] = {
        "elapsed": 1.0, "read": 10, "settled": 5, "counts": {}, "in_flight_chunks": 3,
        "requests": 4, "rate": 5.0,
    }
    base.update(kw)
    return ProgressStats(**base)  # type: ignore[arg-type]


def test_format_pace() -> None:
    assert format_pace(stats(limit=6, latency=0.2124)) == "3/6 in flight · 212 ms"
    assert format_pace(stats(limit=6, latency=12.5)) == "3/6 in flight · 12.5 s"
    assert format_pace(stats()) == ""
    assert format_pace(object()) == ""


def test_progress_line_shows_the_pace(tmp_path: Path) -> None:
    with (tmp_path / "err.txt").open("w") as stream:
        progress = JobProgress(True, stream, get_time=lambda: 0.0)
        with progress:
            bar = progress.add("commands", 10)
            progress.pace(bar, stats(limit=5, latency=0.25))
            progress.advance(bar, 5, "sent")
    drawn = (tmp_path / "err.txt").read_text()
    assert "3/5 in flight" in drawn
    assert "250 ms" in drawn


def test_concurrency_option_takes_auto() -> None:
    parser = build_parser()

    def concurrency(value: str) -> object:
        argv = ["devices", "send-commands", "--serials-file", "-", "--set", "w_ota=true"]
        return parser.parse_args([*argv, "--concurrency", value]).concurrency

    assert concurrency("auto") == "auto"
    assert concurrency("8") == 8
    with pytest.raises(SystemExit):
        concurrency("fast")
    argv = ["devices", "send-commands", "--serials-file", "-", "--set", "w_ota=true"]
    assert parser.parse_args(argv).concurrency == "auto"  # the default
    assert parser.parse_args(["demo"]).concurrency == 16  # the demo keeps a fixed value


def test_send_commands_with_auto(cli: InProcess, emu: Iris360Emulator, tmp_path: Path) -> None:
    serials = write_serials(tmp_path / "serials.txt", emu.fleet.serials)
    result = cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--chunk-size", "7", "--concurrency", "auto", env=cli_env(emu), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert summary_of(result)["counts"]["sent"] == 60
    dry = cli(
        "devices", "send-commands", "--serials-file", str(serials), "--set", "w_ota=true",
        "--concurrency", "auto", "--dry-run", "--format", "table", env={}, cwd=tmp_path,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "auto" in dry.stdout
