"""The server model (workers, queue, gateway timeout and rate limit, drift) against real HTTP on
127.0.0.1: first around a tiny handler that counts what it applied, then in front of the
emulator's bulk endpoint with the SDK's bulk engine as the client.

Times are tens of milliseconds; assertions bound waits from below (the model must make a
request wait at least so long), never from above, so a slow machine cannot fail them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from iris360_async import RateLimitError
from iris360_async.testing import Iris360Emulator
from iris360_async.testing.server import Handler, Router
from iris360_async.testing.server_model import (
    PRESETS,
    CostStep,
    ServerModel,
    ServerModelSettings,
    TenantLoad,
    count_device_serials,
)
from tests.emulator_support import client_for

Post = Callable[..., Awaitable[aiohttp.ClientResponse]]
SLACK = 0.005  # seconds: loop.time() granularity between the model's readings


class Backend:
    """The wrapped handler: applies the request (counts it) and answers 207."""

    def __init__(self) -> None:
        self.applied = 0

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        self.applied += 1
        return web.json_response([], status=207)


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    runner = web.ServerRunner(web.Server(handler), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}/devices/sendCommandsBulk"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def modelled(
    settings: ServerModelSettings,
) -> AsyncIterator[tuple[ServerModel, Backend, Post]]:
    model = ServerModel(settings)
    backend = Backend()
    async with serve(model.wrap(backend)) as url, aiohttp.ClientSession() as session:

        async def post(targets: int = 10) -> aiohttp.ClientResponse:
            body = {"device_serials": [f"SN{i:06d}" for i in range(targets)], "w_ota": True}
            async with session.post(url, json=body) as response:
                await response.read()
                return response

        yield model, backend, post
        await model.drain()


async def test_workers_and_queue() -> None:
    settings = ServerModelSettings(workers=2, per_device=0.003)  # 30 ms per request of 10
    async with modelled(settings) as (model, backend, post):
        responses = await asyncio.gather(*(post() for _ in range(6)))
    assert [r.status for r in responses] == [207] * 6
    assert backend.applied == 6
    stats = model.stats
    assert stats.max_queue == 4
    assert max(busy for _, _, busy in stats.queue) == 2
    waits = sorted(stats.queue_waits)
    # two start at once, two wait for one request, the last two for two
    assert waits[2] >= 0.03 - SLACK
    assert waits[4] >= 0.06 - SLACK
    assert all(r.service is not None and r.service >= 0.03 - SLACK for r in stats.records)
    assert all(r.targets == 10 for r in stats.records)


async def test_queue_limit_answers_503_at_once_and_applies_nothing() -> None:
    settings = ServerModelSettings(workers=1, per_device=0.003, queue_limit=1)
    async with modelled(settings) as (model, backend, post):
        responses = await asyncio.gather(*(post() for _ in range(4)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [207, 207, 503, 503]
    assert backend.applied == 2
    assert model.stats.queue_full == 2
    refused = [r for r in model.stats.records if r.status == 503]
    assert all(r.queue_wait is None and not r.completed for r in refused)


async def test_gateway_timeout_answers_504_while_the_backend_applies() -> None:
    settings = ServerModelSettings(workers=1, per_device=0.006, gateway_timeout=0.02)
    async with modelled(settings) as (model, backend, post):
        response = await post()
        assert response.status == 504
        assert "Gateway Time-out" in await response.text()
        await model.drain()
        assert backend.applied == 1  # the client never learnt it
    assert model.stats.gateway_timeouts == 1
    (record,) = model.stats.records
    assert record.status == 504
    assert record.completed
    assert record.latency >= 0.02 - SLACK


async def test_rate_limit_answers_429_with_quota_headers() -> None:
    settings = ServerModelSettings(workers=4, per_device=0.0, rate=0.5, burst=2)
    async with modelled(settings) as (model, backend, post):
        first, second, third = [await post() for _ in range(3)]
    assert (first.status, second.status, third.status) == (207, 207, 429)
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert third.headers["X-RateLimit-Remaining"] == "0"
    assert int(third.headers["Retry-After"]) >= 1  # whole seconds until the next token
    assert backend.applied == 2
    assert model.stats.rate_limited == 1


async def test_cost_drift_step_during_the_run() -> None:
    settings = ServerModelSettings(
        workers=1, per_device=0.001, drift=(CostStep(at=0.03, per_device=0.005),)
    )
    async with modelled(settings) as (model, _, post):
        await post()
        await asyncio.sleep(0.04)
        await post()
    before, after = model.stats.records
    assert before.service is not None
    assert after.service is not None
    assert after.arrived >= 0.03
    assert after.service >= 0.05 - SLACK
    assert before.service >= 0.01 - SLACK


def test_cost_schedule_and_tenants_are_pure_functions_of_time() -> None:
    settings = ServerModelSettings(
        workers=8, base=0.01, per_device=0.001,
        drift=(CostStep(10.0, 0.004, base=0.0), CostStep(5.0, 0.002)),
        tenants=(TenantLoad(2.0, 4.0, 4), TenantLoad(3.0, 6.0, 8)),
    )
    assert settings.cost(100, 0.0) == pytest.approx(0.11)
    assert settings.cost(100, 5.0) == pytest.approx(0.21)
    assert settings.cost(100, 11.0) == pytest.approx(0.4)
    assert settings.unloaded_time(100) == pytest.approx(0.11)
    assert [settings.free_workers(t) for t in (0.0, 2.0, 3.0, 4.5, 6.0)] == [8, 4, 0, 0, 8]


async def test_other_tenants_hold_workers_for_a_while() -> None:
    # one worker, taken by other tenants for the first 50 ms of the run
    settings = ServerModelSettings(
        workers=1, per_device=0.001, tenants=(TenantLoad(0.0, 0.05, 1),)
    )
    async with modelled(settings) as (model, backend, post):
        response = await post()
    assert response.status == 207
    (record,) = model.stats.records
    assert record.queue_wait is not None
    assert record.queue_wait >= 0.05 - SLACK
    assert backend.applied == 1


async def test_reset_starts_a_new_run() -> None:
    settings = ServerModelSettings(workers=1, per_device=0.0, rate=0.5, burst=1)
    async with modelled(settings) as (model, _, post):
        assert (await post()).status == 207
        assert (await post()).status == 429
        model.reset()
        assert model.stats.requests == 0
        assert (await post()).status == 207  # a full bucket again
    assert model.stats.summary()["requests"] == 1


def test_presets_and_scaling() -> None:
    assert set(PRESETS) == {"capacity_bound", "rate_limited", "drifting", "shared", "fast"}
    capacity = ServerModelSettings.preset("capacity_bound")
    assert (capacity.workers, capacity.gateway_timeout) == (4, 0.7)
    assert capacity.unloaded_time(100) == pytest.approx(0.2)
    drifting = PRESETS["drifting"]
    assert drifting.gateway_timeout == pytest.approx(3 * drifting.cost(100, 60.0))
    fast = ServerModelSettings.preset("fast", workers=32)
    assert fast.workers == 32
    small = PRESETS["shared"].scaled(0.1)
    assert small.unloaded_time(100) == pytest.approx(0.02)
    (tenant,) = small.tenants
    assert tenant.start == pytest.approx(0.3)
    assert (tenant.end, tenant.workers) == (0.8, 4)
    assert ServerModelSettings.preset("rate_limited").scaled(0.5).rate == pytest.approx(40.0)
    with pytest.raises(ValueError, match="unknown preset"):
        ServerModelSettings.preset("slow")


@pytest.mark.parametrize(
    "kwargs",
    [{"workers": 0}, {"per_device": -1.0}, {"queue_limit": -1}, {"gateway_timeout": 0.0},
     {"rate": 0.0}, {"burst": 0}],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each message names its field
        ServerModelSettings(**kwargs)


def test_count_device_serials() -> None:
    assert count_device_serials(b'{"device_serials": ["a", "b"], "w_ota": true}') == 2
    assert count_device_serials(b"[1, 2]") == 0
    assert count_device_serials(b"not json") == 0


# -- in front of the emulator ---------------------------------------------------------------


class ModelledEmulator(Iris360Emulator):
    """The emulator with ``model`` in front of its bulk endpoint."""

    def __init__(self, model: ServerModel, **settings: Any) -> None:
        super().__init__(**settings)
        self.model = model

    def make_router(self) -> Router:
        router = super().make_router()
        front = self.model.front(router)

        class Fronted(Router):
            async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
                return await front(request)

        return Fronted()


@asynccontextmanager
async def emulator(settings: ServerModelSettings) -> AsyncIterator[ModelledEmulator]:
    emu = ModelledEmulator(ServerModel(settings), devices=3200)
    async with emu:
        yield emu
        await emu.model.drain()


async def send(emu: ModelledEmulator, *, concurrency: int) -> Any:
    async with client_for(emu) as client:
        return await client.devices.send_commands(
            emu.fleet.serials, {"w_reboot": True}, chunk_size=100, concurrency=concurrency
        )


async def test_capacity_bound_times_out_past_the_knee_and_applies_anyway() -> None:
    # the case at a quarter of the time: 4 workers, 50 ms per 100 devices, the gateway
    # gives up after 175 ms
    settings = PRESETS["capacity_bound"].scaled(0.25)
    async with emulator(settings) as emu:
        report = await send(emu, concurrency=16)
        await emu.model.drain()
        stats = emu.model.stats
        assert stats.gateway_timeouts > 0
        assert report.counts["unknown"] == 100 * stats.gateway_timeouts
        assert stats.max_queue > 4
        # every chunk the gateway gave up on was applied all the same
        assert emu.stats.max_applications() == 1
        assert len(emu.stats.command_applications) == 3200
        emu.model.reset()
        report = await send(emu, concurrency=4)
        assert emu.model.stats.gateway_timeouts == 0
        assert report.counts["unknown"] == 0


async def test_rate_limited_gateway_in_front_of_the_emulator() -> None:
    settings = ServerModelSettings.preset("rate_limited", rate=0.5, burst=3)
    async with emulator(settings) as emu, client_for(emu, max_retries=0) as client:
        results = await asyncio.gather(
            *(client.devices.send_commands_bulk([s], {"w_reboot": True})
              for s in emu.fleet.serials[:3]),
        )
        assert len(results) == 3
        with pytest.raises(RateLimitError) as caught:
            await client.devices.send_commands_bulk(emu.fleet.serials[3:4], {"w_reboot": True})
        assert caught.value.retry_after is not None
    assert emu.model.stats.rate_limited == 1
    assert emu.stats.command_applications[emu.fleet.serials[3]]["w_reboot"] == 0


async def test_only_the_bulk_endpoint_is_modelled() -> None:
    async with emulator(PRESETS["capacity_bound"].scaled(0.1)) as emu:
        async with client_for(emu) as client:
            devices = [d async for d in client.devices.paginate(page_size=5, max_items=5)]
        assert len(devices) == 5
        assert emu.model.stats.requests == 0
