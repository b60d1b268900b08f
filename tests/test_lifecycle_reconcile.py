"""Reconcile: a verdict per unknown serial from the command state, read from the emulator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from emulator_support import client_for

from iris360_async import Iris360Client
from iris360_async._lifecycle import (
    CONFIRMED_DETAIL,
    CommandStateReader,
    EntityRef,
    Verdict,
    VerdictKind,
    entity_for,
    reconcile,
)
from iris360_async.errors import Iris360Error
from iris360_async.models import Device, EntityAttribute, EntityCommand
from iris360_async.models.devices import DeviceMainEntity
from iris360_async.testing import FaultProfile, Iris360Emulator

T0 = 1_767_225_600.0
COMMANDS = {"w_reboot": True}


def serials(first: int, last: int) -> list[str]:
    return [f"SN{i:06d}" for i in range(first, last + 1)]


async def lose(iris: Iris360Client, emu: Iris360Emulator, fault: FaultProfile,
               targets: list[str], commands: dict[str, Any] = COMMANDS) -> None:
    """Send ``commands`` to ``targets`` in one request that meets ``fault`` (answer lost)."""
    emu.set_faults(fault, endpoint="devices.bulk")
    with pytest.raises(Iris360Error):
        await iris.devices.send_commands_bulk(targets, commands)
    emu.clear_faults()


async def test_lost_answers_are_confirmed_and_unsent_requests_not_applied() -> None:
    dropped, reset = serials(1, 10), serials(11, 20)
    async with Iris360Emulator(devices=30, seed=2, clock_start=T0) as emu, \
            client_for(emu) as iris:
        await lose(iris, emu, FaultProfile(drop_rate=1.0), dropped)  # applied, answer lost
        await lose(iris, emu, FaultProfile(reset_rate=1.0), reset)  # never processed
        assert emu.stats.commanded_serials("w_reboot") == set(dropped)
        emu.stats.reset()
        reader = CommandStateReader.for_client(iris)
        decided: list[tuple[str, Verdict]] = []
        verdicts = await reconcile(
            reader, [*reset, *dropped, "SN999999", *dropped[:3]], COMMANDS, concurrency=4,
            on_verdict=lambda serial, verdict: decided.append((serial, verdict)),
        )
        assert list(verdicts) == [*reset, *dropped, "SN999999"]  # input order, once each
        assert sorted(decided, key=lambda d: d[0]) == sorted(verdicts.items())
        for serial in dropped:
            assert verdicts[serial] == Verdict(VerdictKind.CONFIRMED, CONFIRMED_DETAIL)
        for serial in reset:
            assert verdicts[serial].kind is VerdictKind.NOT_APPLIED
            assert verdicts[serial].detail == "not applied: w_reboot not pending, current None"
        assert verdicts["SN999999"] == Verdict(VerdictKind.UNREADABLE,
                                               "device 'SN999999' not found")
        # at most two requests per serial: its row, then its entity
        assert emu.stats.requests["devices.paginate"] == 21
        assert emu.stats.requests["entities.latest"] == 20
        assert reader.requests == 41
        assert emu.stats.total_applications() == 0  # reconcile never sends a command


async def test_a_device_that_already_confirmed_is_confirmed() -> None:
    lost = serials(1, 6)
    async with Iris360Emulator(devices=10, seed=2, clock_start=T0, sync_interval=(60, 120),
                               token_ttl=1e6) as emu, client_for(emu) as iris:
        await lose(iris, emu, FaultProfile(drop_rate=1.0), lost)
        emu.advance(121)  # every device has connected since
        assert all(emu.command_state(s, "w_reboot").current_value is True for s in lost)
        verdicts = await reconcile(CommandStateReader.for_client(iris), lost, COMMANDS)
        assert {v.kind for v in verdicts.values()} == {VerdictKind.CONFIRMED}


async def test_missing_entities_and_failing_reads_stay_unknown() -> None:
    gone = "urn:ngsi-ld:Device:GONE"

    def entity(device: Device) -> EntityRef | None:
        if device.serial == "SN000002":
            return EntityRef(gone)
        return entity_for(device)

    async with Iris360Emulator(devices=10, seed=2, clock_start=T0) as emu, \
            client_for(emu) as iris:
        await lose(iris, emu, FaultProfile(drop_rate=1.0), serials(1, 4))
        reader = CommandStateReader.for_client(iris, entity=entity)
        verdicts = await reconcile(reader, serials(1, 2), COMMANDS)
        assert verdicts["SN000001"].kind is VerdictKind.CONFIRMED
        assert verdicts["SN000002"] == Verdict(VerdictKind.UNREADABLE,
                                               f"entity {gone} not found")
        emu.set_faults(FaultProfile(error_rate=1.0, error_status=500),
                       endpoint="entities.latest")
        verdicts = await reconcile(reader, serials(3, 3), COMMANDS)
        assert verdicts["SN000003"].kind is VerdictKind.UNREADABLE
        assert verdicts["SN000003"].detail.startswith(
            "reading urn:ngsi-ld:Device:SN000003 failed: InternalServerError")
        emu.set_faults(FaultProfile(error_rate=1.0, error_status=500),
                       endpoint="devices.paginate")
        verdicts = await reconcile(reader, serials(4, 4), COMMANDS)
        assert verdicts["SN000004"].detail.startswith("device look-up failed: ")
        assert emu.password not in verdicts["SN000004"].detail


async def test_a_mixed_state_stays_unknown() -> None:
    async with Iris360Emulator(devices=10, seed=2, clock_start=T0, no_ota_fraction=0.0) as emu, \
            client_for(emu) as iris:
        index = next(i for i in range(10) if "w_sleep" in emu.fleet.device_type(i).commands)
        serial = emu.fleet.serials[index]
        await iris.devices.send_commands_bulk([serial], {"w_sleep": 30})  # an earlier job
        verdicts = await reconcile(CommandStateReader.for_client(iris), [serial],
                                   {"w_sleep": 30, "w_reboot": True})
        assert verdicts[serial].kind is VerdictKind.MIXED
        assert verdicts[serial].detail == (
            "mixed command state: w_sleep written; w_reboot not pending, current None")


# -- without HTTP -------------------------------------------------------------------------------


class FakeFleet:
    """``find_device`` / ``read_commands`` over a dict, counting reads in flight."""

    def __init__(self, state: dict[str, list[EntityAttribute]]) -> None:
        self.state = state
        self.in_flight = 0
        self.most = 0
        self.calls: list[str] = []

    async def _busy(self) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        self.in_flight -= 1

    async def find_device(self, serial: str) -> Device | None:
        self.calls.append("device:" + serial)
        await self._busy()
        if serial not in self.state:
            return None
        return Device(id=1, serial=serial, name=serial, main_entity=DeviceMainEntity(
            id=1, urn="urn:x:" + serial))

    async def read_commands(
        self, ref: EntityRef, names: Sequence[str]
    ) -> Sequence[EntityAttribute]:
        self.calls.append("entity:" + ref.urn)
        await self._busy()
        return self.state[ref.urn.removeprefix("urn:x:")]


async def test_reads_are_bounded_by_concurrency() -> None:
    pending = EntityCommand(id="w_ota", pending=True, pending_value=True)
    fleet = FakeFleet({f"S{i}": [pending] for i in range(50)})
    reader = CommandStateReader(fleet.find_device, fleet.read_commands)
    verdicts = await reconcile(reader, list(fleet.state), {"w_ota": True}, concurrency=3)
    assert {v.kind for v in verdicts.values()} == {VerdictKind.CONFIRMED}
    assert fleet.most == 3
    assert len(fleet.calls) == 100


@pytest.mark.parametrize(
    ("serials_in", "commands", "concurrency", "error"),
    [
        ("SN000001", COMMANDS, 1, TypeError),
        ([1], COMMANDS, 1, TypeError),
        ([" "], COMMANDS, 1, ValueError),
        (["SN1"], {}, 1, ValueError),
        (["SN1"], [("w_ota", True)], 1, TypeError),
        (["SN1"], {"": True}, 1, ValueError),
        (["SN1"], COMMANDS, 0, ValueError),
        (["SN1"], COMMANDS, 1.5, TypeError),
    ],
)
async def test_bad_arguments_are_refused_before_any_read(
    serials_in: Any, commands: Any, concurrency: Any, error: type[Exception]
) -> None:
    fleet = FakeFleet({})
    reader = CommandStateReader(fleet.find_device, fleet.read_commands)
    with pytest.raises(error):
        await reconcile(reader, serials_in, commands, concurrency=concurrency)
    assert fleet.calls == []


async def test_preloading_the_device_list_saves_the_lookups() -> None:
    lost = serials(1, 40)
    async with Iris360Emulator(devices=60, seed=2, clock_start=T0) as emu, \
            client_for(emu) as iris:
        await lose(iris, emu, FaultProfile(drop_rate=1.0), lost)
        emu.stats.reset()
        reader = CommandStateReader.for_client(iris)
        assert await reader.preload(iris.devices.paginate(page_size=25), set(lost)) == 40
        verdicts = await reconcile(reader, [*lost, "SN999999"], COMMANDS)
        assert {v.kind for s, v in verdicts.items() if s != "SN999999"} == {
            VerdictKind.CONFIRMED}
        assert verdicts["SN999999"].detail == "device 'SN999999' not found"
        assert emu.stats.requests["devices.paginate"] == 3 + 1  # three pages, one look-up
        assert emu.stats.requests["entities.latest"] == 40
        assert reader.requests == 41


async def test_many_serials_learn_their_entities_from_the_device_list() -> None:
    lost = serials(1, 1200)
    async with Iris360Emulator(devices=2000, seed=2, clock_start=T0, token_ttl=1e7) as emu, \
            client_for(emu) as iris:
        await lose(iris, emu, FaultProfile(drop_rate=1.0), lost)
        emu.stats.reset()
        reader = CommandStateReader.for_client(iris)
        verdicts = await reconcile(reader, lost, COMMANDS, concurrency=8)
        assert {v.kind for v in verdicts.values()} == {VerdictKind.CONFIRMED}
        # four pages of 500 rows instead of 1,200 look-ups, then one read per serial
        assert emu.stats.requests["devices.paginate"] == 4
        assert emu.stats.requests["entities.latest"] == 1200
        assert reader.requests == 1204


async def test_few_serials_of_a_large_fleet_are_looked_up_one_by_one() -> None:
    lost = serials(1, 60)
    async with Iris360Emulator(devices=40_000, seed=2, clock_start=T0, token_ttl=1e7) as emu, \
            client_for(emu) as iris:
        await lose(iris, emu, FaultProfile(drop_rate=1.0), lost)
        emu.stats.reset()
        reader = CommandStateReader.for_client(iris)
        # 80 pages would cost more than 60 look-ups: the first page (which has them all,
        # the list being ordered by serial) is the only one read
        assert await reader.survey(lost) == 60
        assert emu.stats.requests["devices.paginate"] == 1
        few = await reconcile(reader, serials(1, 10), COMMANDS)  # known: no look-up
        assert {v.kind for v in few.values()} == {VerdictKind.CONFIRMED}
        assert emu.stats.requests["devices.paginate"] == 1
        assert await reader.survey(serials(30_001, 30_040)) == 0  # below SURVEY_MIN
        assert emu.stats.requests["devices.paginate"] == 1


async def test_a_list_page_that_fails_leaves_its_serials_to_one_by_one_look_ups() -> None:
    rows = {s: Device(id=i, serial=s, name=s, main_entity=DeviceMainEntity(id=i, urn="urn:" + s))
            for i, s in enumerate(serials(1, 1500))}
    looked_up: list[str] = []

    async def list_devices(page: int, size: int) -> tuple[Sequence[Device], int]:
        await anyio.lowlevel.checkpoint()
        if page == 2:
            raise Iris360Error("page 2 failed")
        return list(rows.values())[(page - 1) * size:page * size], len(rows)

    async def find_device(serial: str) -> Device | None:
        looked_up.append(serial)
        return rows[serial]

    async def read_commands(ref: EntityRef, names: Sequence[str]) -> list[EntityAttribute]:
        return [EntityCommand(id=n, pending=True, pending_value=True) for n in names]

    reader = CommandStateReader(find_device, read_commands, list_devices=list_devices)
    verdicts = await reconcile(reader, list(rows), COMMANDS)
    assert {v.kind for v in verdicts.values()} == {VerdictKind.CONFIRMED}
    assert looked_up == serials(501, 1000)  # the rows of the failed page
    assert reader.requests == 3 + 500 + 1500
