"""Modules import only what their docstrings allow: responses and their errors stay pure,
the pool knows nothing of requests, the bulk engine knows only ``send_chunk`` (no HTTP)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import iris360_async

PACKAGE = Path(iris360_async.__file__).parent


def imported_modules(name: str) -> set[str]:
    """The modules ``iris360_async/<name>.py`` imports, package-relative ones as ``.name``."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            found.add("." * node.level + module if node.level else module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("_responses", {"aiohttp", "anyio", "asyncio", "._transport", "._http_pool", "._auth"}),
        ("_http_pool", {"._transport", "._responses", "._auth", "._retry"}),
        *(
            (f"_bulk/{name}", {"aiohttp", ".._transport", ".._http_pool", ".._auth"})
            for name in ("engine", "intake", "planner", "classify", "ledger", "pacer")
        ),
    ],
)
def test_module_does_not_import(module: str, forbidden: set[str]) -> None:
    assert imported_modules(module) & forbidden == set()


def test_the_transport_builds_on_both() -> None:
    assert {"._responses", "._http_pool"} <= imported_modules("_transport")
