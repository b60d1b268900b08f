"""``client.devices`` on the wire (aioresponses through the real client): paths, methods,
headers and bodies; decoding; argument errors before any request."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from resources_support import ROOT, body_of, make_client, mocked, sent

from iris360_async import EndpointPaths, Iris360Client, ResponseDecodeError
from iris360_async.models import BulkCommandItemResult, Device, ImportResult
from iris360_async.models.devices import MalformedBulkItem


@pytest.fixture
async def iris() -> AsyncIterator[Iris360Client]:
    async for client in make_client():
        yield client


@pytest.fixture
def mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    yield from mocked(monkeypatch)


def device_row(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "serial": f"SN{i:04d}",
        "name": f"dev {i}",
        "case_id": None,
        "is_subscribed": True,
        "subscribed_until": "2026-01-01 00:00:00",
        "type": {"id": 1, "code": "PS", "name": "Plug", "brand": "Libelium", "category": "x"},
        "time_last_data": "2025-01-01T00:00:00",
        "organization": None,
        "extra": 1,
    }


async def test_paginate_wire_format_and_decoding(iris: Iris360Client, mock: aioresponses) -> None:
    mock.post(
        ROOT + "/devices/paginate", payload={"rows": [device_row(1), device_row(2)], "count": 3}
    )
    mock.post(ROOT + "/devices/paginate", payload={"rows": [device_row(3)], "count": 3})
    devices = await iris.devices.paginate(
        page_size=2,
        order_by="serial",
        descending=True,
        search="plug",
        realtime_properties=["temperature"],
        prefetch=1,
    ).collect()
    assert [d.serial for d in devices] == ["SN0001", "SN0002", "SN0003"]
    assert all(isinstance(d, Device) for d in devices)
    first, second = (sent(mock, "POST", "/devices/paginate", i) for i in (0, 1))
    assert body_of(first) == {
        "paginationSize": 2,
        "page": 1,
        "orderBy": "devices.serial",
        "orderDirection": True,
        "search": "plug",
        "realtimeProperties": ["temperature"],
    }
    assert body_of(second)["page"] == 2
    headers = first["headers"]
    assert headers["Authorization"] == "Bearer tok-123"
    assert headers["Accept"] == "application/json"
    assert headers["Content-Type"] == "application/json"


async def test_paginate_defaults_omit_optional_fields(
    iris: Iris360Client, mock: aioresponses
) -> None:
    mock.post(ROOT + "/devices/paginate", payload={"rows": [], "count": 0})
    assert await iris.devices.paginate().collect() == []
    assert body_of(sent(mock, "POST", "/devices/paginate")) == {
        "paginationSize": 100,
        "page": 1,
        "orderBy": "devices.id",
        "orderDirection": False,
    }


async def test_paginate_start_page(iris: Iris360Client, mock: aioresponses) -> None:
    mock.post(ROOT + "/devices/paginate", payload={"rows": [device_row(5)], "count": 5})
    items = await iris.devices.paginate(page_size=2, start_page=3, order_by="devices.id").collect()
    assert [d.id for d in items] == [5]
    assert body_of(sent(mock, "POST", "/devices/paginate"))["page"] == 3


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"order_by": "devices.password"}, ValueError),
        ({"order_by": "name; drop table"}, ValueError),
        ({"order_by": 3}, TypeError),
        ({"page_size": 0}, ValueError),
        ({"page_size": "10"}, TypeError),
        ({"descending": "yes"}, TypeError),
        ({"search": 5}, TypeError),
        ({"realtime_properties": "temperature"}, TypeError),
    ],
)
async def test_paginate_bad_arguments_raise_before_any_request(
    iris: Iris360Client, mock: aioresponses, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        iris.devices.paginate(**kwargs)
    assert mock.requests == {}


BULK_207 = [
    {"headers": {}, "original": {"data": "Command sent!!"}, "exception": None},
    {"headers": {}, "original": {"errors": "You cannot send any of: w_ota"}, "exception": None},
]


async def test_send_commands_bulk_wire_format(iris: Iris360Client, mock: aioresponses) -> None:
    mock.post(ROOT + "/devices/sendCommandsBulk", status=207, payload=BULK_207)
    results = await iris.devices.send_commands_bulk(["ONE001", "ONE002"], {"w_ota": True, "n": 2})
    assert [r.sent for r in results] == [True, False]
    assert results[1].original == {"errors": "You cannot send any of: w_ota"}
    kwargs = sent(mock, "POST", "/devices/sendCommandsBulk")
    assert body_of(kwargs) == {"device_serials": ["ONE001", "ONE002"], "w_ota": True, "n": 2}
    assert kwargs["headers"]["Authorization"] == "Bearer tok-123"
    assert kwargs["headers"]["Content-Type"] == "application/json"


async def test_bulk_sender_body_bytes(iris: Iris360Client, mock: aioresponses) -> None:
    mock.post(ROOT + "/devices/sendCommandsBulk", status=207, payload=BULK_207[:1])
    mock.post(ROOT + "/devices/sendCommandsBulk", status=207, payload=BULK_207[:1])
    send = iris.devices.bulk_sender({"w_ota": True, "cfg": {"a": [1, "x"]}})
    await send(["A"])
    await send(['B"q'])
    first = sent(mock, "POST", "/devices/sendCommandsBulk", 0)["data"]
    second = sent(mock, "POST", "/devices/sendCommandsBulk", 1)["data"]
    assert first == b'{"device_serials":["A"],"w_ota":true,"cfg":{"a":[1,"x"]}}'
    assert json.loads(second) == {"device_serials": ['B"q'], "w_ota": True, "cfg": {"a": [1, "x"]}}


SENT_207 = BULK_207[0]
SENT_ITEM = b'{"headers":{},"original":{"data":"Command sent!!"},"exception":null}'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # the platform's exact all-sent body (the fast path)
        (b"[" + b",".join([SENT_ITEM] * 3) + b"]", [True, True, True]),
        # same meaning, other spelling: decoded in full
        (b"[" + b", ".join([SENT_ITEM] * 3) + b"]", [True, True, True]),
        # same length as the all-sent body, one item different
        (
            b"["
            + b",".join([SENT_ITEM, SENT_ITEM.replace(b"sent!!", b"sent?!"), SENT_ITEM])
            + b"]",
            [True, False, True],
        ),
        # fewer items than serials: returned as is, for the engine to call it a mismatch
        (b"[" + b",".join([SENT_ITEM] * 2) + b"]", [True, True]),
    ],
)
async def test_bulk_sender_all_sent_fast_path_matches_full_decoding(
    iris: Iris360Client, mock: aioresponses, body: bytes, expected: list[bool]
) -> None:
    mock.post(ROOT + "/devices/sendCommandsBulk", status=207, body=body)
    results = await iris.devices.bulk_sender({"w_ota": True})(["A", "B", "C"])
    assert [r.sent for r in results] == expected
    assert all(isinstance(r, BulkCommandItemResult) for r in results)
    assert [r.original for r in results] == [item["original"] for item in json.loads(body)]


async def test_bulk_results_without_envelope_are_kept_whole_and_marked_malformed(
    iris: Iris360Client, mock: aioresponses
) -> None:
    mock.post(
        ROOT + "/devices/sendCommandsBulk",
        status=207,
        payload=[{"data": "Command sent!!"}, "broker timeout", None, BULK_207[1]],
    )
    results = await iris.devices.send_commands_bulk(["a", "b", "c", "d"], {"w_ota": True})
    assert [r.original for r in results] == [
        {"data": "Command sent!!"},
        "broker timeout",
        None,
        BULK_207[1]["original"],
    ]
    assert [type(r) for r in results] == [MalformedBulkItem] * 3 + [BulkCommandItemResult]
    assert not any(r.sent for r in results)


@pytest.mark.parametrize(
    "body",
    [
        [0, 1, 2],
        ["Command sent!!"] * 3,
        [{"data": "Command sent!!"}] * 3,
        [[SENT_207], [SENT_207], [SENT_207]],
        [{"headers": {}, "original": n, "exception": None} for n in (0, [1], "Command sent!!")],
    ],
    ids=["numbers", "bare-strings", "bare-objects", "lists", "odd-originals"],
)
async def test_garbage_207_items_end_unknown_never_failed(
    iris: Iris360Client, mock: aioresponses, body: list[Any]
) -> None:
    mock.post(ROOT + "/devices/sendCommandsBulk", status=207, payload=body)
    report = await iris.devices.send_commands(["a", "b", "c"], {"w_ota": True})
    assert report.counts["unknown"] == 3, report.failures
    assert all((o.detail or "").startswith("unrecognised item") for o in report.failures)


async def test_bulk_non_array_is_a_decode_error(iris: Iris360Client, mock: aioresponses) -> None:
    mock.post(ROOT + "/devices/sendCommandsBulk", status=207, payload={"message": "odd"})
    with pytest.raises(ResponseDecodeError):
        await iris.devices.send_commands_bulk(["a"], {"w_ota": True})


@pytest.mark.parametrize(
    ("serials", "commands", "error"),
    [
        ("ONE001", {"w_ota": True}, TypeError),
        ([], {"w_ota": True}, ValueError),
        (["ok", ""], {"w_ota": True}, ValueError),
        (["ok", 5], {"w_ota": True}, TypeError),
        (["ok"], {}, ValueError),
        (["ok"], {"device_serials": ["x"]}, ValueError),
        (["ok"], {1: True}, TypeError),
        (["ok"], {"w_ota": object()}, TypeError),
        (["ok"], [("w_ota", True)], TypeError),
    ],
)
async def test_send_commands_bulk_bad_input_raises_before_any_request(
    iris: Iris360Client, mock: aioresponses, serials: Any, commands: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await iris.devices.send_commands_bulk(serials, commands)
    assert mock.requests == {}


def test_bulk_sender_validates_commands_once() -> None:
    client = Iris360Client._with_hooks("https://iris.test", token="t", environ={})
    with pytest.raises(ValueError, match="device_serials"):
        client.devices.bulk_sender({"device_serials": []})


def form_part(kwargs: dict[str, Any]) -> tuple[bytes, str]:
    form = kwargs["data"]
    assert isinstance(form, aiohttp.FormData)
    [(options, _headers, value)] = form._fields
    assert options["name"] == "file"
    return value, options["filename"]


async def test_import_file_from_path(
    iris: Iris360Client, mock: aioresponses, tmp_path: Path
) -> None:
    path = tmp_path / "fleet.csv"
    path.write_bytes(b"serial,name\nA,a\n")
    mock.post(ROOT + "/devices/importFile", status=202, payload={"message": "Queued", "n": 1})
    result = await iris.devices.import_file(path)
    assert result == ImportResult(status=202, message="Queued", data={"message": "Queued", "n": 1})
    kwargs = sent(mock, "POST", "/devices/importFile")
    assert form_part(kwargs) == (b"serial,name\nA,a\n", "fleet.csv")
    assert kwargs["headers"]["Authorization"] == "Bearer tok-123"


async def test_import_file_bytes_and_custom_path(mock: aioresponses) -> None:
    async for client in make_client(paths=EndpointPaths(import_file="/devices/import")):
        mock.post(ROOT + "/devices/import", status=200, body="Data uploaded")
        result = await client.devices.import_file(b"a,b\n", filename="x.csv")
        assert result.message == "Data uploaded"
        assert result.data == "Data uploaded"
        mock.post(ROOT + "/devices/import", status=200, body=b'"ok"')
        result = await client.devices.import_file(io.BytesIO(b"zz"))
        assert result.message == "ok"
        assert form_part(sent(mock, "POST", "/devices/import", 0)) == (b"a,b\n", "x.csv")
        assert form_part(sent(mock, "POST", "/devices/import", 1)) == (b"zz", "import.csv")


async def test_import_file_rejects_text_mode(iris: Iris360Client, mock: aioresponses) -> None:
    with pytest.raises(TypeError, match="binary"):
        await iris.devices.import_file(io.StringIO("a,b"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await iris.devices.import_file(123)  # type: ignore[arg-type]
    assert mock.requests == {}


async def test_decode_error_names_the_path(iris: Iris360Client, mock: aioresponses) -> None:
    mock.post(ROOT + "/devices/paginate", payload={"rows": [{"id": "x"}], "count": 1})
    with pytest.raises(ResponseDecodeError) as info:
        await iris.devices.paginate().collect()
    assert info.value.path is not None
    assert info.value.path.startswith("$.rows[0]")
    assert re.search("Page\\[Device\\]", str(info.value))


async def test_send_and_stream_commands_reject_an_unknown_option_before_any_request(
    iris: Iris360Client, mock: aioresponses
) -> None:
    with pytest.raises(TypeError, match="chunk_sise"):
        await iris.devices.send_commands(["a"], {"w_ota": True}, chunk_sise=10)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="concurency"):
        iris.devices.stream_commands(["a"], {"w_ota": True}, concurency=2)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="chunk_size"):
        await iris.devices.send_commands(["a"], {"w_ota": True}, chunk_size=0)
    assert mock.requests == {}
