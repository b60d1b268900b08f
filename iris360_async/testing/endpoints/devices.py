"""Device pagination, ``sendCommandsBulk`` and the device file import."""

from __future__ import annotations

import bisect
import csv
import io
from collections.abc import Sequence
from typing import Any

import msgspec
from aiohttp import BodyPartReader, web

from ..faults import FaultProfile
from ..fleet import DEVICE_TYPES, MEASURES
from ..server import SERVER_ERROR, json_response, text_response
from ..validation import LaravelValidator
from .base import (
    DEVICE_COLUMNS,
    SUCCESS_ITEM,
    EndpointBase,
    decode,
    encode,
    item,
    validation,
)

__all__ = ["DeviceEndpoints"]


class _BulkSerials(msgspec.Struct):
    device_serials: list[Any] = []


_decode_serials = msgspec.json.Decoder(_BulkSerials).decode


class _SearchIndex:
    """The lower-cased searched fields of every device in one text, one line per device, so
    a substring search is a few ``str.find`` calls instead of a scan in Python (what a
    device look-up by serial costs on a large fleet)."""

    def __init__(self, version: int, rows: Any) -> None:
        self.version = version
        self._text = "\n".join("\t".join(fields).lower() for fields in rows)
        starts = [0]
        find = self._text.find
        at = find("\n")
        while at >= 0:
            starts.append(at + 1)
            at = find("\n", at + 1)
        self._starts = starts

    def matches(self, needle: str) -> set[int] | None:
        """Indexes of the devices with ``needle`` in a field (``None``: a needle the index
        cannot answer, one holding a separator)."""
        if "\t" in needle or "\n" in needle:
            return None
        text, starts = self._text, self._starts
        found: set[int] = set()
        at = text.find(needle)
        while at >= 0:
            line = bisect.bisect_right(starts, at) - 1
            found.add(line)
            nxt = starts[line + 1] if line + 1 < len(starts) else len(text)
            at = text.find(needle, nxt)
        return found


class DeviceEndpoints(EndpointBase):
    """Device pagination, ``sendCommandsBulk`` and the device file import."""

    async def bulk_received(self, request: web.BaseRequest) -> None:
        """Count the serials a ``sendCommandsBulk`` request names (``stats.bulk_received``),
        before authentication and faults: the request was received whatever its answer."""
        try:
            serials = _decode_serials(await request.read()).device_serials
        except (msgspec.DecodeError, ValueError):
            return
        if all(type(s) is str for s in serials):
            self.stats.bulk_received.update(serials)
        else:
            self.stats.bulk_received.update(s for s in serials if type(s) is str)

    async def devices_paginate(
        self, request: web.BaseRequest, profile: FaultProfile | None
    ) -> web.Response:
        """``POST /devices/paginate`` -> ``{rows, count}`` of DevicesSchema."""
        data = await self._json_body(request)
        if not isinstance(data, dict):
            data = {}
        v = LaravelValidator(data)
        size, page, descending, search = self._page(data, v)
        realtime = data.get("realtimeProperties")
        if realtime is not None and not isinstance(realtime, list):
            v.fail("realtimeProperties", "The realtime properties field must be an array.")
        if not v.ok:
            return validation(v)
        column = DEVICE_COLUMNS.get(str(data["orderBy"]))
        if column is None:
            return json_response(SERVER_ERROR, 500)
        fleet = self.fleet
        order: Sequence[int] = fleet.device_order(column)
        if search:
            needle = search.lower()
            measure_hit = any(needle in m.name.lower() for m in MEASURES["Device"])
            if not measure_hit:
                hits = self._search_index().matches(needle)
                if hits is None:
                    order = [i for i in order if self._device_matches(i, needle)]
                else:
                    order = [i for i in order if i in hits]
        count = len(order)
        if descending:
            order = order[::-1]
        start = (page - 1) * size
        chosen = order[start : start + size]
        await self.plumbing.work(len(chosen))
        now = self.clock.now()
        if realtime:
            rows = [fleet.device_row(i, now, realtime) for i in chosen]
            body = encode({"rows": rows, "count": count})
        else:
            body = b'{"rows":[' + b",".join(fleet.device_rows_json(chosen, now)) + (
                b'],"count":%d}' % count
            )
        response = json_response(body)
        self._permissions(request, response, "devices")
        return response

    def _search_index(self) -> _SearchIndex:
        """The index of the searched text of every device (rebuilt when devices change)."""
        fleet = self.fleet
        index: _SearchIndex | None = getattr(self, "_index", None)
        if index is None or index.version != fleet.version:
            index = _SearchIndex(
                fleet.version,
                (
                    (fleet.serials[i], fleet.device_name(i), fleet.case_id(i) or "",
                     fleet.device_type(i).name)
                    for i in range(len(fleet.serials))
                ),
            )
            self._index = index
        return index

    def _device_matches(self, index: int, needle: str) -> bool:
        fleet = self.fleet
        if needle in fleet.serials[index].lower() or needle in fleet.device_name(index).lower():
            return True
        case = fleet.case_id(index)
        if case is not None and needle in case.lower():
            return True
        return needle in fleet.device_type(index).name.lower()

    def _apply(
        self, serials: list[str], commands: dict[str, Any], excluded: Sequence[str] = ()
    ) -> bool:
        """Command ``serials`` (but not ``excluded``): count them in the ledger and mark the
        commands pending on their entities; ``False`` (nothing applied) for an unknown serial."""
        fleet = self.fleet
        if not fleet.ledger.apply(serials, commands, excluded):
            return False
        fleet.sync.record(serials, commands, self.clock.now(), excluded)
        return True

    def _rejections(self, commands: tuple[str, ...]) -> tuple[bytes | None, ...]:
        """Per device type: the rejection item for ``commands``, or ``None`` if accepted."""
        items: list[bytes | None] = []
        for dtype in DEVICE_TYPES:
            missing = [c for c in commands if c not in dtype.commands]
            if missing:
                items.append(item({"errors": "You cannot send any of: " + ", ".join(missing)}))
            else:
                items.append(None)
        return tuple(items)

    def _rejected_serials(self, commands: tuple[str, ...]) -> dict[str, bytes]:
        """``serial -> rejection item`` for every device whose type lacks one of ``commands``
        (a small mapping: only the rejected devices), cached per command set."""
        key = (self.fleet.version, commands)
        cached = self._reject_cache.get(key)
        if cached is None:
            rejections = self._rejections(commands)
            cached = {
                serial: rejection
                for serial, type_index in self.fleet.serial_type.items()
                if (rejection := rejections[type_index]) is not None
            }
            if len(self._reject_cache) >= 64:
                self._reject_cache.clear()
            self._reject_cache[key] = cached
        return cached

    def _success_body(self, n: int) -> bytes:
        body = self._success_bodies.get(n)
        if body is None:
            body = b"[" + b",".join([SUCCESS_ITEM] * n) + b"]"
            if n <= 1000:
                self._success_bodies[n] = body
        return body

    async def send_commands_bulk(
        self, request: web.BaseRequest, profile: FaultProfile | None
    ) -> web.Response:
        """``POST /devices/sendCommandsBulk`` -> 207, one item per serial in request order."""
        raw = await request.read()
        try:
            data = decode(raw)
        except msgspec.DecodeError:
            data = {}
        if type(data) is not dict:
            data = {}
        serials = data.pop("device_serials", None)
        if type(serials) is not list or not serials or not data:
            return self._bulk_invalid(serials, data)
        n = len(serials)
        self.stats.bulk_targets += n
        if not self.plumbing.latency.zero:
            await self.plumbing.work(n)
        commands = tuple(data)
        stop_at: int | None = None
        if profile is not None:
            if self.plumbing.faults.draw(profile, profile.forbidden_rate):
                self.stats.faults["forbidden"] += 1
                after = profile.forbidden_after
                stop_at = min(n, self.plumbing.faults.randint_below(n) if after is None else after)
            if stop_at is not None or profile.has_item_faults:
                return self._bulk_slow(serials, data, commands, stop_at, profile)
        try:
            rejected = self._rejected_serials(commands)
            hits = rejected.keys() & serials
            if not hits:
                if self._apply(serials, data):
                    return json_response(self._success_body(n), 207)
            else:
                # few rejected targets: patch their items and positions in
                parts = [SUCCESS_ITEM] * n
                excluded: list[str] = []
                for serial in hits:
                    item = rejected[serial]
                    pos = -1
                    while True:
                        try:
                            pos = serials.index(serial, pos + 1)
                        except ValueError:
                            break
                        parts[pos] = item
                        excluded.append(serial)
                if len(excluded) == n or self._apply(serials, data, excluded):
                    return json_response(b"[" + b",".join(parts) + b"]", 207)
        except TypeError:  # an unhashable serial (list, object): validated below
            pass
        return self._bulk_slow(serials, data, commands, None, profile)

    def _bulk_invalid(self, serials: Any, data: dict[str, Any]) -> web.Response:
        v = LaravelValidator({})
        if serials is None or serials == "":
            v.fail("device_serials", "The device serials field is required.")
        elif not isinstance(serials, list):
            v.fail("device_serials", "The device serials field must be an array.")
        elif not serials:
            return text_response("No entities provided", 400)
        else:
            v.fail("commands", "At least one command is required.")
        return validation(v)

    def _bulk_slow(
        self, serials: list[Any], data: dict[str, Any], commands: tuple[str, ...],
        stop_at: int | None, profile: FaultProfile | None,
    ) -> web.Response:
        """Target by target: unknown or invalid serials, per-target faults, 403 mid-chunk (the
        first ``stop_at`` targets are handled, then the request fails)."""
        for pos, serial in enumerate(serials):
            if type(serial) is not str:
                v = LaravelValidator({})
                v.fail(f"device_serials.{pos}", f"The device_serials.{pos} field must be a string.")
                return validation(v)
        rejections = self._rejections(commands)
        serial_type = self.fleet.serial_type
        item_faults = profile is not None and profile.has_item_faults
        parts: list[bytes] = []
        for pos, serial in enumerate(serials):
            if pos == stop_at:
                break
            type_index = serial_type.get(serial)
            if type_index is None:
                parts.append(item(f"Device not found: {serial}"))
                continue
            rejection = rejections[type_index]
            if rejection is not None:
                parts.append(rejection)
                continue
            if item_faults:
                assert profile is not None
                failure = self._item_fault(profile, serial)
                if failure is not None:
                    parts.append(failure)
                    continue
            self._apply([serial], data)
            parts.append(SUCCESS_ITEM)
        if stop_at is not None:
            return json_response(b'{"message":"This action is unauthorized."}', 403)
        return json_response(b"[" + b",".join(parts) + b"]", 207)

    def _item_fault(self, profile: FaultProfile, serial: str) -> bytes | None:
        faults = self.plumbing.faults
        if faults.draw(profile, profile.item_broker_error_rate):
            self.stats.faults["item_broker_error"] += 1
            urn = f"urn:ngsi-ld:Device:{serial}"
            return item({
                "success": [],
                "errors": [{"entityId": urn, "error": {
                    "status": 503, "type": "https://uri.etsi.org/ngsi-ld/errors/InternalError",
                    "title": "Context broker unavailable"}}],
            })
        if faults.draw(profile, profile.item_exception_rate):
            self.stats.faults["item_exception"] += 1
            return item("cURL error 28: Operation timed out after 30001 milliseconds")
        return None

    async def import_file(
        self, request: web.BaseRequest, profile: FaultProfile | None
    ) -> web.Response:
        """``POST /devices/importFile`` (multipart, CSV ``file`` part) -> 200 summary."""
        content = b""
        found = False
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if isinstance(part, BodyPartReader) and part.name == "file":
                    content = bytes(await part.read(decode=True))
                    found = True
                else:
                    await part.release()
        else:
            await request.read()
        if not found:
            v = LaravelValidator({})
            v.fail("file", "The file field is required.")
            return validation(v)
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            return json_response(b'{"error":"Invalid CSV file"}', 422)
        reader_csv = csv.DictReader(io.StringIO(text))
        header = [h.strip().lower() for h in (reader_csv.fieldnames or [])]
        if "serial" not in header:
            return json_response(b'{"error":"Invalid CSV file: a serial column is required"}', 422)
        reader_csv.fieldnames = header
        rows: list[tuple[str, str | None, int, str | None, str | None]] = []
        errors: list[str] = []
        for line, row in enumerate(reader_csv, start=2):
            serial = (row.get("serial") or "").strip()
            if not serial:
                errors.append(f"Row {line}: the serial is empty.")
                continue
            type_index = self._type_index((row.get("type") or "").strip())
            if type_index is None:
                errors.append(f"Row {line}: unknown device type '{row.get('type')}'.")
                continue
            rows.append((serial, (row.get("name") or "").strip() or None, type_index,
                         (row.get("description") or "").strip() or None,
                         (row.get("case_id") or "").strip() or None))
        if errors:
            message = errors[0] + (f" (and {len(errors) - 1} more error"
                                   f"{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else "")
            return json_response(encode({"message": message, "errors": {"file": errors}}), 422)
        await self.plumbing.work(len(rows))
        created = 0
        for serial, name, type_index, description, case_id in rows:
            if self.fleet.add_device(serial, name=name, type_index=type_index,
                                     description=description, case_id=case_id):
                created += 1
        return json_response(
            encode({"message": "Devices imported successfully",
                     "total_devices_in_file": len(rows), "created": created,
                     "updated": len(rows) - created}),
        )

    @staticmethod
    def _type_index(value: str) -> int | None:
        if not value:
            return 0
        for pos, dtype in enumerate(DEVICE_TYPES):
            if value.lower() in (dtype.code.lower(), dtype.name.lower(), str(dtype.id)):
                return pos
        return None
