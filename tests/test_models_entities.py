"""Entity models: list rows and the attribute union (Property/Relationship/Command), lenient
about unknown kinds, unknown fields and database-formatted timestamps."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
import pytest

from iris360_async.models import (
    Entity,
    EntityCommand,
    EntityProperty,
    EntityRelationship,
    Page,
    UnknownEntityAttribute,
)
from iris360_async.models.entities import decode_attributes

UTC = timezone.utc

# The example of the API reference (§4.3).
LATEST = b"""[
  {"urn": "urn:ngsi-ld:Device:Device001", "tenant": "OrganizationA", "scope": "/", "entity_id": 42,
   "id": "temperature", "name": "Temperature", "type": "Property", "value_type": "double",
   "value": 21.5, "units": "CEL", "timestamp": "2025-01-01 10:00:00",
   "description": "No info available", "template": null, "internal": false},
  {"urn": "urn:ngsi-ld:Device:Device001", "tenant": "OrganizationA", "scope": "/",
   "id": "refDevice", "name": "Ref Device", "type": "Relationship", "value_type": "string",
   "value": "urn:ngsi-ld:Device:Gateway01", "timestamp": "2025-01-01 10:00:00",
   "last_sent": true, "referenced_data": null, "pruned_by_cicle": false},
  {"urn": "urn:ngsi-ld:Device:Device001", "tenant": "OrganizationA", "scope": "/", "entity_id": 42,
   "id": "w_ota", "name": "W Ota", "type": "Command", "value_type": "bool",
   "status": "OK", "info": null, "status_timestamp": "\xe2\x80\xa6",
   "info_timestamp": "\xe2\x80\xa6",
   "timestamp": "2025-01-01T10:00:00+01:00",
   "available": true, "pending": false, "pending_value": null, "current_value": true,
   "description": "No info available", "data_type": null, "units": null, "tab": null,
   "datamodel": null, "max_value": null, "min_value": null, "internal": false, "operations": null}
]"""


def test_decode_reference_example() -> None:
    prop, rel, cmd = decode_attributes(LATEST)
    assert isinstance(prop, EntityProperty)
    assert (prop.id, prop.name, prop.value, prop.units) == (
        "temperature", "Temperature", 21.5, "CEL"
    )
    assert prop.entity_id == 42
    assert prop.timestamp == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert isinstance(rel, EntityRelationship)
    assert rel.value == "urn:ngsi-ld:Device:Gateway01"
    assert rel.last_sent is True
    assert rel.referenced_data is None
    assert isinstance(cmd, EntityCommand)
    assert cmd.available is True
    assert cmd.pending is False
    assert cmd.current_value is True
    assert cmd.timestamp == datetime(2025, 1, 1, 9, tzinfo=UTC)
    # "…" is not a timestamp: None instead of a failure.
    assert cmd.status_timestamp is None
    assert cmd.info_timestamp is None


def test_unknown_kind_kept_as_unknown_attribute() -> None:
    body = (
        b'[{"id":"t","type":"Property","value":1},'
        b'{"id":"loc","type":"GeoProperty","value":{"type":"Point"},"timestamp":"2025-01-01"}]'
    )
    prop, other = decode_attributes(body)
    assert isinstance(prop, EntityProperty)
    assert isinstance(other, UnknownEntityAttribute)
    assert other.type == "GeoProperty"
    assert other.id == "loc"
    assert other.value == {"type": "Point"}
    assert other.timestamp == datetime(2025, 1, 1, tzinfo=UTC)
    assert other.data["type"] == "GeoProperty"


def test_item_with_wrong_field_type_does_not_fail_the_list() -> None:
    prop, bad, missing_type = decode_attributes(
        b'[{"id":"t","type":"Property","value":1},{"id":5,"type":"Command"},{"id":"x"}]'
    )
    assert isinstance(prop, EntityProperty)
    assert isinstance(bad, UnknownEntityAttribute)
    assert bad.type == "Command"
    assert bad.id == "5"
    assert isinstance(missing_type, UnknownEntityAttribute)
    assert missing_type.type is None


def test_referenced_data_decoded_recursively() -> None:
    body = (
        b'[{"id":"refDevice","type":"Relationship","value":"urn:b","referenced_data":['
        b'{"id":"t","type":"Property","value":2,"timestamp":"2025-01-01 00:00:00"},'
        b'{"id":"odd","type":"Other"}]}]'
    )
    [rel] = decode_attributes(body)
    assert isinstance(rel, EntityRelationship)
    assert rel.referenced_data is not None
    nested, odd = rel.referenced_data
    assert isinstance(nested, EntityProperty)
    assert nested.timestamp == datetime(2025, 1, 1, tzinfo=UTC)
    assert isinstance(odd, UnknownEntityAttribute)


def test_unknown_fields_tolerated() -> None:
    [prop] = decode_attributes(b'[{"id":"t","type":"Property","value":1,"brand_new":[1]}]')
    assert isinstance(prop, EntityProperty)
    assert prop.value == 1


def test_not_an_array_raises() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_attributes(b'{"id":"t"}')


def test_entity_page_decodes() -> None:
    body = b"""{"rows": [{"id": 42, "name": "Device001", "urn": "urn:ngsi-ld:Device:Device001",
      "datamodel": "Device", "tenant": "libelium", "tenant_id": 3, "scope": "/", "scope_id": 7,
      "devices": [12], "geolocation": {"type": "Point", "coordinates": [-0.88, 41.65]},
      "new_field": true}, {"id": 43, "urn": "urn:x"}], "count": 137}"""
    page = msgspec.json.decode(body, type=Page[Entity])
    assert page.count == 137
    first, second = page.rows
    assert first.devices == [12]
    assert first.tenant_id == 3
    assert first.geolocation == {"type": "Point", "coordinates": [-0.88, 41.65]}
    assert second.name is None
    assert second.devices is None


def test_entities_are_frozen() -> None:
    [prop] = decode_attributes(b'[{"id":"t","type":"Property","value":1}]')
    with pytest.raises(AttributeError):
        prop.value = 2  # type: ignore[misc]


def test_kind_is_readable_as_type() -> None:
    kinds = [a.type for a in decode_attributes(LATEST)]
    assert kinds == ["Property", "Relationship", "Command"]
