"""Shared test configuration."""

from __future__ import annotations

import inspect
from typing import Any
from unittest.mock import Mock

import aiohttp
import pytest


def _patch_aioresponses_for_aiohttp_314() -> None:
    """aiohttp 3.14 made ``ClientResponse(stream_writer=...)`` required; aioresponses 0.7.9
    builds responses without it (pnuckowski/aioresponses#289). Give it the one attribute
    aiohttp reads (``output_size``), as the pending upstream fix does."""
    if "stream_writer" not in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        return
    import aioresponses.core as arc

    class _CompatClientResponse(aiohttp.ClientResponse):
        def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", Mock(output_size=0))
            super().__init__(method, url, **kwargs)

    arc.ClientResponse = _CompatClientResponse  # type: ignore[misc]


_patch_aioresponses_for_aiohttp_314()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "seeded chaos test of the bulk engine (tests/test_chaos.py)")
    group.addoption("--chaos-rounds", type=int, default=None, metavar="N",
                    help="rounds of the chaos test (default: the CI budget)")
    group.addoption("--chaos-seed", type=int, default=None, metavar="S",
                    help="seed of the chaos test's schedules (default: the fixed CI seed)")
