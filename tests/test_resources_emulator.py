"""Every endpoint wrapper against the in-process emulator (real HTTP on 127.0.0.1):
requests the server accepts, answers the models decode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timezone

import pytest

from iris360_async import Iris360Client
from iris360_async.models import (
    Device,
    Entity,
    EntityProperty,
    OutConnector,
    SimpleOutConnector,
    TimeSeriesOptions,
    TimeSeriesRequest,
)
from iris360_async.testing import Iris360Emulator


@pytest.fixture
async def iris(iris360_emulator: Iris360Emulator) -> AsyncIterator[Iris360Client]:
    emu = iris360_emulator
    async with Iris360Client._with_hooks(
        emu.base_url, username=emu.username, password=emu.password, tenant=emu.tenant,
        scope=emu.scope, environ={},
    ) as client:
        yield client


async def test_devices_and_bulk_commands(
    iris: Iris360Client, iris360_emulator: Iris360Emulator
) -> None:
    devices = await iris.devices.paginate(page_size=7, order_by="serial").collect()
    assert len(devices) == 50
    assert all(isinstance(d, Device) for d in devices)
    assert len({d.serial for d in devices}) == 50
    assert [d.serial for d in devices] == sorted(d.serial for d in devices)
    serial = devices[0].serial
    results = await iris.devices.send_commands_bulk([serial], {"w_reboot": True})
    assert len(results) == 1
    assert results[0].sent
    assert iris360_emulator.stats.command_applications[serial]["w_reboot"] == 1


async def test_entities_latest_and_timeseries(iris: Iris360Client) -> None:
    entities = await iris.entities.paginate(page_size=10).collect()
    assert entities
    assert all(isinstance(e, Entity) for e in entities)
    urn = entities[0].urn
    attrs = await iris.entities.latest(urn)
    assert attrs
    props = [a for a in attrs if isinstance(a, EntityProperty)]
    assert all(p.timestamp is None or p.timestamp.tzinfo is not None for p in props)
    [response] = await iris.timeseries.get(
        [TimeSeriesRequest([urn], [], TimeSeriesOptions(limit=2, order="desc", query_id="q"))]
    )
    assert response.options.query_id == "q"
    for series in response.time_series:
        assert series.device_id == urn
        assert 1 <= len(series.values) <= 2
        assert all(v.timestamp.tzinfo == timezone.utc for v in series.values)


async def test_connectors(iris: Iris360Client) -> None:
    rows = await iris.connectors.out.paginate(page_size=3).collect()
    assert rows
    assert all(isinstance(c, SimpleOutConnector) for c in rows)
    connector = await iris.connectors.out.get(rows[0].id)
    assert isinstance(connector, OutConnector)
    assert connector.id == rows[0].id
    updated = await iris.connectors.out.update_models(rows[0].id, devices=[1, 2])
    assert isinstance(updated, OutConnector)
    assert updated.devices == [1, 2]


async def test_auth(iris: Iris360Client) -> None:
    first = await iris.auth.login()
    second = await iris.auth.refresh()
    assert first.token != second.token
    assert second.refresh_token is not None


async def test_send_and_stream_commands(
    iris: Iris360Client, iris360_emulator: Iris360Emulator
) -> None:
    serials = [f"SN{i:06d}" for i in range(1, 21)]
    report = await iris.devices.send_commands(
        [*serials, serials[0]], {"w_reboot": True}, chunk_size=6, concurrency=3
    )
    assert report.counts["sent"] == 20
    assert report.counts["skipped"] == 1
    applied = iris360_emulator.stats.command_applications
    assert all(applied[s]["w_reboot"] == 1 for s in serials)
    outcomes = [
        o async for o in iris.devices.stream_commands(serials[:4], {"w_reboot": False},
                                                      chunk_size=2)
    ]
    assert sorted(o.serial for o in outcomes) == serials[:4]
    with pytest.raises(ValueError, match="device_serials"):
        await iris.devices.send_commands(serials, {"device_serials": 1})


async def test_timeseries_query(iris: Iris360Client) -> None:
    entities = await iris.entities.paginate(page_size=5, max_items=5).collect()
    result = await iris.timeseries.query([e.urn for e in entities], [], limit=2, batch_size=3)
    assert result.failures == []
    assert result.series
