"""``client.entities`` on the wire: paginate body (types comma-joined, tenant/scope defaults),
latest (URN in the path, tenant/scope headers, comma-joined filters, 1/0 booleans)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aioresponses import aioresponses
from resources_support import ROOT, TOKEN, body_of, make_client, mocked, sent
from yarl import URL

from iris360_async import Iris360Client, NotFoundError
from iris360_async.models import (
    EntityCommand,
    EntityProperty,
    EntityRelationship,
    LatestAttributes,
    UnknownEntityAttribute,
)


@pytest.fixture
async def iris() -> AsyncIterator[Iris360Client]:
    async for client in make_client():
        yield client


@pytest.fixture
def mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    yield from mocked(monkeypatch)


ENTITY = {
    "id": 42, "name": "Device001", "urn": "urn:ngsi-ld:Device:Device001", "datamodel": "Device",
    "tenant": "libelium", "tenant_id": 3, "scope": "/", "scope_id": 7, "devices": [12],
    "geolocation": {"type": "Point", "coordinates": [-0.88, 41.65]},
}


async def test_paginate_wire_format(iris: Iris360Client, mock: aioresponses) -> None:
    mock.post(ROOT + "/entities/paginate", payload={"rows": [ENTITY], "count": 1})
    entities = await iris.entities.paginate(
        types=["AirQualityObserved", "WeatherObserved"], search="dev", page_size=10
    ).collect()
    assert [e.urn for e in entities] == ["urn:ngsi-ld:Device:Device001"]
    assert entities[0].geolocation == ENTITY["geolocation"]
    kwargs = sent(mock, "POST", "/entities/paginate")
    assert body_of(kwargs) == {
        "paginationSize": 10, "page": 1, "orderBy": "entities.urn", "orderDirection": False,
        "search": "dev", "tenant": "libelium", "scope": "/",
        "types": "AirQualityObserved,WeatherObserved",
    }
    assert kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"


async def test_paginate_explicit_tenant_scope(iris: Iris360Client, mock: aioresponses) -> None:
    mock.post(ROOT + "/entities/paginate", payload={"rows": [], "count": 0})
    await iris.entities.paginate(tenant="other", scope="/x", types="Device").collect()
    body = body_of(sent(mock, "POST", "/entities/paginate"))
    assert (body["tenant"], body["scope"], body["types"]) == ("other", "/x", "Device")


async def test_paginate_without_defaults_omits_tenant(mock: aioresponses) -> None:
    async for client in make_client(tenant=None, scope=None):
        mock.post(ROOT + "/entities/paginate", payload={"rows": [], "count": 0})
        await client.entities.paginate().collect()
        body = body_of(sent(mock, "POST", "/entities/paginate"))
        assert "tenant" not in body
        assert "scope" not in body
        assert "types" not in body
        with pytest.raises(ValueError, match="scope requires a tenant"):
            client.entities.paginate(scope="/")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"types": ["a,b"]}, ValueError),
        ({"types": []}, ValueError),
        ({"types": [1]}, TypeError),
        ({"page_size": -1}, ValueError),
        ({"tenant": ""}, ValueError),
        ({"search": 1}, TypeError),
        ({"prefetch": 0}, ValueError),
    ],
)
async def test_paginate_bad_arguments(
    iris: Iris360Client, mock: aioresponses, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        iris.entities.paginate(**kwargs)
    assert not mock.requests


LATEST = [
    {"urn": "urn:ngsi-ld:Device:Device001", "tenant": "OrganizationA", "scope": "/",
     "entity_id": 42, "id": "temperature", "name": "Temperature", "type": "Property",
     "value_type": "double", "value": 21.5, "units": "CEL", "timestamp": "2025-01-01 10:00:00",
     "description": "No info available", "template": None, "internal": False},
    {"urn": "urn:ngsi-ld:Device:Device001", "id": "refDevice", "type": "Relationship",
     "value": "urn:ngsi-ld:Device:Gateway01", "timestamp": "2025-01-01 10:00:00",
     "last_sent": True, "referenced_data": None, "pruned_by_cicle": False},
    {"urn": "urn:ngsi-ld:Device:Device001", "id": "w_ota", "type": "Command",
     "available": True, "pending": False, "current_value": True, "status_timestamp": "…"},
    {"id": "location", "type": "GeoProperty", "value": {"type": "Point"}},
]


async def test_latest_wire_format_and_kinds(iris: Iris360Client, mock: aioresponses) -> None:
    mock.get(re.compile(re.escape(ROOT + "/last-data/entities/") + ".*"), payload=LATEST)
    attrs = await iris.entities.latest(
        "urn:ngsi-ld:Device:Device001",
        attr_types=["Property", "Command"],
        names=["temperature", "w_ota"],
        properties="temperature",
        relationships=["refDevice"],
        commands=["w_ota"],
        reference_data_nesting=2,
        last_sent=False,
        only_available_commands=True,
        only_pending_commands=False,
    )
    assert [type(a) for a in attrs] == [
        EntityProperty, EntityRelationship, EntityCommand, UnknownEntityAttribute
    ]
    assert isinstance(attrs, LatestAttributes)
    assert attrs.value("w_ota") is True
    assert attrs.value("location") == {"type": "Point"}
    [(key, calls)] = mock.requests.items()
    method, url = key
    assert method == "GET"
    assert url.path == "/api/public/v1/last-data/entities/urn:ngsi-ld:Device:Device001"
    assert dict(url.query) == {
        "attrTypeFilter": "Property,Command",
        "attrNameFilter": "temperature,w_ota",
        "attrPropFilter": "temperature",
        "attrRelFilter": "refDevice",
        "attrCmdFilter": "w_ota",
        "referenceDataNesting": "2",
        "lastSent": "0",
        "filterCmdAvailable": "1",
        "filterCmdPending": "0",
    }
    headers = calls[0].kwargs["headers"]
    assert headers["tenant"] == "libelium"
    assert headers["scope"] == "/"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Accept"] == "application/json"


async def test_latest_plain_call_and_header_override(
    iris: Iris360Client, mock: aioresponses
) -> None:
    path = "/last-data/entities/urn:ngsi-ld:Device:D1"
    mock.get(ROOT + path, payload=[])
    assert await iris.entities.latest("urn:ngsi-ld:Device:D1", tenant="t2", scope="/s") == []
    kwargs = sent(mock, "GET", path)
    assert kwargs["params"] is None
    assert (kwargs["headers"]["tenant"], kwargs["headers"]["scope"]) == ("t2", "/s")


async def test_latest_percent_encodes_the_urn(iris: Iris360Client, mock: aioresponses) -> None:
    mock.get(re.compile(".*"), payload=[])
    await iris.entities.latest("urn:ngsi-ld:Thing:a/b%c?d#e")
    [(_, url)] = mock.requests.keys()
    assert url.raw_path == "/api/public/v1/last-data/entities/urn:ngsi-ld:Thing:a%2Fb%25c%3Fd%23e"
    assert URL(str(url)).query == {}


async def test_latest_not_found(iris: Iris360Client, mock: aioresponses) -> None:
    mock.get(ROOT + "/last-data/entities/urn:x", status=404, body='"Entity not found"')
    with pytest.raises(NotFoundError):
        await iris.entities.latest("urn:x")


@pytest.mark.parametrize(
    ("urn", "kwargs", "error"),
    [
        ("", {}, ValueError),
        ("urn:a b", {}, ValueError),
        (5, {}, TypeError),
        ("urn:a", {"attr_types": ["property"]}, ValueError),
        ("urn:a", {"names": ["a,b"]}, ValueError),
        ("urn:a", {"last_sent": "false"}, TypeError),
        ("urn:a", {"reference_data_nesting": -1}, ValueError),
    ],
)
async def test_latest_bad_arguments(
    iris: Iris360Client, mock: aioresponses, urn: Any, kwargs: dict[str, Any],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        await iris.entities.latest(urn, **kwargs)
    assert not mock.requests


async def test_latest_requires_tenant_and_scope(mock: aioresponses) -> None:
    async for client in make_client(tenant=None, scope=None):
        with pytest.raises(ValueError, match="tenant"):
            await client.entities.latest("urn:a")
        with pytest.raises(ValueError, match="scope"):
            await client.entities.latest("urn:a", tenant="t")
    assert not mock.requests
