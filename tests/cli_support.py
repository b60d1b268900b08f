"""Shared helpers of the command-line tests (no tests here).

Most tests run ``iris360`` in this process through :func:`iris360_async.cli.main` with the
streams captured (:class:`InProcess`); a few smoke tests start a real process
(:func:`run_process`). Both take the ``IRIS360_*`` settings as a plain ``dict`` and return a
:class:`CliResult`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pytest

from iris360_async.cli import main
from iris360_async.testing import Iris360Emulator

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def cli_env(emu: Iris360Emulator | None, *, tenant: bool = False, **extra: str) -> dict[str, str]:
    """The ``IRIS360_*`` settings of a run: the emulator's (with its tenant and scope when
    ``tenant``), then ``extra``. Nothing is inherited from the environment of the tests."""
    env: dict[str, str] = {}
    if emu is not None:
        env.update(
            IRIS360_BASE_URL=emu.base_url,
            IRIS360_USERNAME=emu.username,
            IRIS360_PASSWORD=emu.password,
        )
        if tenant:
            env.update(IRIS360_TENANT=emu.tenant, IRIS360_SCOPE=emu.scope)
    env.update(extra)
    return env


def process_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment of a child process: this one without ``IRIS360_*``, then
    ``settings``, with this checkout first on ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRIS360_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "200"
    env.update(settings)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "iris360_async.cli", *args]


def run_process(
    *args: str, env: dict[str, str], cwd: Path | None = None, stdin: str = ""
) -> CliResult:
    """``iris360 args`` as a child process with the ``IRIS360_*`` settings ``env``."""
    done = subprocess.run(
        cli_command(*args),
        env=process_env(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd or ROOT,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


class InProcess:
    """Runs ``iris360`` through ``main(argv)`` in this process: the ``IRIS360_*`` variables,
    standard input and the working directory are set for the call only; stdout and stderr
    are captured by pytest's ``capsys``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self._monkeypatch = monkeypatch
        self._capsys = capsys

    def __call__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        stdin: str | TextIO = "",
        cwd: Path | None = None,
    ) -> CliResult:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        self._capsys.readouterr()  # output of earlier steps of the test is not this run's
        with self._monkeypatch.context() as patch:
            for name in [n for n in os.environ if n.startswith("IRIS360_")]:
                patch.delenv(name)
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            patch.setenv("COLUMNS", "200")
            patch.setattr(sys, "stdin", io.StringIO(stdin) if isinstance(stdin, str) else stdin)
            patch.chdir(cwd or ROOT)
            try:
                code = main(list(args))
            finally:
                root.handlers[:] = handlers  # undo what --debug's basicConfig did
                root.setLevel(level)
        captured = self._capsys.readouterr()
        return CliResult(code, captured.out, captured.err)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return json_lines(path.read_text(encoding="utf-8"))


def summary_of(result: CliResult) -> dict[str, Any]:
    """The one JSON object a job prints on stdout."""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    record: dict[str, Any] = json.loads(lines[0])
    return record


def write_serials(path: Path, serials: list[str]) -> Path:
    path.write_text("".join(f"{s}\n" for s in serials), encoding="utf-8")
    return path


def settled_in_journal(journal: Path) -> int:
    """Result lines in a journal another thread or process is appending to (a partly written
    last line is not counted)."""
    if not journal.exists():
        return 0
    text = journal.read_text(encoding="utf-8")
    return sum(1 for record in json_lines(text[: text.rfind("\n") + 1]) if "serial" in record)
