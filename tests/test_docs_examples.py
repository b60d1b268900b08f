"""The code examples of the documentation run, so they cannot rot.

Convention (for ``docs/*.md`` and ``README.md``): a fenced ``python`` block whose first line is

* ``# example: runnable`` is a complete program. It runs in this process, in a temporary
  directory, against a fresh emulator (300 devices, seed 1, no latency) whose address and
  credentials are in ``IRIS360_BASE_URL``, ``IRIS360_USERNAME``, ``IRIS360_PASSWORD``,
  ``IRIS360_TENANT`` and ``IRIS360_SCOPE`` — so examples read naturally with
  ``Iris360Client()`` taking its settings from the environment. The example must not raise
  and must print something.
* ``# example: pytest`` is a test module using the ``iris360_emulator`` fixtures (the plugin
  is registered by the installed package's ``pytest11`` entry point). It is written to a
  file and run by pytest in a separate process; every test in it must pass.

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
PYTEST = "# example: pytest"
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    code: str

    @property
    def kind(self) -> str:
        first = self.code.lstrip().splitlines()[0].strip() if self.code.strip() else ""
        if first == RUNNABLE:
            return "runnable"
        if first == PYTEST:
            return "pytest"
        return "fragment"

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _documents() -> list[Path]:
    paths = sorted(DOCS.glob("*.md"))
    readme = ROOT / "README.md"
    if readme.exists():
        paths.append(readme)
    return paths


def _blocks() -> list[Block]:
    out = []
    for path in _documents():
        text = path.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start(1)) + 1
            out.append(Block(path, line, match.group(1)))
    return out


BLOCKS = _blocks()
RUNNABLE_BLOCKS = [b for b in BLOCKS if b.kind == "runnable"]
PYTEST_BLOCKS = [b for b in BLOCKS if b.kind == "pytest"]


def test_the_documentation_has_runnable_examples() -> None:
    pages = {b.path.name for b in RUNNABLE_BLOCKS}
    for page in ("index.md", "configuration.md", "pagination.md", "bulk.md", "timeseries.md",
                 "errors.md"):  # fmt: skip
        assert page in pages, f"docs/{page} has no runnable example"
    assert PYTEST_BLOCKS, "docs/testing.md should show a runnable pytest example"


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


@pytest.mark.parametrize("block", PYTEST_BLOCKS, ids=[b.id for b in PYTEST_BLOCKS])
def test_pytest_example(block: Block, tmp_path: Path) -> None:
    (tmp_path / "test_example.py").write_text(block.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRIS360_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-o", "asyncio_mode=auto", "test_example.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
    assert "failed" not in result.stdout
