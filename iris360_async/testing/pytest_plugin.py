"""pytest fixtures serving the IRIS360 emulator (registered automatically through the
``pytest11`` entry point when iris360-async is installed).

Fixtures:

* ``iris360_emulator`` -- a running :class:`~iris360_async.testing.Iris360Emulator` with a small
  fleet (50 devices, seed 1) and no latency, closed after the test;
* ``iris360_emulator_factory`` -- an async callable taking the same keyword arguments as
  ``Iris360Emulator``; every emulator it started is closed after the test.

Both work with pytest-asyncio in auto and in strict mode::

    from iris360_async import Iris360Client

    async def test_reboot(iris360_emulator):
        emu = iris360_emulator
        async with Iris360Client(base_url=emu.base_url, username=emu.username,
                                 password=emu.password, tenant=emu.tenant,
                                 scope=emu.scope) as client:
            await client.devices.send_commands(["SN000001"], {"w_reboot": True})
        assert emu.stats.command_applications["SN000001"]["w_reboot"] == 1

    async def test_flaky_server(iris360_emulator_factory):
        emu = await iris360_emulator_factory(devices=1_000, faults=FaultProfile(error_rate=0.2))
        ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .emulator import Iris360Emulator

try:  # pytest-asyncio marks async fixtures explicitly in strict mode
    import pytest_asyncio

    _async_fixture: Any = pytest_asyncio.fixture  # untyped on purpose: used as a decorator
except ImportError:  # pragma: no cover - other async plugins (anyio) take plain fixtures
    _async_fixture = pytest.fixture

__all__ = ["iris360_emulator", "iris360_emulator_factory"]

EmulatorFactory = Callable[..., Awaitable["Iris360Emulator"]]

DEFAULT_SETTINGS: dict[str, Any] = {"devices": 50, "seed": 1}


@_async_fixture  # type: ignore[untyped-decorator,unused-ignore]
async def iris360_emulator_factory() -> AsyncIterator[EmulatorFactory]:
    """Start emulators with custom settings; all are closed at teardown."""
    from .emulator import Iris360Emulator

    started: list[Iris360Emulator] = []

    async def factory(**settings: Any) -> Iris360Emulator:
        emu = Iris360Emulator(**{**DEFAULT_SETTINGS, **settings})
        await emu.start()
        started.append(emu)
        return emu

    try:
        yield factory
    finally:
        for emu in reversed(started):
            await emu.close()


@_async_fixture  # type: ignore[untyped-decorator,unused-ignore]
async def iris360_emulator(
    iris360_emulator_factory: EmulatorFactory,
) -> AsyncIterator[Iris360Emulator]:
    """A running emulator with 50 devices, seed 1 and no latency."""
    yield await iris360_emulator_factory()
