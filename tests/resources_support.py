"""Shared helpers of the resource tests (no tests here).

:func:`mocked` intercepts the real client's requests with ``aioresponses`` (made to work with
aiohttp 3.14 in ``conftest.py``); the helpers read back what the client put on the wire.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aioresponses import aioresponses
from yarl import URL

from iris360_async import Iris360Client

ROOT = "https://iris.test/api/public/v1"
TOKEN = "tok-123"


def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


async def make_client(**kwargs: Any) -> AsyncIterator[Iris360Client]:
    options: dict[str, Any] = {
        "token": TOKEN, "tenant": "libelium", "scope": "/", "max_retries": 0, "environ": {},
    }
    options.update(kwargs)
    async with Iris360Client._with_hooks("https://iris.test", **options) as client:
        yield client


def sent(mock: aioresponses, method: str, path: str, index: int = 0) -> dict[str, Any]:
    """The keyword arguments of the ``index``-th request sent to ``path`` (query included)."""
    calls = mock.requests[(method, URL(ROOT + path))]
    return calls[index].kwargs  # type: ignore[no-any-return]


def body_of(kwargs: dict[str, Any]) -> Any:
    """The JSON body of a recorded request."""
    return json.loads(kwargs["data"])


def no_requests(mock: aioresponses) -> bool:
    return not mock.requests
