"""The package stays `mypy --strict` and `ruff` clean, and ships `py.typed`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "iris360_async" / "py.typed").is_file()


@pytest.mark.slow
def test_mypy_strict_clean() -> None:
    result = _run("mypy", "--strict", "iris360_async")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_clean() -> None:
    result = _run("ruff", "check", "iris360_async", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr
