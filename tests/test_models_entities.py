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
    LatestAttributes,
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


# -- LatestAttributes: one value without a loop -------------------------------------------------


def _latest() -> LatestAttributes:
    return LatestAttributes(decode_attributes(LATEST))


def test_value_of_a_property_a_relationship_and_a_command() -> None:
    attrs = _latest()
    assert attrs.value("temperature") == 21.5
    assert attrs.value("refDevice") == "urn:ngsi-ld:Device:Gateway01"
    assert attrs.value("w_ota") is True  # a command's confirmed value (current_value)
    assert isinstance(attrs.attribute("w_ota"), EntityCommand)
    assert attrs.names() == ["temperature", "refDevice", "w_ota"]


def test_a_missing_attribute_is_a_key_error_naming_those_there_are() -> None:
    with pytest.raises(KeyError) as info:
        _latest().value("tempreature")
    message = str(info.value)
    assert "'tempreature'" in message
    assert "urn:ngsi-ld:Device:Device001" in message
    assert "available: temperature, refDevice, w_ota" in message
    with pytest.raises(KeyError, match="available: none"):
        LatestAttributes().attribute("x")


def test_a_repeated_attribute_reads_its_newest_value() -> None:
    def prop(value: float, timestamp: str | None) -> EntityProperty:
        return msgspec.convert(
            {"type": "Property", "id": "t", "value": value, "timestamp": timestamp},
            EntityProperty,
        )

    attrs = LatestAttributes(
        [prop(1.0, None), prop(2.0, "2025-01-02 00:00:00"), prop(3.0, "2025-01-01 00:00:00")]
    )
    assert attrs.value("t") == 2.0
    assert LatestAttributes([prop(1.0, None), prop(4.0, None)]).value("t") == 1.0
    assert attrs.names() == ["t"]


def test_latest_attributes_is_a_list_that_survives_pickle_and_json() -> None:
    import pickle

    attrs = _latest()
    assert isinstance(attrs, list)
    assert len(attrs) == 3
    again = pickle.loads(pickle.dumps(attrs))
    assert type(again) is LatestAttributes
    assert again.value("temperature") == 21.5
    assert msgspec.json.decode(msgspec.json.encode(attrs))[0]["id"] == "temperature"
