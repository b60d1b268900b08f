"""Hostile servers and fakes against the token manager and the command lifecycle."""

from __future__ import annotations

import json
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest
from test_core_auth import FakeAuthServer, jwt, manager

from iris360_async._lifecycle import (
    CommandStateReader,
    EntityRef,
    VerdictKind,
    reconcile,
    track_commands,
)
from iris360_async._retry import ManualClock
from iris360_async.models import Device, EntityAttribute, EntityCommand
from iris360_async.models.devices import DeviceMainEntity

# -- authentication -------------------------------------------------------------------------------


async def test_tokens_issued_already_expired_by_our_clock_are_not_refreshed_per_request() -> None:
    # The server's clock is ten minutes behind ours: every token it issues has an ``exp``
    # in our past. Proactive refresh cannot help; renewing on every request would double
    # the traffic (and hammer the refresh endpoint). Use the token until the server says 401.
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=-600)
    tm = manager(clock, server, username="ops@example.com", password="pw")
    first = await tm.get_token()
    for _ in range(10):
        assert await tm.get_token() == first
    assert (server.logins, server.refreshes) == (1, 0)
    # a rejection still renews, once
    assert await tm.token_rejected(first) not in (None, first)
    assert server.refreshes == 1


async def test_a_hundred_requests_at_expiry_of_a_skewed_token_make_one_refresh() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=-600)
    tm = manager(clock, server, token=jwt(clock.time() + 100), refresh_token="r0")
    clock.advance(100)
    server.release.clear()
    tokens: list[str | None] = []

    async def caller() -> None:
        tokens.append(await tm.get_token())

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        server.release.set()
    for _ in range(10):
        tokens.append(await tm.get_token())
    assert server.refreshes == 1
    assert len(set(tokens)) == 1


async def test_a_refresh_answering_the_same_token_is_not_repeated_before_a_401() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock)
    tm = manager(clock, server, username="ops@example.com", password="pw", refresh_margin=30)
    token = await tm.get_token()
    assert token is not None
    same = json.dumps({"token": token, "refreshToken": "refresh-1"}).encode()
    server.refresh_replies.extend([same] * 50)
    clock.advance(server.lifetime - 20)  # inside the margin: one proactive refresh
    assert await tm.get_token() == token
    assert server.refreshes == 1
    for _ in range(40):  # up to and past the expiry: the server gave what it has
        clock.advance(1)
        assert await tm.get_token() == token
    assert server.refreshes == 1
    # the server rejects it: one reactive refresh per rejection, no loop
    assert await tm.token_rejected(token) == token
    assert server.refreshes == 2


@pytest.mark.parametrize("body", [b"<html><body>Login ok</body></html>", b"", b"[]", b"null"])
async def test_a_login_answering_200_with_no_token_object_is_a_decode_error_without_secrets(
    body: bytes,
) -> None:
    from iris360_async.errors import ResponseDecodeError

    clock = ManualClock()
    server = FakeAuthServer(clock)
    server.login_replies.append(body)
    tm = manager(clock, server, username="ops@example.com", password="hunter2-pw")
    with pytest.raises(ResponseDecodeError) as info:
        await tm.get_token()
    assert "hunter2-pw" not in repr(info.value) + str(info.value)
    assert "/login" in str(info.value)
    assert await tm.get_token() is not None  # the next request logs in again


# -- the command lifecycle ------------------------------------------------------------------------


class SharedFleet:
    """Devices whose rows name an entity; ``state`` is per entity URN."""

    def __init__(self, entity_of: dict[str, str], state: dict[str, list[EntityAttribute]]) -> None:
        self.entity_of = entity_of
        self.state = state
        self.calls: list[str] = []

    def row(self, i: int, serial: str) -> Device:
        return Device(id=i, serial=serial, name=serial, main_entity=DeviceMainEntity(
            id=i, urn=self.entity_of[serial]))

    async def find_device(self, serial: str) -> Device | None:
        self.calls.append("device:" + serial)
        await anyio.lowlevel.checkpoint()
        if serial not in self.entity_of:
            return None
        return self.row(1, serial)

    async def list_devices(self, page: int, size: int) -> tuple[Sequence[Device], int]:
        self.calls.append(f"page:{page}")
        await anyio.lowlevel.checkpoint()
        rows = [self.row(i, s) for i, s in enumerate(self.entity_of)]
        return rows[(page - 1) * size:page * size], len(rows)

    async def read_commands(
        self, ref: EntityRef, names: Sequence[str]
    ) -> Sequence[EntityAttribute]:
        self.calls.append("entity:" + ref.urn)
        await anyio.lowlevel.checkpoint()
        return self.state[ref.urn]

    def reader(self) -> CommandStateReader:
        return CommandStateReader(self.find_device, self.read_commands,
                                  list_devices=self.list_devices)


PENDING_OTA = [EntityCommand(id="w_ota", pending=True, pending_value=True)]


@pytest.mark.parametrize("concurrency", [1, 8])
async def test_an_entity_shared_by_two_devices_proves_nothing_for_either(
    concurrency: int,
) -> None:
    # A's send arrived (its entity shows the command pending); B's was lost before the server
    # processed it -- but B's row names the same entity, so its state is A's.
    fleet = SharedFleet({"A": "urn:e:1", "B": "urn:e:1", "C": "urn:e:3"},
                        {"urn:e:1": PENDING_OTA, "urn:e:3": PENDING_OTA})
    verdicts = await reconcile(fleet.reader(), ["A", "C", "B"], {"w_ota": True},
                               concurrency=concurrency)
    assert verdicts["C"].kind is VerdictKind.CONFIRMED
    for serial in ("A", "B"):
        assert verdicts[serial].kind is VerdictKind.UNREADABLE
        assert "shared" in verdicts[serial].detail
        assert "urn:e:1" in verdicts[serial].detail


async def test_an_entity_shared_with_a_device_seen_in_the_list_proves_nothing() -> None:
    # 60 serials are reconciled: their rows come from the device list, where the entity of
    # SN0 is also the main entity of a device outside the job.
    entity_of = {f"SN{i}": f"urn:e:{i}" for i in range(60)}
    entity_of["OTHER"] = "urn:e:0"
    fleet = SharedFleet(entity_of, {f"urn:e:{i}": PENDING_OTA for i in range(60)})
    verdicts = await reconcile(fleet.reader(), [f"SN{i}" for i in range(60)], {"w_ota": True})
    assert verdicts["SN0"].kind is VerdictKind.UNREADABLE
    assert "shared" in verdicts["SN0"].detail
    assert {v.kind for s, v in verdicts.items() if s != "SN0"} == {VerdictKind.CONFIRMED}


async def test_tracking_devices_that_share_an_entity_does_not_call_them_applied() -> None:
    applied = [EntityCommand(id="w_ota", pending=False, current_value=True)]
    fleet = SharedFleet({"A": "urn:e:1", "B": "urn:e:1"}, {"urn:e:1": applied})
    updates = [u async for u in track_commands(fleet.reader(), ["A", "B"], {"w_ota": True},
                                                interval=0, concurrency=1)]
    last = updates[-1].summary
    assert (last.applied, last.unreadable, last.complete) == (0, 2, True)
