"""The pytest fixtures, used directly and from a separate pytest run in auto and strict mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from test_docs_examples import UNRELATED_PLUGINS

import iris360_async.testing as testing
from iris360_async.testing import Iris360Emulator, LatencyModel

ROOT = Path(testing.__file__).resolve().parents[2]


async def test_default_fixture_is_small_and_fast(iris360_emulator: Iris360Emulator) -> None:
    emu = iris360_emulator
    assert emu.fleet.device_count == 50
    assert emu.latency.zero
    async with aiohttp.ClientSession() as session, session.post(
        emu.api_url + "/login", json={"email": emu.username, "password": emu.password}
    ) as resp:
        assert resp.status == 200


async def test_factory_takes_settings(
    iris360_emulator_factory: Callable[..., Awaitable[Iris360Emulator]],
) -> None:
    a = await iris360_emulator_factory(devices=7, latency=LatencyModel(base=0.001))
    b = await iris360_emulator_factory(seed=3)
    assert a.fleet.device_count == 7
    assert a.latency.base == 0.001
    assert b.fleet.device_count == 50
    assert a.port != b.port


TEST_FILE = textwrap.dedent('''
    import aiohttp
    import pytest

    LEAKED = []

    async def test_fixture(iris360_emulator):
        async with aiohttp.ClientSession() as session:
            async with session.post(iris360_emulator.api_url + "/login", json={
                "email": iris360_emulator.username,
                "password": iris360_emulator.password}) as resp:
                assert resp.status == 200
        LEAKED.append(iris360_emulator)

    async def test_factory(iris360_emulator_factory):
        emu = await iris360_emulator_factory(devices=3)
        assert emu.fleet.device_count == 3
        LEAKED.append(emu)

    def test_closed_after_teardown():
        for emu in LEAKED:
            with pytest.raises(RuntimeError):
                emu.port
''')


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_fixtures_in_a_separate_pytest_run(tmp_path: Path, mode: str) -> None:
    test_file = tmp_path / "test_user.py"
    source = TEST_FILE
    if mode == "strict":
        source = source.replace("async def test_", "@pytest.mark.asyncio\nasync def test_")
    test_file.write_text(source)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *UNRELATED_PLUGINS,
         "-W", "error",
         "-o", f"asyncio_mode={mode}", "-o", "asyncio_default_fixture_loop_scope=function",
         str(test_file)],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
