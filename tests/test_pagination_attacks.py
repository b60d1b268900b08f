"""Hostile ``…/paginate`` answers: a server that ignores the page number or the page size,
or stops before its own count. Unit level (fake fetch) and on the wire (``aioresponses``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from aioresponses import aioresponses
from resources_support import ROOT, make_client, mocked

from iris360_async import Iris360Client
from iris360_async._pagination import AsyncPaginator
from iris360_async.errors import ResponseDecodeError
from iris360_async.models.common import Page


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
