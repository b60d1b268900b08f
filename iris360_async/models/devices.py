"""Devices: list rows (``POST /devices/paginate``), the bulk command result items
(``POST /devices/sendCommandsBulk``) and the file import result.

Datetime fields decode to timezone-aware datetimes (no offset = UTC) and to ``None`` when the
server sends something unreadable.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .._timeutil import LenientTimestamp, fix_timestamps

__all__ = [
    "BulkCommandItemResult",
    "Device",
    "DeviceMainEntity",
    "DevicePaginationRequest",
    "DeviceType",
    "ImportResult",
    "MalformedBulkItem",
    "Organization",
]


class DevicePaginationRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """Body of ``POST /devices/paginate`` (wire names kept).

    ``orderBy`` is a raw column such as ``devices.id``; ``orderDirection`` ``True`` means
    descending; ``realtimeProperties`` names attributes to embed from each device's entities.
    """

    paginationSize: int
    page: int
    orderBy: str
    orderDirection: bool
    search: str | msgspec.UnsetType = msgspec.UNSET
    realtimeProperties: list[str] | msgspec.UnsetType = msgspec.UNSET


class DeviceType(msgspec.Struct, frozen=True):
    """The model of a device (``type`` of a device row)."""

    id: int | None = None
    code: str | None = None
    name: str | None = None
    brand: str | None = None
    category: str | None = None


class Organization(msgspec.Struct, frozen=True):
    """The organisation owning a device (fields beyond ``id``/``name`` are not documented)."""

    id: int | None = None
    name: str | None = None


class DeviceMainEntity(msgspec.Struct, frozen=True):
    """The main entity of a device, when the server includes it."""

    id: int | None = None
    urn: str | None = None
    datamodel: str | None = None
    scope: str | None = None
    tenant: str | None = None
    geolocation: dict[str, Any] | None = None


class Device(msgspec.Struct, frozen=True):
    """One row of the device list.

    Attributes:
        id: numeric device id (the one connectors link to).
        serial: the identifier ``send_commands`` targets.
        case_id, name, description: as registered.
        is_subscribed: whether the subscription is active (``subscribed_until >= now``).
        subscribed_until: end of the subscription.
        properties: free-form device properties.
        type: the device model.
        time_last_data: newest attribute timestamp among the device's entities.
        organization, main_entity: when sent.
        entities: ids of the linked entities, when sent.
        entity_properties: name -> value of the main entity (with ``realtime_properties``).
    """

    id: int
    serial: str
    case_id: str | None = None
    name: str | None = None
    description: str | None = None
    is_subscribed: bool | None = None
    subscribed_until: LenientTimestamp | None = None
    properties: Any = None
    type: DeviceType | None = None
    time_last_data: LenientTimestamp | None = None
    organization: Organization | None = None
    main_entity: DeviceMainEntity | None = None
    entities: list[int] | None = None
    entity_properties: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        fix_timestamps(self, ("subscribed_until", "time_last_data"))


class BulkCommandItemResult(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One element of the ``sendCommandsBulk`` 207 array, in request order.

    Only ``original`` carries information (the per-device HTTP status is not sent):

    * ``{"data": "Command sent!!"}`` — accepted for that device;
    * ``{"errors": "You cannot send any of: …"}`` — a command is not available there, nothing
      was sent to it;
    * any other object, a string or ``None`` — the platform failed for that device.

    Fields are keyword-only; ``original`` is required, so that decoding an element without
    it fails (the devices resource then keeps the element as a :class:`MalformedBulkItem`).

    Attributes:
        headers: always empty in practice.
        original: the per-device answer (see above).
        exception: always ``None`` in practice.
    """

    headers: dict[str, Any] | list[Any] | None = None
    original: Any
    exception: Any = None

    @property
    def sent(self) -> bool:
        """Whether the server reports the command as sent to this device."""
        original = self.original
        return isinstance(original, dict) and original.get("data") == "Command sent!!"


class MalformedBulkItem(BulkCommandItemResult, frozen=True, gc=False):
    """An element of the 207 array that is not a ``{headers, original, exception}`` object
    (a number, a list, a bare string or object without ``original``), kept whole as
    ``original``. Its meaning is not documented: it never counts as sent, and the bulk engine
    ends its device ``unknown``."""

    @property
    def sent(self) -> bool:
        """Always ``False``: a malformed element proves nothing."""
        return False


class ImportResult(msgspec.Struct, frozen=True):
    """What the file import answered (its shape is not documented).

    Attributes:
        status: HTTP status (``200``/``201``, or ``202`` when queued).
        message: the ``message`` field, or the body when it is a plain string.
        data: the decoded JSON body, or the text when it is not JSON.
    """

    status: int
    message: str | None = None
    data: Any = None

