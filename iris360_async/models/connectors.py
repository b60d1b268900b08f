"""Outbound connectors (``/connectors/out/…``): list rows, the full connector, mapping
schemas and the body of the models update.

The type-specific configuration (MQTT, HTTP, Azure IoT, FIWARE, Sentilo) is documented as
flattened into the connector object; :class:`OutConnector` carries all of those fields as
optional attributes, and ``connectable`` keeps a nested configuration object if a server sends
one there instead. Parsing is lenient: ``id`` may be a string or an int, ``ssl`` a bool or a
string, ``port`` an int or a string. Secrets (``password``, ``connection_string``,
``identity_key``) are part of the payload but never shown by ``repr``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from .._timeutil import LenientTimestamp, fix_timestamps

__all__ = [
    "ConnectorModelsUpdate",
    "ConnectorPaginationRequest",
    "MappingSchema",
    "OutConnector",
    "SimpleOutConnector",
]


class ConnectorPaginationRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """Body of ``POST /connectors/out/paginate`` (wire names kept)."""

    paginationSize: int
    page: int
    orderBy: str
    orderDirection: bool
    search: str | msgspec.UnsetType = msgspec.UNSET


class ConnectorModelsUpdate(msgspec.Struct, frozen=True, omit_defaults=True):
    """Body of the connector models update: ids to link; unset lists are not sent.

    Whether the lists replace or extend the current links is not documented.
    """

    entities: list[int] | msgspec.UnsetType = msgspec.UNSET
    devices: list[int] | msgspec.UnsetType = msgspec.UNSET
    mapping_schemas: list[int] | msgspec.UnsetType = msgspec.UNSET


class MappingSchema(msgspec.Struct, frozen=True):
    """A payload mapping linked to a connector."""

    id: int | None = None
    name: str | None = None
    map: Any = None


class SimpleOutConnector(msgspec.Struct, frozen=True):
    """One row of the connector list.

    ``id`` and ``name`` are documented; the other fields are the connector table's columns
    and may be absent.
    """

    id: int | str
    name: str | None = None
    type: str | None = None
    status: str | None = None
    user_id: int | None = None
    last_connection: LenientTimestamp | None = None
    connectable_type: str | None = None
    connectable_id: int | None = None

    def __post_init__(self) -> None:
        fix_timestamps(self, ("last_connection",))


_SECRETS = frozenset({"password", "connection_string", "identity_key", "ssl_cert"})


class OutConnector(msgspec.Struct, frozen=True):
    """An outbound connector with its type-specific configuration.

    Common attributes: ``id``, ``name``, ``type``, ``status``, ``user_id``,
    ``last_connection``, ``connectable_type`` (``mqtt_connector``, ``http_connector``,
    ``azureiot_connector``, ``fiware_out_connector``, ``sentilo_out_connector``),
    ``connectable_id``, ``entities``/``devices`` (linked ids), ``mapping_schemas``.

    Type-specific attributes (``None`` when not sent):

    * MQTT: ``ip_address`` (wire ``ipAddress``), ``port``, ``username``, ``password``,
      ``client_id`` (``clientId``), ``ssl_cert`` (``sslCert``), ``ssl``, ``topic_template``
      (``topicTemplate``), ``payload_type``, ``payload_config``;
    * HTTP: ``method``, ``url``, ``headers``, ``retries``, ``timeout``, ``bulk``,
      ``payload_type``, ``payload_config``;
    * Azure IoT: ``connection_string``, ``payload_type``;
    * FIWARE: ``url``, ``iota_type``, ``i``, ``k``;
    * Sentilo: ``sensor_id_template``, ``identity_key``, ``url``.
    """

    id: int | str
    name: str | None = None
    type: str | None = None
    status: str | None = None
    user_id: int | None = None
    last_connection: LenientTimestamp | None = None
    connectable_type: str | None = None
    connectable_id: int | None = None
    entities: list[int] | None = None
    devices: list[int] | None = None
    mapping_schemas: list[MappingSchema] | None = None
    use_readable_names: bool | None = None
    connectable: dict[str, Any] | None = None
    # MQTT
    ip_address: str | None = msgspec.field(default=None, name="ipAddress")
    port: int | str | None = None
    username: str | None = None
    password: str | None = None
    client_id: str | None = msgspec.field(default=None, name="clientId")
    ssl_cert: str | None = msgspec.field(default=None, name="sslCert")
    ssl: bool | str | None = None
    topic_template: Any = msgspec.field(default=None, name="topicTemplate")
    payload_type: str | None = None
    payload_config: Any = None
    # HTTP
    method: str | None = None
    url: str | None = None
    headers: Any = None
    retries: int | None = None
    timeout: int | float | None = None
    bulk: bool | int | None = None
    # Azure IoT
    connection_string: str | None = None
    # FIWARE
    iota_type: str | None = None
    i: Any = None
    k: Any = None
    # Sentilo
    sensor_id_template: Any = None
    identity_key: str | None = None

    _secret_fields: ClassVar[frozenset[str]] = _SECRETS

    def __post_init__(self) -> None:
        fix_timestamps(self, ("last_connection",))

    @property
    def ssl_enabled(self) -> bool | None:
        """``ssl`` as a bool (the docs type it as a string, the database as a boolean)."""
        value = self.ssl
        if value is None or isinstance(value, bool):
            return value
        return value.strip().lower() in ("1", "true", "yes", "on")

    def __repr__(self) -> str:
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is None:
                continue
            shown = "'***'" if name in self._secret_fields else repr(value)
            parts.append(f"{name}={shown}")
        return f"OutConnector({', '.join(parts)})"
