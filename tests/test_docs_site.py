"""The documentation site builds without warnings and the CLI page covers every command and
option the parser offers."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from iris360_async.cli._parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
CLI_PAGE = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def _leaves(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.extend(_leaves(sub, (*prefix, name)))
    if not out and prefix:
        out.append((prefix, parser))
    return out


LEAVES = _leaves(build_parser())


def test_every_command_is_documented() -> None:
    assert len(LEAVES) == 9
    for path, _ in LEAVES:
        command = "iris360 " + " ".join(path)
        assert command in CLI_PAGE, f"docs/cli.md does not mention {command!r}"


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_option_is_documented(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                assert re.search(re.escape(option) + r"\b", CLI_PAGE), (
                    f"docs/cli.md does not mention {option} of iris360 {' '.join(path)}"
                )


def test_mkdocs_builds_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "bulk" / "index.html").is_file()
    assert (tmp_path / "cli" / "index.html").is_file()
