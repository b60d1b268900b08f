"""Device, bulk result, connector and token models."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
import pytest

from iris360_async.models import (
    BulkCommandItemResult,
    Device,
    OutConnector,
    Page,
    SimpleOutConnector,
    TokenPair,
)
from iris360_async.models.connectors import ConnectorModelsUpdate

UTC = timezone.utc

DEVICE_PAGE = b"""{"rows": [
  {"id": 12, "case_id": null, "name": "Plug & Sense 1", "serial": "ONE001",
   "description": null, "is_subscribed": true, "subscribed_until": "2026-01-01 00:00:00",
   "properties": {"fw": "1.2"}, "type": {"id": 3, "code": "PS", "name": "Plug & Sense",
   "brand": "Libelium", "category": "sensor"}, "time_last_data": "2025-01-01T10:00:00.5",
   "organization": {"id": 1, "name": "Acme", "slug": "acme"},
   "main_entity": {"id": 42, "urn": "urn:ngsi-ld:Device:ONE001", "datamodel": "Device",
   "scope": "/", "tenant": "libelium", "geolocation": null, "x": 1},
   "entities": [42, 43], "entity_properties": {"temperature": 21.5}},
  {"id": 13, "serial": "ONE002", "type": {"id": 3}, "time_last_data": "not a date"}
], "count": 2}"""


def test_device_page_decodes() -> None:
    page = msgspec.json.decode(DEVICE_PAGE, type=Page[Device])
    assert page.count == 2
    first, second = page.rows
    assert first.serial == "ONE001"
    assert first.type is not None
    assert first.type.brand == "Libelium"
    assert first.organization is not None
    assert first.organization.name == "Acme"
    assert first.main_entity is not None
    assert first.main_entity.urn == "urn:ngsi-ld:Device:ONE001"
    assert first.subscribed_until == datetime(2026, 1, 1, tzinfo=UTC)
    assert first.time_last_data == datetime(2025, 1, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert first.entity_properties == {"temperature": 21.5}
    assert first.entities == [42, 43]
    assert second.time_last_data is None
    assert second.main_entity is None
    assert second.entities is None


def test_bulk_results_example() -> None:
    body = b"""[
      {"headers": {}, "original": {"data": "Command sent!!"}, "exception": null},
      {"headers": {}, "original": {"errors": "You cannot send any of: w_ota"}, "exception": null}
    ]"""
    ok, rejected = msgspec.json.decode(body, type=list[BulkCommandItemResult])
    assert ok.sent
    assert not rejected.sent
    assert ok.headers == {}
    assert rejected.original == {"errors": "You cannot send any of: w_ota"}
    assert rejected.exception is None


# Connector as documented (MQTT variant, type-specific fields flattened, id a string).
MQTT = b"""{"id": "1", "name": "broker", "type": "mqtt", "status": "active", "user_id": 5,
  "last_connection": "2025-01-01 10:00:00", "connectable_type": "mqtt_connector",
  "connectable_id": 9, "entities": [1, 2], "devices": [3], "mapping_schemas":
  [{"id": 4, "name": "default", "map": {"a": "b"}}], "ipAddress": "10.0.0.1", "port": 1883,
  "username": "u", "password": "hunter2", "clientId": "c1", "sslCert": "CERTDATA",
  "ssl": "true", "topicTemplate": {"t": "x/{id}"}, "payload_type": "json",
  "payload_config": {}, "future": 1}"""


def test_connector_mqtt_decodes() -> None:
    conn = msgspec.json.decode(MQTT, type=OutConnector)
    assert conn.id == "1"
    assert conn.connectable_type == "mqtt_connector"
    assert conn.ip_address == "10.0.0.1"
    assert conn.port == 1883
    assert conn.client_id == "c1"
    assert conn.ssl == "true"
    assert conn.ssl_enabled is True
    assert conn.topic_template == {"t": "x/{id}"}
    assert conn.mapping_schemas is not None
    assert conn.mapping_schemas[0].map == {"a": "b"}
    assert conn.last_connection == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert conn.password == "hunter2"


def test_connector_repr_hides_secrets() -> None:
    conn = msgspec.json.decode(
        MQTT.replace(b'"future": 1', b'"connection_string": "HostName=x;Key=SECRET"'),
        type=OutConnector,
    )
    text = repr(conn)
    assert "hunter2" not in text
    assert "SECRET" not in text
    assert "CERTDATA" not in text
    assert "password='***'" in text
    assert "ip_address='10.0.0.1'" in text


@pytest.mark.parametrize(
    ("body", "ssl", "enabled"),
    [
        (b'{"id": 7, "ssl": true, "method": "POST", "url": "https://x", "bulk": 1}', True, True),
        (b'{"id": 7, "ssl": "0"}', "0", False),
        (b'{"id": 7}', None, None),
    ],
)
def test_connector_lenient_ssl_and_id(body: bytes, ssl: object, enabled: object) -> None:
    conn = msgspec.json.decode(body, type=OutConnector)
    assert conn.id == 7
    assert conn.ssl == ssl
    assert conn.ssl_enabled == enabled


def test_simple_connector_page() -> None:
    body = b'{"rows": [{"id": 1, "name": "a", "status": "active", "x": 1}], "count": 1}'
    page = msgspec.json.decode(body, type=Page[SimpleOutConnector])
    assert page.rows[0].name == "a"
    assert page.rows[0].status == "active"


def test_models_update_omits_unset_lists() -> None:
    assert msgspec.json.encode(ConnectorModelsUpdate(devices=[1], mapping_schemas=[])) == (
        b'{"devices":[1],"mapping_schemas":[]}'
    )


def test_token_pair_wire_names_and_repr() -> None:
    pair = msgspec.json.decode(
        b'{"id": 17, "token": "eyJ.secret.sig", "refreshToken": "refresh-secret"}',
        type=TokenPair,
    )
    assert pair.token == "eyJ.secret.sig"
    assert pair.refresh_token == "refresh-secret"
    assert pair.id == 17
    assert "secret" not in repr(pair)
    assert msgspec.json.decode(msgspec.json.encode(pair))["refreshToken"] == "refresh-secret"
