"""Paginators through the real client against the emulator (real sockets on 127.0.0.1).

Retries wait on a ManualClock, so retry back-off and Retry-After take no real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
import pytest
from emulator_support import client_for

from iris360_async import InternalServerError
from iris360_async.testing import FaultProfile, Iris360Emulator

EmulatorFactory = Callable[..., Awaitable[Iris360Emulator]]

DEVICES = 237


@pytest.fixture
async def emu(iris360_emulator_factory: EmulatorFactory) -> Iris360Emulator:
    return await iris360_emulator_factory(devices=DEVICES, seed=3)


@pytest.mark.parametrize("prefetch", [1, 3, 8])
async def test_devices_every_item_once_in_server_order(emu: Iris360Emulator, prefetch: int) -> None:
    async with client_for(emu) as client:
        paginator = client.devices.paginate(page_size=10, prefetch=prefetch)
        devices = await paginator.collect()
    ids = [d.id for d in devices]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids)) == DEVICES
    assert emu.stats.requests["devices.paginate"] == 24  # ceil(237 / 10), no page twice
    assert emu.stats.max_in_flight <= prefetch + 1  # + the login
    assert paginator.count == DEVICES
    assert paginator.next_page is None


async def test_descending_order_and_pages(emu: Iris360Emulator) -> None:
    async with client_for(emu) as client:
        paginator = client.devices.paginate(page_size=50, descending=True, prefetch=4)
        pages = [page async for page in paginator.pages()]
    assert [p.number for p in pages] == [1, 2, 3, 4, 5]
    assert [len(p.items) for p in pages] == [50, 50, 50, 50, 37]
    assert all(p.count == DEVICES for p in pages)
    ids = [d.id for p in pages for d in p.items]
    assert ids == sorted(ids, reverse=True)


async def test_entities_and_connectors_match_sequential_listing(emu: Iris360Emulator) -> None:
    async with client_for(emu) as client:
        entities_seq = await client.entities.paginate(page_size=9, prefetch=1).collect()
        entity_paginator = client.entities.paginate(page_size=9, prefetch=5)
        entities = await entity_paginator.collect()
        connectors_seq = await client.connectors.out.paginate(page_size=3, prefetch=1).collect()
        connectors = await client.connectors.out.paginate(page_size=3, prefetch=4).collect()
    assert [e.urn for e in entities] == [e.urn for e in entities_seq]
    assert len({e.urn for e in entities}) == len(entities) == entity_paginator.count
    assert len(entities) > 9 * 5
    assert [c.id for c in connectors] == [c.id for c in connectors_seq]
    assert len(connectors) == len({c.id for c in connectors}) > 3


async def test_retryable_faults_are_absorbed(emu: Iris360Emulator) -> None:
    emu.set_faults(
        FaultProfile(error_rate=0.25, error_status=503, rate_limit_rate=0.15, retry_after=2),
        endpoint="devices.paginate",
    )
    async with client_for(emu, max_retries=8) as client:
        devices = await client.devices.paginate(page_size=10, prefetch=6).collect()
    assert [d.id for d in devices] == sorted({d.id for d in devices})
    assert len(devices) == DEVICES
    responses = emu.stats.responses["devices.paginate"]
    assert responses[503] > 0  # the faults did happen ...
    assert responses[429] > 0
    assert responses[200] == 24  # ... and every page succeeded exactly once


@pytest.mark.parametrize("prefetch", [1, 4])
async def test_failed_page_resumes_from_token(emu: Iris360Emulator, prefetch: int) -> None:
    seen: list[int] = []
    async with client_for(emu, max_retries=0) as client:
        paginator = client.devices.paginate(page_size=10, prefetch=prefetch)

        async def consume() -> None:
            async for page in paginator.pages():
                seen.extend(d.id for d in page.items)
                if page.number == 2:  # the server starts failing (500: not retried)
                    emu.set_faults(FaultProfile(error_rate=1.0), endpoint="devices.paginate")

        async with paginator:
            with pytest.raises(InternalServerError):
                await consume()
        token = paginator.next_page
        assert token is not None
        assert token >= 3
        assert len(seen) == (token - 1) * 10  # every page before the failed one, in full
        emu.clear_faults()
        rest = await client.devices.paginate(page_size=10, start_page=token).collect()
    ids = seen + [d.id for d in rest]
    assert ids == sorted(set(ids))
    assert len(ids) == DEVICES


async def test_max_items_then_resume(emu: Iris360Emulator) -> None:
    async with client_for(emu) as client:
        first = client.devices.paginate(page_size=20, max_items=60, prefetch=8)
        head = await first.collect()
        assert len(head) == 60
        assert emu.stats.requests["devices.paginate"] == 3  # no page beyond max_items
        assert first.next_page == 4
        rest = await client.devices.paginate(page_size=20, start_page=first.next_page).collect()
    assert [d.id for d in head + rest] == sorted(d.id for d in head + rest)
    assert len(head + rest) == DEVICES


async def test_early_break_cancels_requests_in_flight(emu: Iris360Emulator) -> None:
    async with client_for(emu) as client:
        paginator = client.devices.paginate(page_size=10, prefetch=5)
        async with paginator:
            async for device in paginator:
                if device.id == 1:
                    # Later pages now hang on the server: only cancellation ends them.
                    emu.set_faults(
                        FaultProfile(slow_rate=1.0, slow_delay=600), endpoint="devices.paginate"
                    )
                    with anyio.fail_after(10):  # socket I/O: wait until they reach the server
                        while emu.stats.in_flight < 4:  # noqa: ASYNC110 - polling a counter
                            await anyio.sleep(0.005)
                    break
            assert paginator.in_flight == 4
        assert paginator.in_flight == 0
        assert paginator.next_page == 1
        # No fetch task and no hosting task is left (the emulator's handlers share the loop).
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("iris360-")]
    emu.clear_faults()
