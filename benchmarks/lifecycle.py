"""What happened to every device: reconciliation under chaos, and tracking to 99 % applied.

(a) Chaos: a ``send_commands(reconcile=True)`` job over the whole emulated fleet while the bulk
    endpoint loses 10 % of its answers after processing them and answers 5 % of its requests
    with a 503 before processing anything -- alone, then behind the emulator's server model
    (the ``capacity_bound`` preset, 4 workers and a gateway timeout of 3.5 times a request's
    cost, scaled by ``--model-scale``) at a fixed concurrency high enough that requests queue
    past the gateway timeout (504: applied, answer lost; ``--model-concurrency``), and at
    ``concurrency="auto"``.
    Checked against the emulator's ledger: ``unknown`` after reconciliation, devices commanded
    more than once, ``sent`` serials the emulator did not apply (and applied ones not
    ``sent``); reported: unknown before reconciliation, how they were resolved, reads per
    reconciled serial, re-send requests.

(b) Tracking: every device of the fleet was sent a command; devices connect every 1 to 15
    emulated minutes (each its own interval, drawn uniformly, with a random phase), so a
    command is confirmed a uniform share of that interval after it was sent. The fleet is
    followed with ``track_commands`` until 99 % has applied, for several sweep intervals:
    requests used (one pass over the device list, 500 rows a page, to learn every device's
    entity, then one read per device and sweep until it applied) and emulated time, against
    the time the emulated sync distribution itself needs for 99 % (the lower bound of any
    tracker).

The emulator runs in this process on a frozen clock that the tracker's waits move forward, so
(b) costs only the reads. The numbers depend on the seed, not on the machine (timings aside).

Usage::

    python benchmarks/lifecycle.py                  # 20,000 devices
    python benchmarks/lifecycle.py --devices 2000   # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from typing import Any

from iris360_async import Iris360Client, RetryPolicy
from iris360_async._lifecycle import CommandStateReader, track_commands
from iris360_async.testing import FaultProfile, Iris360Emulator
from iris360_async.testing.server_model import PRESETS, ServerModelSettings

T0 = 1_767_225_600.0
COMMANDS = {"w_reboot": True}
CHAOS = FaultProfile(drop_rate=0.10, error_rate=0.05, error_status=503)
SYNC = (60.0, 900.0)
TARGET = 0.99


def client_for(emu: Iris360Emulator) -> Iris360Client:
    return Iris360Client(
        emu.base_url, username=emu.username, password=emu.password, tenant=emu.tenant,
        scope=emu.scope, retry_policy=RetryPolicy(base=0.001, cap=0.004),
    )


async def chaos(
    devices: int, seed: int, chunk_size: int, concurrency: int | str,
    model: ServerModelSettings | None = None,
) -> dict[str, Any]:
    async with Iris360Emulator(devices=devices, seed=seed, clock_start=T0, token_ttl=1e9,
                               no_ota_fraction=0.0, server_model=model) as emu, \
            client_for(emu) as iris:
        emu.set_faults(CHAOS, endpoint="devices.bulk")
        started = time.perf_counter()
        report = await iris.devices.send_commands(
            emu.fleet.serials, COMMANDS, chunk_size=chunk_size, concurrency=concurrency,
            reconcile=True)
        elapsed = time.perf_counter() - started
        stats = report.reconciliation
        assert stats is not None
        applied = emu.stats.commanded_serials("w_reboot")
        sent = set(report.sent)
        timeouts = emu.server_model.stats.gateway_timeouts if emu.server_model else 0
        return {
            "server model": "capacity_bound" if model is not None else "none",
            "concurrency": concurrency,
            "devices": devices,
            "bulk requests": report.requests,
            "gateway timeouts (504)": timeouts,
            "unknown before reconciliation": stats.looked_up,
            "confirmed from command state": len(stats.confirmed),
            "re-sent (not applied)": len(stats.resent),
            "unknown after reconciliation": report.counts["unknown"],
            "failed / rejected": f"{report.counts['failed']} / {report.counts['rejected']}",
            "reads": stats.reads,
            "reads per reconciled serial": round(stats.reads / max(1, stats.looked_up), 2),
            "rounds": stats.rounds,
            "devices commanded twice": sum(
                1 for s in applied if emu.stats.applications(s, "w_reboot") > 1),
            "sent but not applied": len(sent - applied),
            "applied but not sent": len(applied - sent),
            "seconds": round(elapsed, 1),
        }


def sync_quantile(emu: Iris360Emulator, sent_at: float, q: float) -> float:
    """Emulated seconds after ``sent_at`` by which a share ``q`` of the devices confirmed."""
    delays = sorted(
        (emu.fleet.sync.next_sync(s, sent_at) or math.inf) - sent_at for s in emu.fleet.serials
    )
    return delays[min(len(delays) - 1, math.ceil(q * len(delays)) - 1)]


async def tracking(devices: int, seed: int, interval: float, concurrency: int) -> dict[str, Any]:
    async with Iris360Emulator(devices=devices, seed=seed, clock_start=T0, token_ttl=1e9,
                               no_ota_fraction=0.0, sync_interval=SYNC) as emu, \
            client_for(emu) as iris:
        await iris.devices.send_commands(emu.fleet.serials, COMMANDS, chunk_size=500,
                                         concurrency=8)
        sent_at = emu.clock.now()
        bound = sync_quantile(emu, sent_at, TARGET)
        emu.stats.reset()
        reader = CommandStateReader.for_client(iris)
        started = time.perf_counter()
        summary = None
        updates = track_commands(reader, emu.fleet.serials, COMMANDS, interval=interval,
                                 concurrency=concurrency, clock=emu.clock)
        async for update in updates:
            summary = update.summary
            if summary.applied >= TARGET * summary.total:
                break
        await updates.aclose()  # type: ignore[attr-defined]
        assert summary is not None
        requests = sum(emu.stats.requests.values())
        return {
            "sweep interval (s)": interval,
            "applied": f"{summary.applied / summary.total:.1%}",
            "emulated time (s)": round(emu.clock.now() - sent_at),
            "sync bound for 99 % (s)": round(bound),
            "requests": requests,
            "requests per device": round(requests / devices, 2),
            "sweeps": summary.sweeps,
            "seconds": round(time.perf_counter() - started, 1),
        }


def show(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    keys = list(rows[0])
    width = max(len(k) for k in keys)
    for key in keys:
        print(f"  {key:<{width}}  " + "  ".join(f"{row[key]!s:>12}" for row in rows))


async def run(args: argparse.Namespace) -> None:
    model = PRESETS["capacity_bound"].scaled(args.model_scale)
    show("(a) chaos: 10 % answers lost after processing, 5 % 503 before processing",
         [await chaos(args.devices, args.seed, args.chunk_size, args.concurrency),
          await chaos(args.devices, args.seed, args.chunk_size, args.model_concurrency, model),
          await chaos(args.devices, args.seed, args.chunk_size, "auto", model)])
    rows = [await tracking(args.devices, args.seed, interval, args.concurrency)
            for interval in args.intervals]
    show(f"(b) tracking {args.devices:,} devices to 99 % applied (sync every "
         f"{SYNC[0] / 60:g}-{SYNC[1] / 60:g} emulated min)", rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--devices", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--chunk-size", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--model-concurrency", type=int, default=13,
                   help="requests in flight (fixed) behind the server model: 13 on its 4 "
                   "workers queue some requests past the gateway timeout, 16 nearly all")
    p.add_argument("--model-scale", type=float, default=0.25,
                   help="the server model's durations times this (0.25: 50 ms per 100 devices, "
                   "gateway timeout 175 ms)")
    p.add_argument("--intervals", type=float, nargs="+", default=[30.0, 60.0, 120.0])
    asyncio.run(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
