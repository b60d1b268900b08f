"""Tracking: following devices until they have applied a command, against the emulator's
devices confirming on their own schedule (emulated time, no real waits)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import pytest
from emulator_support import client_for

from iris360_async._lifecycle import (
    CommandStateReader,
    DeviceChange,
    TrackState,
    TrackUpdate,
    track_commands,
)
from iris360_async._retry import ManualClock
from iris360_async.testing import FaultProfile, Iris360Emulator

T0 = 1_767_225_600.0
COMMANDS = {"w_reboot": True}


async def collect(emu: Iris360Emulator, serials: list[str], commands: dict[str, Any],
                  **kwargs: Any) -> tuple[list[TrackUpdate], CommandStateReader]:
    async with client_for(emu) as iris:
        reader = CommandStateReader.for_client(iris)
        updates = [u async for u in track_commands(reader, serials, commands,
                                                   clock=emu.clock, **kwargs)]
    return updates, reader


def reads_until_applied(emu: Iris360Emulator, serial: str, interval: float) -> int:
    """Sweeps (every ``interval`` from T0) that read ``serial``: until the first one after its
    confirmation."""
    confirmed = emu.fleet.sync.next_sync(serial, T0)
    assert confirmed is not None
    return math.ceil((confirmed - T0) / interval) + 1


async def test_tracking_until_every_device_has_applied() -> None:
    async with Iris360Emulator(devices=20, seed=4, clock_start=T0, sync_interval=(60, 900),
                               token_ttl=1e7) as emu:
        serials = emu.fleet.serials
        async with client_for(emu) as iris:
            await iris.devices.send_commands_bulk(serials, COMMANDS)
        emu.stats.reset()
        updates, reader = await collect(emu, serials, COMMANDS, interval=60, concurrency=4)

    final = updates[-1].summary
    assert (final.applied, final.pending, final.superseded, final.unreadable) == (20, 0, 0, 0)
    assert final.complete
    assert final.finished
    assert [u.summary.finished for u in updates].count(True) == 1
    # applied climbs, pending falls; the clock only moved through the tracker's waits
    applied = [u.summary.applied for u in updates]
    assert applied == sorted(applied)
    assert applied[0] < 20
    assert final.elapsed == emu.clock.now() - T0 <= 900
    # every device: first read pending, then applied once, nothing else
    changes: dict[str, list[DeviceChange]] = {}
    for update in updates:
        for change in update.changes:
            changes.setdefault(change.serial, []).append(change)
    for serial in serials:
        states = [(c.previous, c.state) for c in changes[serial]]
        assert states in ([(None, TrackState.PENDING), (TrackState.PENDING, TrackState.APPLIED)],
                          [(None, TrackState.APPLIED)])
    # a device is located once and not read again once it has applied
    expected_reads = sum(reads_until_applied(emu, s, 60) for s in serials)
    assert emu.stats.requests["devices.paginate"] == 20
    assert emu.stats.requests["entities.latest"] == expected_reads
    assert reader.requests == final.requests == 20 + expected_reads
    assert final.sweeps == max(reads_until_applied(emu, s, 60) for s in serials)


async def test_tracking_until_a_deadline_leaves_offline_devices_pending() -> None:
    async with Iris360Emulator(devices=30, seed=5, clock_start=T0, sync_interval=(60, 600),
                               offline_fraction=0.3, token_ttl=1e7) as emu:
        serials = emu.fleet.serials
        offline = {s for s in serials if not emu.fleet.sync.online(s)}
        assert 3 <= len(offline) <= 15
        async with client_for(emu) as iris:
            await iris.devices.send_commands_bulk(serials, COMMANDS)
        emu.stats.reset()
        updates, _ = await collect(emu, serials, COMMANDS, interval=300, until=1800)

    final = updates[-1].summary
    assert final.finished
    assert not final.complete
    assert (final.applied, final.pending) == (30 - len(offline), len(offline))
    assert final.elapsed == 1800  # the last sweep ran at the deadline
    assert final.sweeps == 7  # at 0, 300, ..., 1800 seconds
    pending = {c.serial for u in updates for c in u.changes if c.state is TrackState.PENDING}
    applied = {c.serial for u in updates for c in u.changes if c.state is TrackState.APPLIED}
    assert applied == set(serials) - offline
    assert offline <= pending
    # offline devices were read at every sweep, online ones until they applied
    online_reads = sum(reads_until_applied(emu, s, 300) for s in set(serials) - offline)
    assert emu.stats.requests["entities.latest"] == 7 * len(offline) + online_reads


async def test_an_aware_datetime_deadline() -> None:
    async with Iris360Emulator(devices=3, seed=1, clock_start=T0, token_ttl=1e7) as emu:
        async with client_for(emu) as iris:
            await iris.devices.send_commands_bulk(emu.fleet.serials, COMMANDS)
        until = datetime.fromtimestamp(T0 + 600, tz=timezone.utc)
        updates, _ = await collect(emu, emu.fleet.serials, COMMANDS, interval=250, until=until)
    assert [u.summary.pending for u in updates] == [3, 3, 3, 3]
    assert updates[-1].summary.elapsed == 600  # sweeps at 0, 250, 500, 600
    assert updates[-1].summary.sweeps == 4


async def test_superseded_unknown_and_flaky_devices() -> None:
    async with Iris360Emulator(devices=6, seed=2, clock_start=T0, no_ota_fraction=0.0,
                               sync_interval=(60, 60), token_ttl=1e7) as emu:
        fleet = emu.fleet
        sleeper = next(s for i, s in enumerate(fleet.serials)
                       if "w_sleep" in fleet.device_type(i).commands)
        async with client_for(emu) as iris:
            await iris.devices.send_commands_bulk([sleeper], {"w_sleep": 30})
            others = [s for s in fleet.serials if s != sleeper][:2]
            await iris.devices.send_commands_bulk(others, COMMANDS)
        # the first two entity reads fail with a 500, then reads work again
        emu.set_faults(FaultProfile(error_rate=1.0, error_status=500, max_faults=2),
                       endpoint="entities.latest")
        emu.stats.reset()
        updates, _ = await collect(emu, [sleeper], {"w_sleep": 60}, interval=60)
        final = updates[-1].summary
        assert (final.superseded, final.complete) == (1, True)
        states = [c.state for u in updates for c in u.changes]
        assert states == [TrackState.UNREADABLE, TrackState.SUPERSEDED]  # 1st read failed
        assert "InternalServerError" in (updates[0].changes[0].detail or "")

        emu.clear_faults()
        emu.stats.reset()
        updates, _ = await collect(emu, [*others, "SN999999"], COMMANDS, interval=60)
        final = updates[-1].summary
        assert (final.applied, final.unreadable, final.complete) == (2, 1, True)
        unknown = [c for u in updates for c in u.changes if c.serial == "SN999999"]
        assert [(c.state, c.detail) for c in unknown] == [
            (TrackState.UNREADABLE, "device 'SN999999' not found")]
        assert emu.stats.requests["devices.paginate"] == 3  # the unknown serial: once


async def test_nothing_to_track_finishes_at_once() -> None:
    clock = ManualClock()

    async def never(*_: Any) -> Any:
        raise AssertionError("no read expected")

    reader = CommandStateReader(never, never)
    updates = [u async for u in track_commands(reader, [], COMMANDS, clock=clock)]
    assert len(updates) == 1
    assert updates[0].summary.finished
    assert updates[0].summary.complete
    assert updates[0].summary.total == 0
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"interval": -1}, ValueError), ({"interval": "60"}, TypeError),
        ({"until": -5}, ValueError), ({"until": "30m"}, TypeError),
        ({"until": datetime(2026, 1, 1)}, ValueError),  # naive
        ({"concurrency": 0}, ValueError),
    ],
)
async def test_bad_arguments_are_refused_before_any_read(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    async def never(*_: Any) -> Any:
        raise AssertionError("no read expected")

    reader = CommandStateReader(never, never)
    with pytest.raises(error):
        async for _ in track_commands(reader, ["SN1"], COMMANDS, clock=ManualClock(), **kwargs):
            pass


def test_speeding_the_emulator_clock_up_keeps_the_instant_and_token_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from iris360_async.testing.clock import EmulatorClock

    wall = [1000.0]
    monkeypatch.setattr(time, "time", lambda: wall[0])
    clock = EmulatorClock()  # real speed, as a demo sends its commands
    real = clock.real_speed()
    wall[0] += 10.0
    clock.advance(5)
    assert (clock.now(), real.now()) == (1015.0, 1015.0)
    clock.set_time_scale(60)  # ... then devices confirm in accelerated time
    assert clock.now() == 1015.0
    assert clock.time_scale == 60
    wall[0] += 2.0
    assert (clock.now(), real.now()) == (1135.0, 1017.0)  # tokens still live in real time
    clock.set_time_scale(1)
    wall[0] += 1.0
    assert (clock.now(), real.now()) == (1136.0, 1018.0)
    with pytest.raises(ValueError, match="positive"):
        clock.set_time_scale(0)


async def test_a_large_fleet_is_located_from_the_device_list() -> None:
    async with Iris360Emulator(devices=600, seed=4, clock_start=T0, sync_interval=(60, 900),
                               token_ttl=1e7) as emu:
        serials = emu.fleet.serials
        async with client_for(emu) as iris:
            await iris.devices.send_commands(serials, COMMANDS)
        emu.stats.reset()
        updates, reader = await collect(emu, serials, COMMANDS, interval=60, concurrency=8)

    final = updates[-1].summary
    assert final.applied == 600
    # two pages of 500 rows instead of 600 look-ups; then one read per device and sweep
    expected_reads = sum(reads_until_applied(emu, s, 60) for s in serials)
    assert emu.stats.requests["devices.paginate"] == 2
    assert emu.stats.requests["entities.latest"] == expected_reads
    assert reader.requests == final.requests == 2 + expected_reads
