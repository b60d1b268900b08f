"""An emulator holding several tenants: entities, latest values and time series are per
tenant (selected by the tenant field or header, as the API does); the device list spans every
tenant the user may access."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from emulator_support import client_for

from iris360_async import NotFoundError
from iris360_async.testing import Iris360Emulator
from iris360_async.testing.fleet import Fleet

TENANTS = (("acme", 10), ("globex", 5))


@pytest.fixture
async def emu() -> AsyncIterator[Iris360Emulator]:
    async with Iris360Emulator(devices=30, seed=4, extra_entities=6, tenants=TENANTS) as emulator:
        yield emulator


async def test_entities_are_listed_per_tenant(emu: Iris360Emulator) -> None:
    async with client_for(emu) as iris:
        counts = {}
        for tenant in ("libelium", "acme", "globex", "nobody"):
            entities = await iris.entities.paginate(
                types=["Device"], tenant=tenant, scope="/", page_size=7
            ).collect()
            assert {e.tenant for e in entities} <= {tenant}
            counts[tenant] = len(entities)
        assert counts == {"libelium": 15, "acme": 10, "globex": 5, "nobody": 0}
        anywhere = iris.with_options(tenant=None, scope=None)  # no default tenant: no filter
        everything = await anywhere.entities.paginate(types=["Device"], page_size=100).collect()
        assert len(everything) == 30  # no tenant filter: every tenant's


async def test_latest_values_need_the_entitys_own_tenant(emu: Iris360Emulator) -> None:
    async with client_for(emu) as iris:
        acme = await iris.entities.paginate(
            types=["Device"], tenant="acme", scope="/", max_items=1
        ).collect()
        urn = acme[0].urn
        attrs = await iris.entities.latest(urn, tenant="acme", scope="/")
        assert attrs.value("battery") is not None
        with pytest.raises(NotFoundError):
            await iris.entities.latest(urn, tenant="libelium", scope="/")


async def test_time_series_are_per_tenant(emu: Iris360Emulator) -> None:
    async with client_for(emu) as iris:
        [acme] = await iris.entities.paginate(
            types=["Device"], tenant="acme", scope="/", max_items=1
        ).collect()
        own = await iris.timeseries.query(
            [acme.urn], ["temperature"], tenant="acme", scope="/", limit=3
        )
        assert len(own) == 1
        assert all(len(own[key].values) > 0 for key in own)
        other = await iris.timeseries.query(
            [acme.urn], ["temperature"], tenant="globex", scope="/", limit=3
        )
        assert len(other) == 0  # the other tenant has no such entity
        assert other.missing


async def test_the_device_list_spans_every_tenant(emu: Iris360Emulator) -> None:
    async with client_for(emu) as iris:
        devices = await iris.devices.paginate(page_size=100).collect()
    assert len(devices) == 30
    owners = [d.organization.name for d in devices if d.organization is not None]
    assert owners.count("acme") == 10
    assert owners.count("globex") == 5
    assert all(
        d.main_entity is not None and d.organization is not None
        and d.main_entity.tenant == d.organization.name
        for d in devices
    )


def test_tenant_blocks_are_checked() -> None:
    common = dict(seed=1, tenant="main", scope="/", no_ota_fraction=0.0, extra_entities=0,
                  connectors=0, series_start=0, series_interval=600)
    with pytest.raises(ValueError, match="more than the fleet"):
        Fleet(devices=3, tenants=(("a", 2), ("b", 2)), **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="named twice"):
        Fleet(devices=3, tenants=(("main", 1),), **common)  # type: ignore[arg-type]
    fleet = Fleet(devices=3, tenants=(("a", 1),), **common)  # type: ignore[arg-type]
    assert [fleet.device_tenant(i) for i in range(3)] == ["main", "main", "a"]
    fleet.add_device("NEW1", name=None, type_index=0)
    assert fleet.device_tenant(3) == "main"  # imported devices join the fleet's own tenant
