"""``POST /timeseries``."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from ..faults import FaultProfile
from ..fleet import Entity
from ..series import encoded_values, run_query
from ..series_options import OptionsError, parse_options
from ..server import json_response, text_response
from .base import (
    EndpointBase,
    decode,
    encode,
)

__all__ = ["SeriesEndpoints"]


class SeriesEndpoints(EndpointBase):
    """``POST /timeseries``."""

    async def timeseries(
        self, request: web.BaseRequest, profile: FaultProfile | None
    ) -> web.Response:
        """``POST /timeseries`` -> one TimeSeriesResponse per request, same order."""
        raw = await request.read()
        try:
            data = decode(raw)
        except msgspec.DecodeError:
            data = None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            return json_response(b'{"error":"invalid request body"}', 400)
        fleet = self.fleet
        for req in data:
            options = req.get("options")
            if not isinstance(options, dict):
                return json_response(
                    b'{"error":"options not provided, tenant and scope are needed"}', 400
                )
            if not options.get("tenant") or not options.get("scope"):
                return json_response(b'{"error":"tenant and scope are needed"}', 400)
            if options["tenant"] not in fleet.tenants or options["scope"] not in fleet.scopes:
                return json_response(b'{"error":"scope not found"}', 404)
        now = self.clock.now()
        detail: list[dict[str, Any]] = []
        parsed = []
        for pos, req in enumerate(data):
            device_ids = req.get("device_ids", [])
            measure_ids = req.get("measure_ids", [])
            for name, value in (("device_ids", device_ids), ("measure_ids", measure_ids)):
                if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                    detail.append({"type": "list_type", "loc": ["body", pos, name],
                                   "msg": "Input should be a valid list of strings",
                                   "input": value})
            try:
                query, echo = parse_options(pos, req["options"], now)
            except OptionsError as exc:
                detail.extend(exc.detail)
                continue
            except TypeError:
                return text_response("Internal Server Error", 500)
            if isinstance(device_ids, list) and not device_ids and echo["where"] is None:
                detail.append({"type": "value_error", "loc": ["body", pos],
                               "msg": "Value error, Neither device_ids nor where clause are "
                                      "provided, at least one of them is required",
                               "input": req})
            parsed.append((req, query, echo))
        if detail:
            return text_response(encode({"detail": detail}).decode(), 422)
        results: list[dict[str, Any]] = []
        pairs = 0
        for req, query, echo in parsed:
            entities = self._series_entities(req, echo)
            wanted: list[str] = req.get("measure_ids", [])
            series: list[dict[str, Any]] = []
            for entity in entities:
                measures = entity.measures
                if wanted:
                    by_name = {m.name: m for m in measures}
                    measures = tuple(by_name[w] for w in dict.fromkeys(wanted) if w in by_name)
                for m in measures:
                    pairs += 1
                    encoded = encoded_values(fleet, entity.urn, m, query, now)
                    values: Any = (
                        run_query(fleet, entity.urn, m, query, now) if encoded is None
                        else msgspec.Raw(encoded) if encoded != b"[]" else None
                    )
                    if values:
                        series.append({"device_id": entity.urn, "measure_id": m.name,
                                       "values": values})
            results.append({"time_series": series, "options": echo})
        await self.plumbing.work(pairs)
        return json_response(encode(results))

    def _series_entities(self, req: dict[str, Any], echo: dict[str, Any]) -> list[Entity]:
        fleet = self.fleet
        scope = echo["scope"]
        tenant = req["options"]["tenant"]
        device_ids: list[str] = req.get("device_ids", [])
        if device_ids:
            out = []
            for urn in dict.fromkeys(device_ids):
                entity = fleet.entity_by(urn)
                if entity is not None and entity.scope == scope and entity.tenant == tenant:
                    out.append(entity)
            return out
        field, _, value = echo["where"]["conditions"][0]
        candidates = [e for e in fleet.extras if e.scope == scope and e.tenant == tenant]
        if scope == fleet.scope:
            candidates.extend(
                e for i in fleet.device_entity_ids(tenant) if (e := fleet.entity(i)) is not None
            )
        if field in ("datamodel", "type", "entity_type"):
            return [e for e in candidates if e.datamodel == value]
        if field in ("urn", "id", "entity_id"):
            return [e for e in candidates if e.urn == value]
        return candidates
