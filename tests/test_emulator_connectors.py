"""Emulator outbound connectors: list, get, update models."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from iris360_async.testing import EmulatorPaths, Iris360Emulator

KINDS = {"mqtt": "mqtt_connector", "http": "http_connector", "azure": "azureiot_connector",
         "fiware": "fiware_out_connector", "sentilo": "sentilo_out_connector"}


class Api:
    def __init__(self, emu: Iris360Emulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session
        self.auth = {"Authorization": f"Bearer {emu.issue_token().token}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.emu.api_url + path, json=body,
                                        headers=self.auth) as resp:
            return resp.status, json.loads(await resp.read())


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with Iris360Emulator(devices=20, connectors=10) as emu, \
            aiohttp.ClientSession() as session:
        yield Api(emu, session)


def page(**kw: Any) -> dict[str, Any]:
    return {"page": 1, "paginationSize": 4, "orderBy": "id", "orderDirection": False, **kw}


async def test_paginate_connectors(api: Api) -> None:
    status, body = await api.call("POST", "/connectors/out/paginate", page())
    assert status == 200
    assert body["count"] == 10
    assert [r["id"] for r in body["rows"]] == [1, 2, 3, 4]
    assert set(body["rows"][0]) == {"id", "name", "type", "status", "user_id",
                                    "last_connection"}
    _, zero = await api.call("POST", "/connectors/out/paginate", page(page=0))
    assert zero == body
    _, by_name = await api.call("POST", "/connectors/out/paginate",
                                page(orderBy="out_connectors.name", paginationSize=10,
                                     orderDirection=True))
    names = [r["name"] for r in by_name["rows"]]
    assert names == sorted(names, reverse=True)
    _, found = await api.call("POST", "/connectors/out/paginate", page(search="SENTILO"))
    assert [r["type"] for r in found["rows"]] == ["sentilo", "sentilo"]
    status, _ = await api.call("POST", "/connectors/out/paginate", page(orderBy="bogus"))
    assert status == 500
    status, body = await api.call("POST", "/connectors/out/paginate", {"page": 1})
    assert status == 422
    assert "paginationSize" in body["errors"]


async def test_all_five_kinds_with_their_fields(api: Api) -> None:
    seen = {}
    for ident in range(1, 6):
        status, body = await api.call("GET", f"/connectors/out/{ident}")
        assert status == 200
        seen[body["type"]] = body
        assert body["connectable_type"] == KINDS[body["type"]]
        assert isinstance(body["mapping_schemas"][0]["map"], dict)
    assert set(seen) == set(KINDS)
    assert seen["mqtt"]["ipAddress"]
    assert seen["mqtt"]["port"] == 1883
    assert seen["http"]["method"] == "POST"
    assert "connection_string" in seen["azure"]
    assert "iota_type" in seen["fiware"]
    assert "identity_key" in seen["sentilo"]


async def test_unknown_connector_is_404(api: Api) -> None:
    status, body = await api.call("GET", "/connectors/out/999")
    assert status == 404
    assert body == {"message": "No query results for model [App\\Models\\OutConnector] 999"}
    status, _ = await api.call("GET", "/connectors/out/abc")
    assert status == 404


async def test_update_models_replaces_the_lists_present(api: Api) -> None:
    _, before = await api.call("GET", "/connectors/out/2")
    status, body = await api.call("PUT", "/connectors/out/2/models",
                                  {"devices": [5, 6, 5], "mapping_schemas": [3]})
    assert status == 200
    assert body["devices"] == [5, 6]
    assert [m["id"] for m in body["mapping_schemas"]] == [3]
    assert body["entities"] == before["entities"]  # absent list kept
    _, after = await api.call("GET", "/connectors/out/2")
    assert after == body
    status, body = await api.call("PUT", "/connectors/out/2/models", {"entities": []})
    assert status == 200
    assert body["entities"] == []


async def test_update_models_validation(api: Api) -> None:
    status, body = await api.call("PUT", "/connectors/out/1/models",
                                  {"devices": [1, "x", 999], "entities": "1"})
    assert status == 422
    assert body["errors"] == {
        "entities": ["The entities field must be an array."],
        "devices.1": ["The devices.1 field must be an integer."],
        "devices.2": ["The selected devices.2 is invalid."],
    }
    status, body = await api.call("PUT", "/connectors/out/1/models", {})
    assert status == 422
    status, _ = await api.call("PUT", "/connectors/out/77/models", {"devices": [1]})
    assert status == 404


async def test_models_path_is_configurable() -> None:
    paths = EmulatorPaths(connector_models="/connectors/out/{id}/links")
    async with Iris360Emulator(devices=3, paths=paths) as emu, \
            aiohttp.ClientSession() as session:
        api = Api(emu, session)
        status, body = await api.call("PUT", "/connectors/out/1/links", {"devices": [2]})
        assert (status, body["devices"]) == (200, [2])
