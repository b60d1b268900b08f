"""The bulk engine through the real client against the emulator (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import anyio
import pytest

import iris360_async
from iris360_async import Iris360Client
from iris360_async._bulk import CommandDispatcher
from iris360_async._config import Timeout
from iris360_async.models.bulk import CommandReport, CommandStatus, ProgressStats
from iris360_async.testing import FaultProfile, Iris360Emulator, LatencyModel

CMD = {"w_ota": True}
ROOT = Path(iris360_async.__file__).resolve().parents[1]


def client_for(emu: Iris360Emulator, **kw: Any) -> Iris360Client:
    return Iris360Client(
        base_url=emu.base_url, username=emu.username, password=emu.password,
        tenant=emu.tenant, scope=emu.scope, **kw,
    )


def dispatcher(
    client: Iris360Client, commands: dict[str, Any], **options: Any
) -> CommandDispatcher:
    """The engine wired to the client the way ``devices.send_commands`` wires it."""
    return CommandDispatcher(client.devices.bulk_sender(commands), commands, **options)


def client_tasks() -> set[asyncio.Task[Any]]:
    """Running tasks, without the in-process emulator's own request handlers."""
    return {
        t for t in asyncio.all_tasks()
        if not t.get_coro().__qualname__.startswith("RequestHandler.")  # type: ignore[union-attr]
    }


def check_against_emulator(report: CommandReport, emu: Iris360Emulator) -> None:
    """Exact accounting, and the emulator's counters agree with every outcome."""
    assert sum(report.counts.values()) == report.total
    assert emu.stats.max_applications("w_ota") <= 1, "a device was commanded twice"
    for serial in report.sent:
        assert emu.stats.applications(serial, "w_ota") == 1
    for o in report.failures:
        if o.status in (CommandStatus.REJECTED, CommandStatus.FAILED):
            assert emu.stats.applications(o.serial, "w_ota") == 0, o
    for o in report.skipped:
        if o.detail == "duplicate serial in input" or (o.detail or "").startswith("not sent"):
            continue


async def test_exact_accounting_against_the_emulator() -> None:
    async with Iris360Emulator(devices=600, seed=3, no_ota_fraction=0.2) as emu:
        serials = list(emu.fleet.serials)
        inputs = [*serials, "NOPE-1", serials[0], serials[10], "NOPE-2", "", 7]
        async with client_for(emu) as client:
            report = await dispatcher(client, CMD, chunk_size=25, concurrency=8).run(inputs)
        check_against_emulator(report, emu)
        assert report.total == 600 + 2 + 2 + 1
        assert report.counts["skipped"] == 2
        assert report.counts["failed"] == 3  # two unknown serials, one invalid item
        assert {o.detail for o in report.failures if o.serial.startswith("NOPE")} == {
            "Device not found: NOPE-1",
            "Device not found: NOPE-2",
        }
        assert report.counts["rejected"] > 0
        assert report.counts["sent"] + report.counts["rejected"] == 600
        assert all("w_ota" in (o.detail or "") for o in report.failures if o.status == "rejected")
        assert emu.stats.max_in_flight <= 8
        assert report.counts["unknown"] == 0
        assert report.completed


async def test_every_fault_kind_never_commands_a_device_twice() -> None:
    faults = FaultProfile(
        error_rate=0.06, rate_limit_rate=0.06, retry_after=0, reset_rate=0.06, drop_rate=0.06,
        slow_rate=0.06, slow_delay=1.0, malformed_rate=0.06,
        forbidden_rate=0.06, item_broker_error_rate=0.03, item_exception_rate=0.03,
    )
    async with Iris360Emulator(devices=3000, seed=5, fault_seed=11, no_ota_fraction=0.1) as emu:
        emu.set_faults(faults, endpoint="devices.bulk")
        async with client_for(emu, timeout=Timeout(total=0.5)) as client:
            report = await dispatcher(client, CMD, chunk_size=20, concurrency=12).run(
                emu.fleet.serials
            )
        check_against_emulator(report, emu)
        assert report.total == 3000
        assert report.completed
        # every kind of fault really happened
        for kind in ("error", "rate_limit", "reset", "drop", "malformed", "forbidden",
                     "item_broker_error", "item_exception", "slow"):
            assert emu.stats.faults[kind] > 0, kind
        assert report.counts["unknown"] > 0
        assert report.counts["failed"] > 0
        assert report.counts["sent"] > 1500
        assert emu.stats.max_in_flight <= 12
        # an unknown device got the command at most once (drop/malformed/forbidden: maybe)
        unknown = report.serials("unknown")
        assert all(emu.stats.applications(s, "w_ota") <= 1 for s in unknown)


async def test_token_revoked_mid_job_is_refreshed_and_the_job_completes() -> None:
    async with Iris360Emulator(devices=1500, seed=6, latency=LatencyModel(base=0.002)) as emu:
        revoked: list[int] = []

        def on_progress(stats: ProgressStats) -> None:
            if stats.settled >= 300 and not revoked:
                revoked.append(stats.settled)
                emu.revoke_tokens()

        async with client_for(emu) as client:
            report = await dispatcher(
                client, CMD, chunk_size=20, concurrency=8, on_progress=on_progress,
                progress_interval=0.0,
            ).run(emu.fleet.serials)
        check_against_emulator(report, emu)
        assert revoked
        assert emu.stats.unauthenticated > 0
        assert report.completed
        assert report.counts["unknown"] == 0
        assert report.counts["sent"] + report.counts["rejected"] == 1500


async def test_lost_authentication_stops_the_job() -> None:
    async with Iris360Emulator(devices=1500, seed=6, latency=LatencyModel(base=0.002)) as emu:
        token = emu.issue_token().token  # no credentials, no refresh token: cannot recover
        revoked: list[int] = []

        def on_progress(stats: ProgressStats) -> None:
            if stats.settled >= 300 and not revoked:
                revoked.append(stats.settled)
                emu.revoke_tokens()

        async with Iris360Client(base_url=emu.base_url, token=token) as client:
            report = await dispatcher(
                client, CMD, chunk_size=20, concurrency=8, on_progress=on_progress,
                progress_interval=0.0,
            ).run(emu.fleet.serials)
        check_against_emulator(report, emu)
        assert report.stopped_reason == "authentication failed"
        assert 300 <= report.total < 1500
        auth_failed = [
            o for o in report.failures
            if (o.detail or "").startswith("not sent: could not obtain an access token")
        ]
        assert auth_failed
        assert all(emu.stats.applications(o.serial, "w_ota") == 0 for o in auth_failed)


async def test_in_flight_never_above_concurrency_with_latency() -> None:
    async with Iris360Emulator(devices=400, seed=2, latency=LatencyModel(base=0.005)) as emu:
        async with client_for(emu) as client:
            report = await dispatcher(client, CMD, chunk_size=10, concurrency=5).run(
                emu.fleet.serials
            )
        check_against_emulator(report, emu)
        assert emu.stats.max_in_flight == 5


async def test_stream_and_break_leave_nothing_behind() -> None:
    async with Iris360Emulator(devices=500, seed=2, latency=LatencyModel(base=0.002)) as emu:
        before = client_tasks()
        async with client_for(emu) as client:
            d = dispatcher(client, CMD, chunk_size=10, concurrency=4)
            seen = 0
            agen = d.stream(emu.fleet.serials)
            try:
                async for outcome in agen:
                    seen += 1
                    assert outcome.status in ("sent", "rejected")
                    if seen == 55:
                        break
            finally:
                await agen.aclose()
            assert client_tasks() == before
            assert d.report.stopped_reason == "cancelled"
            # the client is still usable afterwards
            report = await dispatcher(client, CMD, chunk_size=50).run(emu.fleet.serials[:50])
            assert report.counts["sent"] + report.counts["skipped"] <= 50
        assert emu.stats.max_applications("w_ota") <= 2  # the second job re-sent on purpose


async def test_cancellation_through_the_client() -> None:
    emulator = Iris360Emulator(devices=2000, seed=2, latency=LatencyModel(base=0.02))
    async with emulator as emu, client_for(emu) as client:
        d = dispatcher(client, CMD, chunk_size=10, concurrency=4)
        with anyio.move_on_after(0.15):
            await d.run(emu.fleet.serials)
        report = d.report
        assert report.stopped_reason == "cancelled"
        assert sum(report.counts.values()) == report.total < 2000
        assert emu.stats.max_applications("w_ota") <= 1
        for serial in report.sent:
            assert emu.stats.applications(serial, "w_ota") == 1


JOB_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from iris360_async import Iris360Client
    from iris360_async._bulk import CommandDispatcher

    async def main(base_url, username, password, journal, n):
        async with Iris360Client(base_url=base_url, username=username, password=password) as c:
            cmds = {"w_ota": True}
            serials = [f"SN{i + 1:06d}" for i in range(n)]
            d = CommandDispatcher(c.devices.bulk_sender(cmds), cmds, chunk_size=10,
                                  concurrency=6, journal=journal)
            report = await d.run(serials)
            print(report.counts, flush=True)

    asyncio.run(main(*sys.argv[1:5], int(sys.argv[5])))
    """
)


def _journal_results(path: Path) -> int:
    if not path.exists():
        return 0
    return path.read_bytes().count(b'"status"')


@pytest.mark.slow
async def test_sigkill_mid_run_then_resume_commands_nobody_twice(tmp_path: Path) -> None:
    n = 3000
    journal = tmp_path / "job.jsonl"
    script = tmp_path / "job.py"
    script.write_text(JOB_SCRIPT)
    latency = LatencyModel(base=0.01, per_item=0.0005)
    async with Iris360Emulator(devices=n, seed=4, latency=latency) as emu:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), emu.base_url, emu.username, emu.password,
            str(journal), str(n), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            with anyio.fail_after(60):
                while _journal_results(journal) < 300:
                    assert proc.returncode is None, "the job ended before it could be killed"
                    await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            await proc.wait()
            assert proc.stderr is not None
            await proc.stderr.read()
        assert proc.returncode == -signal.SIGKILL
        killed_at = sum(1 for _ in emu.stats.command_applications)
        assert 0 < killed_at < n

        async with client_for(emu) as client:
            report = await dispatcher(client, CMD, chunk_size=10, concurrency=6,
                                      journal=journal).run(emu.fleet.serials)
        check_against_emulator(report, emu)
        assert emu.stats.max_applications("w_ota") <= 1
        skipped = report.skipped
        already = [o for o in skipped if (o.detail or "").startswith("already")]
        assert len(already) >= 300
        # everything is accounted: sent/rejected now, or settled before the kill
        assert report.total == n
        in_doubt = [o.serial for o in skipped if "in flight" in (o.detail or "")]
        assert len(in_doubt) <= 6 * 10
        commanded = set(emu.stats.command_applications)
        rejected_now = set(report.serials("rejected"))
        for s in emu.fleet.serials:
            assert s in commanded or s in rejected_now or s in in_doubt or any(
                o.serial == s for o in already
            )
        lines = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
        assert lines[0]["journal"] == "iris360-bulk"


async def _aiter(items: Iterable[str]) -> AsyncIterator[str]:
    for s in items:
        yield s


async def test_public_devices_methods_use_the_engine(tmp_path: Path) -> None:
    async with Iris360Emulator(devices=300, seed=8, no_ota_fraction=0.1) as emu:
        async with client_for(emu) as client:
            report = await client.devices.send_commands(
                [*emu.fleet.serials[:200], emu.fleet.serials[0]], CMD,
                chunk_size=30, concurrency=4, journal=tmp_path / "j.jsonl",
            )
            assert isinstance(report, CommandReport)
            assert report.total == 201
            assert report.counts["skipped"] == 1
            assert report.counts["sent"] + report.counts["rejected"] == 200
            statuses = [
                o.status
                async for o in client.devices.stream_commands(
                    emu.fleet.serials[200:], CMD, chunk_size=30, concurrency=4
                )
            ]
            assert len(statuses) == 100
            assert set(statuses) <= {CommandStatus.SENT, CommandStatus.REJECTED}
        assert emu.stats.max_applications("w_ota") == 1
