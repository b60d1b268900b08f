"""Hostile ``…/paginate`` answers: a server that ignores the page number or the page size,
or stops before its own count. Unit level (fake fetch) and on the wire (``aioresponses``)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from aioresponses import CallbackResult, aioresponses
from emulator_support import client_for
from resources_support import ROOT, make_client, mocked

from iris360_async import Iris360Client
from iris360_async._pagination import AsyncPaginator
from iris360_async.errors import ResponseDecodeError
from iris360_async.models.common import Page
from iris360_async.testing import FaultProfile


@pytest.fixture
async def iris() -> AsyncIterator[Iris360Client]:
    async for client in make_client():
        yield client


@pytest.fixture
def mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    yield from mocked(monkeypatch)


async def test_connectors_without_count_and_a_repeated_page_do_not_loop_forever(
    iris: Iris360Client, mock: aioresponses
) -> None:
    # No count: the paginator goes on while pages are full. A server that ignores ``page``
    # answers page 1 forever; that must end in an error, not an endless listing.
    rows = [{"id": 1}, {"id": 2}]
    mock.post(ROOT + "/connectors/out/paginate", payload={"rows": rows}, repeat=True)
    paginator = iris.connectors.out.paginate(page_size=2, prefetch=3)
    seen: list[int] = []

    async def listing() -> None:
        async for connector in paginator:
            seen.append(int(connector.id))
            assert len(seen) < 100, "the listing never ends"

    with pytest.raises(ResponseDecodeError, match="page 2 repeats page 1"):
        await listing()
    assert seen == [1, 2]
    assert paginator.next_page == 2


@pytest.mark.parametrize("prefetch", [1, 4])
async def test_a_repeated_page_with_a_count_is_an_error_not_duplicates(prefetch: int) -> None:
    async def fetch(page: int, size: int) -> Page[int]:
        return Page(rows=list(range(size)), count=10 * size)  # ignores ``page``

    paginator = AsyncPaginator(fetch, page_size=3, prefetch=prefetch)
    with pytest.raises(ResponseDecodeError, match="page 2 repeats page 1"):
        await paginator.collect()
    assert paginator.next_page == 2


@pytest.mark.parametrize("prefetch", [1, 4])
async def test_a_page_larger_than_asked_is_an_error_not_duplicates(prefetch: int) -> None:
    # The server ignores the page size: page 2 would repeat half of page 1.
    async def fetch(page: int, size: int) -> Page[int]:
        first = (page - 1) * size
        return Page(rows=list(range(first, min(first + 2 * size, 35))), count=35)

    paginator = AsyncPaginator(fetch, page_size=10, prefetch=prefetch)
    with pytest.raises(ResponseDecodeError, match="page 1 held 20 items, more than the 10"):
        await paginator.collect()
    assert paginator.items_yielded == 0
    assert paginator.next_page == 1


async def test_an_empty_page_before_the_count_is_reached_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fetch(page: int, size: int) -> Page[int]:
        first = (page - 1) * size
        return Page(rows=list(range(first, first + size)) if page < 3 else [], count=100)

    caplog.set_level(logging.WARNING, logger="iris360_async.pagination")
    paginator = AsyncPaginator(fetch, page_size=10, prefetch=2)
    assert await paginator.collect() == list(range(20))
    assert paginator.next_page is None
    assert any("page 3 held 0 items" in r.getMessage() for r in caplog.records)


async def test_an_empty_last_page_at_the_count_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fetch(page: int, size: int) -> Page[int]:
        return Page(rows=[], count=0)

    caplog.set_level(logging.WARNING, logger="iris360_async.pagination")
    assert await AsyncPaginator(fetch, page_size=10).collect() == []
    assert not caplog.records


# -- broken bodies in the middle of a listing -------------------------------------------------


BODIES = {
    "html": ("<html><body>502 Bad Gateway</body></html>", "text/html"),
    "truncated": ('{"rows": [{"id": 21, "serial": "SN0021"', "application/json"),
    "wrong shape": ('{"rows": {"id": 21}, "count": 100}', "application/json"),
}


@pytest.mark.parametrize("body", sorted(BODIES))
@pytest.mark.parametrize("prefetch", [1, 4])
async def test_a_broken_body_on_page_3_of_10_raises_after_pages_1_and_2(
    iris: Iris360Client, mock: aioresponses, body: str, prefetch: int
) -> None:
    text, content_type = BODIES[body]

    def answer(url: object, **kwargs: Any) -> CallbackResult:
        page = json.loads(kwargs["data"])["page"]
        if page == 3:
            return CallbackResult(status=200, body=text, content_type=content_type)
        rows = [{"id": i, "serial": f"SN{i:04d}"} for i in range(page * 10 - 9, page * 10 + 1)]
        return CallbackResult(status=200, payload={"rows": rows, "count": 100})

    mock.post(ROOT + "/devices/paginate", callback=answer, repeat=True)
    paginator = iris.devices.paginate(page_size=10, prefetch=prefetch)
    seen: list[int] = []

    async def listing() -> None:
        async with paginator:
            async for device in paginator:
                seen.append(device.id)

    with pytest.raises(ResponseDecodeError) as caught:
        await listing()
    assert seen == list(range(1, 21))
    assert paginator.next_page == 3
    assert caught.value.status == 200
    assert "/devices/paginate" in (caught.value.url or "")
    assert paginator.in_flight == 0


@pytest.mark.parametrize("managed", [True, False])
async def test_cancelling_the_consumer_frees_every_connection(
    iris360_emulator_factory: Any, managed: bool
) -> None:
    emu = await iris360_emulator_factory(devices=100, seed=3)
    async with client_for(emu, connection_limit=4) as client:
        paginator = client.devices.paginate(page_size=10, prefetch=4)

        async def consume() -> None:
            async for device in paginator:
                if device.id == 1:
                    emu.set_faults(
                        FaultProfile(slow_rate=1.0, slow_delay=600), endpoint="devices.paginate"
                    )
                    with anyio.fail_after(10):
                        while emu.stats.in_flight < 3:  # noqa: ASYNC110 - polling a counter
                            await anyio.sleep(0.005)
                    scope.cancel()
                    await anyio.lowlevel.checkpoint()

        with anyio.CancelScope() as scope:
            if managed:
                async with paginator:
                    await consume()
            else:
                await consume()
        if managed:
            assert paginator.in_flight == 0
        else:  # a bare loop leaves the fetches to the iterator's finaliser: cancelled at once
            with anyio.fail_after(10):
                while paginator.in_flight:  # noqa: ASYNC110 - polling a counter
                    await anyio.sleep(0.005)
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("iris360-page")]
        emu.clear_faults()
        # The four connections are free again: a full listing over them completes.
        with anyio.fail_after(20):
            again = await client.devices.paginate(page_size=10, prefetch=4).collect()
        assert [d.id for d in again] == list(range(1, 101))
