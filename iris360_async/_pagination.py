"""Concurrent, order-preserving pagination over the API's ``…/paginate`` endpoints.

The server pages are 1-based and every response carries ``{rows, count}`` (API reference §3).
:class:`AsyncPaginator` fetches the first page alone (it tells ``count``), then keeps up to
``prefetch`` further page requests in flight and hands pages over strictly in page order.

Lifecycle. Fetches beyond the first page run as child tasks of an anyio task group that the
paginator owns for the duration of one iteration (hosted by one task named
``iris360-paginator``; the fetches are named ``iris360-page-N``). The group is shut down --
outstanding fetches cancelled *and awaited* -- when the iteration ends, fails, is closed, or a
new iteration of the same paginator starts. The iterators are plain objects, not async
generators, so nothing is left to Python's async-generator finaliser. Breaking out of a bare
``async for`` drops the iterator: its finaliser requests cancellation of the outstanding
fetches at once, but cannot wait for them. For deterministic cleanup iterate inside
``async with``::

    async with client.devices.paginate(page_size=500) as devices:
        async for device in devices:
            if done(device):
                break          # fetches in flight are cancelled and awaited at block exit

or call :meth:`AsyncPaginator.aclose` yourself. ``collect()`` always cleans up before it
returns. Cancelling the consuming task cancels the fetches too.

Resume. :attr:`AsyncPaginator.next_page` is the page to fetch next: it advances when the last
item of a page is handed over, stays on a page that failed (the exception propagates after all
earlier pages were delivered) and becomes ``None`` once the listing is exhausted. Pass it as
``start_page`` to a new paginator to continue. A page abandoned half-way (``break`` or
``max_items``) is not advanced past, so resuming repeats the items of that page already seen.

Changing results. Offset pagination cannot be a snapshot. If the server's ``count`` changes
while iterating, the paginator keeps going with the newest count, never requests a page twice,
always terminates (at an empty page or when the newest count is reached), sets
:attr:`AsyncPaginator.count_changed` and logs one warning on the ``iris360_async.pagination``
logger. Items inserted or removed *before* the current position shift between pages, so one
may be seen twice or not at all; order by a unique column to keep this to concurrent writes.
An empty page before ``count`` is reached ends the listing with a warning.

Hostile answers. A page with more rows than ``page_size``, or a non-empty page equal to the one
before it (the server ignores the page size or the page number), raises
:class:`~iris360_async.errors.ResponseDecodeError` rather than handing items over twice or
listing forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Generic, TypeVar

import anyio
import anyio.abc
import msgspec

from .errors import ResponseDecodeError
from .models.common import Page

__all__ = ["AsyncPaginator", "FetchPage", "PageResult"]

T = TypeVar("T")

logger = logging.getLogger("iris360_async.pagination")

FetchPage = Callable[[int, int], Awaitable[Page[T]]]
"""``fetch(page_number, page_size)``: one page request (1-based page number)."""


class PageResult(msgspec.Struct, Generic[T], frozen=True):
    """One page as handed over by :meth:`AsyncPaginator.pages`.

    Attributes:
        number: 1-based page number on the server.
        items: The page's rows (cut short when ``max_items`` ends inside the page).
        count: Total number of matching items the server reported with this page.
    """

    number: int
    items: list[T]
    count: int


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _Slot(Generic[T]):
    """A page request launched ahead of the consumer."""

    __slots__ = ("done", "error", "number", "page")

    def __init__(self, number: int) -> None:
        self.number = number
        self.done = anyio.Event()
        self.page: Page[T] | None = None
        self.error: Exception | None = None


class _Run(Generic[T]):
    """State of one iteration: the prefetch window and the task group hosting it."""

    def __init__(self, owner: AsyncPaginator[T], first_page: int) -> None:
        self._owner = owner
        self._cursor = first_page  # next page to hand over
        self._next_launch = first_page + 1
        self._slots: dict[int, _Slot[T]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._host_done: anyio.Event | None = None
        self._host_task: asyncio.Task[None] | None = None
        self._finished = False
        self._seen_first = False
        self._previous: list[T] | None = None  # rows of the page handed over last

    # -- task hosting -------------------------------------------------------------------

    async def _ensure_host(self) -> anyio.abc.TaskGroup:
        if self._tg is not None:
            return self._tg
        ready = anyio.Event()
        done = anyio.Event()
        self._host_done = done

        async def host() -> None:
            try:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    ready.set()
                    if not self._finished:  # closed before this task first ran
                        await anyio.sleep_forever()
            finally:
                done.set()

        self._host_task = asyncio.get_running_loop().create_task(host(), name="iris360-paginator")
        await ready.wait()
        assert self._tg is not None
        return self._tg

    async def _fetch_into(self, slot: _Slot[T]) -> None:
        # Cancellation comes from the hosting task group's scope (see ``close``).
        owner = self._owner
        owner._in_flight += 1
        try:
            slot.page = await owner._fetch(slot.number, owner.page_size)
        except Exception as exc:  # handed to the consumer in page order
            slot.error = exc
        finally:
            owner._in_flight -= 1
            slot.done.set()

    async def _launch(self, limit: int, held: int) -> None:
        """Start fetches for pages up to ``limit`` while the window has room.

        ``held`` is the number of pages outside ``_slots`` that still occupy the window (the
        page the consumer holds, or the page fetched in the consumer's own task).
        """
        owner = self._owner
        while len(self._slots) + held < owner.prefetch and self._next_launch <= limit:
            tg = await self._ensure_host()
            if self._finished:  # closed while the host was starting
                return
            slot: _Slot[T] = _Slot(self._next_launch)
            self._slots[slot.number] = slot
            self._next_launch += 1
            tg.start_soon(self._fetch_into, slot, name=f"iris360-page-{slot.number}")

    async def close(self) -> None:
        """Cancel outstanding fetches and wait until the hosting task group has exited."""
        self._finished = True
        self._slots.clear()
        done = self._host_done
        if done is not None:
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
            # A host that has not run yet sees ``_finished`` and exits by itself.
            with anyio.CancelScope(shield=True):
                await done.wait()
            self._tg = None
            self._host_task = None
            self._host_done = None

    def cancel_nowait(self) -> None:
        """Synchronous best effort used when an iterator is dropped without being closed."""
        self._finished = True
        self._slots.clear()
        if self._tg is not None:
            with contextlib.suppress(Exception):  # e.g. the event loop is already closed
                self._tg.cancel_scope.cancel()

    # -- the in-order consumer side -------------------------------------------------------

    async def _fetch_inline(self, number: int) -> Page[T]:
        owner = self._owner
        owner._in_flight += 1
        try:
            return await owner._fetch(number, owner.page_size)
        finally:
            owner._in_flight -= 1

    async def _get(self, number: int) -> Page[T] | None:
        slot = self._slots.pop(number, None)
        if slot is None:
            # First page, prefetch=1, or a page beyond the window: fetch in our own task
            # while the window (one slot taken by this request) fills behind it.
            self._next_launch = max(self._next_launch, number + 1)
            if self._seen_first:
                await self._launch(self._limit(), held=1)
            return await self._fetch_inline(number)
        await self._launch(self._limit(), held=1)
        await slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.page  # None only if the run was closed meanwhile

    async def next_page(self) -> PageResult[T] | None:
        """Return the next page in order, or ``None`` when the iteration is over."""
        owner = self._owner
        if self._finished:
            return None
        number = self._cursor
        try:
            page = await self._get(number)
            if page is not None:
                self._check(number, page.rows)
        except Exception:
            owner.next_page = number
            await self.close()
            raise
        if page is None or self._finished:
            return None
        self._seen_first = True
        owner._observe_count(number, page.count)
        rows = page.rows
        self._previous = rows
        if not rows:
            if (number - 1) * owner.page_size < page.count:
                owner._short_page(number, 0)
            owner._pending_next = None
            owner.next_page = None
            await self.close()
            return None
        remaining = owner._remaining()
        cut = remaining is not None and len(rows) > remaining
        if cut:
            rows = rows[:remaining]
        owner._yielded += len(rows)
        exhausted = number * owner.page_size >= page.count
        if not exhausted and len(page.rows) < owner.page_size:
            owner._short_page(number, len(page.rows))
        if cut:
            owner._pending_next = number
        elif exhausted:
            owner._pending_next = None
        else:
            owner._pending_next = number + 1
        self._cursor = number + 1
        if exhausted or owner._remaining() == 0:
            await self.close()
        else:
            # The consumer now holds this page: it keeps one slot of the window.
            await self._launch(self._limit(), held=1)
        return PageResult(number=number, items=rows, count=page.count)

    def _check(self, number: int, rows: list[T]) -> None:
        """Refuse a page that would hand items over twice (the server ignores a parameter)."""
        size = self._owner.page_size
        if len(rows) > size:
            raise ResponseDecodeError(
                f"page {number} held {len(rows)} items, more than the {size} asked for: the "
                "server ignores the page size, so pages would overlap",
                path="$.rows",
            )
        if rows and rows == self._previous:
            raise ResponseDecodeError(
                f"page {number} repeats page {number - 1}: the server ignores the page "
                "number, so the listing would never end",
                path="$.rows",
            )

    def _limit(self) -> int:
        """Last page number worth requesting given the newest count and ``max_items``."""
        owner = self._owner
        limit = _ceil_div(owner.count or 0, owner.page_size)
        remaining = owner._remaining()
        if remaining is not None:
            # Items still owed after the pages already handed over (up to cursor - 1).
            limit = min(limit, self._cursor - 1 + _ceil_div(remaining, owner.page_size))
        return limit


class _PageIterator(Generic[T]):
    """Async iterator of :class:`PageResult`; one iteration of an :class:`AsyncPaginator`.

    A plain class rather than an async generator, so that nothing is left to Python's
    async-generator finaliser: closing is explicit (``aclose``) or happens when the
    iteration ends, fails or is dropped.
    """

    def __init__(self, owner: AsyncPaginator[T]) -> None:
        self._owner = owner
        self._run: _Run[T] | None = None
        self._closed = False

    def __aiter__(self) -> _PageIterator[T]:
        return self

    async def __anext__(self) -> PageResult[T]:
        if self._closed:
            raise StopAsyncIteration
        run = self._run
        if run is None:
            run = await self._owner._begin(self)
            if run is None:
                self._closed = True
                raise StopAsyncIteration
            self._run = run
        try:
            result = await run.next_page()
        except BaseException:
            await self.aclose()
            raise
        if result is None:
            await self.aclose()
            raise StopAsyncIteration
        return result

    async def aclose(self) -> None:
        """Cancel outstanding fetches and wait for them; the iteration is then over."""
        self._closed = True
        run, self._run = self._run, None
        if run is not None:
            self._owner._release(run)
            await run.close()

    def __del__(self) -> None:
        run = self._run
        if run is not None:
            run.cancel_nowait()


class _ItemIterator(Generic[T]):
    """Async iterator of items, built on :class:`_PageIterator`."""

    def __init__(self, owner: AsyncPaginator[T]) -> None:
        self._owner = owner
        self._pages = _PageIterator(owner)
        self._items: list[T] = []
        self._index = 0

    def __aiter__(self) -> _ItemIterator[T]:
        return self

    async def __anext__(self) -> T:
        while self._index >= len(self._items):
            page = await self._pages.__anext__()
            self._items = page.items
            self._index = 0
        item = self._items[self._index]
        self._index += 1
        if self._index == len(self._items):
            # The whole page has been delivered once its last item is out.
            self._owner.next_page = self._owner._pending_next
            self._items = []
            self._index = 0
        return item

    async def aclose(self) -> None:
        """Cancel outstanding fetches and wait for them; the iteration is then over."""
        self._items = []
        await self._pages.aclose()


class _PagesView(_PageIterator[T]):
    """Page iteration that advances the resume token page by page."""

    async def __anext__(self) -> PageResult[T]:
        result = await super().__anext__()
        self._owner.next_page = self._owner._pending_next
        return result


class AsyncPaginator(Generic[T]):
    """Iterate a ``…/paginate`` listing with concurrent, order-preserving prefetch.

    Args:
        fetch: ``fetch(page_number, page_size) -> Page[T]``; the page number is 1-based.
            It should already carry the client's retries.
        page_size: Items per page requested from the server (>= 1).
        start_page: First page to fetch (>= 1); pass a previous :attr:`next_page` to resume.
        max_items: Stop after this many items (>= 0; ``None`` = all). ``0`` sends no request.
        prefetch: Maximum number of page requests in flight at once (>= 1). ``1`` is strictly
            sequential. Pages fetched but not yet consumed count too, so at most
            ``prefetch * page_size`` items are held in memory.

    Raises:
        ValueError: A bound is out of range (raised here, before any request).
        TypeError: A bound is not an int.

    Iterating (``async for``, :meth:`pages`, :meth:`collect`) starts at :attr:`next_page`, so
    iterating again continues where the previous iteration stopped (e.g. ``collect()`` after a
    ``break``, or after an error to retry the failed page). Two iterations cannot be open at
    the same time: finish or :meth:`aclose` one before starting the next.

    Example:
        >>> async with client.devices.paginate(page_size=500) as devices:  # doctest: +SKIP
        ...     async for device in devices:
        ...         print(device.serial)
    """

    def __init__(
        self,
        fetch: FetchPage[T],
        *,
        page_size: int,
        start_page: int = 1,
        max_items: int | None = None,
        prefetch: int = 4,
    ) -> None:
        self.page_size = _check_int("page_size", page_size, 1)
        self.start_page = _check_int("start_page", start_page, 1)
        self.max_items = None if max_items is None else _check_int("max_items", max_items, 0)
        self.prefetch = _check_int("prefetch", prefetch, 1)
        self._fetch = fetch
        self.next_page: int | None = self.start_page
        """Resume token: the page to fetch next, ``None`` once the listing is exhausted."""
        self.count: int | None = None
        """Total number of items reported by the newest page handed over so far."""
        self.count_changed = False
        """``True`` if the server's ``count`` changed while iterating (see module docs)."""
        self._yielded = 0
        self._pending_next: int | None = self.start_page
        self._in_flight = 0
        self._warned_short = False
        # The paginator must not keep an abandoned iterator alive (its ``__del__`` cancels the
        # fetches after a bare ``break``), so it holds the iterator weakly and the run strongly.
        self._current: weakref.ref[_PageIterator[T]] | None = None
        self._current_run: _Run[T] | None = None

    def __repr__(self) -> str:
        return (
            f"<AsyncPaginator page_size={self.page_size} start_page={self.start_page} "
            f"max_items={self.max_items} prefetch={self.prefetch} next_page={self.next_page} "
            f"count={self.count}>"
        )

    @property
    def items_yielded(self) -> int:
        """Number of items handed over so far."""
        return self._yielded

    @property
    def in_flight(self) -> int:
        """Number of page requests currently in flight."""
        return self._in_flight

    # -- internal bookkeeping ---------------------------------------------------------------

    def _remaining(self) -> int | None:
        if self.max_items is None:
            return None
        return max(self.max_items - self._yielded, 0)

    def _observe_count(self, number: int, count: int) -> None:
        if self.count is not None and count != self.count:
            if not self.count_changed:
                logger.warning(
                    "result count changed during pagination from %d to %d at page %d; "
                    "items may have shifted between pages",
                    self.count,
                    count,
                    number,
                )
            self.count_changed = True
        self.count = count

    def _short_page(self, number: int, rows: int) -> None:
        if not self._warned_short:
            self._warned_short = True
            logger.warning(
                "page %d held %d items although %d were asked for and more remain; the server "
                "may cap the page size (then items are skipped: use a smaller page_size) or "
                "items were deleted meanwhile",
                number,
                rows,
                self.page_size,
            )

    async def _begin(self, iterator: _PageIterator[T]) -> _Run[T] | None:
        previous = self._current_run
        if previous is not None:
            if self._current is not None and self._current() is not None:
                raise RuntimeError(
                    "this paginator is already being iterated; finish or aclose() that "
                    "iteration first"
                )
            # An earlier iteration abandoned with ``break``: its iterator is gone, and its
            # finaliser only requested cancellation. Wait for its fetches to end.
            self._release(previous)
            await previous.close()
        if self.next_page is None or self._remaining() == 0:
            return None
        run = _Run(self, self.next_page)
        self._current = weakref.ref(iterator)
        self._current_run = run
        return run

    def _release(self, run: _Run[T]) -> None:
        if self._current_run is run:
            self._current = None
            self._current_run = None

    # -- public iteration -------------------------------------------------------------------

    def pages(self) -> AsyncIterator[PageResult[T]]:
        """Iterate whole pages in order (``number``, ``items``, ``count``).

        :attr:`next_page` moves past a page as it is handed over.
        """
        return _PagesView(self)

    def __aiter__(self) -> AsyncIterator[T]:
        return _ItemIterator(self)

    async def collect(self) -> list[T]:
        """Fetch everything (up to ``max_items``) and return the items as a list."""
        iterator = _ItemIterator(self)
        try:
            return [item async for item in iterator]
        finally:
            await iterator.aclose()

    async def aclose(self) -> None:
        """Stop the current iteration: cancel outstanding fetches and wait until they end.

        Safe to call several times and when nothing is running; :attr:`next_page` keeps its
        value, so a later iteration resumes from it.
        """
        iterator = self._current() if self._current is not None else None
        if iterator is not None:
            await iterator.aclose()
        run = self._current_run
        if run is not None:
            self._release(run)
            await run.close()

    async def __aenter__(self) -> AsyncPaginator[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
