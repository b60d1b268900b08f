"""The read-only commands: devices list, entities list/latest, timeseries get, connectors."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from ._errors import EXIT_OK, CliError
from ._fields import CONNECTOR_FIELDS, DEVICE_FIELDS, ENTITY_FIELDS
from ._output import Column

if TYPE_CHECKING:
    from ._commands import Context

__all__ = [
    "connectors_get",
    "connectors_list",
    "devices_list",
    "entities_latest",
    "entities_list",
    "timeseries_get",
]

ATTRIBUTE_COLUMNS = (
    Column("id", "id"),
    Column("type", "type"),
    Column("value", "value"),
    Column("units", "units"),
    Column("timestamp", "timestamp"),
)
POINT_COLUMNS = (
    Column("device_id", "device_id"),
    Column("measure_id", "measure_id"),
    Column("timestamp", "timestamp"),
    Column("value", "value"),
)
SECRET_FIELDS = frozenset({"password", "connection_string", "identity_key", "sslCert"})


def to_row(item: Any) -> dict[str, Any]:
    """A model as a JSON-friendly ``dict`` (wire names, ISO dates)."""
    value = msgspec.to_builtins(item, str_keys=True, enc_hook=str)
    if isinstance(value, dict):
        return value
    return {"value": value}


async def _rows(items: AsyncIterable[Any]) -> AsyncIterator[dict[str, Any]]:
    async for item in items:
        yield to_row(item)


def _kwargs(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


async def devices_list(ctx: Context) -> int:
    args = ctx.args
    out = ctx.output()
    columns = DEVICE_FIELDS.columns(args.fields)
    async with ctx.client() as client:
        paginator = client.devices.paginate(
            **_kwargs(page_size=args.page_size, search=args.search, max_items=args.limit)
        )
        async with paginator:
            if args.serials_only:
                async for device in paginator:
                    ctx.stdout.write(f"{device.serial}\n")
                ctx.stdout.flush()
            else:
                await out.rows_async(
                    _rows(paginator), columns, title="devices", project=args.fields is not None
                )
    return EXIT_OK


async def entities_list(ctx: Context) -> int:
    args = ctx.args
    out = ctx.output()
    columns = ENTITY_FIELDS.columns(args.fields)
    async with ctx.client() as client:
        tenant, scope = ctx.tenant_scope(client)
        paginator = client.entities.paginate(
            **_kwargs(
                page_size=args.page_size,
                search=args.search,
                max_items=args.limit,
                types=args.types,
                tenant=tenant,
                scope=scope,
            )
        )
        async with paginator:
            await out.rows_async(
                _rows(paginator), columns, title="entities", project=args.fields is not None
            )
    return EXIT_OK


def attribute_row(attribute: Any) -> dict[str, Any]:
    """An entity attribute; a command shows its current value (and pending value)."""
    row = to_row(attribute)
    if row.get("type") == "Command" and "value" not in row:
        value = row.get("current_value")
        if row.get("pending"):
            row["value"] = {"current": value, "pending": row.get("pending_value")}
        else:
            row["value"] = value
    return row


async def entities_latest(ctx: Context) -> int:
    args = ctx.args
    out = ctx.output()
    async with ctx.client() as client:
        tenant, scope = ctx.required_tenant_scope(client)
        attributes = await client.entities.latest(args.urn, tenant=tenant, scope=scope)
    out.rows((attribute_row(a) for a in attributes), ATTRIBUTE_COLUMNS, title=args.urn)
    return EXIT_OK


async def timeseries_get(ctx: Context) -> int:
    args = ctx.args
    out = ctx.output()
    aggregation = _aggregation(args.aggregate)
    async with ctx.client() as client:
        tenant, scope = ctx.required_tenant_scope(client)
        result = await client.timeseries.query(
            list(args.devices),
            list(args.measures or []),
            tenant=tenant,
            scope=scope,
            **_kwargs(
                start=args.start,
                end=args.end,
                limit=args.limit,
                order=args.order,
                aggregation=aggregation,
            ),
        )
    out.rows(_points(result.rows()), POINT_COLUMNS, title="time series")
    missing = len(result.missing) + (len(result.missing_devices) if not args.measures else 0)
    if missing:
        ctx.stderr.write(
            f"iris360: no data for {missing} of the requested device/measure pairs "
            "(or the server failed silently)\n"
        )
    return EXIT_OK


def _aggregation(text: str | None) -> tuple[str, str] | None:
    """``mean:PT1H`` -> ``("mean", "PT1H")``."""
    if text is None:
        return None
    kind, sep, interval = text.partition(":")
    if not sep or not kind or not interval:
        raise CliError(f"--aggregate expects TYPE:INTERVAL such as mean:PT1H, got {text!r}")
    return kind, interval


def _iso(value: Any) -> Any:
    """An aware datetime as ISO 8601 with ``Z`` for UTC (other values unchanged)."""
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return value


def _points(rows: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for device_id, measure_id, timestamp, value in rows:
        yield {
            "device_id": device_id,
            "measure_id": measure_id,
            "timestamp": _iso(timestamp),
            "value": msgspec.to_builtins(value, enc_hook=str),
        }


async def connectors_list(ctx: Context) -> int:
    args = ctx.args
    out = ctx.output()
    columns = CONNECTOR_FIELDS.columns(args.fields)
    async with ctx.client() as client:
        paginator = client.connectors.out.paginate(
            **_kwargs(search=args.search, max_items=args.limit)
        )
        async with paginator:
            await out.rows_async(
                _rows(paginator), columns, title="connectors", project=args.fields is not None
            )
    return EXIT_OK


def mask_secrets(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with the values of secret fields replaced by ``***`` (nested too)."""
    masked: dict[str, Any] = {}
    for key, value in record.items():
        if key in SECRET_FIELDS and value not in (None, ""):
            masked[key] = "***"
        elif isinstance(value, Mapping):
            masked[key] = mask_secrets(value)
        else:
            masked[key] = value
    return masked


async def connectors_get(ctx: Context) -> int:
    args = ctx.args
    out = ctx.output()
    async with ctx.client() as client:
        connector = await client.connectors.out.get(args.id)
    record = to_row(connector)
    if not args.show_secrets:
        record = mask_secrets(record)
    out.record(record, title=f"connector {args.id}")
    return EXIT_OK
