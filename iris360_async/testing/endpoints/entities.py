"""Entity pagination and the latest-data attributes of one entity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from ..faults import FaultProfile
from ..fleet import ALL_COMMANDS, Entity
from ..series import latest_point, timestamp_db, value_at
from ..server import SERVER_ERROR, json_response, path_params, text_response
from ..validation import laravel_integer, php_truthy
from .base import (
    ATTR_KINDS,
    COMMAND_TYPES,
    SCOPE_IDS,
    EndpointBase,
    concat_slice,
    encode,
    label,
    like,
    split,
)

__all__ = ["EntityEndpoints"]


class EntityEndpoints(EndpointBase):
    """Entity pagination and the latest-data attributes of one entity."""

    def _entity_row(self, entity: Entity) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": entity.id, "name": entity.name, "urn": entity.urn,
            "datamodel": entity.datamodel, "tenant": entity.tenant, "tenant_id": 3,
            "scope": entity.scope, "scope_id": SCOPE_IDS.get(entity.scope, 9),
        }
        if entity.device_id is not None:
            row["devices"] = [entity.device_id]
        row["geolocation"] = {"type": "Point", "coordinates": [entity.lon, entity.lat]}
        return row

    async def entities_paginate(
        self, request: web.BaseRequest, profile: FaultProfile | None
    ) -> web.Response:
        """``POST /entities/paginate`` -> ``{rows, count}``; always ordered by id."""
        data = await self._json_body(request)
        if not isinstance(data, dict):
            data = {}
        size = laravel_integer(data.get("paginationSize", 10))
        size = 15 if size is None or size <= 0 else size
        page = laravel_integer(data.get("page", 1))
        page = 1 if page is None or page < 1 else page
        descending = php_truthy(data.get("orderDirection", True))
        for key in ("types", "groups"):
            if isinstance(data.get(key), (list, dict)):
                return json_response(SERVER_ERROR, 500)
        tenant = data.get("tenant") or None
        scope = data.get("scope") or None
        if scope is not None and tenant is None:
            return text_response("Undefined tenant for given scope", 400)
        bounds = data.get("bounds")
        if bounds is not None:
            keys = ("south", "west", "north", "east")
            if not isinstance(bounds, dict) or not all(
                isinstance(bounds.get(k), (int, float)) and not isinstance(bounds.get(k), bool)
                for k in keys
            ):
                return text_response("Invalid bounds, expected numeric south/west/north/east", 400)
        types_raw = data.get("types")
        types = set(split(types_raw)) if isinstance(types_raw, str) and types_raw else None
        search = data.get("search")
        needle = search.lower() if isinstance(search, str) and search else None
        keep = data.get("urn")
        keep_patterns = (
            [like(p) for p in (split(keep) if isinstance(keep, str) else keep)
             if isinstance(p, str)]
            if isinstance(keep, (str, list)) and keep else None
        )
        excluded = data.get("excluded")
        drop_patterns = (
            [like(p) for p in excluded if isinstance(p, str)]
            if isinstance(excluded, list) and excluded else None
        )
        fleet = self.fleet

        def block_ok(model: str, ent_tenant: str, ent_scope: str) -> bool:
            return (
                (types is None or model in types)
                and (tenant is None or tenant == ent_tenant)
                and (scope is None or scope == ent_scope)
            )

        per_entity = needle is not None or keep_patterns or drop_patterns or bounds is not None

        def entity_ok(entity: Entity) -> bool:
            if needle is not None and not (
                needle in entity.urn.lower() or needle in entity.datamodel.lower()
                or needle in entity.name.lower()
            ):
                return False
            if keep_patterns and not any(p.match(entity.urn) for p in keep_patterns):
                return False
            if drop_patterns and any(p.match(entity.urn) for p in drop_patterns):
                return False
            if isinstance(bounds, dict):
                return bool(bounds["south"] <= entity.lat <= bounds["north"]
                            and bounds["west"] <= entity.lon <= bounds["east"])
            return True

        ids: list[int] = [
            e.id for e in fleet.extras
            if block_ok(e.datamodel, e.tenant, e.scope) and (not per_entity or entity_ok(e))
        ]
        device_ids: Sequence[int] = range(0)
        devices_ok = (types is None or "Device" in types) and scope in (None, fleet.scope)
        if fleet.device_count and devices_ok:
            device_ids = fleet.device_entity_ids(tenant)
            if per_entity:
                device_ids = [
                    i for i in device_ids
                    if (e := fleet.entity(i)) is not None and entity_ok(e)
                ]
        count = len(ids) + len(device_ids)
        start = (page - 1) * size
        stop = start + size
        if descending:
            start, stop = count - stop, count - start
        start = max(start, 0)
        stop = max(stop, 0)
        chosen = concat_slice(ids, device_ids, start, stop)
        if descending:
            chosen.reverse()
        await self.plumbing.work(len(chosen))
        rows = [self._entity_row(e) for i in chosen if (e := fleet.entity(i)) is not None]
        response = json_response(encode({"rows": rows, "count": count}))
        self._permissions(request, response, "entities")
        return response

    def _attributes(
        self, entity: Entity, *, kinds: set[str], names: set[str] | None,
        per_kind: dict[str, set[str] | None], only_available: bool, only_pending: bool,
        nesting: int, visited: frozenset[str],
    ) -> list[dict[str, Any]]:
        fleet = self.fleet
        now = self.clock.now()
        last = latest_point(fleet, now)
        stamp = timestamp_db(last[1]) if last is not None else None
        common = {"urn": entity.urn, "tenant": entity.tenant, "scope": entity.scope}

        def wanted(kind: str, name: str) -> bool:
            if kind not in kinds or (names is not None and name not in names):
                return False
            only = per_kind[kind]
            return only is None or name in only

        out: list[dict[str, Any]] = []
        for m in entity.measures:
            if not wanted("Property", m.name) or last is None:
                continue
            out.append({
                **common, "entity_id": entity.id, "id": m.name, "name": m.label,
                "type": "Property", "value_type": m.value_type,
                "value": value_at(fleet.seed, entity.urn, m, last[0], last[1]),
                "description": "No info available", "units": m.units, "timestamp": stamp,
                "template": None, "internal": False,
            })
        for rel_name, target in entity.relationships:
            if not wanted("Relationship", rel_name):
                continue
            referenced: list[dict[str, Any]] | None = None
            pruned = False
            if nesting > 0:
                if target in visited:
                    pruned = True
                else:
                    other = fleet.entity_by(target)
                    if other is not None:
                        referenced = self._attributes(
                            other, kinds=set(ATTR_KINDS), names=None,
                            per_kind=dict.fromkeys(ATTR_KINDS), only_available=False,
                            only_pending=False, nesting=nesting - 1,
                            visited=visited | {target},
                        )
            out.append({
                **common, "id": rel_name, "name": label(rel_name.replace("ref", "ref_")),
                "type": "Relationship", "value_type": "string", "value": target,
                "timestamp": stamp, "last_sent": True, "referenced_data": referenced,
                "pruned_by_cicle": pruned,
            })
        if entity.device_id is not None:
            index = entity.device_id - 1
            accepted = fleet.device_type(index).commands
            serial = fleet.serials[index]
            for command in ALL_COMMANDS:
                available = command in accepted
                if not wanted("Command", command):
                    continue
                state = fleet.sync.state(serial, command, now)
                if (only_available and not available) or (only_pending and not state.pending):
                    continue
                when = stamp if state.changed_at is None else timestamp_db(state.changed_at)
                out.append({
                    **common, "entity_id": entity.id, "id": command, "name": label(command),
                    "type": "Command", "value_type": COMMAND_TYPES[command],
                    "status": "PENDING" if state.pending else "OK", "info": None,
                    "status_timestamp": when, "info_timestamp": when, "timestamp": when,
                    "available": available, "pending": state.pending,
                    "pending_value": state.pending_value, "current_value": state.current_value,
                    "description": "No info available", "data_type": None, "units": None,
                    "tab": None, "datamodel": None, "max_value": None, "min_value": None,
                    "internal": False, "operations": None,
                })
        return out

    async def entity_latest(
        self, request: web.BaseRequest, profile: FaultProfile | None
    ) -> web.Response:
        """``GET /last-data/entities/{urn}`` -> array of attributes."""
        tenant = request.headers.get("tenant")
        scope = request.headers.get("scope")
        if not tenant or not scope:
            return text_response("Missing headers (tenant,scope)", 400)
        query = request.query
        for key in query:
            if key.endswith("[]"):
                return json_response(SERVER_ERROR, 500)
        urn = path_params(request)["urn"]
        entity = self.fleet.entity_by(urn)
        if entity is None or entity.tenant != tenant or entity.scope != scope:
            return json_response(b'"Entity not found"', 404)
        kinds_raw = query.get("attrTypeFilter")
        kinds = set(split(kinds_raw)) if kinds_raw else set(ATTR_KINDS)

        def names(param: str) -> set[str] | None:
            raw = query.get(param)
            return set(split(raw)) if raw else None

        nesting = laravel_integer(query.get("referenceDataNesting", "0")) or 0
        await self.plumbing.work(1)
        attrs = self._attributes(
            entity, kinds=kinds, names=names("attrNameFilter"),
            per_kind={"Property": names("attrPropFilter"),
                      "Relationship": names("attrRelFilter"),
                      "Command": names("attrCmdFilter")},
            only_available=php_truthy(query.get("filterCmdAvailable")),
            only_pending=php_truthy(query.get("filterCmdPending")),
            nesting=max(0, nesting), visited=frozenset({entity.urn}),
        )
        return json_response(encode(attrs))
