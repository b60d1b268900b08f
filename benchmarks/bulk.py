"""Benchmark of the bulk command engine against a fast server in a separate process.

Measured in the same run, against the same server process:

(a) a hand-tuned raw aiohttp loop: a fixed pool of workers posting pre-encoded bodies and
    decoding the answers, with aiohttp's default timeout (one timer per request;
    ``timers.py`` compares timeout set-ups);
(b) a naive raw loop: ``asyncio.gather`` over every chunk under a semaphore;
(c) the engine (``CommandDispatcher`` over ``client.devices.bulk_sender``) through the real
    client: reading and de-duplicating the input, encoding, auth header, retry policy,
    classifying the 207 answers, per-serial outcomes;
(d) the same with ``dedupe=False`` (for inputs known to be unique), which shows what
    de-duplication costs.

Each variant runs five times, interleaved; the table shows the best run, and the ratios are
taken round by round (median and range), which cancels slow drifts of a shared machine.

``--latency`` makes the server wait before every answer, as a real IRIS360 server does (a
100-device request takes seconds there): what is left of a client-side speed-up is then its
share of a real job's time.

Then, with 20 ms of server latency (``--little-latency``), the engine's request rate against
Little's law (``concurrency / latency``), and the peak RSS growth of a ``stream`` job over
serials produced by a generator.

Usage::

    python benchmarks/bulk.py            # a few seconds
    python benchmarks/bulk.py --full     # larger runs, 1,000,000 serials for the memory test
    python benchmarks/bulk.py --serials 200000 --chunk-size 100 --concurrency 16
    python benchmarks/bulk.py --latency 0.2 --serials 16000   # a realistic server: 200 ms

The server is a minimal HTTP/1.1 server (an asyncio protocol, keep-alive) answering
``sendCommandsBulk`` with the 207 body (one ``{"data": "Command sent!!"}`` item per serial). It
does little work per request and runs in a child process on the other core, so the numbers
measure the clients. uvloop is used when installed (the ``speed`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import msgspec

from iris360_async import Iris360Client
from iris360_async._bulk import CommandDispatcher

uvloop: Any
try:  # optional
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

GUARD = 0.55
"""The engine's floor against the raw worker pool at zero latency. The engine is one plain
path (exact de-duplication, every answer decoded and classified); speed-ups that only this
zero-latency benchmark could see were removed (docs/performance.md), so the engine runs at
about 0.6x here. A median below the floor means the one path itself became slower."""

API = "/api/public/v1"
PATH = API + "/devices/sendCommandsBulk"
COMMANDS = {"w_ota": True}
ITEM = b'{"headers":{},"original":{"data":"Command sent!!"},"exception":null}'


class _Body(msgspec.Struct):
    device_serials: list[str]


# -- server (child process) -----------------------------------------------------------------


class _BulkProtocol(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive server for ``sendCommandsBulk``: reads each request
    (head, ``Content-Length`` body), decodes the serials and answers 207 with one
    ``{"data": "Command sent!!"}`` item per serial, after ``latency`` seconds if given.

    It does far less work per request than ``aiohttp.web``, so that what the benchmark
    measures is the client and not the server (the two share a 2-core machine).
    """

    def __init__(self, latency: float, decoder: msgspec.json.Decoder[_Body]) -> None:
        self._latency = latency
        self._decoder = decoder
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            length = _content_length(head)
            if len(buf) < end + 4 + length:
                return
            body = bytes(buf[end + 4 : end + 4 + length])
            del buf[: end + 4 + length]
            if not head.startswith(b"post " + PATH.lower().encode() + b" "):
                self._send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                continue
            answer = _response(len(self._decoder.decode(body).device_serials))
            if self._latency:
                self._loop.call_later(self._latency, self._send, answer)
            else:
                self._send(answer)

    def _send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


def _content_length(head: bytes) -> int:
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    stop = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : stop if stop >= 0 else len(head)])


_RESPONSES: dict[int, bytes] = {}


def _response(n: int) -> bytes:
    answer = _RESPONSES.get(n)
    if answer is None:
        body = b"[" + b",".join([ITEM] * n) + b"]"
        answer = _RESPONSES[n] = (
            b"HTTP/1.1 207 Multi-Status\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
    return answer


def _serve(port: int, latency: float, ready: Any) -> None:
    if uvloop is not None:
        uvloop.install()
    decoder = msgspec.json.Decoder(_Body)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _BulkProtocol(latency, decoder), "127.0.0.1", port, backlog=1024
        )
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Server:
    """The benchmark server in a child process."""

    def __init__(self, latency: float = 0.0) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Event()
        self._proc = ctx.Process(target=_serve, args=(self.port, latency, ready), daemon=True)
        self._proc.start()
        if not ready.wait(30):
            raise RuntimeError("the benchmark server did not start")
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
            assert self._proc.pid is not None
            os.sched_setaffinity(self._proc.pid, {1})
            os.sched_setaffinity(0, {0})

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._proc.terminate()
        self._proc.join(10)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


# -- the three contenders --------------------------------------------------------------------


def serials(n: int) -> list[str]:
    return [f"SN{i:08d}" for i in range(n)]


def bodies(items: list[str], chunk_size: int) -> list[bytes]:
    enc = msgspec.json.encode
    return [
        enc({"device_serials": items[i : i + chunk_size], **COMMANDS})
        for i in range(0, len(items), chunk_size)
    ]


HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json",
    "Authorization": "Bearer bench",
}


async def raw_pool(
    base_url: str,
    payloads: list[bytes],
    concurrency: int,
    timeout: aiohttp.ClientTimeout | None = None,
) -> int:
    """(a) fixed worker pool, pre-encoded bodies; returns serials acknowledged. ``timeout``:
    the session's timeouts (default: aiohttp's, a total of 300 s)."""
    url = base_url + PATH
    it = iter(payloads)
    sent = 0
    decode = msgspec.json.decode
    connector = aiohttp.TCPConnector(limit=concurrency)
    extra = {} if timeout is None else {"timeout": timeout}
    async with aiohttp.ClientSession(connector=connector, **extra) as session:

        async def worker() -> None:
            nonlocal sent
            for body in it:
                async with session.post(url, data=body, headers=HEADERS) as resp:
                    data = await resp.read()
                if resp.status == 207:
                    sent += len(decode(data))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


async def raw_gather(base_url: str, payloads: list[bytes], concurrency: int) -> int:
    """(b) gather over every chunk under a semaphore."""
    url = base_url + PATH
    sem = asyncio.Semaphore(concurrency)
    decode = msgspec.json.decode
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes) -> int:
            async with sem, session.post(url, data=body, headers=HEADERS) as resp:
                data = await resp.read()
            return len(decode(data)) if resp.status == 207 else 0

        results = await asyncio.gather(*(one(b) for b in payloads))
    return sum(results)


async def single_request_rtt(base_url: str, payload: bytes, n: int = 60) -> float:
    """Median seconds of one request with nothing else in flight (raw aiohttp)."""
    url = base_url + PATH
    samples: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            t0 = time.perf_counter()
            async with session.post(url, data=payload, headers=HEADERS) as resp:
                await resp.read()
            samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2]


def _client(base_url: str, concurrency: int) -> Iris360Client:
    return Iris360Client(base_url=base_url, token="bench", connection_limit=concurrency)


async def engine(
    base_url: str, items: list[str], chunk_size: int, concurrency: int, dedupe: bool = True
) -> int:
    """(c) the engine through the real client ((d) without de-duplication)."""
    async with _client(base_url, concurrency) as client:
        d = CommandDispatcher(
            client.devices.bulk_sender(COMMANDS), COMMANDS,
            chunk_size=chunk_size, concurrency=concurrency, dedupe=dedupe,
        )
        report = await d.run(items)
    assert report.counts["sent"] == len(items), report
    return report.counts["sent"]


async def engine_requests(
    base_url: str, items: list[str], chunk_size: int, concurrency: int
) -> tuple[int, float]:
    async with _client(base_url, concurrency) as client:
        d = CommandDispatcher(
            client.devices.bulk_sender(COMMANDS), COMMANDS,
            chunk_size=chunk_size, concurrency=concurrency,
        )
        report = await d.run(items)
    return report.requests, report.elapsed


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``); ``False`` where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


async def stream_memory(
    base_url: str, n: int, chunk_size: int, concurrency: int, dedupe: bool
) -> tuple[float, float, int]:
    """Peak RSS growth (MiB) of a stream job over a generator of ``n`` serials, against the RSS
    once the client exists: the kernel's peak mark (``VmHWM``, reset at the start through
    ``/proc/self/clear_refs``) where available, else RSS sampled every 2,000 outcomes."""

    def gen() -> Iterator[str]:
        for i in range(n):
            yield f"SN{i:08d}"

    async with _client(base_url, concurrency) as client:
        d = CommandDispatcher(
            client.devices.bulk_sender(COMMANDS), COMMANDS,
            chunk_size=chunk_size, concurrency=concurrency, dedupe=dedupe,
        )
        gc.collect()
        base = _rss_bytes()
        exact_peak = _reset_peak_rss()
        peak = base
        count = 0
        t0 = time.perf_counter()
        async for _ in d.stream(gen()):
            count += 1
            if count % 2_000 == 0:
                peak = max(peak, _rss_bytes())
        elapsed = time.perf_counter() - t0
        peak = max(peak, _rss_bytes())
        if exact_peak:
            peak = max(peak, _peak_rss_bytes())
    assert count == n
    return (peak - base) / 2**20, elapsed, count


def _memory_child(
    base_url: str, n: int, chunk_size: int, concurrency: int, dedupe: bool, conn: Any
) -> None:
    if uvloop is not None:
        uvloop.install()
    conn.send(asyncio.run(stream_memory(base_url, n, chunk_size, concurrency, dedupe)))
    conn.close()


def memory_in_child(
    base_url: str, n: int, chunk_size: int, concurrency: int, dedupe: bool
) -> tuple[float, float, int]:
    """:func:`stream_memory` in a fresh process, so that memory freed by earlier phases of the
    benchmark cannot hide the job's growth."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_memory_child, args=(base_url, n, chunk_size, concurrency, dedupe, child)
    )
    proc.start()
    child.close()
    result: tuple[float, float, int] = parent.recv()
    proc.join(30)
    return result


# -- driver ----------------------------------------------------------------------------------


def run(coro_factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    if uvloop is not None:
        return uvloop.run(coro_factory())  # pragma: no cover
    return asyncio.run(coro_factory())


class Timings:
    """Wall and client CPU seconds of each variant, per round (rounds are interleaved, so that
    load from outside the benchmark hits every variant alike)."""

    def __init__(self, n: int) -> None:
        self.wall: list[list[float]] = [[] for _ in range(n)]
        self.cpu: list[list[float]] = [[] for _ in range(n)]

    def best(self, i: int) -> float:
        return min(self.wall[i])

    def best_cpu(self, i: int) -> float:
        return min(self.cpu[i])

    def ratio(self, num: int, den: int, cpu: bool = False) -> tuple[float, float, float]:
        """``num``'s time over ``den``'s, round by round: (median, lowest, highest). Above 1
        means ``den`` was faster. Per-round ratios cancel slow drifts of the machine."""
        series = self.cpu if cpu else self.wall
        ratios = sorted(a / b for a, b in zip(series[num], series[den], strict=True))
        return statistics.median(ratios), ratios[0], ratios[-1]


def timed(repeat: int, factories: list[Callable[[], Coroutine[Any, Any, Any]]]) -> Timings:
    """Run every factory ``repeat`` times, interleaved, timing each run."""
    timings = Timings(len(factories))
    for _ in range(repeat):
        for i, factory in enumerate(factories):
            gc.collect()
            c0 = time.process_time()
            t0 = time.perf_counter()
            run(factory)
            timings.wall[i].append(time.perf_counter() - t0)
            timings.cpu[i].append(time.process_time() - c0)
    return timings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--full", action="store_true", help="longer runs; 1,000,000-serial memory test")
    p.add_argument("--serials", type=int, default=None)
    p.add_argument("--chunk-size", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--repeat", type=int, default=None)
    p.add_argument("--latency", type=float, default=0.0,
                   help="seconds the server waits before each answer in the main table "
                        "(0: measure the clients; 0.2 or more: a realistic IRIS360 job)")
    p.add_argument("--little-latency", type=float, default=0.020,
                   help="seconds, for the Little's-law test")
    p.add_argument("--memory-serials", type=int, default=None,
                   help="serials of the streaming memory test (default 200,000; 1,000,000 "
                        "with --full)")
    args = p.parse_args(argv)
    n = args.serials or (500_000 if args.full else 100_000)
    repeat = args.repeat or 5
    cs, conc = args.chunk_size, args.concurrency
    loop_name = "uvloop" if uvloop is not None else "asyncio"
    print(f"bulk benchmark: {n} serials, chunk_size={cs}, concurrency={conc}, loop={loop_name}, "
          f"cpus={os.cpu_count()}, server latency {args.latency * 1000:.0f} ms")

    items = serials(n)
    payloads = bodies(items, cs)
    rows: list[tuple[str, str, str, str, str]] = []
    server = Server(args.latency)
    try:
        run(lambda: raw_pool(server.base_url, payloads[:50], conc))  # warm up
        variants = [
            ("(a) raw worker pool", lambda: raw_pool(server.base_url, payloads, conc)),
            ("(b) raw gather+semaphore", lambda: raw_gather(server.base_url, payloads, conc)),
            ("(c) engine via client", lambda: engine(server.base_url, items, cs, conc)),
            ("(d) engine, dedupe=False",
             lambda: engine(server.base_url, items, cs, conc, dedupe=False)),
        ]
        timings = timed(repeat, [factory for _, factory in variants])
        for i, (name, _) in enumerate(variants):
            t = timings.best(i)
            rows.append((name, f"{n / t:,.0f}", f"{len(payloads) / t:,.0f}", f"{t:.3f}",
                         f"{timings.best_cpu(i):.3f}"))

        mem_n = args.memory_serials or (1_000_000 if args.full else 200_000)
        mem = [
            (dedupe, *memory_in_child(server.base_url, mem_n, cs, conc, dedupe))
            for dedupe in (True, False)
        ]
    finally:
        server.close()

    little: list[tuple[int, float, float, float]] = []
    little_latency = args.little_latency
    lat_server = Server(little_latency)
    try:
        # The server's real time per request (its sleep overshoots by the event loop's timer
        # granularity, plus parsing and the loopback round trip), measured one at a time.
        rtt = run(partial(single_request_rtt, lat_server.base_url, bodies(serials(10), 10)[0]))
        for c in (16, 64):
            reqs = max(400, int((c / little_latency) * (6 if args.full else 2)))
            lat_items = serials(reqs * 10)
            lat_payloads = bodies(lat_items, 10)
            url = lat_server.base_url
            run(partial(engine_requests, url, lat_items[: c * 20], 10, c))  # warm up
            lt = timed(
                2,
                [partial(raw_pool, url, lat_payloads, c), partial(engine, url, lat_items, 10, c)],
            )
            little.append((c, reqs / lt.best(1), c / little_latency, reqs / lt.best(0)))
    finally:
        lat_server.close()

    print()
    head = f"{'variant':28} {'serials/s':>12} {'requests/s':>11} {'seconds':>9}"
    print(f"{head} {'client CPU s':>13}")
    for row in rows:
        print(f"{row[0]:28} {row[1]:>12} {row[2]:>11} {row[3]:>9} {row[4]:>13}")
    print()
    print("speed ratios, round by round (median, lowest-highest of the rounds); above 1: "
          "faster than the baseline")
    for label, num, den, floor in (
        ("engine / (a) raw worker pool", 0, 2, GUARD if args.latency == 0 else None),
        ("engine / (b) raw gather     ", 1, 2, None),
        ("dedupe=False / (a) raw pool ", 0, 3, None),
        ("dedupe=False / (b) gather   ", 1, 3, None),
    ):
        med, lo, hi = timings.ratio(num, den)
        cmed, _, _ = timings.ratio(num, den, cpu=True)
        aim = ""
        if floor is not None:
            verdict = "held" if med >= floor else "BELOW: a regression of the engine's one path"
            aim = f"   (regression guard >= {floor:.2f}: {verdict})"
        print(f"  {label}: {med:.2f}x wall ({lo:.2f}-{hi:.2f}), {cmed:.2f}x client CPU{aim}")
    print()
    print(f"Little's law, server latency {little_latency * 1000:.0f} ms (measured one request at "
          f"a time: {rtt * 1000:.2f} ms), chunk_size=10:")
    for c, rate, bound, raw_rate in little:
        real = c / rtt
        print(f"  concurrency {c:3d}: engine {rate:7,.0f} req/s = {rate / bound:.2f} of "
              f"concurrency/latency {bound:,.0f}, {rate / real:.2f} of concurrency/measured "
              f"{real:,.0f} (target >= 0.95); raw pool {raw_rate / real:.2f} of measured; "
              f"engine/raw {rate / raw_rate:.2f}")
    print()
    for dedupe, growth, elapsed, count in mem:
        aim = (f"   ({growth * 2**20 / count:.0f} bytes per serial held for de-duplication)"
               if dedupe else "   (target < 20 MiB for 1,000,000)")
        print(f"stream of {count:,} serials from a generator, dedupe={dedupe!s:5}: "
              f"peak RSS growth {growth:6.1f} MiB, {count / elapsed:,.0f} serials/s{aim}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
