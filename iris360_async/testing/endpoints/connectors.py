"""Outbound connectors: list, get, update models."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..faults import FaultProfile
from ..fleet import MAPPING_SCHEMAS
from ..server import SERVER_ERROR, json_response, path_params
from ..validation import LaravelValidator
from .base import (
    CONNECTOR_COLUMNS,
    EndpointBase,
    encode,
    validation,
)

__all__ = ["ConnectorEndpoints"]


class ConnectorEndpoints(EndpointBase):
    """Outbound connectors: list, get, update models."""

    def _connector_json(self, connector_id: int) -> dict[str, Any]:
        c = self.fleet.connectors[connector_id]
        return {
            **c.summary(),
            "connectable_type": c.connectable_type, "connectable_id": c.connectable_id,
            "retries": c.retries, "use_readable_names": c.use_readable_names,
            "entities": list(c.entities), "devices": list(c.devices),
            "mapping_schemas": [MAPPING_SCHEMAS[m] for m in c.mapping_schemas],
            **c.config,
        }

    async def connectors_paginate(
        self, request: web.BaseRequest, profile: FaultProfile | None
    ) -> web.Response:
        """``POST /connectors/out/paginate`` -> ``{rows, count}`` of SimpleOutConnector."""
        data = await self._json_body(request)
        if not isinstance(data, dict):
            data = {}
        v = LaravelValidator(data)
        size, page, descending, search = self._page(data, v)
        if not v.ok:
            return validation(v)
        column = str(data["orderBy"]).removeprefix("out_connectors.")
        if column not in CONNECTOR_COLUMNS:
            return json_response(SERVER_ERROR, 500)
        if column == "created_at":
            column = "id"
        rows = [c.summary() for c in self.fleet.connectors.values()]
        if search:
            needle = search.lower()
            rows = [r for r in rows if needle in r["name"].lower() or needle in r["type"].lower()]
        rows.sort(key=lambda r: (r[column] is None, r[column] or "", r["id"]), reverse=descending)
        count = len(rows)
        start = (page - 1) * size
        chosen = rows[start : start + size]
        await self.plumbing.work(len(chosen))
        response = json_response(encode({"rows": chosen, "count": count}))
        self._permissions(request, response, "out_connectors")
        return response

    def _connector_id(self, request: web.BaseRequest) -> int | None:
        raw = path_params(request)["id"]
        if not raw.isdigit() or int(raw) not in self.fleet.connectors:
            return None
        return int(raw)

    @staticmethod
    def _connector_missing(request: web.BaseRequest) -> web.Response:
        message = (
            "No query results for model [App\\Models\\OutConnector] " + path_params(request)["id"]
        )
        return json_response(encode({"message": message}), 404)

    async def connector_get(
        self, request: web.BaseRequest, profile: FaultProfile | None
    ) -> web.Response:
        """``GET /connectors/out/{id}`` -> OutConnector (type fields flattened)."""
        connector_id = self._connector_id(request)
        if connector_id is None:
            return self._connector_missing(request)
        await self.plumbing.work(1)
        return json_response(encode(self._connector_json(connector_id)))

    async def connector_models(
        self, request: web.BaseRequest, profile: FaultProfile | None
    ) -> web.Response:
        """``PUT /connectors/out/{id}/models``: replaces each list present in the body."""
        connector_id = self._connector_id(request)
        data = await self._json_body(request)
        if connector_id is None:
            return self._connector_missing(request)
        if not isinstance(data, dict):
            data = {}
        fleet = self.fleet
        v = LaravelValidator(data)
        keys = ("entities", "devices", "mapping_schemas")
        if not any(k in data for k in keys):
            for k in keys:
                v.fail(k, f"The {k.replace('_', ' ')} field is required when none of "
                          f"{' / '.join(o.replace('_', ' ') for o in keys if o != k)} "
                          "are present.")
            return validation(v)
        entities = v.integer_list("entities", allowed=range(1, fleet.entity_count + 1))
        devices = v.integer_list("devices", allowed=range(1, fleet.device_count + 1))
        schemas = v.integer_list("mapping_schemas", allowed=set(MAPPING_SCHEMAS))
        if not v.ok:
            return validation(v)
        connector = fleet.connectors[connector_id]
        if entities is not None:
            connector.entities = list(dict.fromkeys(entities))
        if devices is not None:
            connector.devices = list(dict.fromkeys(devices))
        if schemas is not None:
            connector.mapping_schemas = list(dict.fromkeys(schemas))
        await self.plumbing.work(1)
        return json_response(encode(self._connector_json(connector_id)))
