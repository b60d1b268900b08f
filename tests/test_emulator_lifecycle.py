"""Running the emulator: async context manager, background thread, child process, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

import iris360_async.testing as testing
from iris360_async.testing import EmulatorProcess, EmulatorThread, Iris360Emulator

ROOT = Path(testing.__file__).resolve().parents[2]


def login_sync(api_url: str, username: str, password: str) -> int:
    request = urllib.request.Request(
        api_url + "/login", data=json.dumps({"email": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert "token" in json.loads(resp.read())
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_context_manager_serves_on_a_random_port_and_closes() -> None:
    emu = Iris360Emulator(devices=3)
    with pytest.raises(RuntimeError, match="not running"):
        _ = emu.base_url
    async with emu:
        assert emu.base_url.startswith("http://127.0.0.1:")
        assert emu.port > 0
        assert emu.api_url == emu.base_url + "/api/public/v1"
        assert repr(emu).startswith("<Iris360Emulator http://127.0.0.1:")
        assert emu.password not in repr(emu)
        url = emu.api_url
        async with aiohttp.ClientSession() as session, session.post(
            url + "/login", json={"email": emu.username, "password": emu.password}
        ) as resp:
            assert resp.status == 200
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.post(url + "/login", json={})


def test_thread_serves_synchronous_code() -> None:
    with EmulatorThread(devices=5) as emu:
        assert login_sync(emu.api_url, emu.username, emu.password) == 200
        assert emu.stats.logins == 1
        assert login_sync(emu.api_url, emu.username, "wrong") == 401


def test_child_process_serves_and_reports_resources() -> None:
    with EmulatorProcess(devices=50, seed=2) as proc:
        assert proc.info["devices"] == 50
        assert login_sync(proc.base_url + "/api/public/v1", proc.username, proc.password) == 200
        if sys.platform.startswith("linux"):
            assert proc.rss_bytes() > 0
            assert proc.cpu_seconds() >= 0
        pid = proc.pid
    assert not os.path.exists(f"/proc/{pid}/status") or _zombie_or_gone(pid)


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            return any(line.startswith("State:") and "Z" in line for line in fh)
    except OSError:
        return True


def test_standalone_module_prints_url_and_credentials() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "iris360_async.testing", "--port", "0", "--devices", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        assert lines[0].startswith("IRIS360 emulator serving http://127.0.0.1:")
        base_url = lines[0].split()[-1]
        fields = dict(line.split(":", 1) for line in lines[2:4])
        username, password = fields["  username"].strip(), fields["  password"].strip()
        assert login_sync(base_url + "/api/public/v1", username, password) == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0
