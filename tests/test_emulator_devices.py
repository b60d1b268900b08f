"""Emulator device endpoints: pagination, sendCommandsBulk, file import."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from iris360_async.testing import DEVICE_TYPES, Iris360Emulator

SUCCESS = {"headers": {}, "original": {"data": "Command sent!!"}, "exception": None}


class Api:
    """A bare HTTP helper (no SDK) bound to one emulator."""

    def __init__(self, emu: Iris360Emulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session
        self.headers = {"Authorization": f"Bearer {emu.issue_token().token}",
                        "Accept": "application/json"}

    async def post(self, path: str, body: Any = None, *, raw: bytes | None = None,
                   headers: dict[str, str] | None = None,
                   ) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.post(
            self.emu.api_url + path, json=body if raw is None else None, data=raw,
            headers=headers or self.headers,
        ) as resp:
            text = await resp.text()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            return resp.status, parsed, resp


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with Iris360Emulator(devices=40, seed=3, no_ota_fraction=0.25) as emu, \
            aiohttp.ClientSession() as session:
        yield Api(emu, session)


def page_body(**kw: Any) -> dict[str, Any]:
    return {"page": 1, "paginationSize": 10, "orderBy": "devices.id", "orderDirection": False,
            **kw}


# -- pagination ---------------------------------------------------------------------------------


async def test_pages_are_one_based_and_page_zero_aliases_page_one(api: Api) -> None:
    _, first, _ = await api.post("/devices/paginate", page_body(page=1))
    _, zero, _ = await api.post("/devices/paginate", page_body(page=0))
    _, second, _ = await api.post("/devices/paginate", page_body(page=2))
    assert set(first) == {"rows", "count"}
    assert first["count"] == 40
    assert [r["id"] for r in first["rows"]] == list(range(1, 11))
    assert zero == first
    assert [r["serial"] for r in second["rows"]] == [f"SN{i:06d}" for i in range(11, 21)]
    _, past, _ = await api.post("/devices/paginate", page_body(page=9))
    assert past == {"rows": [], "count": 40}


async def test_device_row_shape(api: Api) -> None:
    _, body, _ = await api.post("/devices/paginate", page_body(paginationSize=1))
    row = body["rows"][0]
    assert row["serial"] == "SN000001"
    assert set(row["type"]) == {"id", "code", "name", "brand", "category"}
    assert row["main_entity"]["urn"] == "urn:ngsi-ld:Device:SN000001"
    assert row["entities"] == [row["main_entity"]["id"]]
    assert isinstance(row["is_subscribed"], bool)
    assert "entity_properties" not in row


async def test_order_by_raw_columns_and_direction(api: Api) -> None:
    _, desc, _ = await api.post("/devices/paginate", page_body(orderDirection=True))
    assert [r["id"] for r in desc["rows"]] == list(range(40, 30, -1))
    _, by_name, _ = await api.post("/devices/paginate",
                                   page_body(orderBy="devices.name", paginationSize=40))
    names = [r["name"] for r in by_name["rows"]]
    assert names == sorted(names)
    _, by_serial, _ = await api.post("/devices/paginate", page_body(orderBy="serial"))
    assert by_serial["rows"][0]["serial"] == "SN000001"
    status, body, _ = await api.post("/devices/paginate", page_body(orderBy="devices.nope"))
    assert status == 500
    assert body == {"message": "Server Error"}


async def test_validation_errors_use_laravels_shape(api: Api) -> None:
    status, body, _ = await api.post("/devices/paginate", {"orderBy": "devices.id"})
    assert status == 422
    assert body["message"] == "The pagination size field is required. (and 2 more errors)"
    assert body["errors"] == {
        "paginationSize": ["The pagination size field is required."],
        "page": ["The page field is required."],
        "orderDirection": ["The order direction field is required."],
    }
    status, body, _ = await api.post("/devices/paginate", page_body(orderDirection="false"))
    assert status == 422
    assert body == {"message": "The order direction field must be true or false.",
                    "errors": {"orderDirection": ["The order direction field must be true or "
                                                  "false."]}}
    status, body, _ = await api.post("/devices/paginate", page_body(page="x"))
    assert status == 422
    assert body["errors"] == {"page": ["The page field must be an integer."]}


async def test_search_is_case_insensitive(api: Api) -> None:
    _, body, _ = await api.post("/devices/paginate", page_body(search="sn00001"))
    assert body["count"] == 10  # SN000010..SN000019
    assert all("SN00001" in r["serial"] for r in body["rows"])
    legacy = DEVICE_TYPES[3].name
    _, body, _ = await api.post("/devices/paginate",
                                page_body(search=legacy.upper(), paginationSize=50))
    assert body["count"] > 0
    assert all(r["type"]["name"] == legacy for r in body["rows"])
    _, body, _ = await api.post("/devices/paginate", page_body(search="no-such-device"))
    assert body == {"rows": [], "count": 0}


async def test_realtime_properties_embed_latest_values(api: Api) -> None:
    _, body, _ = await api.post(
        "/devices/paginate", page_body(paginationSize=2, realtimeProperties=["temperature"])
    )
    props = body["rows"][0]["entity_properties"]
    assert set(props) == {"temperature"}
    assert isinstance(props["temperature"], float)


async def test_x_permissions_header(api: Api) -> None:
    _, _, resp = await api.post("/devices/paginate", page_body(),
                                headers={**api.headers, "X-Permissions": "true"})
    perms = json.loads(resp.headers["X-Permissions"])
    assert {"resource": "devices", "action": "read"} in perms


# -- sendCommandsBulk ---------------------------------------------------------------------------


def legacy_and_modern(emu: Iris360Emulator) -> tuple[list[str], list[str]]:
    legacy = [s for i, s in enumerate(emu.fleet.serials) if "w_ota" not in
              emu.fleet.device_type(i).commands]
    modern = [s for i, s in enumerate(emu.fleet.serials) if "w_ota" in
              emu.fleet.device_type(i).commands]
    return legacy, modern


async def test_bulk_answers_207_one_item_per_serial_in_order(api: Api) -> None:
    legacy, modern = legacy_and_modern(api.emu)
    assert legacy, "the seed must give some legacy devices"
    serials = [modern[0], legacy[0], "NOPE", modern[1]]
    status, body, resp = await api.post("/devices/sendCommandsBulk",
                                        {"device_serials": serials, "w_ota": True})
    assert status == 207
    assert resp.content_type == "application/json"
    assert body == [
        SUCCESS,
        {"headers": {}, "original": {"errors": "You cannot send any of: w_ota"},
         "exception": None},
        {"headers": {}, "original": "Device not found: NOPE", "exception": None},
        SUCCESS,
    ]
    stats = api.emu.stats
    assert stats.command_applications[modern[0]]["w_ota"] == 1
    assert stats.command_applications[legacy[0]]["w_ota"] == 0
    assert stats.applications("NOPE") == 0
    assert stats.commanded_serials() == {modern[0], modern[1]}
    assert stats.bulk_targets == 4


async def test_every_other_top_level_key_is_a_command(api: Api) -> None:
    legacy, modern = legacy_and_modern(api.emu)
    status, body, _ = await api.post(
        "/devices/sendCommandsBulk",
        {"device_serials": [modern[0], legacy[0]], "w_reboot": True, "w_sleep": 30, "w_ota": 1},
    )
    assert status == 207
    assert body[0] == SUCCESS
    assert body[1]["original"] == {"errors": "You cannot send any of: w_ota"}
    assert dict(api.emu.stats.command_applications[modern[0]]) == {
        "w_reboot": 1, "w_sleep": 1, "w_ota": 1}
    assert api.emu.stats.applications(legacy[0]) == 0


async def test_bulk_counts_every_application(api: Api) -> None:
    _, modern = legacy_and_modern(api.emu)
    for _ in range(3):
        await api.post("/devices/sendCommandsBulk",
                       {"device_serials": modern[:2], "w_reboot": True})
    await api.post("/devices/sendCommandsBulk", {"device_serials": [modern[0]] * 2,
                                                 "w_reboot": True})
    stats = api.emu.stats
    assert stats.applications(modern[0], "w_reboot") == 5
    assert stats.applications(modern[1], "w_reboot") == 3
    assert stats.max_applications() == 5
    assert stats.max_applications("w_ota") == 0
    assert stats.total_applications() == 8
    stats.reset()
    assert stats.max_applications() == 0
    assert stats.command_applications[modern[0]] == {}
    await api.post("/devices/sendCommandsBulk", {"device_serials": [modern[0]],
                                                 "w_reboot": True})
    assert stats.applications(modern[0], "w_reboot") == 1


async def test_bulk_errors(api: Api) -> None:
    status, body, resp = await api.post("/devices/sendCommandsBulk",
                                        {"device_serials": [], "w_ota": True})
    assert (status, body) == (400, "No entities provided")
    assert resp.content_type == "text/html"
    status, body, _ = await api.post("/devices/sendCommandsBulk", {"w_ota": True})
    assert status == 422
    assert body["errors"] == {"device_serials": ["The device serials field is required."]}
    status, body, _ = await api.post("/devices/sendCommandsBulk",
                                     {"device_serials": "SN000001", "w_ota": True})
    assert status == 422
    status, body, _ = await api.post("/devices/sendCommandsBulk",
                                     {"device_serials": ["SN000001"]})
    assert status == 422
    assert "commands" in body["errors"]
    status, body, _ = await api.post("/devices/sendCommandsBulk",
                                     {"device_serials": ["SN000001", 7], "w_ota": True})
    assert status == 422
    assert body["errors"] == {"device_serials.1": ["The device_serials.1 field must be a "
                                                   "string."]}
    status, _, _ = await api.post("/devices/sendCommandsBulk", raw=b"{not json",
                                  headers={**api.headers, "Content-Type": "application/json"})
    assert status == 422
    assert api.emu.stats.total_applications() == 0


# -- import -------------------------------------------------------------------------------------


async def post_file(api: Api, content: bytes, name: str = "file") -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field(name, content, filename="devices.csv", content_type="text/csv")
    async with api.session.post(api.emu.api_url + "/devices/importFile", data=form,
                                headers=api.headers) as resp:
        return resp.status, await resp.json()


async def test_import_creates_and_updates_devices(api: Api) -> None:
    csv = (b"serial,name,type,description\n"
           b"NEW-1,Roof sensor,SCP,on the roof\n"
           b"NEW-2,Legacy box,GLG,\n"
           b"SN000001,Renamed,SAP,\n")
    status, body = await post_file(api, csv)
    assert (status, body) == (200, {"message": "Devices imported successfully",
                                    "total_devices_in_file": 3, "created": 2, "updated": 1})
    _, page, _ = await api.post("/devices/paginate", page_body(search="NEW-", paginationSize=5))
    assert [r["serial"] for r in page["rows"]] == ["NEW-1", "NEW-2"]
    assert page["rows"][0]["description"] == "on the roof"
    _, page, _ = await api.post("/devices/paginate", page_body(paginationSize=1))
    assert page["rows"][0]["name"] == "Renamed"
    assert page["count"] == 42
    status, body, _ = await api.post("/devices/sendCommandsBulk",
                                     {"device_serials": ["NEW-1", "NEW-2"], "w_ota": True})
    assert body[0] == SUCCESS
    assert body[1]["original"] == {"errors": "You cannot send any of: w_ota"}
    assert api.emu.stats.applications("NEW-1", "w_ota") == 1


async def test_import_is_all_or_nothing(api: Api) -> None:
    status, body = await post_file(api, b"serial,type\nA-1,SCP\nA-2,XYZ\n,SCP\n")
    assert status == 422
    assert body["errors"]["file"] == ["Row 3: unknown device type 'XYZ'.",
                                      "Row 4: the serial is empty."]
    assert body["message"] == "Row 3: unknown device type 'XYZ'. (and 1 more error)"
    assert api.emu.fleet.device_count == 40
    status, body = await post_file(api, b"name\nx\n")
    assert (status, body) == (422, {"error": "Invalid CSV file: a serial column is required"})
    status, body = await post_file(api, b"serial\nX\n", name="upload")
    assert status == 422
    assert body["errors"] == {"file": ["The file field is required."]}


async def test_listed_rows_follow_imports_and_the_clock(api: Api) -> None:
    # rows are served from a cache of encoded rows: it must never serve a stale one
    _, before, _ = await api.post("/devices/paginate", page_body(paginationSize=2))
    assert before["rows"][0]["serial"] == "SN000001"
    status, _ = await post_file(api, b"serial,name,type\nSN000001,Renamed,SAP\n")
    assert status == 200
    _, after, _ = await api.post("/devices/paginate", page_body(paginationSize=2))
    assert after["rows"][0]["name"] == "Renamed"
    assert after["rows"][1] == before["rows"][1]
    api.emu.advance(api.emu.config.series_interval)
    api.headers["Authorization"] = f"Bearer {api.emu.issue_token().token}"  # the old one expired
    _, later, _ = await api.post("/devices/paginate", page_body(paginationSize=2))
    assert later["rows"][1]["time_last_data"] != before["rows"][1]["time_last_data"]
    assert {k: v for k, v in later["rows"][1].items() if k != "time_last_data"} == {
        k: v for k, v in before["rows"][1].items() if k != "time_last_data"
    }
