"""The public client against the emulator over real sockets on 127.0.0.1.

Every endpoint once with a username/password login, the token lifecycle (expiry, revocation,
refused refresh, wrong password) and every fault kind the emulator injects, each checked from
both sides: what the caller gets and what the emulator counted (``emu.stats``).

The emulator clock is frozen at ``T0`` and the client gets a :class:`ManualClock` started at the
same instant, so token expiry is moved by hand on both sides and every backoff or
``Retry-After`` wait is instant (and recorded in ``clock.sleeps``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import pytest

from iris360_async import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    EntityCommand,
    EntityProperty,
    EntityRelationship,
    InternalServerError,
    Iris360Client,
    NotFoundError,
    OutConnector,
    PermissionDeniedError,
    ResponseDecodeError,
    Timeout,
    TimeSeriesOptions,
    TimeSeriesRequest,
)
from iris360_async._retry import ManualClock
from iris360_async.models.bulk import CommandStatus
from iris360_async.testing import ALL_COMMANDS, FaultProfile, Iris360Emulator

EmulatorFactory = Callable[..., Awaitable[Iris360Emulator]]

T0 = 1_780_000_000  # the emulator's frozen clock (seconds since the epoch)
DEVICES = 250
SERIES_START = datetime(2025, 1, 1, tzinfo=timezone.utc)  # the emulator's default


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
async def emu(iris360_emulator_factory: EmulatorFactory) -> Iris360Emulator:
    return await iris360_emulator_factory(devices=DEVICES, seed=1, clock_start=T0)


@asynccontextmanager
async def connect(
    emu: Iris360Emulator, *, clock: ManualClock | None = None, **kwargs: Any
) -> AsyncIterator[Iris360Client]:
    """A client logging in with the emulator's credentials; backoff waits are instant."""
    async with Iris360Client._with_hooks(
        base_url=emu.base_url,
        username=kwargs.pop("username", emu.username),
        password=kwargs.pop("password", emu.password),
        tenant=emu.tenant,
        scope=emu.scope,
        clock=clock if clock is not None else ManualClock(start=emu.clock.now()),
        random=lambda: 0.5,
        environ={},
        **kwargs,
    ) as client:
        yield client


def serial(n: int) -> str:
    return f"SN{n:06d}"


def accepts(emu: Iris360Emulator, serial_: str, command: str) -> bool:
    fleet = emu.fleet
    return command in fleet.device_type(fleet.serial_index[serial_]).commands


async def page_serials(client: Iris360Client, page: int = 1, size: int = 5) -> list[str]:
    rows = (await client.devices.page_fetcher()(page, size)).rows
    return [d.serial for d in rows]


class HoldingClock(ManualClock):
    """A ManualClock whose sleeps block until :attr:`released` is set, so a test can look at
    the world while requests wait (then time jumps to the end of each wait)."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.released = asyncio.Event()
        self.entered = 0
        self._changed = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        self.sleeps.append(seconds)
        target = self.monotonic() + seconds
        self.entered += 1
        self._changed.set()
        await self.released.wait()
        if self.monotonic() < target:
            self.advance(target - self.monotonic())
        await anyio.lowlevel.checkpoint()

    async def wait_entered(self, n: int) -> None:
        with anyio.fail_after(5):
            while self.entered < n:
                self._changed.clear()
                await self._changed.wait()


# -- 1. every endpoint once -----------------------------------------------------------------


async def test_devices_paginate_many_pages_every_serial_once_in_order(
    emu: Iris360Emulator,
) -> None:
    async with connect(emu) as client:
        devices = await client.devices.paginate(page_size=20, prefetch=4).collect()
    assert [d.serial for d in devices] == [serial(i) for i in range(1, DEVICES + 1)]
    assert [d.id for d in devices] == list(range(1, DEVICES + 1))
    fleet = emu.fleet
    assert all(d.type is not None and d.type.code == fleet.device_type(d.id - 1).code
               for d in devices)
    assert emu.stats.responses["devices.paginate"] == {200: 13}  # ceil(250 / 20), no extra
    assert emu.stats.logins == 1


async def test_send_commands_bulk_answers_one_item_per_serial_in_order(
    emu: Iris360Emulator,
) -> None:
    fleet = emu.fleet
    legacy = next(s for s in fleet.serials if not accepts(emu, s, "w_ota"))
    capable = [s for s in fleet.serials[:10] if accepts(emu, s, "w_ota")][:3]
    targets = [capable[0], legacy, "NOPE0001", capable[1], capable[2]]
    async with connect(emu) as client:
        results = await client.devices.send_commands_bulk(targets, {"w_ota": True})
    assert [r.sent for r in results] == [True, False, False, True, True]
    assert results[1].original == {"errors": "You cannot send any of: w_ota"}
    assert results[2].original == "Device not found: NOPE0001"
    assert emu.stats.responses["devices.bulk"] == {207: 1}
    for s in capable:
        assert emu.stats.applications(s, "w_ota") == 1
    assert emu.stats.applications(legacy) == 0
    assert emu.stats.total_applications() == 3


async def test_import_file_from_bytes_and_path_then_devices_appear(
    emu: Iris360Emulator, tmp_path: Path
) -> None:
    csv_bytes = (
        b"serial,name,type,description\n"
        b"NEW00001,Imported one,SCP,first\n"
        b"NEW00002,Imported two,SAP,\n"
        b"SN000001,Renamed first,SCP,\n"
    )
    path = tmp_path / "more-devices.csv"
    path.write_bytes(b"serial,name,type\nNEW00003,Imported three,SEP\n")
    async with connect(emu) as client:
        first = await client.devices.import_file(csv_bytes)
        second = await client.devices.import_file(path)
        devices = await client.devices.paginate(page_size=50).collect()
        sent = await client.devices.send_commands_bulk(["NEW00003"], {"w_reboot": True})
    assert first.status == 200
    assert first.data == {
        "message": "Devices imported successfully", "total_devices_in_file": 3,
        "created": 2, "updated": 1,
    }
    assert first.message == "Devices imported successfully"
    assert second.status == 200
    assert isinstance(second.data, dict)
    assert (second.data["created"], second.data["updated"]) == (1, 0)
    assert emu.stats.requests["devices.import"] == 2
    assert len(devices) == DEVICES + 3
    assert [d.serial for d in devices[-3:]] == ["NEW00001", "NEW00002", "NEW00003"]
    by_serial = {d.serial: d for d in devices}
    assert by_serial["NEW00001"].name == "Imported one"
    assert by_serial["NEW00002"].type is not None
    assert by_serial["NEW00002"].type.code == "SAP"
    assert by_serial["NEW00003"].name == "Imported three"
    assert by_serial["SN000001"].name == "Renamed first"
    assert len({d.serial for d in devices}) == len(devices)
    assert sent[0].sent
    assert emu.stats.applications("NEW00003", "w_reboot") == 1


async def test_entities_paginate_with_types_matches_the_fleet(emu: Iris360Emulator) -> None:
    types = ["AirQualityObserved", "WeatherObserved"]
    async with connect(emu) as client:
        observed = await client.entities.paginate(types=types, page_size=2).collect()
        lab = await client.entities.paginate(types=types, scope="/lab", page_size=2).collect()
        devices = await client.entities.paginate(types="Device", page_size=100).collect()
    def expected(scope: str) -> list[tuple[int, str, str]]:
        return [(e.id, e.urn, e.datamodel) for e in emu.fleet.extras
                if e.datamodel in types and e.scope == scope]
    assert [(e.id, e.urn, e.datamodel) for e in observed] == expected(emu.scope)
    assert [(e.id, e.urn, e.datamodel) for e in lab] == expected("/lab")
    assert expected(emu.scope)
    assert expected("/lab")
    assert all(e.tenant == emu.tenant and e.scope == emu.scope for e in observed)
    assert [e.urn for e in devices] == [f"urn:ngsi-ld:Device:{s}" for s in emu.fleet.serials]
    assert devices[0].devices == [1]


async def test_entities_latest_three_kinds_and_pending_after_bulk(emu: Iris360Emulator) -> None:
    target = serial(1)
    urn = f"urn:ngsi-ld:Device:{target}"
    accepted = emu.fleet.device_type(0).commands
    async with connect(emu) as client:
        before = await client.entities.latest(urn)
        await client.devices.send_commands_bulk([target], {"w_reboot": 1})
        commands = await client.entities.latest(urn, attr_types="Command")
        pending = await client.entities.latest(
            urn, attr_types="Command", only_pending_commands=True
        )
        emu.acknowledge_commands(target)
        after_ack = await client.entities.latest(
            urn, attr_types="Command", only_pending_commands=True
        )
        with pytest.raises(NotFoundError) as missing:
            await client.entities.latest("urn:ngsi-ld:Device:NOPE0001")
    props = [a for a in before if isinstance(a, EntityProperty)]
    rels = [a for a in before if isinstance(a, EntityRelationship)]
    cmds = [a for a in before if isinstance(a, EntityCommand)]
    assert len(props) + len(rels) + len(cmds) == len(before)
    assert sorted(p.id for p in props) == ["battery", "humidity", "online", "temperature"]
    assert [r.id for r in rels] == ["refGateway"]
    assert rels[0].value == "urn:ngsi-ld:Gateway:GW0001"
    assert [c.id for c in cmds] == list(ALL_COMMANDS)
    assert {c.id for c in cmds if c.available} == set(accepted)
    assert not any(c.pending for c in cmds)
    assert all(isinstance(c, EntityCommand) for c in commands)
    reboot = {c.id: c for c in commands if isinstance(c, EntityCommand)}["w_reboot"]
    assert reboot.pending is True
    assert reboot.pending_value == 1
    assert [(a.id, getattr(a, "pending", None)) for a in pending] == [("w_reboot", True)]
    assert after_ack == []
    assert missing.value.status == 404
    assert missing.value.body == "Entity not found"


async def test_timeseries_get_honours_limit_and_order(emu: Iris360Emulator) -> None:
    urn = f"urn:ngsi-ld:Device:{serial(3)}"
    async with connect(emu) as client:
        newest, oldest = await client.timeseries.get([
            TimeSeriesRequest([urn], ["temperature"],
                              TimeSeriesOptions(limit=3, order="desc", query_id="newest")),
            TimeSeriesRequest([urn], ["temperature", "battery"],
                              TimeSeriesOptions(limit=2, order="asc", query_id="oldest")),
        ])
    assert emu.stats.requests["timeseries"] == 1
    assert newest.options.query_id == "newest"
    assert oldest.options.query_id == "oldest"
    [series] = newest.time_series
    assert (series.device_id, series.measure_id) == (urn, "temperature")
    stamps = [v.timestamp for v in series.values]
    assert len(stamps) == 3
    now = datetime.fromtimestamp(T0, tz=timezone.utc)
    assert timedelta(0) <= now - stamps[0] < timedelta(seconds=600)
    assert [a - b for a, b in itertools.pairwise(stamps)] == [timedelta(seconds=600)] * 2
    assert sorted(s.measure_id for s in oldest.time_series) == ["battery", "temperature"]
    for s in oldest.time_series:
        assert [v.timestamp for v in s.values] == [
            SERIES_START, SERIES_START + timedelta(seconds=600)
        ]
        assert all(isinstance(v.value, (int, float)) for v in s.values)


async def test_connectors_paginate_get_404_and_update_models(emu: Iris360Emulator) -> None:
    fleet = emu.fleet
    original = fleet.connectors[2]
    kept_entities = list(original.entities)
    async with connect(emu) as client:
        rows = await client.connectors.out.paginate(page_size=3).collect()
        third = await client.connectors.out.get(3)
        with pytest.raises(NotFoundError) as missing:
            await client.connectors.out.get(999)
        updated = await client.connectors.out.update_models(2, devices=[5, 6],
                                                            mapping_schemas=[3])
        reread = await client.connectors.out.get(2)
    assert [(r.id, r.name, r.type) for r in rows] == [
        (c.id, c.name, c.type) for c in fleet.connectors.values()
    ]
    assert emu.stats.requests["connectors.paginate"] == 4  # ceil(10 / 3)
    expected = fleet.connectors[3]
    assert (third.id, third.type, third.connectable_type) == (
        3, expected.type, expected.connectable_type
    )
    assert third.devices == expected.devices
    err = missing.value
    assert err.status == 404
    assert err.server_message == "No query results for model [App\\Models\\OutConnector] 999"
    assert err.method == "GET"
    assert err.url.endswith("/api/public/v1/connectors/out/999")
    assert emu.stats.responses["connectors.get"][404] == 1  # a 404 is not retried
    assert isinstance(updated, OutConnector)
    for connector in (updated, reread):
        assert connector.devices == [5, 6]
        assert [m.id for m in connector.mapping_schemas or []] == [3]
        assert connector.entities == kept_entities  # absent lists are kept
    assert fleet.connectors[2].devices == [5, 6]


async def test_auth_login_and_refresh_rotate_tokens(emu: Iris360Emulator) -> None:
    async with connect(emu) as client:
        first = await client.auth.login()
        assert emu.stats.logins == 1
        second = await client.auth.refresh()
        assert emu.stats.refreshes == 1
        assert emu.stats.logins == 1
        assert second.token != first.token
        assert second.refresh_token is not None
        assert second.refresh_token != first.refresh_token
        assert await page_serials(client) == [serial(i) for i in range(1, 6)]
        assert emu.stats.unauthenticated == 0
        assert client.stats.logins == 1
        assert client.stats.refreshes == 1
        async with aiohttp.ClientSession() as raw, raw.post(
            emu.api_url + "/refresh-token", json={"refreshToken": first.refresh_token}
        ) as resp:
            assert resp.status == 401  # the old refresh token was spent by the rotation
            await resp.read()
        assert emu.stats.refresh_failures == 1
        assert emu.stats.refreshes == 1


# -- 2. auth lifecycle ------------------------------------------------------------------------


async def test_expiry_on_a_synced_clock_one_proactive_refresh_for_fifty_requests(
    iris360_emulator_factory: EmulatorFactory,
) -> None:
    emu = await iris360_emulator_factory(devices=DEVICES, clock_start=T0, token_ttl=60)
    clock = ManualClock(start=T0)
    async with connect(emu, clock=clock) as client:
        fetch = client.devices.page_fetcher()
        await fetch(1, 5)
        emu.advance(10)
        clock.advance(10)
        await fetch(2, 5)
        assert emu.stats.refreshes == 0  # well before expiry: nothing to renew
        emu.advance(51)
        clock.advance(51)  # both clocks now 61 s after the login: the token has expired
        pages = await asyncio.gather(*(fetch(p, 5) for p in range(1, 51)))
    assert [d.serial for page in pages for d in page.rows] == emu.fleet.serials
    assert emu.stats.refreshes == 1
    assert emu.stats.logins == 1
    assert emu.stats.unauthenticated == 0  # renewed before sending, not after a 401
    assert client.stats.refreshes == 1
    assert client.stats.replays == 0


async def test_expiry_unseen_by_the_client_one_refresh_after_the_401s(
    iris360_emulator_factory: EmulatorFactory,
) -> None:
    emu = await iris360_emulator_factory(devices=DEVICES, clock_start=T0, token_ttl=60)
    # the client's clock is years behind: the token looks valid to it until the server says no
    async with connect(emu, clock=ManualClock()) as client:
        fetch = client.devices.page_fetcher()
        await fetch(1, 5)
        emu.advance(61)
        pages = await asyncio.gather(*(fetch(p, 5) for p in range(1, 51)))
    assert [d.serial for page in pages for d in page.rows] == emu.fleet.serials
    assert emu.stats.refreshes == 1
    assert emu.stats.logins == 1
    assert emu.stats.unauthenticated == 50
    assert client.stats.replays == 50


async def test_revocation_between_calls_and_during_a_batch(emu: Iris360Emulator) -> None:
    async with connect(emu) as client:
        await page_serials(client)
        emu.revoke_tokens()
        assert await page_serials(client, 2) == [serial(i) for i in range(6, 11)]
        assert (emu.stats.refreshes, emu.stats.logins, emu.stats.unauthenticated) == (1, 1, 1)
        # the first request of the batch to reach the server revokes every token
        emu.set_faults(FaultProfile(revoke_rate=1.0, max_faults=1), endpoint="devices.paginate")
        fetch = client.devices.page_fetcher()
        pages = await asyncio.gather(*(fetch(p, 5) for p in range(1, 51)))
    assert [d.serial for page in pages for d in page.rows] == emu.fleet.serials
    assert emu.stats.faults["revoke"] == 1
    assert emu.stats.refreshes == 2  # one per revocation
    assert emu.stats.logins == 1
    assert emu.stats.unauthenticated >= 2


async def test_refresh_token_revoked_too_falls_back_to_exactly_one_login(
    emu: Iris360Emulator,
) -> None:
    async with connect(emu) as client:
        await page_serials(client)
        emu.revoke_tokens(refresh_tokens=True)
        fetch = client.devices.page_fetcher()
        pages = await asyncio.gather(*(fetch(p, 10) for p in range(1, 21)))
        assert [d.serial for page in pages for d in page.rows] == emu.fleet.serials[:200]
        await page_serials(client, 3)
    assert emu.stats.refresh_failures == 1
    assert emu.stats.refreshes == 0
    assert emu.stats.logins == 2  # the first one and the fallback
    assert emu.stats.requests["login"] == 2
    assert client.stats.refreshes == 1
    assert client.stats.logins == 2


async def test_wrong_password_one_login_attempt_and_no_secret_in_errors(
    emu: Iris360Emulator,
) -> None:
    secret = "Wr0ng-Passw0rd-7f3a"
    async with connect(emu, password=secret) as client:
        fetch = client.devices.page_fetcher()
        outcomes = await asyncio.gather(*(fetch(p, 5) for p in range(1, 11)),
                                        return_exceptions=True)
        later: list[BaseException] = []
        for call in (lambda: fetch(1, 5), lambda: client.connectors.out.get(1),
                     lambda: client.entities.latest("urn:ngsi-ld:Device:SN000001")):
            with pytest.raises(AuthenticationError) as info:
                await call()
            later.append(info.value)
    errors = [*outcomes, *later]
    assert all(isinstance(e, AuthenticationError) for e in errors), errors
    assert emu.stats.requests["login"] == 1
    assert emu.stats.login_failures == 1
    assert emu.stats.logins == 0
    assert sum(emu.stats.requests.values()) == 1  # nothing else was sent
    assert client.stats.logins == 1
    for exc in errors:
        assert isinstance(exc, AuthenticationError)
        assert exc.status == 401
        assert secret not in str(exc)
        assert secret not in repr(exc)
        assert secret not in (exc.text or "")


async def test_writes_are_replayed_once_after_a_401_and_applied_once(
    emu: Iris360Emulator,
) -> None:
    targets = [serial(i) for i in range(1, 4)]
    async with connect(emu) as client:
        await page_serials(client)
        emu.revoke_tokens()
        results = await client.devices.send_commands_bulk(targets, {"w_sleep": 30})
        emu.revoke_tokens()
        imported = await client.devices.import_file(b"serial,name\nNEW00009,Nine\n")
        emu.revoke_tokens()
        updated = await client.connectors.out.update_models(4, entities=[1])
    assert [r.sent for r in results] == [accepts(emu, s, "w_sleep") for s in targets]
    for s in targets:
        assert emu.stats.applications(s, "w_sleep") == (1 if accepts(emu, s, "w_sleep") else 0)
    assert emu.stats.responses["devices.bulk"] == {401: 1, 207: 1}
    # the multipart body is rebuilt for the replay
    assert emu.stats.responses["devices.import"] == {401: 1, 200: 1}
    assert imported.data == {"message": "Devices imported successfully",
                             "total_devices_in_file": 1, "created": 1, "updated": 0}
    assert "NEW00009" in emu.fleet.serial_index
    assert emu.stats.responses["connectors.models"] == {401: 1, 200: 1}
    assert isinstance(updated, OutConnector)
    assert updated.entities == [1]
    assert emu.stats.refreshes == 3
    assert emu.stats.logins == 1


# -- 3. faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503])
async def test_gateway_error_on_a_read_is_retried(emu: Iris360Emulator, status: int) -> None:
    emu.set_faults(FaultProfile(error_rate=1.0, error_status=status, max_faults=1),
                   endpoint="devices.paginate")
    clock = ManualClock(start=T0)
    async with connect(emu, clock=clock) as client:
        assert await page_serials(client) == [serial(i) for i in range(1, 6)]
    assert emu.stats.responses["devices.paginate"] == {status: 1, 200: 1}
    assert client.stats.retries == 1
    assert clock.sleeps == [0.25]  # full jitter: 0.5 x min(cap, 0.5 x 2**0)


@pytest.mark.parametrize("max_retries", [0, 3])
async def test_500_on_a_read_raises_internal_server_error(
    emu: Iris360Emulator, max_retries: int
) -> None:
    emu.set_faults(FaultProfile(error_rate=1.0, error_status=500), endpoint="devices.paginate")
    async with connect(emu, max_retries=max_retries) as client:
        with pytest.raises(InternalServerError) as info:
            await page_serials(client)
    err = info.value
    assert err.status == 500
    assert err.method == "POST"
    assert err.url == emu.api_url + "/devices/paginate"
    assert err.body == {"message": "Server Error"}
    assert err.server_message == "Server Error"
    assert emu.stats.responses["devices.paginate"] == {500: 1}  # 500 is not a retried status


async def test_429_on_a_read_waits_retry_after_then_succeeds(emu: Iris360Emulator) -> None:
    emu.set_faults(FaultProfile(rate_limit_rate=1.0, retry_after=2, max_faults=1),
                   endpoint="devices.paginate")
    clock = ManualClock(start=T0)
    async with connect(emu, clock=clock) as client:
        assert await page_serials(client) == [serial(i) for i in range(1, 6)]
    assert emu.stats.responses["devices.paginate"] == {429: 1, 200: 1}
    assert clock.sleeps == [pytest.approx(2.0)]
    assert client.stats.rate_limited == 1
    assert client.stats.retries == 1


async def test_429_gate_holds_a_concurrent_request_to_another_endpoint(
    emu: Iris360Emulator,
) -> None:
    clock = HoldingClock(start=T0)
    async with connect(emu, clock=clock) as client:
        await page_serials(client)  # log in first
        emu.set_faults(FaultProfile(rate_limit_rate=1.0, retry_after=3, max_faults=1),
                       endpoint="devices.paginate")
        page = asyncio.create_task(page_serials(client, 2))
        await clock.wait_entered(1)  # the 429 came back; the gate is closed for 3 s
        assert emu.stats.responses["devices.paginate"][429] == 1
        other = asyncio.create_task(client.connectors.out.get(1))
        await clock.wait_entered(2)
        assert emu.stats.requests["connectors.get"] == 0  # held back, never sent
        assert clock.sleeps == [3.0, 3.0]
        assert not page.done()
        assert not other.done()
        clock.released.set()
        serials, connector = await asyncio.gather(page, other)
    assert serials == [serial(i) for i in range(6, 11)]
    assert connector.id == 1
    assert emu.stats.requests["connectors.get"] == 1
    assert emu.stats.responses["devices.paginate"] == {200: 2, 429: 1}


async def test_connection_reset_on_a_read_is_retried(emu: Iris360Emulator) -> None:
    emu.set_faults(FaultProfile(reset_rate=1.0, max_faults=1), endpoint="devices.paginate")
    async with connect(emu) as client:
        assert await page_serials(client) == [serial(i) for i in range(1, 6)]
    assert emu.stats.faults["reset"] == 1
    assert emu.stats.responses["devices.paginate"] == {0: 1, 200: 1}
    assert client.stats.retries == 1


@pytest.mark.parametrize(
    ("profile", "error", "applied"),
    [
        pytest.param(FaultProfile(error_rate=1.0, error_status=503), InternalServerError, 0,
                     id="503-before-processing"),
        pytest.param(FaultProfile(error_rate=1.0, error_status=500), InternalServerError, 0,
                     id="500-before-processing"),
        pytest.param(FaultProfile(drop_rate=1.0), APIConnectionError, 1,
                     id="dropped-after-processing"),
        pytest.param(FaultProfile(reset_rate=1.0), APIConnectionError, 0,
                     id="reset-after-sending"),
    ],
)
async def test_write_is_not_repeated_when_the_server_may_have_acted(
    emu: Iris360Emulator, profile: FaultProfile, error: type[Exception], applied: int
) -> None:
    targets = [serial(i) for i in range(1, 6)]
    emu.set_faults(profile, endpoint="devices.bulk")
    async with connect(emu) as client:
        with pytest.raises(error) as info:
            await client.devices.send_commands_bulk(targets, {"w_reboot": True})
    if isinstance(info.value, APIConnectionError):
        assert info.value.request_sent is True
    assert emu.stats.requests["devices.bulk"] == 1
    assert client.stats.retries == 0
    assert [emu.stats.applications(s, "w_reboot") for s in targets] == [applied] * 5


async def test_429_on_a_write_is_retried_and_applied_once(emu: Iris360Emulator) -> None:
    targets = [serial(i) for i in range(1, 6)]
    emu.set_faults(FaultProfile(rate_limit_rate=1.0, retry_after=1, max_faults=1),
                   endpoint="devices.bulk")
    clock = ManualClock(start=T0)
    async with connect(emu, clock=clock) as client:
        results = await client.devices.send_commands_bulk(targets, {"w_reboot": True})
    assert all(r.sent for r in results)
    assert emu.stats.responses["devices.bulk"] == {429: 1, 207: 1}
    assert [emu.stats.applications(s, "w_reboot") for s in targets] == [1] * 5
    assert clock.sleeps == [pytest.approx(1.0)]


async def test_malformed_body_raises_response_decode_error(emu: Iris360Emulator) -> None:
    emu.set_faults(FaultProfile(malformed_rate=1.0), endpoint="connectors.get")
    async with connect(emu) as client:
        with pytest.raises(ResponseDecodeError) as info:
            await client.connectors.out.get(1)
    err = info.value
    assert err.status == 200
    assert err.method == "GET"
    assert err.url == emu.api_url + "/connectors/out/1"
    assert err.path is not None
    assert err.path.startswith("$")
    assert err.text
    assert err.text.startswith('{"id":1')
    assert emu.stats.faults["malformed"] == 1
    assert emu.stats.requests["connectors.get"] == 1  # a decode failure is not retried


async def test_slow_response_past_the_timeout_raises_api_timeout_error(
    emu: Iris360Emulator,
) -> None:
    emu.set_faults(FaultProfile(slow_rate=1.0, slow_delay=0.8), endpoint="connectors.get")
    async with connect(emu, timeout=Timeout(total=0.2), max_retries=0) as client:
        await client.auth.login()
        with pytest.raises(APITimeoutError) as info:
            await client.connectors.out.get(1)
    assert info.value.request_sent is True
    assert info.value.method == "GET"
    assert emu.stats.faults["slow"] == 1
    assert emu.stats.requests["connectors.get"] == 1


async def test_timeout_on_a_read_is_retried(emu: Iris360Emulator) -> None:
    emu.set_faults(FaultProfile(slow_rate=1.0, slow_delay=0.5, max_faults=1),
                   endpoint="devices.paginate")
    async with connect(emu, timeout=Timeout(total=0.2)) as client:
        assert await page_serials(client) == [serial(i) for i in range(1, 6)]
    assert emu.stats.faults["slow"] == 1
    assert emu.stats.requests["devices.paginate"] == 2
    assert client.stats.retries == 1


async def test_forbidden_mid_chunk_raw_call_raises_and_first_targets_are_applied(
    emu: Iris360Emulator,
) -> None:
    targets = [serial(i) for i in range(1, 11)]
    emu.set_faults(FaultProfile(forbidden_rate=1.0, forbidden_after=3), endpoint="devices.bulk")
    async with connect(emu) as client:
        with pytest.raises(PermissionDeniedError) as info:
            await client.devices.send_commands_bulk(targets, {"w_reboot": True})
    assert info.value.status == 403
    assert info.value.server_message == "This action is unauthorized."
    assert emu.stats.requests["devices.bulk"] == 1
    assert [emu.stats.applications(s, "w_reboot") for s in targets] == [1] * 3 + [0] * 7


async def test_forbidden_mid_chunk_through_send_commands_leaves_the_chunk_unknown(
    emu: Iris360Emulator,
) -> None:
    targets = [serial(i) for i in range(1, 11)]
    emu.set_faults(FaultProfile(forbidden_rate=1.0, forbidden_after=2, max_faults=1),
                   endpoint="devices.bulk")
    async with connect(emu) as client:
        report = await client.devices.send_commands(
            targets, {"w_reboot": True}, chunk_size=5, concurrency=1
        )
    assert report.total == 10
    assert report.serials(CommandStatus.UNKNOWN) == targets[:5]
    assert sorted(report.serials(CommandStatus.SENT)) == targets[5:]
    assert report.counts["unknown"] == 5
    assert report.counts["sent"] == 5
    assert emu.stats.requests["devices.bulk"] == 2  # the 403 chunk was not resent
    assert [emu.stats.applications(s, "w_reboot") for s in targets] == (
        [1, 1, 0, 0, 0] + [1] * 5
    )
    assert emu.stats.max_applications("w_reboot") == 1
