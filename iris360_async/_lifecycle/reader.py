"""Reading the command state of a device: its row (once, to find its entity), then the
entity's Command attributes.

Reads go through two async callables, so the rules and runners work (and are tested) without
HTTP, and a client binds them with :meth:`CommandStateReader.for_client`:

* ``find_device(serial) -> Device | None`` -- the device row (``None``: no such device);
* ``read_commands(entity, names) -> attributes`` -- the Command attributes ``names`` of an
  entity (``entities.latest`` with the command filters).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol, TypeVar

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
    "ReadCommands",
    "ReadGate",
    "StateUnreadable",
]

T = TypeVar("T")

FindDevice = Callable[[str], Awaitable[Device | None]]
ReadCommands = Callable[[EntityRef, Sequence[str]], Awaitable[Sequence[EntityAttribute]]]
EntityLocator = Callable[[Device], EntityRef | None]

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

    Attributes:
        requests: reads issued so far (device look-ups and entity reads).
    """

    def __init__(
        self,
        find_device: FindDevice,
        read_commands: ReadCommands,
        *,
        entity: EntityLocator = entity_for,
    ) -> None:
        self._find_device = find_device
        self._read_commands = read_commands
        self._entity = entity
        self._located: dict[str, EntityRef] = {}
        self.requests = 0

    @classmethod
    def for_client(
        cls, client: Iris360Client, *, entity: EntityLocator = entity_for
    ) -> CommandStateReader:
        """A reader over ``client``: one ``devices.paginate`` page (``search=serial``) per
        device, then ``entities.latest(urn, attr_types="Command", commands=names)``."""
        devices = client.devices
        entities = client.entities

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

        return cls(find_device, read_commands, entity=entity)

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
            if serials is not None and device.serial not in serials:
                continue
            ref = self._entity(device)
            if ref is not None:
                self._located[device.serial] = ref
                learnt += 1
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
        return ref

    async def read(
        self, serial: str, names: Sequence[str], *, gate: ReadGate | None = None
    ) -> Sequence[EntityAttribute]:
        """The Command attributes ``names`` of the entity of ``serial`` (at most two requests
        the first time, one afterwards), each admitted by ``gate`` when given.

        Raises:
            StateUnreadable: see :meth:`locate`; the entity does not exist; the read failed.
        """
        ref = await self.locate(serial, gate=gate)
        try:
            return await self._request(gate, lambda: self._read_commands(ref, names))
        except NotFoundError as exc:
            raise StateUnreadable(f"entity {ref.urn} not found", final=True) from exc
        except Iris360Error as exc:
            raise _failure(f"reading {ref.urn}", exc) from exc
