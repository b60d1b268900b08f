"""Emulator: devices confirm their pending commands on their own schedule, on an emulated clock
that can run faster than real time."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from iris360_async.testing import EmulatorClock, EmulatorConfig, Iris360Emulator
from iris360_async.testing.__main__ import _parser
from iris360_async.testing.config import parse_sync_interval
from iris360_async.testing.sync import DeviceSync

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


class Api:
    def __init__(self, emu: Iris360Emulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session
        self.auth = {"Authorization": f"Bearer {emu.issue_token().token}"}

    async def bulk(self, serials: list[str], **commands: Any) -> Any:
        async with self.session.post(self.emu.api_url + "/devices/sendCommandsBulk",
                                     json={"device_serials": serials, **commands},
                                     headers=self.auth) as resp:
            return await resp.json()

    async def commands(self, serial: str, **params: str) -> dict[str, dict[str, Any]]:
        headers = {**self.auth, "tenant": self.emu.tenant, "scope": self.emu.scope}
        async with self.session.get(
            self.emu.api_url + f"/last-data/entities/urn:ngsi-ld:Device:{serial}",
            params={"attrTypeFilter": "Command", **params}, headers=headers,
        ) as resp:
            assert resp.status == 200
            return {a["id"]: a for a in json.loads(await resp.text())}


def online_sleeper(emu: Iris360Emulator) -> str:
    """A device that connects and accepts ``w_sleep``."""
    fleet = emu.fleet
    return next(s for i, s in enumerate(fleet.serials)
                if fleet.sync.online(s) and "w_sleep" in fleet.device_type(i).commands)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with Iris360Emulator(devices=40, seed=3, no_ota_fraction=0.0, clock_start=T0,
                               sync_interval=(60, 900), offline_fraction=0.25,
                               token_ttl=1e7) as emu, \
            aiohttp.ClientSession() as session:
        yield Api(emu, session)


# -- the clock ----------------------------------------------------------------------------------


def test_time_scale_runs_the_clock_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    wall = [1000.0]
    monkeypatch.setattr(time, "time", lambda: wall[0])
    clock = EmulatorClock(time_scale=60)
    assert clock.now() == 1000.0
    wall[0] += 2.0
    assert clock.now() == 1120.0  # two real seconds: two emulated minutes
    clock.advance(30)
    assert clock.now() == 1150.0
    real = clock.real_speed()
    assert real.now() == 1150.0  # the same instant...
    wall[0] += 1.0
    assert (clock.now(), real.now()) == (1210.0, 1151.0)  # ...then at real speed
    real.advance(5)  # moves the accelerated clock too
    assert (clock.now(), real.now()) == (1215.0, 1156.0)
    clock.advance(5)
    assert (clock.now(), real.now()) == (1220.0, 1161.0)
    assert EmulatorClock().real_speed().time_scale == 1.0


@pytest.mark.parametrize("scale", [0, -1, float("inf"), float("nan")])
def test_time_scale_must_be_positive(scale: float) -> None:
    with pytest.raises(ValueError, match="time_scale"):
        EmulatorClock(time_scale=scale)
    with pytest.raises(ValueError, match="time_scale"):
        EmulatorConfig(time_scale=scale)


async def test_sleep_on_a_frozen_clock_moves_it_at_once() -> None:
    clock = EmulatorClock(T0)
    before = time.monotonic()
    await clock.sleep(3600)
    assert clock.now() == clock.monotonic() == clock.time() == T0 + 3600
    assert time.monotonic() - before < 1.0


async def test_sleep_on_an_accelerated_clock_divides_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("iris360_async.testing.clock.anyio.sleep", fake_sleep)
    await EmulatorClock(time_scale=60).sleep(120)
    assert waits == [2.0]


def test_accelerated_emulator_keeps_token_lifetimes_in_real_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall = [T0]
    monkeypatch.setattr(time, "time", lambda: wall[0])
    emu = Iris360Emulator(devices=1, time_scale=60, token_ttl=300)
    pair = emu.issue_token()
    wall[0] += 200  # 200 real seconds, 200 emulated minutes
    assert emu.clock.now() == T0 + 12_000
    assert emu.tokens.check(pair.token)  # 300 s lifetime: 200 real seconds old
    wall[0] += 101
    assert not emu.tokens.check(pair.token)


# -- schedules ----------------------------------------------------------------------------------


def test_schedules_are_seeded_and_within_the_range() -> None:
    a = DeviceSync(seed=5, interval=(60, 900), offline_fraction=0.2)
    b = DeviceSync(seed=5, interval=(60, 900), offline_fraction=0.2)
    serials = [f"SN{i:06d}" for i in range(1, 2001)]
    plans = [a.schedule(s) for s in serials]
    assert plans == [b.schedule(s) for s in serials]
    online = [p for p in plans if p is not None]
    assert 0.15 < 1 - len(online) / len(plans) < 0.25  # the offline share
    assert all(60 <= every <= 900 and 0 <= phase < every for every, phase in online)
    assert min(p[0] for p in online) < 120
    assert max(p[0] for p in online) > 840
    assert plans != [DeviceSync(seed=6, interval=(60, 900)).schedule(s) for s in serials]
    assert DeviceSync(seed=5, interval=None).schedule("SN000001") is None


def test_next_sync_is_the_first_connection_after_the_send() -> None:
    sync = DeviceSync(seed=1, interval=(300, 300))
    plan = sync.schedule("SN000001")
    assert plan is not None
    every, phase = plan
    assert every == 300
    at = sync.next_sync("SN000001", T0)
    assert at is not None
    assert T0 < at <= T0 + 300
    assert (at - phase) % 300 == pytest.approx(0)
    assert sync.next_sync("SN000001", at) == at + 300  # strictly after


@pytest.mark.parametrize(
    ("text", "pair"),
    [("1m-15m", (60.0, 900.0)), ("5m", (300.0, 300.0)), ("30-90s", (30.0, 90.0)),
     ("1h-1d", (3600.0, 86400.0)), ("0.5m-2m", (30.0, 120.0))],
)
def test_sync_interval_text(text: str, pair: tuple[float, float]) -> None:
    assert parse_sync_interval(text) == pair


@pytest.mark.parametrize("text", ["", "abc", "5x", "15m-1m", "0-1m", "-5m"])
def test_bad_sync_interval_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|sync_interval"):
        parse_sync_interval(text)


def test_config_validates_the_confirmation_settings() -> None:
    assert EmulatorConfig(sync_interval=120).sync_range == (120.0, 120.0)
    assert EmulatorConfig(sync_interval=(60, 900)).sync_range == (60.0, 900.0)
    assert EmulatorConfig().sync_range is None
    with pytest.raises(ValueError, match="sync_interval"):
        EmulatorConfig(sync_interval=(900, 60))
    with pytest.raises(TypeError, match="sync_interval"):
        EmulatorConfig(sync_interval="5m")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="offline_fraction"):
        EmulatorConfig(offline_fraction=1.5)


def test_command_line_flags() -> None:
    args = _parser().parse_args(
        ["--sync-interval", "1m-15m", "--offline-fraction", "0.1", "--time-scale", "60"])
    assert (args.sync_interval, args.offline_fraction, args.time_scale) == ((60.0, 900.0), 0.1,
                                                                            60.0)
    defaults = _parser().parse_args([])
    assert (defaults.sync_interval, defaults.offline_fraction, defaults.time_scale) == (
        None, 0.0, 1.0)
    with pytest.raises(SystemExit):
        _parser().parse_args(["--sync-interval", "soon"])


# -- confirmations through the API --------------------------------------------------------------


async def test_a_device_confirms_at_its_next_connection(api: Api) -> None:
    emu = api.emu
    serial = online_sleeper(emu)
    before = await api.commands(serial)
    assert before["w_sleep"]["current_value"] is None
    await api.bulk([serial], w_sleep=30)
    sent_stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(T0)))
    pending = (await api.commands(serial))["w_sleep"]
    assert (pending["pending"], pending["pending_value"], pending["current_value"],
            pending["status"], pending["timestamp"]) == (True, 30, None, "PENDING", sent_stamp)
    assert list(await api.commands(serial, filterCmdPending="1")) == ["w_sleep"]

    confirm_at = emu.fleet.sync.next_sync(serial, T0)
    assert confirm_at is not None
    emu.advance(confirm_at - T0 - 1)  # one second before it connects: still pending
    assert (await api.commands(serial))["w_sleep"]["pending"] is True
    emu.advance(1)
    done = (await api.commands(serial))["w_sleep"]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(confirm_at)))
    assert {k: done[k] for k in ("pending", "pending_value", "current_value", "status",
                                 "timestamp", "status_timestamp")} == {
        "pending": False, "pending_value": None, "current_value": 30, "status": "OK",
        "timestamp": stamp, "status_timestamp": stamp}
    assert await api.commands(serial, filterCmdPending="1") == {}
    assert emu.command_state(serial, "w_sleep").current_value == 30


async def test_a_new_value_is_pending_over_the_confirmed_one(api: Api) -> None:
    emu = api.emu
    serial = online_sleeper(emu)
    await api.bulk([serial], w_sleep=30)
    emu.advance(900)  # every online device has connected at least once
    await api.bulk([serial], w_sleep=60)
    state = (await api.commands(serial))["w_sleep"]
    assert (state["pending"], state["pending_value"], state["current_value"]) == (True, 60, 30)
    emu.advance(900)
    state = (await api.commands(serial))["w_sleep"]
    assert (state["pending"], state["pending_value"], state["current_value"]) == (False, None, 60)


async def test_offline_devices_never_confirm(api: Api) -> None:
    emu = api.emu
    offline = [s for s in emu.fleet.serials if not emu.fleet.sync.online(s)]
    online = [s for s in emu.fleet.serials if emu.fleet.sync.online(s)]
    assert offline
    assert online
    await api.bulk(emu.fleet.serials, w_ota=True)
    emu.advance(86_400)
    for serial in offline:
        state = (await api.commands(serial))["w_ota"]
        assert (state["pending"], state["pending_value"], state["current_value"]) == (
            True, True, None)
    for serial in online:
        state = (await api.commands(serial))["w_ota"]
        assert (state["pending"], state["current_value"]) == (False, True)


async def test_rejected_targets_leave_no_command_state() -> None:
    async with Iris360Emulator(devices=40, seed=3, no_ota_fraction=0.5, clock_start=T0,
                               sync_interval=60, token_ttl=1e7) as emu, \
            aiohttp.ClientSession() as session:
        api = Api(emu, session)
        items = await api.bulk(emu.fleet.serials, w_ota=True)
        rejected = [s for s, i in zip(emu.fleet.serials, items, strict=True)
                    if "errors" in i["original"]]
        assert rejected
        emu.advance(120)
        for serial in rejected:
            assert emu.command_state(serial, "w_ota").current_value is None
            assert emu.command_state(serial, "w_ota").changed_at is None


async def test_without_a_sync_interval_commands_stay_pending_until_acknowledged() -> None:
    async with Iris360Emulator(devices=5, seed=1, no_ota_fraction=0.0, clock_start=T0,
                               token_ttl=1e7) as emu, \
            aiohttp.ClientSession() as session:
        api = Api(emu, session)
        await api.bulk(["SN000001", "SN000002"], w_ota=True)
        emu.advance(10 * 86_400)
        assert (await api.commands("SN000001"))["w_ota"]["pending"] is True
        emu.acknowledge_commands("SN000001")
        state = (await api.commands("SN000001"))["w_ota"]
        assert (state["pending"], state["current_value"]) == (False, True)
        assert (await api.commands("SN000002"))["w_ota"]["pending"] is True
        emu.acknowledge_commands()
        assert (await api.commands("SN000002"))["w_ota"]["current_value"] is True


async def test_time_scale_lets_devices_confirm_in_real_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall = [T0]
    monkeypatch.setattr(time, "time", lambda: wall[0])
    emu = Iris360Emulator(devices=10, seed=1, no_ota_fraction=0.0, sync_interval=(60, 120),
                          time_scale=60)
    serials = emu.fleet.serials
    emu.fleet.sync.record(serials, {"w_reboot": True}, emu.clock.now())
    assert all(emu.command_state(s, "w_reboot").pending for s in serials)
    wall[0] += 2.0  # two real seconds = two emulated minutes: every device has connected
    assert all(emu.command_state(s, "w_reboot").current_value is True for s in serials)
