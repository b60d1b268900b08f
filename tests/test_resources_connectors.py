"""``client.connectors.out`` and ``client.auth`` on the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aioresponses import aioresponses
from resources_support import ROOT, TOKEN, body_of, make_client, mocked, sent

from iris360_async import EndpointPaths, Iris360Client, PermissionDeniedError
from iris360_async.models import OutConnector, SimpleOutConnector, TokenPair


@pytest.fixture
async def iris() -> AsyncIterator[Iris360Client]:
    async for client in make_client():
        yield client


@pytest.fixture
def mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    yield from mocked(monkeypatch)


MQTT = {
    "id": "1", "name": "broker", "type": "mqtt", "status": "active", "user_id": 5,
    "last_connection": None, "connectable_type": "mqtt_connector", "connectable_id": 9,
    "entities": [1, 2], "devices": [3], "mapping_schemas": [{"id": 4, "name": "m", "map": {}}],
    "ipAddress": "10.0.0.1", "port": 1883, "username": "u", "password": "pw", "clientId": "c",
    "sslCert": "", "ssl": "false", "topicTemplate": {"topic": "a/b"},
}


async def test_paginate_wire_format(iris: Iris360Client, mock: aioresponses) -> None:
    rows = [{"id": i, "name": f"c{i}", "type": "mqtt", "status": "active"} for i in (1, 2)]
    mock.post(ROOT + "/connectors/out/paginate", payload={"rows": rows, "count": 3})
    mock.post(ROOT + "/connectors/out/paginate", payload={"rows": [{"id": 3}], "count": 3})
    found = await iris.connectors.out.paginate(
        page_size=2, order_by="out_connectors.name", descending=True, search="c", prefetch=1
    ).collect()
    assert [c.id for c in found] == [1, 2, 3]
    assert all(isinstance(c, SimpleOutConnector) for c in found)
    kwargs = sent(mock, "POST", "/connectors/out/paginate")
    assert body_of(kwargs) == {
        "paginationSize": 2, "page": 1, "orderBy": "out_connectors.name",
        "orderDirection": True, "search": "c",
    }
    assert body_of(sent(mock, "POST", "/connectors/out/paginate", 1))["page"] == 2
    assert kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"


async def test_paginate_without_count(iris: Iris360Client, mock: aioresponses) -> None:
    mock.post(ROOT + "/connectors/out/paginate", payload={"rows": [{"id": 1}, {"id": 2}]})
    mock.post(ROOT + "/connectors/out/paginate", payload={"rows": [{"id": 3}]})
    found = await iris.connectors.out.paginate(page_size=2, prefetch=1).collect()
    assert [c.id for c in found] == [1, 2, 3]
    assert body_of(sent(mock, "POST", "/connectors/out/paginate"))["orderBy"] == "id"


async def test_get_connector(iris: Iris360Client, mock: aioresponses) -> None:
    mock.get(ROOT + "/connectors/out/1", payload=MQTT)
    conn = await iris.connectors.out.get(1)
    assert isinstance(conn, OutConnector)
    assert conn.ip_address == "10.0.0.1"
    assert conn.ssl_enabled is False
    assert "pw" not in repr(conn)
    kwargs = sent(mock, "GET", "/connectors/out/1")
    assert kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert kwargs["data"] is None


async def test_get_connector_forbidden(iris: Iris360Client, mock: aioresponses) -> None:
    mock.get(ROOT + "/connectors/out/2", status=403,
             payload={"message": "You are not allowed to read out connectors"})
    with pytest.raises(PermissionDeniedError):
        await iris.connectors.out.get("2")


async def test_update_models_wire_format(iris: Iris360Client, mock: aioresponses) -> None:
    mock.put(ROOT + "/connectors/out/7/models", payload=MQTT | {"id": 7})
    result = await iris.connectors.out.update_models(7, entities=[1, 2], mapping_schemas=[])
    assert isinstance(result, OutConnector)
    assert result.id == 7
    kwargs = sent(mock, "PUT", "/connectors/out/7/models")
    assert body_of(kwargs) == {"entities": [1, 2], "mapping_schemas": []}
    assert kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"


async def test_update_models_raw_answers(mock: aioresponses) -> None:
    paths = EndpointPaths(connector_models="/connectors/{id}/links")
    async for client in make_client(paths=paths):
        mock.put(ROOT + "/connectors/7/links", payload={"message": "Models updated"})
        assert await client.connectors.out.update_models(7, devices=[3]) == {
            "message": "Models updated"
        }
        mock.put(ROOT + "/connectors/7/links", status=204, body=b"")
        assert await client.connectors.out.update_models(7, devices=[3]) is None
        mock.put(ROOT + "/connectors/7/links", body="done")
        assert await client.connectors.out.update_models(7, devices=[3]) == "done"
        assert body_of(sent(mock, "PUT", "/connectors/7/links")) == {"devices": [3]}


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.connectors.out.update_models(7), ValueError),
        (lambda c: c.connectors.out.update_models(7, devices=["1"]), TypeError),
        (lambda c: c.connectors.out.update_models(7, devices=[True]), TypeError),
        (lambda c: c.connectors.out.update_models(7, entities="1,2"), TypeError),
        (lambda c: c.connectors.out.update_models(None, devices=[1]), TypeError),
        (lambda c: c.connectors.out.get(""), ValueError),
        (lambda c: c.connectors.out.get(1.5), TypeError),
    ],
)
async def test_bad_arguments_raise_before_any_request(
    iris: Iris360Client, mock: aioresponses, call: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await call(iris)
    assert not mock.requests


def test_paginate_bad_arguments(iris: Iris360Client) -> None:
    with pytest.raises(ValueError, match="order_by"):
        iris.connectors.out.paginate(order_by="")
    with pytest.raises(ValueError, match="page_size"):
        iris.connectors.out.paginate(page_size=0)


async def test_auth_login_and_refresh(mock: aioresponses) -> None:
    async for client in make_client(token=None, username="ops@example.com", password="pw"):
        mock.post(ROOT + "/login", payload={"id": 17, "token": "a.b.c", "refreshToken": "r1"})
        pair = await client.auth.login()
        assert pair == TokenPair(token="a.b.c", refresh_token="r1")
        assert "a.b.c" not in repr(pair)
        assert "r1" not in repr(pair)
        mock.post(ROOT + "/refresh-token", payload={"token": "d.e.f", "refreshToken": "r2"})
        pair = await client.auth.refresh()
        assert (pair.token, pair.refresh_token) == ("d.e.f", "r2")
        assert body_of(sent(mock, "POST", "/refresh-token")) == {"refreshToken": "r1"}
        # The client uses the new token from now on.
        mock.get(ROOT + "/connectors/out/1", payload=MQTT)
        await client.connectors.out.get(1)
        assert sent(mock, "GET", "/connectors/out/1")["headers"]["Authorization"] == "Bearer d.e.f"


async def test_auth_login_without_credentials(iris: Iris360Client, mock: aioresponses) -> None:
    with pytest.raises(ValueError, match="username"):
        await iris.auth.login()
    assert not mock.requests
