"""Shared state and helpers of the endpoint implementations."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from ..fleet import Fleet
from ..server import json_response
from ..validation import LaravelValidator, php_truthy

if TYPE_CHECKING:
    from ..clock import EmulatorClock
    from ..config import EmulatorConfig
    from ..server import Plumbing

__all__ = ["EndpointBase"]

SUCCESS_ITEM = b'{"headers":{},"original":{"data":"Command sent!!"},"exception":null}'
ITEM_HEAD = b'{"headers":{},"original":'
ITEM_TAIL = b',"exception":null}'
DEVICE_COLUMNS = {
    "id": "id", "devices.id": "id", "name": "name", "devices.name": "name",
    "serial": "serial", "devices.serial": "serial", "case_id": "case_id",
    "devices.case_id": "case_id", "created_at": "id", "devices.created_at": "id",
    "updated_at": "id", "devices.updated_at": "id",
}
CONNECTOR_COLUMNS = {
    "id", "name", "type", "status", "user_id", "last_connection", "created_at",
}
COMMAND_TYPES = {"w_ota": "bool", "w_reboot": "bool", "w_sleep": "integer",
                 "w_sampling": "integer"}
SCOPE_IDS = {"/": 7, "/lab": 8}
ATTR_KINDS = ("Property", "Relationship", "Command")

encode = msgspec.json.encode
decode = msgspec.json.decode


def item(original: Any) -> bytes:
    """One serialised bulk item (``{"headers": {}, "original": ..., "exception": null}``)."""
    return ITEM_HEAD + encode(original) + ITEM_TAIL


def validation(v: LaravelValidator) -> web.Response:
    """The 422 response of a failed Laravel validation."""
    return json_response(encode(v.body()), 422)


def label(name: str) -> str:
    """A human label from an attribute name: ``w_ota`` -> ``W Ota``."""
    return " ".join(part.capitalize() for part in name.split("_"))


def like(pattern: str) -> re.Pattern[str]:
    """A SQL ``LIKE`` pattern (``%``, ``_``) as a compiled regex."""
    out = "".join(
        ".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern
    )
    return re.compile(f"^{out}$", re.DOTALL)


def split(value: str) -> list[str]:
    """PHP's ``explode(',')`` of a comma-joined filter, blanks dropped."""
    return [part.strip() for part in value.split(",") if part.strip()]


class EndpointBase:
    """The state every endpoint group uses: configuration, fleet, clock, counters."""

    def __init__(
        self,
        *,
        config: EmulatorConfig,
        fleet: Fleet,
        clock: EmulatorClock,
        plumbing: Plumbing,
    ) -> None:
        self.config = config
        self.fleet = fleet
        self.clock = clock
        self.plumbing = plumbing
        self.stats = plumbing.stats
        self.tokens = plumbing.tokens
        self._reject_cache: dict[tuple[int, tuple[str, ...]], dict[str, bytes]] = {}
        self._success_bodies: dict[int, bytes] = {}
        self._auth_window: list[float] = []

    @staticmethod
    def _page(data: dict[str, Any], v: LaravelValidator) -> tuple[int, int, bool, str | None]:
        size = v.integer("paginationSize", required=True)
        page = v.integer("page", required=True)
        v.string("orderBy", required=True)
        descending = v.boolean("orderDirection", required=True)
        search = v.string("search", required=False)
        size = 15 if size is None or size <= 0 else size
        page = 1 if page is None or page < 1 else page
        return size, page, bool(descending), search

    async def _json_body(self, request: web.BaseRequest) -> Any:
        raw = await request.read()
        if not raw:
            return {}
        try:
            return decode(raw)
        except msgspec.DecodeError:
            return {}

    @staticmethod
    def _permissions(request: web.BaseRequest, response: web.Response, resource: str) -> None:
        if php_truthy(request.headers.get("X-Permissions")):
            response.headers["X-Permissions"] = encode(
                [{"resource": resource, "action": a} for a in ("read", "update")]
            ).decode()


def concat_slice(a: Sequence[int], b: Sequence[int], start: int, stop: int) -> list[int]:
    """``(a + b)[start:stop]`` without building ``a + b``."""
    n_a = len(a)
    out = list(a[start:stop]) if start < n_a else []
    if stop > n_a:
        out.extend(b[max(0, start - n_a) : stop - n_a])
    return out

