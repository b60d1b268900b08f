"""``concurrency="auto"`` with the real client against the emulator's server model, one test per
preset (shortened: small fleets, early drift), plus the ``server_model`` setting itself.

The assertions are about outcomes and the server's counters (gateway timeouts, 429s,
``unknown``), never about speed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from iris360_async import Iris360Client
from iris360_async.cli._parser import SERVER_MODEL_PRESETS, build_parser
from iris360_async.models.bulk import CommandReport, ProgressStats
from iris360_async.testing import EmulatorConfig, Iris360Emulator
from iris360_async.testing.__main__ import _parser as emulator_parser
from iris360_async.testing.server_model import (
    PRESETS,
    CostStep,
    ServerModelSettings,
    ServerModelStats,
    TenantLoad,
)

# shortened presets: the same shape (workers, gateway timeout against the unloaded time), a
# job of a few seconds at most
SHORT: dict[str, tuple[ServerModelSettings, int]] = {
    # 4 workers, 0.1 s per 100 devices, the gateway gives up after 0.35 s
    "capacity_bound": (PRESETS["capacity_bound"].scaled(0.5), 4_000),
    # 20 requests per second, burst 10
    "rate_limited": (PRESETS["rate_limited"], 3_000),
    # 0.1 s per 100 devices, 0.2 s from 1 s into the run on; gateway timeout 0.6 s
    "drifting": (
        dataclasses.replace(PRESETS["drifting"], drift=(CostStep(1.0, 0.002),)), 6_000
    ),
    # 8 workers, 4 of them taken from 0.5 s to 1.5 s; 0.1 s per 100, gateway 0.5 s
    "shared": (
        ServerModelSettings(
            workers=8, per_device=0.001, gateway_timeout=0.5, tenants=(TenantLoad(0.5, 1.5, 4),)
        ),
        6_000,
    ),
    # 64 workers, 10 ms per 100 devices
    "fast": (PRESETS["fast"].scaled(0.5), 6_000),
}


@asynccontextmanager
async def modelled(settings: ServerModelSettings, devices: int) -> AsyncIterator[Iris360Emulator]:
    async with Iris360Emulator(devices=devices, server_model=settings) as emu:
        yield emu


async def run_auto(emu: Iris360Emulator) -> tuple[CommandReport, list[ProgressStats]]:
    seen: list[ProgressStats] = []
    async with Iris360Client(
        base_url=emu.base_url, username=emu.username, password=emu.password,
        tenant=emu.tenant, scope=emu.scope,
    ) as client:
        report = await client.devices.send_commands(
            emu.fleet.serials, {"w_reboot": True}, chunk_size=100, concurrency="auto",
            on_progress=seen.append, progress_interval=0,  # every limit it reached
        )
    return report, seen


def stats_of(emu: Iris360Emulator) -> ServerModelStats:
    assert emu.server_model is not None
    return emu.server_model.stats


@pytest.mark.parametrize("name", sorted(SHORT))
async def test_auto_against_each_server_model_preset(name: str) -> None:
    settings, devices = SHORT[name]
    async with modelled(settings, devices) as emu:
        report, seen = await run_auto(emu)
        stats = stats_of(emu)
        assert report.total == devices
        assert report.counts["failed"] == 0
        # every device got the command exactly once (429s were not applied, then re-sent)
        assert emu.stats.max_applications() == 1
        # <= 2 % of requests; in a job of 30 requests that leaves room for none, so one 429
        # (a bucket refilled a few ms late on a loaded machine) is tolerated
        assert stats.rate_limited <= max(1, 0.02 * stats.requests)
        if name in ("capacity_bound", "drifting", "shared"):
            assert stats.gateway_timeouts == 0
            assert report.counts["unknown"] == 0
        assert report.counts["unknown"] == 100 * stats.gateway_timeouts
        final = seen[-1]
        assert final.done
        assert final.limit is not None
        assert 1 <= final.limit <= 64
        assert final.latency is not None
        assert final.latency > 0
        assert max(s.in_flight_chunks for s in seen) <= max(s.limit or 0 for s in seen)


async def test_todays_fixed_16_overloads_the_capacity_bound_server() -> None:
    """The same server, by contrast: 16 requests in flight queue past the gateway timeout."""
    settings, devices = SHORT["capacity_bound"]
    async with modelled(settings, devices) as emu, Iris360Client(
        base_url=emu.base_url, username=emu.username, password=emu.password,
        tenant=emu.tenant, scope=emu.scope,
    ) as client:
        report = await client.devices.send_commands(
            emu.fleet.serials, {"w_reboot": True}, chunk_size=100, concurrency=16
        )
        assert stats_of(emu).gateway_timeouts > 0
        assert report.counts["unknown"] > 0


# -- the setting ----------------------------------------------------------------------------


def test_server_model_setting_takes_settings_or_a_preset_name() -> None:
    config = EmulatorConfig(server_model="drifting")
    assert config.server_model == PRESETS["drifting"]
    emu = Iris360Emulator(server_model=PRESETS["fast"])
    assert emu.server_model is not None
    assert emu.server_model.settings == PRESETS["fast"]
    assert Iris360Emulator().server_model is None
    with pytest.raises(ValueError, match="unknown preset"):
        EmulatorConfig(server_model="slow")
    with pytest.raises(TypeError, match="server_model"):
        EmulatorConfig(server_model=4)  # type: ignore[arg-type]


async def test_close_lets_the_backend_finish_what_the_gateway_gave_up_on() -> None:
    settings = ServerModelSettings(workers=1, per_device=0.002, gateway_timeout=0.05)
    async with Iris360Emulator(devices=200, server_model=settings) as emu, Iris360Client(
        base_url=emu.base_url, username=emu.username, password=emu.password,
        tenant=emu.tenant, scope=emu.scope,
    ) as client:
        report = await client.devices.send_commands(
            emu.fleet.serials, {"w_reboot": True}, chunk_size=100, concurrency=2
        )
        assert report.counts["unknown"] == 200  # both answers lost: 0.2 s of work each
    # closed: the backend finished both chunks first
    stats = stats_of(emu)
    assert stats.completed == 2
    assert len(emu.stats.command_applications) == 200


def test_command_lines_know_the_presets() -> None:
    assert set(SERVER_MODEL_PRESETS) == set(PRESETS)
    args = build_parser().parse_args(["emulator", "--server-model", "shared"])
    assert args.server_model == "shared"
    assert build_parser().parse_args(["emulator"]).server_model is None
    args = emulator_parser().parse_args(
        ["--server-model", "capacity_bound", "--server-model-scale", "0.5"]
    )
    assert (args.server_model, args.server_model_scale) == ("capacity_bound", 0.5)
