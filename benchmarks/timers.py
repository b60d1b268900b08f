"""What aiohttp's per-request timeouts cost, against the SDK's transport that uses them.

The same fixed worker pool of raw aiohttp requests as ``bulk.py`` (small 10-serial bodies, the
same minimal server in a child process on the other core), with the session's timeouts set
three ways, and the SDK's transport (``bulk_sender``, whose attempts run under aiohttp's
``ClientTimeout`` with its default connect, read and total) for comparison:

(a) raw pool, aiohttp timers for the attempt's total and the socket read (what a careful
    caller configures, and what the SDK does; baseline);
(b) raw pool, aiohttp's default (a total of 300 s: one timer per request);
(c) raw pool, connect timeout only (no per-request timer: the floor);
(d) the SDK's transport, default timeouts.

Five rounds, interleaved; client CPU time per request (median of the rounds) and speed ratios
against (a), round by round. The difference between (a) and (c) is what the timers cost; a
real server takes milliseconds to seconds per request, so it is noise there.

Usage::

    python benchmarks/timers.py
    python benchmarks/timers.py --requests 20000 --repeat 9
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from bulk import COMMANDS, Server, _client, bodies, raw_pool, run, serials, timed, uvloop


async def sdk_transport(base_url: str, chunks: list[list[str]], concurrency: int) -> int:
    """(d) the client's ``bulk_sender`` from a fixed pool of workers."""
    sent = 0
    it = iter(chunks)
    async with _client(base_url, concurrency) as client:
        send = client.devices.bulk_sender(COMMANDS)

        async def worker() -> None:
            nonlocal sent
            for chunk in it:
                sent += len(await send(chunk))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    n, conc = args.requests, args.concurrency
    items = serials(n * 10)
    payloads = bodies(items, 10)
    chunks = [items[i : i + 10] for i in range(0, len(items), 10)]
    loop_name = "uvloop" if uvloop is not None else "asyncio"
    print(f"timer benchmark: {n} requests of 10 serials, concurrency={conc}, loop={loop_name}")
    careful = aiohttp.ClientTimeout(total=120, sock_connect=10, sock_read=60)
    variants = [
        ("(a) raw, total + read timers", careful),
        ("(b) raw, aiohttp default", None),
        ("(c) raw, no per-request timer", aiohttp.ClientTimeout(sock_connect=10)),
    ]
    server = Server(0.0)
    try:
        url = server.base_url
        factories = [partial(raw_pool, url, payloads, conc, t) for _, t in variants]
        factories.append(partial(sdk_transport, url, chunks, conc))
        run(factories[0])  # warm up
        timings = timed(args.repeat, factories)
    finally:
        server.close()
    names = [name for name, _ in variants] + ["(d) SDK transport"]
    print()
    print(f"{'variant':32} {'CPU us/request':>15} {'speed vs (a)':>13} {'rounds':>12}")
    for i, name in enumerate(names):
        cpu = statistics.median(timings.cpu[i]) / n * 1e6
        med, lo, hi = timings.ratio(0, i)
        print(f"{name:32} {cpu:15.1f} {med:12.2f}x {lo:5.2f}-{hi:4.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
