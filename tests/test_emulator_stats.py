"""Emulator counters, latency model and capacity limit."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from iris360_async.testing import Iris360Emulator, LatencyModel


async def bulk(session: aiohttp.ClientSession, emu: Iris360Emulator, token: str,
               serials: list[str]) -> int:
    async with session.post(emu.api_url + "/devices/sendCommandsBulk",
                            json={"device_serials": serials, "w_reboot": True},
                            headers={"Authorization": f"Bearer {token}"}) as resp:
        await resp.read()
        return resp.status


async def test_requests_and_statuses_per_endpoint() -> None:
    async with Iris360Emulator(devices=5) as emu, aiohttp.ClientSession() as session:
        token = emu.issue_token().token
        assert await bulk(session, emu, token, ["SN000001"]) == 207
        assert await bulk(session, emu, token, []) == 400
        assert await bulk(session, emu, "bad", ["SN000001"]) == 401
        stats = emu.stats
        assert stats.requests["devices.bulk"] == 3
        assert dict(stats.responses["devices.bulk"]) == {207: 1, 400: 1, 401: 1}
        assert stats.unauthenticated == 1
        assert stats.in_flight == 0
        assert stats.max_in_flight == 1
        snap = stats.snapshot()
        assert snap["requests"] == {"devices.bulk": 3}
        assert snap["total_applications"] == 1
        stats.reset()
        assert stats.requests == {}
        assert stats.responses == {}
        assert stats.applications("SN000001") == 0


async def test_capacity_queues_requests_beyond_the_limit() -> None:
    latency = LatencyModel(base=0.05)
    async with Iris360Emulator(devices=20, latency=latency, capacity=2) as emu, \
            aiohttp.ClientSession() as session:
        token = emu.issue_token().token
        statuses = await asyncio.gather(
            *(bulk(session, emu, token, [f"SN{i:06d}"]) for i in range(1, 9))
        )
        assert statuses == [207] * 8
        assert emu.stats.max_in_flight == 8
        assert emu.stats.max_processing == 2
        assert emu.stats.processing == 0


async def test_latency_grows_with_items() -> None:
    latency = LatencyModel(base=0.0, per_item=0.01)
    async with Iris360Emulator(devices=20, latency=latency) as emu, \
            aiohttp.ClientSession() as session:
        token = emu.issue_token().token
        started = time.perf_counter()
        await bulk(session, emu, token, [f"SN{i:06d}" for i in range(1, 11)])
        assert time.perf_counter() - started >= 0.1  # at least 10 x 10 ms, never less
        emu.latency = LatencyModel()
        assert emu.latency.zero


async def test_memory_is_bounded_by_the_fleet() -> None:
    async with Iris360Emulator(devices=50) as emu, aiohttp.ClientSession() as session:
        token = emu.issue_token().token
        serials = [f"SN{i:06d}" for i in range(1, 51)]
        for _ in range(30):
            await bulk(session, emu, token, serials)
        counts = emu.fleet.ledger.counts["w_reboot"]
        assert len(counts) == 50
        assert emu.stats.max_applications() == 30
        assert len(emu.stats.command_applications) == 50


def test_fleet_is_seeded() -> None:
    a = Iris360Emulator(devices=200, seed=9)
    b = Iris360Emulator(devices=200, seed=9)
    c = Iris360Emulator(devices=200, seed=10)
    assert a.fleet.type_index == b.fleet.type_index
    assert a.fleet.type_index != c.fleet.type_index
    assert a.fleet.serials[:2] == ["SN000001", "SN000002"]
    legacy = sum(1 for t in a.fleet.type_index if t == 3)
    assert 0 < legacy < 30  # about 5 %


def test_ledger_tracks_pending_values_and_exclusions() -> None:
    emu = Iris360Emulator(devices=4)
    ledger = emu.fleet.ledger
    serials = emu.fleet.serials
    assert ledger.apply(serials[:3], {"w_sleep": 10}, excluded=[serials[2]])
    assert ledger.apply([serials[1]], {"w_sleep": 20})
    assert ledger.apply([serials[0], serials[2]], {"w_sleep": 30}, excluded=[serials[0]])
    assert [ledger.pending(s) for s in serials] == [
        {"w_sleep": 10}, {"w_sleep": 20}, {"w_sleep": 30}, {}]
    assert [emu.stats.applications(s, "w_sleep") for s in serials] == [1, 2, 1, 0]
    assert not ledger.apply([serials[0], "UNKNOWN"], {"w_sleep": 40})
    assert emu.stats.applications(serials[0], "w_sleep") == 1
    assert "UNKNOWN" not in ledger.counts["w_sleep"]
    ledger.acknowledge(serials[1])
    assert ledger.pending(serials[1]) == {}
    assert ledger.apply([serials[1]], {"w_sleep": 50})
    assert ledger.pending(serials[1]) == {"w_sleep": 50}
    ledger.acknowledge()
    assert all(ledger.pending(s) == {} for s in serials)
