"""Reading the command state of a device: its row (once, to find its entity), then the
entity's Command attributes.

Reads go through two async callables, so the rules and runners work (and are tested) without
HTTP, and a client binds them with :meth:`CommandStateReader.for_client`:

* ``find_device(serial) -> Device | None`` -- the device row (``None``: no such device);
* ``read_commands(entity, names) -> attributes`` -- the Command attributes ``names`` of an
  entity (``entities.latest`` with the command filters);
* optionally ``list_devices(page, size) -> (rows, count)`` -- a page of the device list, so
  :meth:`CommandStateReader.survey` can learn many devices' entities from a few pages.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio

from ..errors import Iris360Error, NotFoundError
from ..models.devices import Device
from ..models.entities import EntityAttribute
from .rules import EntityRef, entity_for

if TYPE_CHECKING:
    from .._client import Iris360Client

__all__ = [
    "CommandStateReader",
    "EntityLocator",
    "FindDevice",
    "ListDevices",
    "ReadCommands",
    "ReadGate",
    "StateUnreadable",
    "for_each",
]

T = TypeVar("T")
ItemT = TypeVar("ItemT")

FindDevice = Callable[[str], Awaitable[Device | None]]
ReadCommands = Callable[[EntityRef, Sequence[str]], Awaitable[Sequence[EntityAttribute]]]
EntityLocator = Callable[[Device], EntityRef | None]
ListDevices = Callable[[int, int], Awaitable[tuple[Sequence[Device], int]]]

SURVEY_PAGE = 500
"""Rows per request when :meth:`CommandStateReader.survey` reads the device list."""

SURVEY_MIN = 50
"""Serials without a known entity below which :meth:`CommandStateReader.survey` reads no list
(its first page is then likely to cost more than it saves)."""

SEARCH_PAGE = 100
"""Rows read by the one request that looks a serial up (``devices.paginate`` has no exact
serial filter; its ``search`` matches substrings, so the exact serial is picked out)."""


class ReadGate(Protocol):
    """Admission for read requests: ``async with gate.request(): ...`` around each one.

    The bulk engine's ``concurrency="auto"`` limiter is one (reads wait for a slot of the
    job's adaptive limit, and what they meet -- latency, 429/503/504 -- feeds it back).
    """

    def request(self) -> AbstractAsyncContextManager[object]:
        """Wait for a slot; the block is one request (its exception, if any, passes through)."""
        ...


class StateUnreadable(Exception):
    """The command state of a device cannot be read; ``reason`` says why and ``final`` whether
    reading again could help (``False`` for a failed request)."""

    def __init__(self, reason: str, *, final: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.final = final

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.reason, self.final))


def _rebuild(reason: str, final: bool) -> StateUnreadable:
    return StateUnreadable(reason, final=final)


def _failure(what: str, exc: Iris360Error) -> StateUnreadable:
    return StateUnreadable(f"{what} failed: {type(exc).__name__}: {exc}", final=False)


class CommandStateReader:
    """Reads the command state of devices, remembering each device's entity.

    Args:
        find_device: ``serial -> Device | None`` (one request).
        read_commands: ``(entity, names) -> attributes`` (one request).
        entity: ``Device -> EntityRef | None``; default :func:`entity_for` (the main entity,
            an inferred mapping).
        list_devices: ``(page, size) -> (rows, count)``, a page of the device list (1-based);
            without it :meth:`survey` does nothing.

    Attributes:
        requests: reads issued so far (device look-ups and entity reads).
    """

    def __init__(
        self,
        find_device: FindDevice,
        read_commands: ReadCommands,
        *,
        entity: EntityLocator = entity_for,
        list_devices: ListDevices | None = None,
    ) -> None:
        self._find_device = find_device
        self._read_commands = read_commands
        self._entity = entity
        self._list_devices = list_devices
        self._located: dict[str, EntityRef] = {}
        self._owners: dict[str, set[str]] = {}  # entity URN -> serials whose row names it
        self._failed: dict[str, StateUnreadable] = {}  # look-ups of locate_all, told once
        self.requests = 0

    @classmethod
    def for_client(
        cls, client: Iris360Client, *, entity: EntityLocator = entity_for
    ) -> CommandStateReader:
        """A reader over ``client``: one ``devices.paginate`` page (``search=serial``) per
        device -- or, for many devices at once, pages of the device list (:meth:`survey`) --
        then ``entities.latest(urn, attr_types="Command", commands=names)``."""
        devices = client.devices
        entities = client.entities
        list_page = devices.page_fetcher(order_by="serial")

        async def list_devices(page: int, size: int) -> tuple[Sequence[Device], int]:
            result = await list_page(page, size)
            return result.rows, result.count

        async def find_device(serial: str) -> Device | None:
            fetch = devices.page_fetcher(order_by="serial", search=serial)
            page = await fetch(1, SEARCH_PAGE)
            for row in page.rows:
                if row.serial == serial:
                    return row
            if page.count > len(page.rows):
                raise StateUnreadable(
                    f"device {serial!r} not among the first {len(page.rows)} of "
                    f"{page.count} devices matching it", final=True)
            return None

        async def read_commands(
            ref: EntityRef, names: Sequence[str]
        ) -> Sequence[EntityAttribute]:
            return await entities.latest(
                ref.urn, tenant=ref.tenant, scope=ref.scope, attr_types="Command",
                commands=list(names),
            )

        return cls(find_device, read_commands, entity=entity, list_devices=list_devices)

    async def preload(
        self, devices: AsyncIterable[Device], serials: Collection[str] | None = None
    ) -> int:
        """Learn the entity of every device of ``devices`` (of those in ``serials`` when given),
        so :meth:`locate` needs no request for them.

        One pass over ``iris.devices.paginate(page_size=...)`` costs a request per page instead
        of one per serial -- the cheaper way when the serials are a large share of the fleet.
        Requests made by ``devices`` are not counted in :attr:`requests`.

        Returns:
            How many devices were learnt.
        """
        learnt = 0
        async for device in devices:
            ref = self._entity(device)
            if ref is None:
                continue
            if serials is None or device.serial in serials:
                self._located[device.serial] = ref
                self._own(device.serial, ref)
                learnt += 1
            else:
                self._own(device.serial, ref, known_only=True)
        return learnt

    def _own(self, serial: str, ref: EntityRef, *, known_only: bool = False) -> None:
        """Note that the row of ``serial`` names ``ref`` (two devices naming one entity make
        its command state nobody's own); ``known_only``: a device that is not looked for,
        noted only if the entity is one of those looked for (memory stays bounded by them)."""
        owners = self._owners.get(ref.urn)
        if owners is None:
            if known_only:
                return
            owners = self._owners[ref.urn] = set()
        owners.add(serial)

    async def survey(
        self, serials: Collection[str], *, gate: ReadGate | None = None, concurrency: int = 8
    ) -> int:
        """Learn the entities of ``serials`` from the device list when reading it costs fewer
        requests than looking each serial up (:meth:`locate`: one request per serial).

        The first page (:data:`SURVEY_PAGE` rows) tells how many devices there are; the other
        pages are read, ``concurrency`` at once, only when they are fewer than the serials
        still unknown. Nothing is read for fewer than :data:`SURVEY_MIN` serials. A page
        that fails is skipped: its serials are looked up one by one later. Requests are
        counted in :attr:`requests`.

        Returns:
            How many of ``serials`` were learnt.
        """
        missing = {s for s in serials if s not in self._located}
        list_devices = self._list_devices
        if list_devices is None or len(missing) < SURVEY_MIN:
            return 0
        learnt = 0

        async def read_page(page: int) -> int:
            nonlocal learnt
            try:
                rows, count = await self._request(gate, lambda: list_devices(page, SURVEY_PAGE))
            except Iris360Error:
                return 0
            others: list[tuple[str, EntityRef]] = []
            for device in rows:
                ref = self._entity(device)
                if ref is None:
                    continue
                if device.serial not in missing:
                    others.append((device.serial, ref))
                elif device.serial not in self._located:
                    self._located[device.serial] = ref
                    self._own(device.serial, ref)
                    learnt += 1
            for serial, ref in others:  # after this page's own serials
                self._own(serial, ref, known_only=True)
            return count

        pages = math.ceil(await read_page(1) / SURVEY_PAGE)
        if pages > 1 and pages - 1 < len(missing) - learnt:
            await for_each(list(range(2, pages + 1)), read_page, concurrency)
        return learnt

    async def _request(self, gate: ReadGate | None, call: Callable[[], Awaitable[T]]) -> T:
        """One read request, counted, through ``gate`` when given."""
        self.requests += 1
        if gate is None:
            return await call()
        async with gate.request():
            return await call()

    async def locate(self, serial: str, *, gate: ReadGate | None = None) -> EntityRef:
        """The entity of ``serial`` (one request the first time, none afterwards).

        Args:
            gate: admits the request (:class:`ReadGate`); none: the caller bounds reads.

        Raises:
            StateUnreadable: no such device, no entity, or the look-up failed.
        """
        ref = self._located.get(serial)
        if ref is not None:
            return ref
        try:
            device = await self._request(gate, lambda: self._find_device(serial))
        except Iris360Error as exc:
            raise _failure("device look-up", exc) from exc
        if device is None:
            raise StateUnreadable(f"device {serial!r} not found", final=True)
        ref = self._entity(device)
        if ref is None:
            raise StateUnreadable(f"device {serial!r} has no main entity", final=True)
        self._located[serial] = ref
        self._own(serial, ref)
        return ref

    async def locate_all(
        self, serials: Collection[str], *, gate: ReadGate | None = None, concurrency: int = 8
    ) -> None:
        """:meth:`locate` every serial not located yet (``concurrency`` at once), before any
        is read, so that two of them naming one entity are known as such; a failed look-up
        is told by the serial's next :meth:`read`, without another request."""
        todo = [s for s in serials if s not in self._located and s not in self._failed]

        async def one(serial: str) -> None:
            try:
                await self.locate(serial, gate=gate)
            except StateUnreadable as exc:
                self._failed[serial] = exc

        await for_each(todo, one, concurrency)

    async def read(
        self, serial: str, names: Sequence[str], *, gate: ReadGate | None = None
    ) -> Sequence[EntityAttribute]:
        """The Command attributes ``names`` of the entity of ``serial`` (at most two requests
        the first time, one afterwards), each admitted by ``gate`` when given.

        Raises:
            StateUnreadable: see :meth:`locate`; the entity does not exist or is the main
                entity of another device too (as far as this reader has seen); the read
                failed.
        """
        failed = self._failed.pop(serial, None)
        if failed is not None:
            raise failed
        ref = await self.locate(serial, gate=gate)
        owners = self._owners.get(ref.urn, ())
        if len(owners) > 1:
            others = sorted(owners - {serial})
            shown = ", ".join(repr(o) for o in others[:3]) + (" ..." if len(others) > 3 else "")
            raise StateUnreadable(
                f"entity {ref.urn} is shared with device {shown}: its command state is not "
                f"{serial!r}'s alone", final=True)
        try:
            return await self._request(gate, lambda: self._read_commands(ref, names))
        except NotFoundError as exc:
            raise StateUnreadable(f"entity {ref.urn} not found", final=True) from exc
        except Iris360Error as exc:
            raise _failure(f"reading {ref.urn}", exc) from exc


async def for_each(
    items: list[ItemT], work: Callable[[ItemT], Awaitable[object]], concurrency: int
) -> None:
    """Run ``await work(item)`` for every item, ``concurrency`` workers pulling in order."""
    queue: Iterator[ItemT] = iter(items)

    async def worker() -> None:
        for item in queue:
            await work(item)

    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, len(items))):
            tg.start_soon(worker)
