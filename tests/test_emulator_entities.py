"""Emulator entity endpoints: pagination filters and the latest-data attributes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from iris360_async.testing import Iris360Emulator

URN = "urn:ngsi-ld:Device:SN000001"


class Api:
    def __init__(self, emu: Iris360Emulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session
        self.auth = {"Authorization": f"Bearer {emu.issue_token().token}"}

    async def paginate(self, **body: Any) -> tuple[int, Any]:
        async with self.session.post(self.emu.api_url + "/entities/paginate", json=body,
                                     headers=self.auth) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if resp.status != 400 else text

    async def latest(self, urn: str = URN, *, tenant: str | None = "libelium",
                     scope: str | None = "/", **params: str) -> tuple[int, Any, str]:
        headers = dict(self.auth)
        if tenant is not None:
            headers["tenant"] = tenant
        if scope is not None:
            headers["scope"] = scope
        async with self.session.get(self.emu.api_url + "/last-data/entities/" + urn,
                                    params=params, headers=headers) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text), resp.content_type
            except ValueError:
                return resp.status, text, resp.content_type

    async def bulk(self, serials: list[str], **commands: Any) -> Any:
        async with self.session.post(self.emu.api_url + "/devices/sendCommandsBulk",
                                     json={"device_serials": serials, **commands},
                                     headers=self.auth) as resp:
            return await resp.json()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with Iris360Emulator(devices=30, seed=1, extra_entities=12, no_ota_fraction=0.0) as emu, \
            aiohttp.ClientSession() as session:
        yield Api(emu, session)


# -- pagination ---------------------------------------------------------------------------------


async def test_defaults_page_one_descending_by_id(api: Api) -> None:
    status, body = await api.paginate()
    assert status == 200
    assert body["count"] == 42
    ids = [r["id"] for r in body["rows"]]
    assert ids == list(range(42, 32, -1))  # default paginationSize 10, orderDirection true
    _, asc = await api.paginate(orderDirection=False, page=0, paginationSize=5)
    assert [r["id"] for r in asc["rows"]] == [1, 2, 3, 4, 5]
    _, same = await api.paginate(orderDirection=False, page=1, paginationSize=5,
                                 orderBy="entities.urn")
    assert same == asc  # orderBy is ignored: always entities.id


async def test_loose_boolean_string_false_means_descending(api: Api) -> None:
    _, body = await api.paginate(orderDirection="false", paginationSize=3)
    assert [r["id"] for r in body["rows"]] == [42, 41, 40]
    _, body = await api.paginate(orderDirection=0, paginationSize=3)
    assert [r["id"] for r in body["rows"]] == [1, 2, 3]


async def test_walking_every_page_visits_each_entity_once(api: Api) -> None:
    seen: list[int] = []
    page = 1
    while True:
        _, body = await api.paginate(page=page, paginationSize=7, orderDirection=False)
        if not body["rows"]:
            break
        seen.extend(r["id"] for r in body["rows"])
        page += 1
    assert seen == list(range(1, 43))


async def test_types_filter_is_a_comma_joined_string(api: Api) -> None:
    _, body = await api.paginate(types="AirQualityObserved,WeatherObserved", paginationSize=50)
    assert body["count"] == 8
    assert {r["datamodel"] for r in body["rows"]} == {"AirQualityObserved", "WeatherObserved"}
    status, body = await api.paginate(types=["AirQualityObserved"])
    assert (status, body) == (500, {"message": "Server Error"})


async def test_tenant_and_scope_filters(api: Api) -> None:
    _, body = await api.paginate(tenant="libelium", scope="/lab", paginationSize=50)
    assert body["count"] == 3
    assert all(r["scope"] == "/lab" for r in body["rows"])
    _, body = await api.paginate(tenant="other")
    assert body == {"rows": [], "count": 0}
    status, text = await api.paginate(scope="/")
    assert (status, text) == (400, "Undefined tenant for given scope")


async def test_search_urn_and_bounds_filters(api: Api) -> None:
    _, body = await api.paginate(search="GATEWAY", paginationSize=50)
    assert body["count"] == 4
    assert all(r["datamodel"] == "Gateway" for r in body["rows"])
    _, body = await api.paginate(search="sn00002", paginationSize=50)
    assert sorted(r["name"] for r in body["rows"]) == [f"SN0000{i}" for i in range(20, 30)]
    _, body = await api.paginate(urn="urn:ngsi-ld:Device:SN00000%", paginationSize=50)
    assert body["count"] == 9
    _, body = await api.paginate(excluded=["urn:ngsi-ld:Device:%"], paginationSize=50)
    assert body["count"] == 12
    status, text = await api.paginate(bounds={"south": "a"})
    assert (status, text) == (400, "Invalid bounds, expected numeric south/west/north/east")
    _, body = await api.paginate(bounds={"south": 0, "west": 0, "north": 1, "east": 1})
    assert body["count"] == 0


async def test_entity_row_shape(api: Api) -> None:
    _, body = await api.paginate(urn=URN)
    (row,) = body["rows"]
    assert row["urn"] == URN
    assert row["datamodel"] == "Device"
    assert row["devices"] == [1]
    assert row["tenant"] == "libelium"
    assert row["geolocation"]["type"] == "Point"


# -- latest data --------------------------------------------------------------------------------


async def test_headers_are_required(api: Api) -> None:
    status, body, ctype = await api.latest(tenant=None)
    assert (status, body, ctype) == (400, "Missing headers (tenant,scope)", "text/html")
    status, body, _ = await api.latest(scope=None)
    assert status == 400


async def test_unknown_entity_is_a_json_string(api: Api) -> None:
    status, body, ctype = await api.latest("urn:ngsi-ld:Device:NOPE")
    assert (status, body, ctype) == (404, "Entity not found", "application/json")
    status, body, _ = await api.latest(scope="/lab")  # exists, but in another scope
    assert (status, body) == (404, "Entity not found")


async def test_three_attribute_kinds(api: Api) -> None:
    status, attrs, _ = await api.latest()
    assert status == 200
    kinds = {a["type"] for a in attrs}
    assert kinds == {"Property", "Relationship", "Command"}
    props = {a["id"]: a for a in attrs if a["type"] == "Property"}
    assert set(props) == {"temperature", "humidity", "battery", "online"}
    assert isinstance(props["online"]["value"], bool)
    assert isinstance(props["battery"]["value"], int)
    rel = next(a for a in attrs if a["type"] == "Relationship")
    assert rel["value"] == "urn:ngsi-ld:Gateway:GW0001"
    commands = {a["id"]: a for a in attrs if a["type"] == "Command"}
    assert commands["w_ota"]["available"] is True
    assert commands["w_ota"]["pending"] is False
    assert commands["w_ota"]["pending_value"] is None


async def test_commands_sent_become_pending_with_their_value(api: Api) -> None:
    await api.bulk(["SN000001", "SN000002"], w_sleep=30)
    await api.bulk(["SN000002"], w_sleep=60)
    _, attrs, _ = await api.latest(attrTypeFilter="Command", filterCmdPending="1")
    assert [(a["id"], a["pending"], a["pending_value"]) for a in attrs] == [
        ("w_sleep", True, 30)]
    _, attrs, _ = await api.latest("urn:ngsi-ld:Device:SN000002", attrCmdFilter="w_sleep")
    command = next(a for a in attrs if a["type"] == "Command")
    assert (command["pending"], command["pending_value"], command["status"]) == (
        True, 60, "PENDING")
    api.emu.acknowledge_commands("SN000001")
    _, attrs, _ = await api.latest(attrTypeFilter="Command", filterCmdPending="1")
    assert attrs == []
    api.emu.acknowledge_commands()
    _, attrs, _ = await api.latest("urn:ngsi-ld:Device:SN000002", attrTypeFilter="Command",
                                   filterCmdPending="1")
    assert attrs == []


async def test_comma_joined_filters(api: Api) -> None:
    _, attrs, _ = await api.latest(attrTypeFilter="Property,Relationship")
    assert {a["type"] for a in attrs} == {"Property", "Relationship"}
    _, attrs, _ = await api.latest(attrNameFilter="temperature,w_ota,refGateway")
    assert sorted(a["id"] for a in attrs) == ["refGateway", "temperature", "w_ota"]
    _, attrs, _ = await api.latest(attrPropFilter="battery", attrTypeFilter="Property")
    assert [a["id"] for a in attrs] == ["battery"]
    status, _, _ = await api.latest(**{"attrTypeFilter[]": "Property"})
    assert status == 500


async def test_boolean_query_parameters_are_php_loose(api: Api) -> None:
    emu = api.emu
    legacy_index = 0
    emu.fleet.type_index[legacy_index] = 3  # make SN000001 a device type without w_ota
    _, attrs, _ = await api.latest(attrTypeFilter="Command", filterCmdAvailable="1")
    assert "w_ota" not in {a["id"] for a in attrs}
    _, attrs, _ = await api.latest(attrTypeFilter="Command", filterCmdAvailable="false")
    assert "w_ota" not in {a["id"] for a in attrs}  # the string "false" is truthy
    _, attrs, _ = await api.latest(attrTypeFilter="Command", filterCmdAvailable="0")
    assert "w_ota" in {a["id"] for a in attrs}


async def test_reference_data_nesting_and_cycles(api: Api) -> None:
    _, attrs, _ = await api.latest(attrTypeFilter="Relationship", referenceDataNesting="2")
    (rel,) = attrs
    assert rel["pruned_by_cicle"] is False
    nested = rel["referenced_data"]
    assert {a["id"] for a in nested} >= {"uptime", "firmware", "refDevice"}
    back = next(a for a in nested if a["id"] == "refDevice")
    assert back["value"] == URN
    assert back["pruned_by_cicle"] is True  # gateway 1 points back at device 1
    _, attrs, _ = await api.latest(attrTypeFilter="Relationship")
    assert attrs[0]["referenced_data"] is None


async def test_extra_entities_have_their_own_measures(api: Api) -> None:
    status, attrs, _ = await api.latest("urn:ngsi-ld:AirQualityObserved:AQ0001")
    assert status == 200
    assert {a["id"] for a in attrs} == {"NO2", "PM10", "PM2_5"}
