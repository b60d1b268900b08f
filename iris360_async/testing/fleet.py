"""The seeded fleet the emulator serves: device types, devices, entities, connectors.

Devices are not stored as objects: a device is its index, its serial and its type index, and
every other field is derived from ``(seed, index)`` on demand, so a fleet of 200,000 devices costs
a few megabytes. Only what the API can change is stored: imported devices, pending commands and
connector links.

Layout (ids are stable for a given configuration):

* ``extra_entities`` entities come first (ids ``1..E``): gateways (``urn:ngsi-ld:Gateway:GW0001``),
  ``AirQualityObserved`` and ``WeatherObserved`` entities; every fourth extra lives in scope
  ``/lab``, the rest in the main scope.
* device ``i`` (0-based) has id ``i + 1``, serial ``SN000001``..., and one main entity
  ``urn:ngsi-ld:Device:<serial>`` with id ``E + i + 1``, linked to gateway ``i % gateways`` by a
  ``refGateway`` relationship (gateway ``k`` points back at device ``k`` through ``refDevice``).
* tenants: the fleet's own tenant holds the extras and the first devices; each further tenant
  of ``tenants`` holds the next block of devices (and their main entities), in order. Imported
  devices join the fleet's own tenant.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .ledger import CommandLedger

_encode_row = msgspec.json.encode

__all__ = [
    "ALL_COMMANDS",
    "DEVICE_TYPES",
    "MEASURES",
    "Connector",
    "DeviceType",
    "Entity",
    "Fleet",
    "Measure",
]

ALL_COMMANDS: tuple[str, ...] = ("w_ota", "w_reboot", "w_sleep", "w_sampling")


@dataclass(frozen=True)
class DeviceType:
    """A device model and the commands its devices accept."""

    id: int
    code: str
    name: str
    brand: str
    category: str
    commands: frozenset[str]

    def as_json(self) -> dict[str, Any]:
        """The ``type`` object of a device row."""
        return {
            "id": self.id,
            "code": self.code,
            "name": self.name,
            "brand": self.brand,
            "category": self.category,
        }


DEVICE_TYPES: tuple[DeviceType, ...] = (
    DeviceType(1, "SCP", "Smart Cities PRO", "Libelium", "Plug & Sense!",
               frozenset({"w_ota", "w_reboot", "w_sleep", "w_sampling"})),
    DeviceType(2, "SAP", "Smart Agriculture PRO", "Libelium", "Plug & Sense!",
               frozenset({"w_ota", "w_reboot", "w_sleep"})),
    DeviceType(3, "SEP", "Smart Environment PRO", "Libelium", "Plug & Sense!",
               frozenset({"w_ota", "w_reboot", "w_sampling"})),
    DeviceType(4, "GLG", "Gases Legacy", "Libelium", "Waspmote",
               frozenset({"w_reboot", "w_sleep"})),
)
LEGACY_TYPE_INDEX = 3  # the type without w_ota


@dataclass(frozen=True)
class Measure:
    """A generated attribute: its wire type and the shape of its values."""

    name: str
    label: str
    value_type: str  # double | integer | bool | string
    units: str | None
    base: float = 0.0
    amplitude: float = 0.0
    noise: float = 0.0


MEASURES: dict[str, tuple[Measure, ...]] = {
    "Device": (
        Measure("temperature", "Temperature", "double", "CEL", 18.0, 6.0, 1.0),
        Measure("humidity", "Humidity", "double", "P1", 55.0, 15.0, 4.0),
        Measure("battery", "Battery", "integer", "P1", 100.0),
        Measure("online", "Online", "bool", None),
    ),
    "AirQualityObserved": (
        Measure("NO2", "NO2", "double", "GQ", 40.0, 15.0, 5.0),
        Measure("PM10", "PM10", "double", "GQ", 25.0, 10.0, 6.0),
        Measure("PM2_5", "PM2.5", "double", "GQ", 12.0, 5.0, 3.0),
    ),
    "WeatherObserved": (
        Measure("temperature", "Temperature", "double", "CEL", 15.0, 8.0, 1.5),
        Measure("relativeHumidity", "Relative humidity", "double", "P1", 60.0, 20.0, 5.0),
        Measure("windSpeed", "Wind speed", "double", "MTS", 4.0, 2.0, 2.0),
    ),
    "Gateway": (
        Measure("uptime", "Uptime", "integer", "SEC"),
        Measure("firmware", "Firmware", "string", None),
    ),
}
_EXTRA_MODELS = ("Gateway", "AirQualityObserved", "WeatherObserved")
_EXTRA_PREFIX = {"Gateway": "GW", "AirQualityObserved": "AQ", "WeatherObserved": "WO"}


@dataclass(frozen=True)
class Entity:
    """One entity (NGSI-LD) of the fleet."""

    id: int
    urn: str
    datamodel: str
    name: str
    tenant: str
    scope: str
    device_id: int | None
    lon: float
    lat: float
    relationships: tuple[tuple[str, str], ...] = ()

    @property
    def measures(self) -> tuple[Measure, ...]:
        """The generated attributes of this entity."""
        return MEASURES.get(self.datamodel, ())


@dataclass
class Connector:
    """An outbound connector; ``config`` holds its type-specific fields (flattened on the wire)."""

    id: int
    name: str
    type: str
    status: str
    user_id: int
    last_connection: str | None
    connectable_type: str
    connectable_id: int
    config: dict[str, Any]
    retries: int = 3
    use_readable_names: bool = False
    entities: list[int] = field(default_factory=list)
    devices: list[int] = field(default_factory=list)
    mapping_schemas: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The SimpleOutConnector row of the connector list."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "user_id": self.user_id,
            "last_connection": self.last_connection,
        }


CONNECTOR_KINDS: tuple[tuple[str, str], ...] = (
    ("mqtt", "mqtt_connector"),
    ("http", "http_connector"),
    ("azure", "azureiot_connector"),
    ("fiware", "fiware_out_connector"),
    ("sentilo", "sentilo_out_connector"),
)

MAPPING_SCHEMAS: dict[int, dict[str, Any]] = {
    1: {"id": 1, "name": "Flat values", "map": {"value": "$.value"}},
    2: {"id": 2, "name": "With timestamp", "map": {"value": "$.value", "ts": "$.timestamp"}},
    3: {"id": 3, "name": "Sentilo observation", "map": {"observations": [{"value": "$.value"}]}},
}


def _connector_config(kind: str, ident: int) -> dict[str, Any]:
    if kind == "mqtt":
        return {
            "ipAddress": f"10.0.0.{ident}", "port": 1883, "username": f"mqtt{ident}",
            "password": "mqtt-secret", "clientId": f"iris360-{ident}", "sslCert": None,
            "ssl": False, "topicTemplate": {"template": "iris/{entity}/{attribute}"},
            "payload_type": "json", "payload_config": {"pretty": False},
        }
    if kind == "http":
        return {
            "method": "POST", "url": f"https://hooks.example.com/{ident}",
            "headers": {"X-Source": "iris360"}, "retries": 3, "timeout": 10, "bulk": False,
            "payload_type": "json", "payload_config": {},
        }
    if kind == "azure":
        return {
            "connection_string": f"HostName=hub{ident}.azure-devices.net;SharedAccessKey=secret",
            "payload_type": "json",
        }
    if kind == "fiware":
        return {
            "url": f"http://orion{ident}.example.com:1026", "iota_type": "json",
            "i": {"device": "{serial}"}, "k": {"apikey": "key"},
        }
    return {
        "sensor_id_template": {"template": "{serial}_{attribute}"},
        "identity_key": "sentilo-secret", "url": f"https://sentilo{ident}.example.com",
    }


def _tenant_blocks(
    tenant: str, others: Sequence[tuple[str, int]], devices: int
) -> tuple[tuple[str, ...], bytearray]:
    """Every tenant's name (the fleet's own first) and each device's tenant index."""
    names = [tenant]
    sizes = []
    for entry in others:
        name, count = entry
        if not isinstance(name, str) or not name or name in names:
            raise ValueError(f"tenants: {name!r} is empty or named twice (or the main tenant)")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"tenants: the device count of {name!r} must be an integer >= 0")
        names.append(name)
        sizes.append(count)
    if sum(sizes) > devices:
        raise ValueError(f"tenants hold {sum(sizes)} devices, more than the fleet's {devices}")
    if len(names) > 255:
        raise ValueError("at most 254 further tenants")
    owners = bytearray(devices - sum(sizes))
    for position, count in enumerate(sizes, start=1):
        owners.extend(bytes([position]) * count)
    return tuple(names), owners


def stable_hash(*parts: object) -> int:
    """A 32-bit hash of ``parts`` that is the same in every process (unlike ``hash``)."""
    return zlib.crc32("|".join(str(p) for p in parts).encode())


class Fleet:
    """Devices, entities and connectors generated from a seed.

    Args:
        devices: number of devices (and main entities).
        seed: seed of every generated value.
        tenant: the tenant of the fleet.
        scope: the main scope of the fleet.
        no_ota_fraction: share of devices of the legacy type that lacks ``w_ota`` (their
            commands containing ``w_ota`` are rejected).
        extra_entities: entities that are not the main entity of a device.
        connectors: outbound connectors (types cycle through the five kinds).
        series_start: first data point of every time series, seconds since the epoch.
        series_interval: seconds between two generated data points.
        sync_interval: ``(shortest, longest)`` emulated seconds between two connections of a
            device, when it confirms its pending commands (see :mod:`.sync`); ``None``: devices
            never confirm on their own.
        offline_fraction: share of the devices that never connect.
    """

    def __init__(
        self,
        *,
        devices: int,
        seed: int,
        tenant: str,
        scope: str,
        no_ota_fraction: float,
        extra_entities: int,
        connectors: int,
        series_start: int,
        series_interval: int,
        sync_interval: tuple[float, float] | None = None,
        offline_fraction: float = 0.0,
        tenants: Sequence[tuple[str, int]] = (),
    ) -> None:
        if devices < 0 or extra_entities < 0 or connectors < 0:
            raise ValueError("fleet sizes must not be negative")
        self.seed = seed
        self.tenant = tenant
        self.tenants, self._device_tenant = _tenant_blocks(tenant, tenants, devices)
        self.scope = scope
        self.series_start = series_start
        self.series_interval = series_interval
        self.scopes: frozenset[str] = frozenset({scope, "/lab"})
        rng = random.Random(seed)
        self.serials: list[str] = [f"SN{i + 1:06d}" for i in range(devices)]
        types = bytearray(devices)
        for i in range(devices):
            if rng.random() < no_ota_fraction:
                types[i] = LEGACY_TYPE_INDEX
            else:
                types[i] = rng.randrange(LEGACY_TYPE_INDEX)
        self.type_index = types
        self.serial_index: dict[str, int] = {s: i for i, s in enumerate(self.serials)}
        # serial -> type index in one lookup (the bulk-command hot path)
        self.serial_type: dict[str, int] = dict(zip(self.serials, types, strict=True))
        self.names: dict[int, str] = {}
        self.descriptions: dict[int, str | None] = {}
        self.case_ids: dict[int, str | None] = {}
        self.extras: list[Entity] = []
        self.gateways = 0
        self._build_extras(extra_entities, rng)
        self.entity_by_urn: dict[str, int] = {e.urn: e.id for e in self.extras}
        self.connectors: dict[int, Connector] = {}
        self._build_connectors(connectors, rng)
        self.ledger = CommandLedger(self.serial_type)
        from .sync import DeviceSync

        self.sync = DeviceSync(seed=seed, interval=sync_interval,
                               offline_fraction=offline_fraction)
        self._order_cache: dict[str, list[int]] = {}
        self._row_cache: dict[int, bytes] = {}
        self._row_cache_key: tuple[int | None, int] | None = None
        self._version = 0  # bumped whenever devices change (invalidates derived caches)

    # -- construction -------------------------------------------------------------------------

    def _build_extras(self, count: int, rng: random.Random) -> None:
        per_model: dict[str, int] = {}
        for k in range(count):
            model = _EXTRA_MODELS[k % len(_EXTRA_MODELS)]
            per_model[model] = n = per_model.get(model, 0) + 1
            urn = f"urn:ngsi-ld:{model}:{_EXTRA_PREFIX[model]}{n:04d}"
            scope = "/lab" if k % 4 == 3 else self.scope
            rels: tuple[tuple[str, str], ...] = ()
            if model == "Gateway":
                self.gateways += 1
            self.extras.append(
                Entity(
                    id=k + 1, urn=urn, datamodel=model, name=f"{_EXTRA_PREFIX[model]}{n:04d}",
                    tenant=self.tenant, scope=scope, device_id=None,
                    lon=round(-0.88 + rng.uniform(-0.05, 0.05), 5),
                    lat=round(41.65 + rng.uniform(-0.05, 0.05), 5), relationships=rels,
                )
            )
        # gateway k points back at device k (a relationship cycle for referenceDataNesting)
        gw = 0
        for pos, entity in enumerate(self.extras):
            if entity.datamodel == "Gateway":
                if gw < len(self.serials):
                    target = f"urn:ngsi-ld:Device:{self.serials[gw]}"
                    self.extras[pos] = Entity(
                        id=entity.id, urn=entity.urn, datamodel=entity.datamodel,
                        name=entity.name, tenant=entity.tenant, scope=entity.scope,
                        device_id=None, lon=entity.lon, lat=entity.lat,
                        relationships=(("refDevice", target),),
                    )
                gw += 1
        self._gateway_urns = [e.urn for e in self.extras if e.datamodel == "Gateway"]

    def _build_connectors(self, count: int, rng: random.Random) -> None:
        statuses = ("active", "active", "inactive", "error")
        for k in range(count):
            kind, morph = CONNECTOR_KINDS[k % len(CONNECTOR_KINDS)]
            ident = k + 1
            self.connectors[ident] = Connector(
                id=ident, name=f"{kind.upper()} connector {ident}", type=kind,
                status=statuses[rng.randrange(len(statuses))], user_id=17,
                last_connection=None if k % 3 == 2 else f"2025-06-{1 + k % 28:02d} 10:00:00",
                connectable_type=morph, connectable_id=k // len(CONNECTOR_KINDS) + 1,
                config=_connector_config(kind, ident),
                entities=[e.id for e in self.extras[k % 2 :: 5]][:3],
                devices=list(range(1 + k, min(len(self.serials), 3 + k) + 1)),
                mapping_schemas=[1 + k % len(MAPPING_SCHEMAS)],
            )

    # -- devices ------------------------------------------------------------------------------

    @property
    def device_count(self) -> int:
        """Number of devices."""
        return len(self.serials)

    @property
    def entity_count(self) -> int:
        """Number of entities (extras and main entities)."""
        return len(self.extras) + len(self.serials)

    def device_type(self, index: int) -> DeviceType:
        """The type of device ``index``."""
        return DEVICE_TYPES[self.type_index[index]]

    def device_name(self, index: int) -> str:
        """The name of device ``index``."""
        name = self.names.get(index)
        if name is None:
            return f"{DEVICE_TYPES[self.type_index[index]].name} {self.serials[index]}"
        return name

    def case_id(self, index: int) -> str | None:
        """The case id of device ``index``."""
        if index in self.case_ids:
            return self.case_ids[index]
        return None if index % 5 == 4 else f"CASE-{index % 997:04d}"

    def add_device(
        self,
        serial: str,
        *,
        name: str | None,
        type_index: int,
        description: str | None = None,
        case_id: str | None = None,
    ) -> bool:
        """Create device ``serial`` or update it; returns whether it was created."""
        index = self.serial_index.get(serial)
        created = index is None
        if index is None:
            index = len(self.serials)
            self.serials.append(serial)
            self.type_index.append(type_index)
            self.serial_index[serial] = index
        else:
            self.type_index[index] = type_index
        self.serial_type[serial] = type_index
        if created:
            self.ledger.add_serial(serial)
            self._device_tenant.append(0)
        self._version += 1
        if name is not None:
            self.names[index] = name
        if description is not None:
            self.descriptions[index] = description
        if case_id is not None:
            self.case_ids[index] = case_id
        self._order_cache.clear()
        self._row_cache.clear()
        return created

    def device_tenant(self, index: int) -> str:
        """The tenant of device ``index`` (and of its main entity)."""
        return self.tenants[self._device_tenant[index]]

    def device_entity_ids(self, tenant: str | None) -> Sequence[int]:
        """Ids of the main entities of ``tenant``'s devices (every tenant's for ``None``)."""
        first = len(self.extras) + 1
        every = range(first, first + len(self.serials))
        if tenant is None or (len(self.tenants) == 1 and tenant == self.tenant):
            return every
        if tenant not in self.tenants:
            return range(0)
        wanted = self.tenants.index(tenant)
        owners = self._device_tenant
        return [first + i for i in range(len(self.serials)) if owners[i] == wanted]

    def device_entity_id(self, index: int) -> int:
        """Id of the main entity of device ``index``."""
        return len(self.extras) + index + 1

    def device_order(self, column: str) -> list[int]:
        """Device indexes sorted ascending by ``column`` (ties broken by id); cached."""
        order = self._order_cache.get(column)
        if order is None:
            n = len(self.serials)
            if column == "name":
                order = sorted(range(n), key=self.device_name)
            elif column == "serial":
                order = sorted(range(n), key=self.serials.__getitem__)
            elif column == "case_id":
                order = sorted(range(n), key=lambda i: (self.case_id(i) is not None,
                                                         self.case_id(i) or ""))
            else:
                order = list(range(n))
            self._order_cache[column] = order
        return order

    def device_rows_json(self, indexes: Sequence[int], now: float) -> list[bytes]:
        """The encoded DevicesSchema rows of ``indexes`` (without realtime properties).

        A row depends on the device and on two clocks: the newest generated point (every
        ``series_interval``) and the day (subscriptions end at midnight UTC). Encoded rows are
        kept for the current pair of those and dropped when it changes or a device changes.
        """
        from .series import latest_point

        last = latest_point(self, now)
        key = (None if last is None else last[1], int(now // 86400))
        if key != self._row_cache_key:
            self._row_cache.clear()
            self._row_cache_key = key
        cache = self._row_cache
        out = []
        for i in indexes:
            row = cache.get(i)
            if row is None:
                row = cache[i] = _encode_row(self.device_row(i, now))
            out.append(row)
        return out

    def device_row(
        self, index: int, now: float, realtime: list[str] | None = None
    ) -> dict[str, Any]:
        """The DevicesSchema row of device ``index``."""
        from .series import latest_point, timestamp_db

        serial = self.serials[index]
        dtype = DEVICE_TYPES[self.type_index[index]]
        entity = self.entity(self.device_entity_id(index))
        assert entity is not None
        h = stable_hash(self.seed, serial)
        subscribed_until = 1767225600 + (h % 730) * 86400 - 365 * 86400  # around 2026
        last = latest_point(self, now)
        row: dict[str, Any] = {
            "id": index + 1,
            "case_id": self.case_id(index),
            "name": self.device_name(index),
            "serial": serial,
            "description": self.descriptions.get(index),
            "is_subscribed": subscribed_until >= now,
            "subscribed_until": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(subscribed_until)),
            "properties": {"firmware": f"v{1 + h % 3}.{h % 10}.0"},
            "type": dtype.as_json(),
            "time_last_data": None if last is None else timestamp_db(last[1]),
            "organization": {
                "id": self._device_tenant[index] + 1, "name": self.device_tenant(index),
            },
            "main_entity": {
                "id": entity.id, "urn": entity.urn, "datamodel": entity.datamodel,
                "scope": entity.scope, "tenant": entity.tenant,
                "geolocation": {"type": "Point", "coordinates": [entity.lon, entity.lat]},
            },
            "entities": [entity.id],
        }
        if realtime:
            from .series import value_at

            props: dict[str, Any] = {}
            if last is not None:
                for m in entity.measures:
                    if m.name in realtime:
                        props[m.name] = value_at(self.seed, entity.urn, m, last[0], last[1])
            row["entity_properties"] = props
        return row

    # -- entities -----------------------------------------------------------------------------

    def entity(self, entity_id: int) -> Entity | None:
        """The entity with ``entity_id``, or ``None``."""
        n_extra = len(self.extras)
        if 1 <= entity_id <= n_extra:
            return self.extras[entity_id - 1]
        index = entity_id - n_extra - 1
        if not 0 <= index < len(self.serials):
            return None
        serial = self.serials[index]
        h = stable_hash(self.seed, "geo", index)
        rels: tuple[tuple[str, str], ...] = ()
        if self._gateway_urns:
            rels = (("refGateway", self._gateway_urns[index % len(self._gateway_urns)]),)
        return Entity(
            id=entity_id, urn=f"urn:ngsi-ld:Device:{serial}", datamodel="Device",
            name=serial, tenant=self.device_tenant(index), scope=self.scope, device_id=index + 1,
            lon=round(-0.95 + (h % 10000) / 50000, 5),
            lat=round(41.60 + ((h >> 16) % 10000) / 50000, 5), relationships=rels,
        )

    def entity_by(self, urn: str) -> Entity | None:
        """The entity with ``urn``, or ``None``."""
        entity_id = self.entity_by_urn.get(urn)
        if entity_id is not None:
            return self.entity(entity_id)
        if urn.startswith("urn:ngsi-ld:Device:"):
            index = self.serial_index.get(urn[19:])
            if index is not None:
                return self.entity(self.device_entity_id(index))
        return None

    @property
    def version(self) -> int:
        """Changes whenever devices are created or updated."""
        return self._version

    def datamodels(self) -> set[str]:
        """Every datamodel present in the fleet."""
        models = {e.datamodel for e in self.extras}
        if self.serials:
            models.add("Device")
        return models
