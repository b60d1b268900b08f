"""Hostile servers and fakes against the token manager and the command lifecycle."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from test_bulk_reconcile import COMMANDS, Fleet, serials_
from test_core_auth import FakeAuthServer, jwt, manager

from iris360_async._bulk import send_commands
from iris360_async._bulk.journal import JournalLockedError, read_previous
from iris360_async._bulk.options import JobOptions
from iris360_async._bulk.reconcile import Reconciler, reconcile_journal
from iris360_async._lifecycle import (
    CommandStateReader,
    EntityRef,
    TrackState,
    VerdictKind,
    reconcile,
    reconcile_verdict,
    track_commands,
    track_state,
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


def _journal_of_unknowns() -> Fleet:
    """A fleet for a job whose eight answers are all lost: the even serials are never
    processed, the odd ones are applied; one re-send is lost again after being applied."""
    plan = {s: ["lost" if i % 2 == 0 else "drop"] for i, s in enumerate(serials_(8))}
    plan["SN0000"].append("drop")
    return Fleet(plan)


class Cancelling:
    """Cancels ``scope`` at the ``at``-th step of the fake server (a step: a read starts, a
    send starts, a send was applied)."""

    def __init__(self, fleet: Fleet, at: int) -> None:
        self.fleet, self.at, self.steps = fleet, at, 0
        self.scope: anyio.CancelScope | None = None
        send, find, read = fleet.send, fleet.find_device, fleet.read_commands

        async def send_(serials: list[str]) -> Any:
            self.step()
            await anyio.lowlevel.checkpoint()
            try:
                return await send(serials)
            finally:
                self.step()

        async def find_(serial: str) -> Any:
            self.step()
            return await find(serial)

        async def read_(ref: EntityRef, names: Sequence[str]) -> Any:
            self.step()
            return await read(ref, names)

        self.send, self.find, self.read = send_, find_, read_

    def step(self) -> None:
        self.steps += 1
        if self.steps == self.at and self.scope is not None:
            self.scope.cancel()


async def test_cancelled_at_every_step_of_a_journal_reconciliation_nothing_is_sent_twice(
    tmp_path: Path,
) -> None:
    at = 1
    while True:
        journal = tmp_path / f"job{at}.jsonl"
        fleet = _journal_of_unknowns()
        first = await send_commands(fleet.send, serials_(8), COMMANDS, chunk_size=1,
                                    journal=journal)
        assert first.counts["unknown"] == 8
        cut = Cancelling(fleet, at)
        options = JobOptions(journal=journal, chunk_size=1, concurrency=2)
        reader = CommandStateReader(cut.find, cut.read)
        with anyio.CancelScope() as scope:
            cut.scope = scope
            report = await reconcile_journal(Reconciler(cut.send, COMMANDS, options, reader))
        if not scope.cancel_called:  # ran to its end: every step was tried
            assert report.counts["sent"] == 8
            break
        again = await reconcile_journal(
            Reconciler(fleet.send, COMMANDS, JobOptions(journal=journal), fleet.reader()))
        assert again.counts["unknown"] == again.counts["failed"] == 0, at
        assert fleet.applied == Counter({s: 1 for s in serials_(8)}), at
        assert set(read_previous(journal, COMMANDS).values()) == {"sent"}, at
        last = await reconcile_journal(
            Reconciler(fleet.send, COMMANDS, JobOptions(journal=journal), fleet.reader()))
        assert last.total == 0
        at += 1
    assert at > 20


async def test_two_reconciliations_of_one_journal_at_once_one_is_refused(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "job.jsonl"
    fleet = _journal_of_unknowns()
    await send_commands(fleet.send, serials_(8), COMMANDS, chunk_size=1, journal=journal)
    results: list[object] = []

    async def run() -> None:
        try:
            results.append(await reconcile_journal(
                Reconciler(fleet.send, COMMANDS, JobOptions(journal=journal), fleet.reader())))
        except JournalLockedError as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        tg.start_soon(run)
    assert sum(isinstance(r, JournalLockedError) for r in results) == 1
    assert fleet.applied == Counter({s: 1 for s in serials_(8)})


async def test_a_deadline_of_zero_still_reads_every_device_once() -> None:
    # "Tracking ends at until, after one last sweep": with until=0 that sweep is the only one,
    # and it reads every device -- not just the first wave of concurrency * 8.
    fleet = SharedFleet({f"S{i}": f"urn:e:{i}" for i in range(300)},
                        {f"urn:e:{i}": PENDING_OTA for i in range(300)})
    clock = ManualClock()
    reader = CommandStateReader(fleet.find_device, fleet.read_commands)
    updates = [u async for u in track_commands(reader, list(fleet.entity_of), {"w_ota": True},
                                                until=0, concurrency=2, clock=clock)]
    last = updates[-1].summary
    assert last.finished
    assert not last.complete
    assert last.sweeps == 1
    read = {c.serial for u in updates for c in u.changes}
    assert read == set(fleet.entity_of)
    assert sum(1 for c in fleet.calls if c.startswith("entity:")) == 300
    assert clock.sleeps == []


async def test_a_deadline_reached_during_a_sweep_ends_it_between_waves() -> None:
    fleet = SharedFleet({f"S{i}": f"urn:e:{i}" for i in range(300)},
                        {f"urn:e:{i}": PENDING_OTA for i in range(300)})
    clock = ManualClock()

    async def slow_read(ref: EntityRef, names: Sequence[str]) -> Sequence[EntityAttribute]:
        clock.advance(1)  # every read takes a second of tracking time
        return await fleet.read_commands(ref, names)

    reader = CommandStateReader(fleet.find_device, slow_read)
    updates = [u async for u in track_commands(reader, list(fleet.entity_of), {"w_ota": True},
                                                until=20, concurrency=2, clock=clock)]
    assert updates[-1].summary.finished
    assert sum(1 for c in fleet.calls if c.startswith("entity:")) == 32  # two waves of 16


@pytest.mark.parametrize("pending", [False, True])
async def test_a_null_sent_is_not_proven_by_a_null_seen(pending: bool) -> None:
    # ``current_value: null`` is also what a command never set shows: no proof either way.
    state: list[EntityAttribute] = [EntityCommand(id="w_ota", pending=pending)]
    verdict = reconcile_verdict({"w_ota": None}, state)
    assert verdict.kind is VerdictKind.UNREADABLE
    assert "cannot be compared" in verdict.detail
    assert track_state({"w_ota": None}, state)[0] is TrackState.UNREADABLE
    # a null that replaced a real value is still told apart
    was = [EntityCommand(id="w_ota", pending=False, current_value=True)]
    assert reconcile_verdict({"w_ota": None}, was).kind is VerdictKind.NOT_APPLIED
