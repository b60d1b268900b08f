"""Entities: list rows (``POST /entities/paginate``) and latest attribute values
(``GET /last-data/entities/{urn}``).

Attributes come in three kinds told apart by ``type``: :class:`EntityProperty`,
:class:`EntityRelationship` and :class:`EntityCommand` (a msgspec tagged union). A ``type`` this
SDK does not know does not fail the response: :func:`decode_attributes` decodes such an item as
an :class:`UnknownEntityAttribute` that keeps the common fields, its ``type`` and the whole raw
object in ``data``. :data:`EntityAttribute` is the union of all four.

Timestamps are whatever the database prints (``2025-01-01 10:00:00``) or ISO 8601; they decode
to timezone-aware datetimes (no offset = UTC) and to ``None`` when unreadable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import msgspec

from .._timeutil import LenientTimestamp, fix_timestamps

__all__ = [
    "Entity",
    "EntityAttribute",
    "EntityCommand",
    "EntityPaginationRequest",
    "EntityProperty",
    "EntityRelationship",
    "LatestAttributes",
    "UnknownEntityAttribute",
    "decode_attributes",
]


class EntityPaginationRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """Body of ``POST /entities/paginate`` (wire names kept).

    ``types`` is a comma-joined string on the wire (the server splits it; an array fails).
    ``orderBy`` is ignored by the server (it always orders by ``entities.id``).
    """

    paginationSize: int
    page: int
    orderBy: str
    orderDirection: bool
    search: str | msgspec.UnsetType = msgspec.UNSET
    tenant: str | msgspec.UnsetType = msgspec.UNSET
    scope: str | msgspec.UnsetType = msgspec.UNSET
    types: str | msgspec.UnsetType = msgspec.UNSET


class Entity(msgspec.Struct, frozen=True):
    """One row of the entity list.

    Attributes:
        id: numeric entity id (the one connectors link to).
        urn: NGSI-LD id, e.g. ``urn:ngsi-ld:Device:Device001``.
        name: the entity's ``name`` attribute, else the last URN segment.
        datamodel: entity type, e.g. ``AirQualityObserved``.
        tenant: the FIWARE tenant it lives in.
        tenant_id: numeric id of that tenant.
        scope: the FIWARE scope (service path) it lives in.
        scope_id: numeric id of that scope.
        devices: ids of the linked devices, when sent.
        geolocation: GeoJSON geometry, when sent.
    """

    id: int
    urn: str
    name: str | None = None
    datamodel: str | None = None
    tenant: str | None = None
    tenant_id: int | None = None
    scope: str | None = None
    scope_id: int | None = None
    devices: list[int] | None = None
    geolocation: dict[str, Any] | None = None


class _AttributeBase(msgspec.Struct, frozen=True, tag_field="type"):
    """Fields every attribute kind carries. ``id`` is the attribute name."""

    id: str
    name: str | None = None
    urn: str | None = None
    tenant: str | None = None
    scope: str | None = None
    entity_id: int | None = None
    value_type: str | None = None
    timestamp: LenientTimestamp | None = None
    description: str | None = None

    _timestamp_fields: ClassVar[tuple[str, ...]] = ("timestamp",)

    def __post_init__(self) -> None:
        fix_timestamps(self, self._timestamp_fields)

    @property
    def type(self) -> str:
        """The attribute kind as on the wire: ``Property``, ``Relationship`` or ``Command``."""
        return str(self.__struct_config__.tag)


class EntityProperty(_AttributeBase, frozen=True, tag="Property"):
    """A measurement (from a device or virtual).

    Attributes:
        value: cast from ``value_type`` (number, bool, parsed JSON or text).
        units: unit code, e.g. ``CEL``.
    """

    value: Any = None
    units: str | None = None
    template: Any = None
    internal: bool | str | None = None


class EntityRelationship(_AttributeBase, frozen=True, tag="Relationship"):
    """A pointer to another entity.

    Attributes:
        value: URN of the related entity.
        last_sent: whether this is the most recent relationship value.
        referenced_data: the related entity's attributes (with ``reference_data_nesting``).
        pruned_by_cicle: the related entity was already expanded (cycle); wire spelling kept.
    """

    value: Any = None
    last_sent: bool | None = None
    referenced_data: _AttributeList | None = None
    pruned_by_cicle: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        raw = self.referenced_data
        if raw is not None and not _is_converted(raw):
            msgspec.structs.force_setattr(self, "referenced_data", _convert_attributes(raw))


class EntityCommand(_AttributeBase, frozen=True, tag="Command"):
    """A writable setting; its ``id`` is the command name for ``send_commands``.

    Attributes:
        available: the entity currently accepts this command.
        pending: a value was sent and not yet confirmed.
        pending_value: the value waiting for confirmation.
        current_value: the confirmed value.
        status: device-reported state (time in ``status_timestamp``).
        info: device-reported details (time in ``info_timestamp``).
    """

    status: Any = None
    info: Any = None
    status_timestamp: LenientTimestamp | None = None
    info_timestamp: LenientTimestamp | None = None
    available: bool | None = None
    pending: bool | None = None
    pending_value: Any = None
    current_value: Any = None
    data_type: Any = None
    units: Any = None
    tab: Any = None
    datamodel: Any = None
    max_value: Any = None
    min_value: Any = None
    internal: bool | str | None = None
    operations: Any = None

    _timestamp_fields: ClassVar[tuple[str, ...]] = (
        "timestamp",
        "status_timestamp",
        "info_timestamp",
    )


class UnknownEntityAttribute(msgspec.Struct, frozen=True):
    """An attribute whose ``type`` is none of ``Property``/``Relationship``/``Command``.

    Attributes:
        type: the ``type`` the server sent (``None`` if missing).
        data: the whole attribute object as sent.
    """

    id: str | None = None
    type: str | None = None
    name: str | None = None
    urn: str | None = None
    value: Any = None
    timestamp: LenientTimestamp | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        fix_timestamps(self, ("timestamp",))


_TaggedAttribute: TypeAlias = EntityProperty | EntityRelationship | EntityCommand

EntityAttribute: TypeAlias = (
    EntityProperty | EntityRelationship | EntityCommand | UnknownEntityAttribute
)
"""Any attribute returned by ``entities.latest``; match on the class (or ``type``)."""



class LatestAttributes(list[EntityAttribute]):
    """What ``entities.latest`` returns: the attributes as sent (a ``list``), plus lookups by
    attribute name.

    Example:
        >>> attrs = await iris.entities.latest("urn:ngsi-ld:Device:SN000001")
        >>> attrs.value("temperature")
        21.4
        >>> attrs.attribute("w_ota").pending
        False
    """

    __slots__ = ()

    def names(self) -> list[str]:
        """The attribute names, each once, in the order sent."""
        return list(dict.fromkeys(a.id for a in self if a.id is not None))

    def attribute(self, name: str) -> EntityAttribute:
        """The attribute called ``name`` (its ``id``). When it was sent more than once, the
        one with the newest ``timestamp`` (the first of those without one).

        Raises:
            KeyError: no attribute has that name; the message lists the names there are.
        """
        found: EntityAttribute | None = None
        for item in self:
            if item.id != name:
                continue
            if found is None or (
                item.timestamp is not None
                and (found.timestamp is None or item.timestamp > found.timestamp)
            ):
                found = item
        if found is None:
            urn = next((a.urn for a in self if a.urn), None)
            where = f" of {urn}" if urn else ""
            available = ", ".join(self.names()) or "none"
            raise KeyError(f"no attribute {name!r}{where}; available: {available}")
        return found

    def value(self, name: str) -> Any:
        """The value of the attribute called ``name``: ``value`` for a property or a
        relationship (and an attribute of an unknown kind), ``current_value`` (the confirmed
        value) for a command.

        Raises:
            KeyError: no attribute has that name; the message lists the names there are.
        """
        found = self.attribute(name)
        if isinstance(found, EntityCommand):
            return found.current_value
        return found.value


if TYPE_CHECKING:
    _AttributeList: TypeAlias = list[EntityAttribute]
else:
    # msgspec hands the raw list over; EntityRelationship.__post_init__ converts it.
    _AttributeList = Any

_TAGGED_LIST_DECODER = msgspec.json.Decoder(list[_TaggedAttribute])
_RAW_LIST_DECODER = msgspec.json.Decoder(list[msgspec.Raw])
_TAGGED_DECODER = msgspec.json.Decoder(_TaggedAttribute)
_ATTRIBUTE_CLASSES = (EntityProperty, EntityRelationship, EntityCommand, UnknownEntityAttribute)


def _is_converted(items: Any) -> bool:
    return isinstance(items, list) and all(isinstance(i, _ATTRIBUTE_CLASSES) for i in items)


def _unknown_from(data: Any) -> UnknownEntityAttribute:
    if not isinstance(data, dict):
        return UnknownEntityAttribute(data={"value": data})
    raw_type = data.get("type")
    raw_id = data.get("id")
    raw_name = data.get("name")
    raw_urn = data.get("urn")
    return UnknownEntityAttribute(
        id=raw_id if isinstance(raw_id, str) else (None if raw_id is None else str(raw_id)),
        type=raw_type if isinstance(raw_type, str) else None,
        name=raw_name if isinstance(raw_name, str) else None,
        urn=raw_urn if isinstance(raw_urn, str) else None,
        value=data.get("value"),
        timestamp=data.get("timestamp"),
        data=data,
    )


def _convert_attributes(items: Any) -> list[EntityAttribute]:
    """Convert decoded builtins (a list of objects) to attributes, leniently per item."""
    if not isinstance(items, list):
        items = [items]
    out: list[EntityAttribute] = []
    for item in items:
        if isinstance(item, _ATTRIBUTE_CLASSES):
            out.append(item)
            continue
        try:
            out.append(msgspec.convert(item, _TaggedAttribute))
        except msgspec.ValidationError:
            out.append(_unknown_from(item))
    return out


def decode_attributes(content: bytes) -> list[EntityAttribute]:
    """Decode the ``GET /last-data/entities/{urn}`` body (a JSON array of attributes).

    Items with an unknown ``type`` or an unexpected shape become
    :class:`UnknownEntityAttribute` instead of failing the whole response.

    Raises:
        msgspec.DecodeError: the body is not JSON.
        msgspec.ValidationError: the body is not a JSON array.
    """
    try:
        return list(_TAGGED_LIST_DECODER.decode(content))
    except msgspec.ValidationError:
        pass
    out: list[EntityAttribute] = []
    for raw in _RAW_LIST_DECODER.decode(content):
        try:
            out.append(_TAGGED_DECODER.decode(raw))
        except msgspec.ValidationError:
            out.append(_unknown_from(msgspec.json.decode(raw)))
    return out
