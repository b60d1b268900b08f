"""``iris360 demo``: a whole fleet job against the emulator, started in this process.

Steps: start the emulator (seeded fleet, realistic latency, mild faults, devices that confirm
commands every 1-10 emulated minutes), log in, discover the fleet through the paginator, send
``w_ota=true`` to every device with the bulk engine, resolve the ``unknown`` outcomes from the
devices' command state (``reconcile=True``), speed the emulated clock up and follow a sample
of the devices while they apply the command, print a summary. The demo exits 0 when the job
ran to its end, even though the fault profile makes a few devices end ``rejected``: showing
those outcomes is the point.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import EXIT_OK
from ._job import JobResult, run_job
from ._output import Output
from ._progress import OUTCOME_ORDER, JobProgress, progress_enabled

if TYPE_CHECKING:
    from ..models.devices import Device
    from ..testing import Iris360Emulator, LatencyModel
    from ._commands import Context
    from ._lifecycle import TrackResult
    from ._runtime import Interrupt

__all__ = ["mild_faults", "run_demo", "start_emulator"]

DEMO_COMMANDS: dict[str, Any] = {"w_ota": True}
DEMO_PAGE_SIZE = 500
DEMO_PREFETCH = 8
REALISTIC_LATENCY_MS = 40.0  # per request
REALISTIC_JITTER_MS = 20.0  # random extra per request
LIST_PER_ROW_MS = 0.05  # per row of a page
BULK_PER_DEVICE_MS = 4.0  # per device of a bulk request (one broker round trip each)
DEMO_TOKEN_TTL = 12.0  # seconds: the client refreshes at half the lifetime, so every ~6 s
DEMO_NO_OTA_FRACTION = 0.01  # devices of the legacy type, which rejects w_ota
DEMO_SYNC_INTERVAL = (60.0, 600.0)  # emulated seconds between two connections of a device
DEMO_TIME_SCALE = 200.0  # emulated seconds per real second while following the devices
DEMO_TRACK_DEVICES = 1_000  # devices followed after the job (a seeded sample)
DEMO_TRACK_INTERVAL = 60.0  # emulated seconds between two sweeps
DEMO_TRACK_CONCURRENCY = 64


def start_emulator(
    *,
    devices: int,
    seed: int,
    latency: LatencyModel,
    host: str = "127.0.0.1",
    port: int = 0,
    token_ttl: float | None = None,
    no_ota_fraction: float | None = None,
    sync_interval: tuple[float, float] | None = None,
    time_scale: float = 1.0,
) -> Iris360Emulator:
    """An emulator (not started yet: use it with ``async with``).

    Args:
        latency: the simulated processing time of requests.
        token_ttl: access-token lifetime in seconds (default: the emulator's).
        no_ota_fraction: share of devices that reject ``w_ota`` (default: the emulator's).
        sync_interval: emulated seconds between two connections of a device (its commands
            are confirmed then); ``None``: devices never confirm.
        time_scale: emulated seconds per real second.
    """
    from ..testing import Iris360Emulator

    settings: dict[str, Any] = {"sync_interval": sync_interval, "time_scale": time_scale}
    if token_ttl is not None:
        settings["token_ttl"] = token_ttl
    if no_ota_fraction is not None:
        settings["no_ota_fraction"] = no_ota_fraction
    return Iris360Emulator(
        devices=devices, seed=seed, host=host, port=port, latency=latency, **settings
    )


def mild_faults(emu: Iris360Emulator) -> None:
    """A mild fault profile: occasional rate limits, server errors and lost answers on the
    bulk endpoint, rare broker failures per device, occasional rate limits while paginating."""
    from ..testing import FaultProfile

    emu.set_faults(
        FaultProfile(
            rate_limit_rate=0.015,
            retry_after=1,
            error_rate=0.005,
            error_status=503,
            drop_rate=0.005,
            item_exception_rate=0.0005,
        ),
        endpoint="devices.bulk",
    )
    emu.set_faults(FaultProfile(rate_limit_rate=0.02, retry_after=1), endpoint="devices.paginate")


def _note(ctx: Context, text: str) -> None:
    """A step line on stderr (kept short; the progress bars tell the rest on a terminal)."""
    ctx.stderr.write(f"{text}\n")
    ctx.stderr.flush()


@dataclass(frozen=True)
class DemoLatency:
    """The emulated server's timing, milliseconds: listing is cheap per row, a bulk request
    costs one context-broker round trip per device."""

    request_ms: float
    jitter_ms: float
    list_row_ms: float
    bulk_device_ms: float

    @classmethod
    def from_option(cls, latency_ms: float | None) -> DemoLatency:
        if latency_ms is None:
            return cls(
                REALISTIC_LATENCY_MS, REALISTIC_JITTER_MS, LIST_PER_ROW_MS, BULK_PER_DEVICE_MS
            )
        scale = latency_ms / REALISTIC_LATENCY_MS
        return cls(
            latency_ms,
            REALISTIC_JITTER_MS * scale,
            LIST_PER_ROW_MS * scale,
            BULK_PER_DEVICE_MS * scale,
        )

    def model(self, per_item_ms: float) -> LatencyModel:
        from ..testing import LatencyModel

        return LatencyModel(
            base=self.request_ms / 1000.0,
            per_item=per_item_ms / 1000.0,
            jitter=self.jitter_ms / 1000.0,
        )


async def _discover(
    client: Any, progress: JobProgress, interrupt: Interrupt
) -> tuple[list[Device], int] | None:
    """Every device of the fleet, through the paginator (``None`` when interrupted)."""
    bar = progress.add("discover", None)
    serials: list[Device] = []
    pages = 0
    try:
        async with client.devices.paginate(
            page_size=DEMO_PAGE_SIZE, prefetch=DEMO_PREFETCH
        ) as paginator:
            async for page in paginator.pages():
                if pages == 0:
                    progress.set_total(bar, page.count)
                pages += 1
                serials.extend(page.items)
                progress.advance(bar, len(page.items))
    except asyncio.CancelledError:
        if not interrupt.consume():
            raise
        return None
    return serials, pages


async def run_demo(ctx: Context, interrupt: Interrupt) -> int:
    from .._client import Iris360Client

    args = ctx.args
    out = ctx.output(default="table")
    show_progress = progress_enabled(args.progress, ctx.stderr)
    latency = DemoLatency.from_option(args.latency_ms)
    started = time.perf_counter()
    emulator = start_emulator(
        devices=args.devices,
        seed=args.seed,
        latency=latency.model(latency.list_row_ms),
        token_ttl=DEMO_TOKEN_TTL,
        no_ota_fraction=DEMO_NO_OTA_FRACTION,
        sync_interval=DEMO_SYNC_INTERVAL,
    )
    _note(
        ctx,
        f"iris360 demo: emulator with {args.devices:,} devices, {latency.request_ms:g} ms per "
        f"request + {latency.bulk_device_ms:g} ms per device of a bulk request, "
        f"{args.faults} faults",
    )
    async with emulator as emu:
        if args.faults == "mild":
            mild_faults(emu)
        client = Iris360Client(
            emu.base_url,
            username=emu.username,
            password=emu.password,
            tenant=emu.tenant,
            scope=emu.scope,
        )
        async with client:
            with JobProgress(show_progress, ctx.stderr) as progress:
                discover_started = time.perf_counter()
                found = await _discover(client, progress, interrupt)
                if found is None:
                    ctx.stderr.write(
                        f"iris360: {interrupt.verb} while discovering the fleet\n"
                    )
                    return interrupt.exit_code
                devices, pages = found
                serials = [device.serial for device in devices]
                discovery = time.perf_counter() - discover_started
                progress.log(
                    f"discovered {len(serials):,} devices in {_pages(pages)} ({discovery:.1f} s); "
                    "sending w_ota=true to every device",
                )
                emu.latency = latency.model(latency.bulk_device_ms)
                result = await run_job(
                    client,
                    serials,
                    DEMO_COMMANDS,
                    total=len(serials),
                    chunk_size=args.chunk_size,
                    concurrency=args.concurrency,
                    journal=None,
                    report=None,
                    progress=progress,
                    interrupt=interrupt,
                    description="w_ota=true",
                    reconcile=True,
                )
                _note_reconciled(progress, result)
            tracked: TrackResult | None = None
            if not result.interrupted and args.track_minutes > 0:
                emu.latency = latency.model(latency.list_row_ms)
                tracked = await _track(ctx, client, emu, devices, interrupt,
                                       minutes=args.track_minutes, show=show_progress)
            client_stats = client.stats
        summary = _summary(
            result,
            devices=args.devices,
            discovered=len(serials),
            pages=pages,
            discovery=discovery,
            total_elapsed=time.perf_counter() - started,
            client_stats=client_stats,
            server_stats=emu.stats,
            tracked=tracked,
        )
    _write_summary(out, summary)
    if tracked is not None and tracked.interrupted:
        ctx.stderr.write(f"iris360: {interrupt.verb} while following the devices\n")
        return interrupt.exit_code
    if result.interrupted:
        ctx.stderr.write(
            f"iris360: {interrupt.verb} after {result.settled:,} of {result.total:,} devices\n"
        )
        return interrupt.exit_code
    return EXIT_OK


def _resolved(result: JobResult) -> tuple[int, int]:
    """Devices reconciliation took out of ``unknown``: (confirmed, re-sent and sent)."""
    reconciled = result.reconciled or {}
    return reconciled.get("confirmed", 0), reconciled.get("resent", 0)


def _note_reconciled(progress: JobProgress, result: JobResult) -> None:
    confirmed, resent = _resolved(result)
    unknown = result.counts.get("unknown", 0)
    if result.interrupted and not result.reconciling:
        if unknown:
            progress.log(f"not reconciled (the job was interrupted): {unknown:,} left unknown")
        return
    if confirmed or resent or unknown:
        progress.log(
            f"reconciled: {confirmed + resent:,} devices that ended unknown resolved from their "
            f"command state ({confirmed:,} confirmed, {resent:,} re-sent); "
            f"{result.counts.get('unknown', 0):,} left unknown"
        )


async def _track(
    ctx: Context,
    client: Any,
    emu: Iris360Emulator,
    devices: list[Device],
    interrupt: Interrupt,
    *,
    minutes: float,
    show: bool,
) -> TrackResult:
    """Follow a seeded sample of the devices that were sent the command, on the emulator's
    clock sped up to :data:`DEMO_TIME_SCALE`, until they applied it or ``minutes`` emulated
    minutes passed."""
    import random

    from .._lifecycle import CommandStateReader, track_commands
    from ._lifecycle import TrackProgress, TrackResult, follow

    fleet = emu.fleet
    accepts = {s for i, s in enumerate(fleet.serials) if "w_ota" in fleet.device_type(i).commands}
    pool = [d for d in devices if d.serial in accepts]  # the legacy type rejects w_ota
    sample = random.Random(ctx.args.seed).sample(pool, min(DEMO_TRACK_DEVICES, len(pool)))
    reader = CommandStateReader.for_client(client)

    async def rows() -> Any:
        for device in sample:
            yield device

    await reader.preload(rows())
    emu.clock.set_time_scale(DEMO_TIME_SCALE)  # the job ran in real time; now speed up
    _note(ctx, f"following {len(sample):,} devices for up to {minutes:g} emulated minutes "
               f"(devices connect every {DEMO_SYNC_INTERVAL[0] / 60:g}-"
               f"{DEMO_SYNC_INTERVAL[1] / 60:g} min; the clock runs {DEMO_TIME_SCALE:g}x)")
    tracked = TrackResult()
    updates = track_commands(
        reader, [d.serial for d in sample], DEMO_COMMANDS, until=minutes * 60.0,
        interval=DEMO_TRACK_INTERVAL, concurrency=DEMO_TRACK_CONCURRENCY, clock=emu.clock,
    )
    with TrackProgress(show, ctx.stderr, "applied") as bar:
        try:
            await follow(updates, bar, tracked)
        except asyncio.CancelledError:
            if not interrupt.consume():
                raise
            tracked.interrupted = True
    return tracked


def _summary(
    result: JobResult,
    *,
    devices: int,
    discovered: int,
    pages: int,
    discovery: float,
    total_elapsed: float,
    client_stats: Any,
    server_stats: Any,
    tracked: TrackResult | None,
) -> dict[str, Any]:
    """The demo's numbers: outcomes from the job, request counts from the client's own
    counters (``client.stats``), commands applied from the emulator's."""
    confirmed, resent = _resolved(result)
    track: dict[str, Any] | None = None
    if tracked is not None and tracked.summary is not None:
        s = tracked.summary
        track = {
            "devices": s.total, **s.counts, "emulated_minutes": round(s.elapsed / 60.0, 1),
            "requests": s.requests, "sweeps": s.sweeps,
        }
    return {
        "devices": devices,
        "discovered": discovered,
        "pages": pages,
        "discovery_seconds": round(discovery, 2),
        "counts": {name: result.counts.get(name, 0) for name in OUTCOME_ORDER},
        "job_seconds": round(result.elapsed, 2),
        "devices_per_second": round(result.throughput, 1),
        "requests": int(client_stats.requests),
        "bulk_requests": result.requests,
        "retries": int(client_stats.retries),
        "rate_limited": int(client_stats.rate_limited),
        "logins": int(client_stats.logins),
        "refreshes": int(client_stats.refreshes),
        "commands_applied": int(server_stats.total_applications()),
        "total_seconds": round(total_elapsed, 2),
        "interrupted": result.interrupted,
        "reconciled": {"confirmed": confirmed, "resent": resent,
                       "left_unknown": result.counts.get("unknown", 0)},
        "tracking": track,
    }


def _write_summary(out: Output, summary: dict[str, Any]) -> None:
    if out.format != "table":
        out.record(summary, title="demo")
        return
    from rich.table import Table

    table = Table(
        title="iris360 demo: w_ota=true to every device", title_justify="left", show_header=False
    )
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    counts = summary["counts"]
    for name in OUTCOME_ORDER:
        table.add_row(name, f"{counts[name]:,}")
    table.add_section()
    table.add_row(
        "devices discovered",
        f"{summary['discovered']:,} in {_pages(summary['pages'])}"
        f" ({summary['discovery_seconds']:.1f} s)",
    )
    table.add_row("job elapsed", f"{summary['job_seconds']:.1f} s")
    table.add_row("devices/s", f"{summary['devices_per_second']:,.0f}")
    table.add_row(
        "requests", f"{summary['requests']:,} ({summary['bulk_requests']:,} bulk commands)"
    )
    table.add_row(
        "retries",
        f"{summary['retries']:,} (rate limited {_times(summary['rate_limited'])})",
    )
    table.add_row("logins / refreshes", f"{summary['logins']} / {summary['refreshes']}")
    table.add_row("commands applied (server)", f"{summary['commands_applied']:,}")
    rec = summary["reconciled"]
    resolved = rec["confirmed"] + rec["resent"]
    table.add_row(
        "unknown resolved",
        f"not run: the job was interrupted ({rec['left_unknown']:,} left unknown)"
        if summary["interrupted"] and not resolved
        else f"{resolved:,} ({rec['confirmed']:,} confirmed, {rec['resent']:,} re-sent; "
        f"{rec['left_unknown']:,} left)",
    )
    track = summary["tracking"]
    if track is not None:
        table.add_row(
            "applied by the devices",
            f"{track['applied']:,} of {track['devices']:,} followed in "
            f"{track['emulated_minutes']:g} emulated min ({track['requests']:,} reads)",
        )
    table.add_row("total elapsed", f"{summary['total_seconds']:.1f} s")
    out.render(table)


def _pages(count: int) -> str:
    """``1 page``, ``40 pages``."""
    return f"{count:,} page" if count == 1 else f"{count:,} pages"


def _times(count: int) -> str:
    """``1 time``, ``5 times``."""
    return f"{count:,} time" if count == 1 else f"{count:,} times"
