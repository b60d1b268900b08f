"""Concurrent prefetch vs sequential pagination through the real client.

200 pages of devices from the IRIS360 emulator with a fixed 20 ms server latency per request,
``prefetch=8`` against ``prefetch=1`` (strictly sequential), measured in the same run (levels
interleaved, best time of each). The first page is always fetched alone (it tells ``count``),
so the ideal speedup of prefetch 8 over 200 pages is 200 / (1 + 199 / 8) = 7.7x; whatever the
machine adds per request (client, emulator, scheduling) comes off that. Pages hold 2 devices so
that the measurement is about latency, not about building and decoding rows on a small machine.
A second table times the paginator alone, with a fetch that only sleeps the latency.

Usage::

    python benchmarks/pagination.py             # ~12 s: best of 2; emulator in a child process
    python benchmarks/pagination.py --full      # best of 5, more prefetch levels
    python benchmarks/pagination.py --in-process  # emulator on the benchmark's event loop
    python benchmarks/pagination.py --uvloop    # the client on uvloop (the ``speed`` extra)

Exit status 1 if prefetch 8 is less than 7x faster than sequential.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

try:
    import iris360_async  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio

from iris360_async import Iris360Client
from iris360_async._pagination import AsyncPaginator
from iris360_async.models.common import Page
from iris360_async.testing import EmulatorProcess, Iris360Emulator, LatencyModel

PAGES = 200
PAGE_SIZE = 2
LATENCY = 0.020  # seconds per request, on the server
REQUIRED = 7.0


async def timed_listing(server: Any, prefetch: int) -> tuple[float, int]:
    """Seconds to list every device with ``prefetch``; the login happens before timing."""
    async with Iris360Client(
        server.base_url,
        username=server.username,
        password=server.password,
        tenant=server.tenant,
        scope=server.scope,
    ) as client:
        # Warm up outside the timing: the login, and `prefetch` pooled keep-alive connections
        # (a listing of prefetch + 1 pages has `prefetch` requests in flight at once).
        await client.devices.paginate(
            page_size=PAGE_SIZE, max_items=(prefetch + 1) * PAGE_SIZE, prefetch=prefetch
        ).collect()
        paginator = client.devices.paginate(page_size=PAGE_SIZE, prefetch=prefetch)
        start = time.perf_counter()
        count = 0
        async for _ in paginator:
            count += 1
        return time.perf_counter() - start, count


async def timed_engine(prefetch: int) -> tuple[float, int]:
    """The paginator alone: a fake fetch that only waits the server latency (no HTTP)."""
    total = PAGES * PAGE_SIZE

    async def fetch(page: int, size: int) -> Page[int]:
        await anyio.sleep(LATENCY)
        first = (page - 1) * size
        return Page(rows=list(range(first, min(first + size, total))), count=total)

    await AsyncPaginator(fetch, page_size=PAGE_SIZE, max_items=4 * PAGE_SIZE, prefetch=2).collect()
    start = time.perf_counter()
    items = await AsyncPaginator(fetch, page_size=PAGE_SIZE, prefetch=prefetch).collect()
    return time.perf_counter() - start, len(items)


def report(title: str, results: dict[int, float]) -> float:
    """Print one table; return the speedup of prefetch 8 over sequential."""
    print(title)
    print(f"{'prefetch':>8}  {'seconds':>8}  {'pages/s':>8}  {'speedup':>8}")
    base = results[1]
    for prefetch, seconds in results.items():
        print(f"{prefetch:>8}  {seconds:>8.3f}  {PAGES / seconds:>8.1f}  {base / seconds:>7.2f}x")
    return base / results[8]


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="best of 5, more prefetch levels")
    parser.add_argument(
        "--in-process", action="store_true", help="serve from this event loop, not a child"
    )
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    args = parser.parse_args(argv)
    repeat = 5 if args.full else 2
    levels = [1, 2, 4, 8, 16] if args.full else [1, 8]
    devices = PAGES * PAGE_SIZE

    async with AsyncExitStack() as stack:
        server: Any
        if args.in_process:
            server = await stack.enter_async_context(
                Iris360Emulator(devices=devices, seed=1, latency=LatencyModel(base=LATENCY))
            )
        else:
            server = stack.enter_context(
                EmulatorProcess(
                    devices=devices, seed=1, extra_args=["--latency-base", str(LATENCY)]
                )
            )
        # Interleave the levels and keep each one's best time, so that load from other
        # processes hits every level alike.
        results = dict.fromkeys(levels, float("inf"))
        for _ in range(repeat):
            for prefetch in levels:
                seconds, count = await timed_listing(server, prefetch)
                if count != devices:
                    print(f"prefetch={prefetch}: listed {count} devices, expected {devices}")
                    return 2
                results[prefetch] = min(results[prefetch], seconds)

    engine = dict.fromkeys(levels, float("inf"))
    for _ in range(repeat):
        for prefetch in levels:
            seconds, count = await timed_engine(prefetch)
            assert count == devices
            engine[prefetch] = min(engine[prefetch], seconds)

    where = "in-process" if args.in_process else "child process"
    if args.uvloop:
        where += ", client on uvloop"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    ideal = PAGES / (1 + (PAGES - 1) / 8)
    print(
        f"{PAGES} pages x {PAGE_SIZE} devices, {LATENCY * 1000:.0f} ms server latency, best of "
        f"{repeat}; {os.cpu_count()} CPUs, load average {load}"
    )
    print()
    ratio = report(f"client + emulator ({where}):", results)
    print()
    engine_ratio = report("paginator alone (fake fetch sleeping the latency, no HTTP):", engine)
    print()
    verdict = "OK" if ratio >= REQUIRED else "TOO SLOW"
    print(
        f"prefetch 8 vs sequential: {ratio:.2f}x through the client, {engine_ratio:.2f}x "
        f"paginator alone (required {REQUIRED:.0f}x, ideal {ideal:.2f}x) {verdict}"
    )
    return 0 if ratio >= REQUIRED else 1


if __name__ == "__main__":
    if "--uvloop" in sys.argv[1:]:
        import uvloop

        sys.exit(uvloop.run(main()))
    sys.exit(asyncio.run(main()))
