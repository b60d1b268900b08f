"""The columns of the list commands, and ``--fields`` to choose them.

A field is a name of the command's catalog (``urn`` for a device is its main entity's URN) or a
dotted path into the JSON record (``properties.firmware``) whose first step is a field of the
record. Names are checked before any request is sent. Only the standard library is imported
here (the parser shows the names in ``--help``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._errors import CliError
from ._output import Column

__all__ = ["CONNECTOR_FIELDS", "DEVICE_FIELDS", "ENTITY_FIELDS", "FIELDS_OF", "FieldSet"]


@dataclass(frozen=True)
class FieldSet:
    """The fields of one kind of record.

    Attributes:
        what: the records' name, for messages (``devices``).
        named: field name -> dotted path in the record.
        default: the fields shown without ``--fields``.
        record_keys: the top-level keys of the record (the first step of a dotted path).
    """

    what: str
    named: Mapping[str, str]
    default: tuple[str, ...]
    record_keys: frozenset[str]

    def columns(self, text: str | None) -> tuple[Column, ...]:
        """The columns for ``--fields text`` (comma-separated; ``None``: the default ones).

        Raises:
            CliError: an empty list, or a name that is neither a field nor a path into one.
        """
        if text is None:
            return tuple(Column(name, self.named[name]) for name in self.default)
        names = [part.strip() for part in text.split(",")]
        if not any(names) or not all(names):
            raise CliError(f"--fields needs comma-separated names, got {text!r}")
        columns = []
        for name in names:
            path = self.named.get(name)
            if path is None and "." in name and name.split(".", 1)[0] in self.record_keys:
                path = name
            if path is None:
                raise CliError(
                    f"--fields: {name!r} is not a field of {self.what}; "
                    f"choose from {self.names_text()} (or a dotted path such as "
                    f"{self._example()})"
                )
            columns.append(Column(name, path))
        return tuple(columns)

    def names_text(self) -> str:
        return ", ".join(self.named)

    def _example(self) -> str:
        return next((p for p in self.named.values() if "." in p), "id")


DEVICE_FIELDS = FieldSet(
    what="devices",
    named={
        "id": "id",
        "serial": "serial",
        "urn": "main_entity.urn",
        "name": "name",
        "type": "type.name",
        "subscribed": "is_subscribed",
        "last_data": "time_last_data",
        "type_code": "type.code",
        "subscribed_until": "subscribed_until",
        "tenant": "main_entity.tenant",
        "scope": "main_entity.scope",
        "datamodel": "main_entity.datamodel",
        "case_id": "case_id",
        "description": "description",
        "organization": "organization.name",
    },
    default=("id", "serial", "urn", "name", "type", "subscribed", "last_data"),
    record_keys=frozenset(
        {
            "id", "serial", "case_id", "name", "description", "is_subscribed",
            "subscribed_until", "properties", "type", "time_last_data", "organization",
            "main_entity", "entities", "entity_properties",
        }
    ),
)  # fmt: skip

ENTITY_FIELDS = FieldSet(
    what="entities",
    named={
        name: name
        for name in (
            "id", "urn", "name", "datamodel", "tenant", "scope", "tenant_id", "scope_id",
            "devices", "geolocation",
        )
    },
    default=("id", "urn", "name", "datamodel", "tenant", "scope"),
    record_keys=frozenset(
        {"id", "urn", "name", "datamodel", "tenant", "tenant_id", "scope", "scope_id",
         "devices", "geolocation"}
    ),
)  # fmt: skip

CONNECTOR_FIELDS = FieldSet(
    what="connectors",
    named={
        name: name
        for name in (
            "id", "name", "type", "status", "last_connection", "user_id", "connectable_type",
            "connectable_id",
        )
    },
    default=("id", "name", "type", "status", "last_connection"),
    record_keys=frozenset(
        {"id", "name", "type", "status", "user_id", "last_connection", "connectable_type",
         "connectable_id"}
    ),
)  # fmt: skip

FIELDS_OF: dict[str, FieldSet] = {
    "devices.list": DEVICE_FIELDS,
    "entities.list": ENTITY_FIELDS,
    "connectors.list": CONNECTOR_FIELDS,
}
"""The field set of each command that takes ``--fields``."""
