"""AsyncPaginator against in-memory fake listings (no HTTP, no real time)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iris360_async._pagination import AsyncPaginator, PageResult
from iris360_async.models.common import Page


class Boom(Exception):
    pass


class FakeListing:
    """A 1-based offset-paginated listing with controllable timing, counts and failures.

    ``delay(page)`` is the number of event-loop turns a request of that page takes, which
    makes pages complete out of order without sleeping for real.
    """

    def __init__(
        self,
        total: int,
        *,
        delay: Callable[[int], int] = lambda page: 3,
        fail: dict[int, int] | None = None,
        mutate: Callable[[FakeListing, int], None] | None = None,
        block: Callable[[int], bool] = lambda page: False,
    ) -> None:
        self.items = list(range(total))
        self.delay = delay
        self.fail = dict(fail or {})  # page -> number of times it fails
        self.mutate = mutate
        self.block = block
        self.gate = anyio.Event()
        self.calls: list[tuple[int, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []

    async def fetch(self, page: int, size: int) -> Page[int]:
        assert page >= 1, "page 0 must never be requested"
        self.calls.append((page, size))
        self.started.append(page)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.block(page):
                await self.gate.wait()
            for _ in range(self.delay(page)):
                await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(page)
            raise
        finally:
            self.in_flight -= 1
        if self.mutate is not None:
            self.mutate(self, page)
        if self.fail.get(page, 0) > 0:
            self.fail[page] -= 1
            raise Boom(f"page {page} failed")
        self.finished.append(page)
        start = (page - 1) * size
        return Page(rows=self.items[start : start + size], count=len(self.items))

    @property
    def pages_requested(self) -> list[int]:
        return [page for page, _ in self.calls]


async def drain(paginator: AsyncPaginator[int], into: list[int]) -> None:
    async for item in paginator:
        into.append(item)


def jitter(page: int) -> int:
    """Later pages often finish first."""
    return (page * 7) % 5


# -- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"page_size": 0},
        {"page_size": -3},
        {"page_size": 10, "max_items": -1},
        {"page_size": 10, "prefetch": 0},
        {"page_size": 10, "start_page": 0},
        {"page_size": 10, "start_page": -1},
    ],
)
async def test_bad_bounds_raise_value_error_before_any_request(kwargs: dict[str, int]) -> None:
    listing = FakeListing(10)
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the bound
        AsyncPaginator(listing.fetch, **kwargs)
    assert listing.calls == []


@pytest.mark.parametrize("kwargs", [{"page_size": 2.5}, {"page_size": True}, {"page_size": "5"}])
async def test_non_int_bounds_raise_type_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        AsyncPaginator(FakeListing(1).fetch, **kwargs)  # type: ignore[arg-type]


# -- every item once, in order --------------------------------------------------------------


@pytest.mark.parametrize("prefetch", [1, 2, 4, 8, 32])
@pytest.mark.parametrize(("total", "page_size"), [(0, 5), (1, 5), (5, 5), (6, 5), (997, 10)])
async def test_every_item_exactly_once_in_order(total: int, page_size: int, prefetch: int) -> None:
    listing = FakeListing(total, delay=jitter)
    paginator = AsyncPaginator(listing.fetch, page_size=page_size, prefetch=prefetch)
    items = [item async for item in paginator]
    assert items == list(range(total))
    expected_pages = list(range(1, max(1, -(-total // page_size)) + 1))
    assert sorted(listing.pages_requested) == expected_pages  # each page exactly once
    assert all(size == page_size for _, size in listing.calls)
    assert listing.max_in_flight <= prefetch
    assert paginator.next_page is None
    assert paginator.count == total
    assert not paginator.count_changed


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(0, 300),
    page_size=st.integers(1, 40),
    prefetch=st.integers(1, 12),
    delays=st.lists(st.integers(0, 6), min_size=1, max_size=16),
    max_items=st.none() | st.integers(0, 320),
)
def test_property_in_order_bounded_and_complete(
    total: int, page_size: int, prefetch: int, delays: list[int], max_items: int | None
) -> None:
    async def scenario() -> None:
        listing = FakeListing(total, delay=lambda page: delays[page % len(delays)])
        paginator = AsyncPaginator(
            listing.fetch, page_size=page_size, prefetch=prefetch, max_items=max_items
        )
        items = await paginator.collect()
        wanted = total if max_items is None else min(total, max_items)
        assert items == list(range(wanted))
        assert listing.max_in_flight <= prefetch
        assert len(set(listing.pages_requested)) == len(listing.pages_requested)
        # Never more pages than needed (the first page is always requested unless max_items=0).
        needed = -(-wanted // page_size)
        assert len(listing.calls) == (0 if max_items == 0 else max(needed, 1))

    asyncio.run(scenario())


async def test_pages_reports_numbers_and_count() -> None:
    listing = FakeListing(23, delay=jitter)
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=3)
    pages = [page async for page in paginator.pages()]
    assert [(p.number, p.items, p.count) for p in pages] == [
        (1, list(range(10)), 23),
        (2, list(range(10, 20)), 23),
        (3, [20, 21, 22], 23),
    ]
    assert all(isinstance(p, PageResult) for p in pages)
    assert paginator.next_page is None


async def test_empty_listing_sends_one_request() -> None:
    listing = FakeListing(0)
    paginator = AsyncPaginator(listing.fetch, page_size=50)
    assert await paginator.collect() == []
    assert listing.pages_requested == [1]
    assert paginator.count == 0
    assert paginator.next_page is None


async def test_stops_at_empty_page_even_if_count_says_more() -> None:
    async def fetch(page: int, size: int) -> Page[int]:
        rows = [page] if page <= 3 else []
        return Page(rows=rows, count=100)  # count lies

    paginator = AsyncPaginator(fetch, page_size=1, prefetch=4)
    assert await paginator.collect() == [1, 2, 3]
    assert paginator.next_page is None


# -- max_items, start_page, resume ----------------------------------------------------------


async def test_max_items_zero_sends_nothing() -> None:
    listing = FakeListing(10)
    paginator = AsyncPaginator(listing.fetch, page_size=3, max_items=0)
    assert await paginator.collect() == []
    assert listing.calls == []


@pytest.mark.parametrize(("max_items", "pages", "next_page"), [(7, 2, 2), (10, 2, 3), (15, 3, 4)])
async def test_max_items_limits_items_and_requests(
    max_items: int, pages: int, next_page: int
) -> None:
    listing = FakeListing(30, delay=jitter)
    paginator = AsyncPaginator(listing.fetch, page_size=5, max_items=max_items, prefetch=8)
    assert await paginator.collect() == list(range(max_items))
    assert sorted(listing.pages_requested) == list(range(1, pages + 1))
    # a page cut short by max_items is resumed from; a completed page is not
    assert paginator.next_page == next_page


async def test_max_items_cut_inside_page_resumes_at_that_page() -> None:
    listing = FakeListing(30)
    paginator = AsyncPaginator(listing.fetch, page_size=5, max_items=7)
    assert await paginator.collect() == list(range(7))
    assert paginator.next_page == 2  # page 2 was only partly delivered


async def test_max_items_beyond_total() -> None:
    listing = FakeListing(12)
    paginator = AsyncPaginator(listing.fetch, page_size=5, max_items=100, prefetch=4)
    assert await paginator.collect() == list(range(12))
    assert paginator.next_page is None


async def test_start_page_skips_earlier_pages() -> None:
    listing = FakeListing(50, delay=jitter)
    paginator = AsyncPaginator(listing.fetch, page_size=10, start_page=3, prefetch=4)
    assert await paginator.collect() == list(range(20, 50))
    assert sorted(listing.pages_requested) == [3, 4, 5]


async def test_start_page_past_the_end_yields_nothing() -> None:
    listing = FakeListing(5)
    paginator = AsyncPaginator(listing.fetch, page_size=10, start_page=4)
    assert await paginator.collect() == []
    assert listing.pages_requested == [4]
    assert paginator.next_page is None


async def test_resume_from_next_page_after_break_at_page_boundary() -> None:
    listing = FakeListing(40)
    async with AsyncPaginator(listing.fetch, page_size=10, prefetch=3) as paginator:
        seen = []
        async for item in paginator:
            seen.append(item)
            if item == 19:  # last item of page 2
                break
    assert paginator.next_page == 3
    rest = await AsyncPaginator(
        listing.fetch, page_size=10, start_page=paginator.next_page
    ).collect()
    assert seen + rest == list(range(40))


async def test_resume_after_break_mid_page_repeats_that_page_only() -> None:
    listing = FakeListing(40)
    async with AsyncPaginator(listing.fetch, page_size=10, prefetch=3) as paginator:
        seen = [item async for item in _take(paginator, 15)]
    assert paginator.next_page == 2
    assert paginator.next_page is not None
    rest = await AsyncPaginator(
        listing.fetch, page_size=10, start_page=paginator.next_page
    ).collect()
    assert rest == list(range(10, 40))
    assert sorted(set(seen + rest)) == list(range(40))


async def _take(paginator: AsyncPaginator[int], n: int):  # type: ignore[no-untyped-def]
    async for item in paginator:
        yield item
        n -= 1
        if n == 0:
            return


async def test_next_page_advances_with_pages() -> None:
    listing = FakeListing(25)
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=2)
    tokens = []
    async with paginator:
        async for page in paginator.pages():
            tokens.append((page.number, paginator.next_page))
    assert tokens == [(1, 2), (2, 3), (3, None)]


async def test_reiterating_continues_from_next_page() -> None:
    listing = FakeListing(30)
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=4)
    first = []
    async for item in paginator:
        first.append(item)
        if item == 9:
            break
    # A new iteration supersedes the abandoned one and continues from the resume token.
    assert await paginator.collect() == list(range(10, 30))
    assert first == list(range(10))
    await paginator.aclose()


# -- failures -------------------------------------------------------------------------------


async def test_failing_page_raises_after_earlier_pages_and_points_resume_at_it() -> None:
    listing = FakeListing(100, delay=jitter, fail={5: 1})
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=4)
    seen: list[int] = []
    with pytest.raises(Boom, match="page 5"):
        await drain(paginator, seen)
    assert seen == list(range(40))  # pages 1-4 delivered in full
    assert paginator.next_page == 5
    assert listing.in_flight == 0  # pages launched after 5 were cancelled and awaited
    rest = await AsyncPaginator(listing.fetch, page_size=10, start_page=5).collect()
    assert seen + rest == list(range(100))


async def test_failing_first_page() -> None:
    listing = FakeListing(10, fail={1: 1})
    paginator = AsyncPaginator(listing.fetch, page_size=10)
    with pytest.raises(Boom):
        await paginator.collect()
    assert paginator.next_page == 1
    assert await paginator.collect() == list(range(10))  # retry the same paginator


async def test_failure_with_pages_api() -> None:
    listing = FakeListing(50, fail={3: 1})
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=5)
    numbers: list[int] = []

    async def consume() -> None:
        async for page in paginator.pages():
            numbers.append(page.number)

    with pytest.raises(Boom):
        await consume()
    assert numbers == [1, 2]
    assert paginator.next_page == 3


# -- count changes --------------------------------------------------------------------------


def grow_after(page_no: int, extra: int) -> Callable[[FakeListing, int], None]:
    done = False

    def mutate(listing: FakeListing, page: int) -> None:
        nonlocal done
        if page == page_no and not done:
            done = True
            listing.items.extend(range(len(listing.items), len(listing.items) + extra))

    return mutate


def shrink_after(page_no: int, keep: int) -> Callable[[FakeListing, int], None]:
    def mutate(listing: FakeListing, page: int) -> None:
        if page == page_no:
            del listing.items[keep:]

    return mutate


@pytest.mark.parametrize("prefetch", [1, 3, 8])
async def test_count_grows_mid_iteration(prefetch: int, caplog: pytest.LogCaptureFixture) -> None:
    listing = FakeListing(50, mutate=grow_after(2, 27))
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=prefetch)
    with caplog.at_level(logging.WARNING, logger="iris360_async.pagination"):
        items = await paginator.collect()
    # Items appended at the end: every item of the grown listing exactly once.
    assert items == list(range(77))
    assert len(set(listing.pages_requested)) == len(listing.pages_requested)
    assert paginator.count_changed
    assert paginator.count == 77
    assert paginator.next_page is None
    changed = [r for r in caplog.records if "count changed" in r.getMessage()]
    assert len(changed) == 1  # one warning, however often the count moves
    assert changed[0].levelno == logging.WARNING


@pytest.mark.parametrize("prefetch", [1, 3, 8])
async def test_count_shrinks_mid_iteration(prefetch: int) -> None:
    listing = FakeListing(100, mutate=shrink_after(2, 35))
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=prefetch)
    items = await paginator.collect()
    assert items == list(range(35))
    assert len(set(listing.pages_requested)) == len(listing.pages_requested)
    assert paginator.count_changed
    assert paginator.next_page is None
    assert listing.in_flight == 0


async def test_count_fluctuating_terminates_without_repeating_pages() -> None:
    state = {"n": 0}

    async def fetch(page: int, size: int) -> Page[int]:
        state["n"] += 1
        assert state["n"] < 1000, "runaway pagination"
        await anyio.lowlevel.checkpoint()
        count = 60 if page % 2 else 25  # flips every page
        start = (page - 1) * size
        return Page(rows=list(range(start, min(start + size, count))), count=count)

    paginator = AsyncPaginator(fetch, page_size=10, prefetch=4)
    pages = [p.number async for p in paginator.pages()]
    assert pages == sorted(set(pages))
    assert paginator.count_changed


# -- concurrency, cancellation, cleanup -----------------------------------------------------


@pytest.mark.parametrize("prefetch", [1, 2, 5, 16])
async def test_in_flight_never_exceeds_prefetch(prefetch: int) -> None:
    listing = FakeListing(500, delay=lambda page: 1 + page % 7)
    paginator = AsyncPaginator(listing.fetch, page_size=7, prefetch=prefetch)
    async for _ in paginator:
        assert listing.in_flight <= prefetch
        assert paginator.in_flight <= prefetch
    assert listing.max_in_flight <= prefetch
    if prefetch > 1:
        assert listing.max_in_flight == prefetch  # the window is actually used


async def test_prefetch_one_is_strictly_sequential() -> None:
    listing = FakeListing(50)
    paginator = AsyncPaginator(listing.fetch, page_size=5, prefetch=1)
    async for item in paginator:
        page = item // 5 + 1
        # nothing beyond the page being consumed has been requested
        assert listing.pages_requested[-1] == page
    assert listing.max_in_flight == 1


async def test_buffered_pages_bounded_by_prefetch() -> None:
    listing = FakeListing(300, delay=lambda page: 0)
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=4)
    async for page in paginator.pages():
        for _ in range(20):  # a slow consumer lets every launched fetch finish
            await anyio.lowlevel.checkpoint()
        # requested but not yet handed over, plus the page held by the consumer
        ahead = len(listing.started) - page.number
        assert ahead + 1 <= 4


async def test_prefetch_overlaps_requests() -> None:
    listing = FakeListing(80, block=lambda page: page > 1)
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=4)
    async with paginator:
        iterator = paginator.pages()
        first = await iterator.__anext__()
        assert first.number == 1
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        # page 1 still held by the consumer: three more requests are in flight
        assert sorted(listing.started) == [1, 2, 3, 4]
        assert listing.in_flight == 3
        listing.gate.set()
        rest = [p.number async for p in iterator]
    assert rest == list(range(2, 9))


async def test_break_inside_async_with_cancels_outstanding_fetches() -> None:
    listing = FakeListing(1000, block=lambda page: page > 1)
    tasks_before = asyncio.all_tasks()
    async with AsyncPaginator(listing.fetch, page_size=10, prefetch=6) as paginator:
        async for item in paginator:
            if item == 3:
                for _ in range(3):
                    await anyio.lowlevel.checkpoint()  # let the prefetched requests start
                break
        assert listing.in_flight == 5  # still running until the block exits
    assert sorted(listing.cancelled) == [2, 3, 4, 5, 6]
    assert listing.in_flight == 0
    assert asyncio.all_tasks() == tasks_before
    assert paginator.next_page == 1


async def test_aclose_cancels_outstanding_fetches() -> None:
    listing = FakeListing(1000, block=lambda page: page > 1)
    tasks_before = asyncio.all_tasks()
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=4)
    async for _ in paginator:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()  # let the prefetched requests start
        await paginator.aclose()
    assert sorted(listing.cancelled) == [2, 3, 4]
    assert listing.in_flight == 0
    assert asyncio.all_tasks() == tasks_before
    await paginator.aclose()  # idempotent


async def test_bare_break_is_cleaned_up_by_the_generator_finaliser() -> None:
    listing = FakeListing(1000, block=lambda page: page > 1)
    tasks_before = asyncio.all_tasks()
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=4)
    async for _ in paginator:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()  # let the prefetched requests start
        assert listing.in_flight == 3
        break
    gc.collect()
    for _ in range(10):
        await anyio.lowlevel.checkpoint()
    assert sorted(listing.cancelled) == [2, 3, 4]
    assert listing.in_flight == 0
    assert asyncio.all_tasks() == tasks_before


async def test_consumer_cancellation_cancels_fetches() -> None:
    listing = FakeListing(1000, block=lambda page: page > 1)
    tasks_before = asyncio.all_tasks()
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=3)
    async with anyio.create_task_group() as tg:
        tg.start_soon(paginator.collect)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert listing.in_flight == 3  # page 1 consumed, pages 2-4 blocked
        tg.cancel_scope.cancel()
    assert sorted(listing.cancelled) == [2, 3, 4]
    assert listing.in_flight == 0
    assert asyncio.all_tasks() == tasks_before


async def test_exception_in_consumer_body_cleans_up() -> None:
    listing = FakeListing(1000, block=lambda page: page > 1)
    tasks_before = asyncio.all_tasks()

    async def consume() -> None:
        async with AsyncPaginator(listing.fetch, page_size=10, prefetch=3) as paginator:
            async for _ in paginator:
                raise KeyError("consumer failed")

    with pytest.raises(KeyError):
        await consume()
    assert listing.in_flight == 0
    assert asyncio.all_tasks() == tasks_before


async def test_concurrent_iteration_of_one_paginator_is_refused() -> None:
    listing = FakeListing(100, block=lambda page: True)
    paginator = AsyncPaginator(listing.fetch, page_size=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(paginator.collect)
        await anyio.lowlevel.checkpoint()
        with pytest.raises(RuntimeError, match="already being iterated"):
            await paginator.collect()
        listing.gate.set()
    assert paginator.next_page is None


def test_repr_has_no_surprises() -> None:
    paginator = AsyncPaginator(FakeListing(1).fetch, page_size=3, max_items=5)
    assert "page_size=3" in repr(paginator)
    assert "max_items=5" in repr(paginator)


async def test_open_iterator_blocks_a_second_iteration_until_closed() -> None:
    listing = FakeListing(30)
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=2)
    pages = paginator.pages()
    first = await pages.__anext__()
    assert first.number == 1
    with pytest.raises(RuntimeError, match="already being iterated"):
        await paginator.collect()
    await paginator.aclose()  # closes `pages`
    with pytest.raises(StopAsyncIteration):
        await pages.__anext__()
    assert paginator.next_page == 2
    assert await paginator.collect() == list(range(10, 30))


async def test_aclose_from_another_task_ends_the_iteration() -> None:
    listing = FakeListing(1000, block=lambda page: page > 1)
    paginator = AsyncPaginator(listing.fetch, page_size=10, prefetch=3)
    seen: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(drain, paginator, seen)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert listing.in_flight == 3  # the consumer waits for page 2
        await paginator.aclose()
    assert seen == list(range(10))
    assert sorted(listing.cancelled) == [2, 3, 4]
    assert listing.in_flight == 0
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("iris360-")]


async def test_short_page_before_the_end_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def capped(page: int, size: int) -> Page[int]:  # a server that caps pages at 3 items
        start = (page - 1) * 3
        return Page(rows=list(range(start, min(start + 3, 20))), count=20)

    paginator = AsyncPaginator(capped, page_size=5, prefetch=2)
    with caplog.at_level(logging.WARNING, logger="iris360_async.pagination"):
        items = await paginator.collect()
    assert len(items) == 12  # 4 pages of 3: the listing is cut short ...
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1  # ... and said so, once
    assert "may cap the page size" in messages[0]
