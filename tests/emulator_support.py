"""Helpers shared by the tests that run the client against the emulator (no tests here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from iris360_async import Iris360Client
from iris360_async._retry import ManualClock
from iris360_async.testing import Iris360Emulator


@asynccontextmanager
async def client_for(emu: Iris360Emulator, **kwargs: Any) -> AsyncIterator[Iris360Client]:
    """A client logged in to ``emu`` whose waits (backoff, Retry-After) take no real time."""
    async with Iris360Client._with_hooks(
        emu.base_url,
        username=emu.username,
        password=emu.password,
        tenant=emu.tenant,
        scope=emu.scope,
        clock=ManualClock(),
        **kwargs,
    ) as client:
        yield client
