"""Every emulator response validates against the schemas of spec/openapi.yaml.

The requests sent are validated against the request schemas too, so the checks speak the
documented contract. ``$ref`` pointers resolve into the document itself (OpenAPI 3.1 schemas are
JSON Schema 2020-12).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from jsonschema import (  # type: ignore[import-untyped,unused-ignore]
    Draft202012Validator,
    ValidationError,
)
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import iris360_async.testing as testing
from iris360_async.testing import FaultProfile, Iris360Emulator

ROOT = Path(testing.__file__).resolve().parents[2]
SPEC: dict[str, Any] = yaml.safe_load((ROOT / "spec" / "openapi.yaml").read_text())
REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:spec", Resource.from_contents(SPEC, default_specification=DRAFT202012)
)
JSON = "application/json"
URN = "urn:ngsi-ld:Device:SN000001"
CHECKED: set[tuple[str, str, int]] = set()
AREAS: dict[str, set[tuple[str, str]]] = {
    "auth": {("/login", "post"), ("/refresh-token", "post")},
    "timeseries": {("/timeseries", "post")},
    "entities": {("/entities/paginate", "post"), ("/last-data/entities/{urn}", "get")},
    "devices": {("/devices/paginate", "post"), ("/devices/sendCommandsBulk", "post"),
                ("/devices/importFile", "post")},
    "connectors": {("/connectors/out/paginate", "post"), ("/connectors/out/{id}", "get"),
                   ("/connectors/out/{id}/models", "put")},
}


def assert_area_checked(area: str) -> None:
    checked = {(path, method) for path, method, _ in CHECKED}
    assert AREAS[area] <= checked, AREAS[area] - checked


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _validate(pointer: list[str], instance: Any) -> None:
    ref = "urn:spec#/" + "/".join(_escape(p) for p in pointer)
    Draft202012Validator({"$ref": ref}, registry=REGISTRY).validate(instance)


def check_request(path: str, method: str, body: Any) -> None:
    _validate(["paths", path, method, "requestBody", "content", JSON, "schema"], body)


def check_response(path: str, method: str, status: int, content_type: str, text: str) -> None:
    responses = SPEC["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} -> {status} is not documented"
    pointer = ["paths", path, method, "responses", str(status)]
    response = responses[str(status)]
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[1]
        pointer = ["components", "responses", name]
        response = SPEC["components"]["responses"][name]
    content = response["content"]
    if content_type == JSON or content_type not in content:
        assert JSON in content, (path, status, content_type)
        _validate([*pointer, "content", JSON, "schema"], json.loads(text))
    else:
        _validate([*pointer, "content", content_type, "schema"], text)
        if JSON in content and text.lstrip().startswith(("{", "[")):
            _validate([*pointer, "content", JSON, "schema"], json.loads(text))
    CHECKED.add((path, method, status))


class Api:
    def __init__(self, emu: Iris360Emulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session
        self.token = emu.issue_token().token

    async def call(self, method: str, spec_path: str, path: str | None = None, *,
                   body: Any = None, validate_request: bool = True,
                   headers: dict[str, str] | None = None, auth: bool = True,
                   data: Any = None) -> tuple[int, str]:
        if body is not None and validate_request:
            check_request(spec_path, method, body)
        hdrs = {"Accept": JSON, **(headers or {})}
        if auth:
            hdrs["Authorization"] = f"Bearer {self.token}"
        async with self.session.request(
            method.upper(), self.emu.api_url + (path or spec_path), json=body, data=data,
            headers=hdrs,
        ) as resp:
            text = await resp.text()
            check_response(spec_path, method, resp.status, resp.content_type, text)
            return resp.status, text


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with Iris360Emulator(devices=30, no_ota_fraction=0.3, connectors=10) as emu, \
            aiohttp.ClientSession() as session:
        yield Api(emu, session)


async def test_auth(api: Api) -> None:
    emu = api.emu
    status, text = await api.call("post", "/login", auth=False,
                                  body={"username": emu.username, "password": emu.password})
    assert status == 200
    refresh = json.loads(text)["refreshToken"]
    await api.call("post", "/login", auth=False,
                   body={"username": emu.username, "password": "x"})
    await api.call("post", "/login", auth=False, body={}, validate_request=False)
    assert (await api.call("post", "/refresh-token", auth=False,
                           body={"refreshToken": refresh}))[0] == 200
    assert (await api.call("post", "/refresh-token", auth=False,
                           body={"refreshToken": refresh}))[0] == 401
    assert (await api.call("post", "/refresh-token", auth=False, body={},
                           validate_request=False))[0] == 422
    emu.set_faults(FaultProfile(rate_limit_rate=1.0), endpoint="login")
    assert (await api.call("post", "/login", auth=False,
                           body={"username": emu.username, "password": emu.password}))[0] == 429
    assert_area_checked('auth')


def series_request(**options: Any) -> dict[str, Any]:
    return {"device_ids": [URN, "urn:ngsi-ld:Device:NOPE"], "measure_ids": ["temperature",
                                                                            "online"],
            "options": {"tenant": "libelium", "scope": "/", "limit": 3, **options}}


async def test_timeseries(api: Api) -> None:
    body = [series_request(), series_request(order="desc", query_id="q",
                                             aggregation={"type": "mean", "interval": "PT1H"}),
            series_request(start_date="P1D", period=[{"months": [1, 2], "hours": [
                ["08:00:00", "18:00:00"]], "extra": [{"month_day": 0}]}])]
    status, _ = await api.call("post", "/timeseries", body=body)
    assert status == 200
    assert (await api.call("post", "/timeseries", body=[series_request(limit=0)],
                           validate_request=False))[0] == 422
    assert (await api.call("post", "/timeseries", body={"x": 1},
                           validate_request=False))[0] == 400
    assert (await api.call("post", "/timeseries", body=[series_request(scope="/none")]))[0] \
        == 404
    assert (await api.call("post", "/timeseries", auth=False, body=[series_request()]))[0] \
        == 401
    assert_area_checked('timeseries')


async def test_entities(api: Api) -> None:
    body = {"orderBy": "entities.urn", "orderDirection": False, "page": 1,
            "paginationSize": 20, "tenant": "libelium", "scope": "/"}
    assert (await api.call("post", "/entities/paginate", body=body))[0] == 200
    assert (await api.call("post", "/entities/paginate",
                           body={**body, "types": "Device,Gateway"}))[0] == 200
    assert (await api.call("post", "/entities/paginate", body={"scope": "/"},
                           validate_request=False))[0] == 400
    assert (await api.call("post", "/entities/paginate",
                           body={**body, "types": ["Device"]}))[0] == 500
    headers = {"tenant": "libelium", "scope": "/"}
    latest = "/last-data/entities/{urn}"
    await api.call("post", "/devices/sendCommandsBulk",
                   body={"device_serials": ["SN000001"], "w_reboot": True})
    for query in ("", "?referenceDataNesting=2", "?attrTypeFilter=Command&filterCmdAvailable=1"):
        status, _ = await api.call("get", latest, f"/last-data/entities/{URN}{query}",
                                   headers=headers)
        assert status == 200
    status, _ = await api.call("get", latest, "/last-data/entities/urn:ngsi-ld:Gateway:GW0001",
                               headers=headers)
    assert status == 200
    assert (await api.call("get", latest, f"/last-data/entities/{URN}"))[0] == 400
    assert (await api.call("get", latest, "/last-data/entities/urn:x", headers=headers))[0] \
        == 404
    assert_area_checked('entities')


async def test_devices(api: Api) -> None:
    body = {"paginationSize": 30, "page": 1, "orderBy": "devices.id", "orderDirection": False}
    assert (await api.call("post", "/devices/paginate", body=body))[0] == 200
    assert (await api.call("post", "/devices/paginate",
                           body={**body, "realtimeProperties": ["temperature"]}))[0] == 200
    assert (await api.call("post", "/devices/paginate", body={"page": 1},
                           validate_request=False))[0] == 422
    assert (await api.call("post", "/devices/paginate",
                           body={**body, "orderBy": "devices.bogus"}))[0] == 500
    serials = [*api.emu.fleet.serials, "NOPE"]
    status, text = await api.call("post", "/devices/sendCommandsBulk",
                                  body={"device_serials": serials, "w_ota": True})
    assert status == 207
    originals = [item["original"] for item in json.loads(text)]
    assert {"data": "Command sent!!"} in originals
    assert any(isinstance(o, dict) and "errors" in o for o in originals)
    api.emu.set_faults(FaultProfile(item_broker_error_rate=0.5, item_exception_rate=0.5),
                       endpoint="devices.bulk")
    assert (await api.call("post", "/devices/sendCommandsBulk",
                           body={"device_serials": serials[:5], "w_reboot": True}))[0] == 207
    api.emu.set_faults(FaultProfile(forbidden_rate=1.0), endpoint="devices.bulk")
    assert (await api.call("post", "/devices/sendCommandsBulk",
                           body={"device_serials": serials[:5], "w_reboot": True}))[0] == 403
    api.emu.clear_faults()
    assert (await api.call("post", "/devices/sendCommandsBulk",
                           body={"device_serials": [], "w_ota": True},
                           validate_request=False))[0] == 400
    assert (await api.call("post", "/devices/sendCommandsBulk", body={"w_ota": True},
                           validate_request=False))[0] == 422
    form = aiohttp.FormData()
    form.add_field("file", b"serial,name\nIMP-1,Imported\n", filename="d.csv")
    assert (await api.call("post", "/devices/importFile", data=form))[0] == 200
    form = aiohttp.FormData()
    form.add_field("other", b"x", filename="x.txt")
    assert (await api.call("post", "/devices/importFile", data=form))[0] == 422
    assert_area_checked('devices')


async def test_connectors(api: Api) -> None:
    body = {"orderBy": "out_connectors.name", "orderDirection": False, "page": 1,
            "paginationSize": 10}
    assert (await api.call("post", "/connectors/out/paginate", body=body))[0] == 200
    assert (await api.call("post", "/connectors/out/paginate", body={},
                           validate_request=False))[0] == 422
    for ident in range(1, 11):
        assert (await api.call("get", "/connectors/out/{id}", f"/connectors/out/{ident}"))[0] \
            == 200
    assert (await api.call("get", "/connectors/out/{id}", "/connectors/out/99"))[0] == 404
    models = "/connectors/out/{id}/models"
    assert (await api.call("put", models, "/connectors/out/1/models",
                           body={"entities": [1, 2], "devices": [3], "mapping_schemas": [1]}))[0] \
        == 200
    assert (await api.call("put", models, "/connectors/out/1/models",
                           body={"devices": [999]}))[0] == 422
    assert (await api.call("put", models, "/connectors/out/99/models",
                           body={"devices": [1]}))[0] == 404
    assert_area_checked('connectors')


def test_the_checks_can_fail() -> None:
    with pytest.raises(ValidationError):
        _validate(["components", "schemas", "DevicePage"], {"rows": [{"id": "x"}], "count": 1})
    with pytest.raises(ValidationError):
        check_response("/last-data/entities/{urn}", "get", 404, JSON, '"Not found"')
    with pytest.raises(AssertionError, match="not documented"):
        check_response("/timeseries", "post", 418, JSON, "{}")


def test_every_documented_operation_belongs_to_a_checked_area() -> None:
    operations = {(path, method) for path, ops in SPEC["paths"].items() for method in ops}
    assert operations == set().union(*AREAS.values())
