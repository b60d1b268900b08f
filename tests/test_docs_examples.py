"""The code examples of the documentation run, so they cannot rot.

Convention (for ``docs/*.md`` and ``README.md``): a fenced ``python`` block whose first line is

* ``# example: runnable`` is a complete program. It runs in this process, in a temporary
  directory, against a fresh emulator (300 devices, seed 1, no latency) whose address and
  credentials are in ``IRIS360_BASE_URL``, ``IRIS360_USERNAME``, ``IRIS360_PASSWORD``,
  ``IRIS360_TENANT`` and ``IRIS360_SCOPE`` — so examples read naturally with
  ``Iris360Client()`` taking its settings from the environment. The example must not raise
  and must print something.
* ``# example: pytest MODE`` is a test module using the ``iris360_emulator`` fixtures (the
  plugin is registered by the installed package's ``pytest11`` entry point), for
  pytest-asyncio's ``auto`` or ``strict`` mode. It is written to a file beside the
  configuration of that mode shown on the same page — a fenced ``toml`` block whose first
  line is ``# example: pytest-config MODE``, written as ``pyproject.toml`` — and run by pytest
  in a separate process with warnings as errors and nothing else configured: every test must
  pass, and the page's configuration is all the example needs.

Every other ``python`` block is a fragment; it must still be valid Python (top-level ``await``
allowed).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from iris360_async.testing import EmulatorThread

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUNNABLE = "# example: runnable"
PYTEST = "# example: pytest "
PYTEST_CONFIG = "# example: pytest-config "
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_TOML_FENCE = re.compile(r"^```toml[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    code: str

    @property
    def first_line(self) -> str:
        return self.code.lstrip().splitlines()[0].strip() if self.code.strip() else ""

    @property
    def kind(self) -> str:
        if self.first_line == RUNNABLE:
            return "runnable"
        if self.first_line.startswith(PYTEST):
            return "pytest"
        return "fragment"

    @property
    def mode(self) -> str:
        """The pytest-asyncio mode of a pytest example or configuration block."""
        return self.first_line.rsplit(" ", 1)[-1]

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _documents() -> list[Path]:
    paths = sorted(DOCS.glob("*.md"))
    readme = ROOT / "README.md"
    if readme.exists():
        paths.append(readme)
    return paths


def _blocks(fence: re.Pattern[str] = _FENCE) -> list[Block]:
    out = []
    for path in _documents():
        text = path.read_text(encoding="utf-8")
        for match in fence.finditer(text):
            line = text.count("\n", 0, match.start(1)) + 1
            out.append(Block(path, line, match.group(1)))
    return out


BLOCKS = _blocks()
RUNNABLE_BLOCKS = [b for b in BLOCKS if b.kind == "runnable"]
PYTEST_BLOCKS = [b for b in BLOCKS if b.kind == "pytest"]
CONFIG_BLOCKS = [b for b in _blocks(_TOML_FENCE) if b.first_line.startswith(PYTEST_CONFIG)]


def test_the_documentation_has_runnable_examples() -> None:
    pages = {b.path.name for b in RUNNABLE_BLOCKS}
    for page in ("index.md", "configuration.md", "pagination.md", "bulk.md", "timeseries.md",
                 "errors.md"):  # fmt: skip
        assert page in pages, f"docs/{page} has no runnable example"
    assert {b.mode for b in PYTEST_BLOCKS} == {"auto", "strict"}, (
        "docs/testing.md should show a pytest example for each pytest-asyncio mode"
    )


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_every_python_block_is_valid_python(block: Block) -> None:
    compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.fixture
def emulator_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    with EmulatorThread(devices=300, seed=1) as emu:
        for name in list(os.environ):
            if name.startswith("IRIS360_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("IRIS360_BASE_URL", emu.base_url)
        monkeypatch.setenv("IRIS360_USERNAME", emu.username)
        monkeypatch.setenv("IRIS360_PASSWORD", emu.password)
        monkeypatch.setenv("IRIS360_TENANT", emu.tenant)
        monkeypatch.setenv("IRIS360_SCOPE", emu.scope)
        monkeypatch.chdir(tmp_path)
        yield tmp_path


@pytest.mark.parametrize("block", RUNNABLE_BLOCKS, ids=[b.id for b in RUNNABLE_BLOCKS])
def test_runnable_example(
    block: Block, emulator_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = compile(block.code, block.id, "exec")
    namespace = {"__name__": "__main__", "__file__": str(emulator_env / "example.py")}
    exec(code, namespace)
    out = capsys.readouterr().out
    assert out.strip(), f"{block.id} printed nothing"


def _config_for(block: Block) -> str:
    configs = [c for c in CONFIG_BLOCKS if c.path == block.path and c.mode == block.mode]
    assert len(configs) == 1, f"{block.id}: one '{PYTEST_CONFIG}{block.mode}' toml block expected"
    return configs[0].code


UNRELATED_PLUGINS = ("-p", "no:xdist", "-p", "no:hypothesispytest")
"""Plugins of this project's test extra that a reader's project need not have; loading them
costs the separate run about a second."""


def _run_pytest(directory: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRIS360_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *UNRELATED_PLUGINS,
         *options, "test_example.py"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("block", PYTEST_BLOCKS, ids=[b.id for b in PYTEST_BLOCKS])
def test_pytest_example(block: Block, tmp_path: Path) -> None:
    config = _config_for(block)
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    settings = tomllib.loads(config)["tool"]["pytest"]["ini_options"]
    assert settings["asyncio_mode"] == block.mode
    assert settings["asyncio_default_fixture_loop_scope"] == "function"
    (tmp_path / "pyproject.toml").write_text(config, encoding="utf-8")
    (tmp_path / "test_example.py").write_text(block.code, encoding="utf-8")
    result = _run_pytest(tmp_path, "-W", "error")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert " passed" in result.stdout
    assert "failed" not in result.stdout
    assert "warning" not in output.lower()


def test_the_pytest_example_needs_the_documented_configuration(tmp_path: Path) -> None:
    """Without the page's configuration the auto-mode example does not run (which is why the
    page shows it)."""
    block = next(b for b in PYTEST_BLOCKS if b.mode == "auto")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "test_example.py").write_text(block.code, encoding="utf-8")
    result = _run_pytest(tmp_path)
    assert result.returncode != 0
    assert "async def functions are not natively supported" in result.stdout + result.stderr


def test_the_device_type_table_matches_the_emulator() -> None:
    """docs/testing.md says which command each emulated device type accepts."""
    from iris360_async.testing import ALL_COMMANDS, DEVICE_TYPES

    text = (DOCS / "testing.md").read_text(encoding="utf-8")
    header = "| type | name | share | " + " | ".join(f"`{c}`" for c in ALL_COMMANDS) + " |"
    assert header in text
    rows = text.split(header, 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    documented = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        accepts = {c for c, mark in zip(ALL_COMMANDS, cells[3:], strict=True) if mark == "yes"}
        documented[cells[0].strip("`")] = (cells[1], accepts)
    assert documented == {t.code: (t.name, set(t.commands)) for t in DEVICE_TYPES}
