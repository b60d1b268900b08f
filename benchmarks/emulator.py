"""How fast is the emulator? ``sendCommandsBulk`` with 100 serials per request.

The emulator runs in a separate process pinned to one core; this process drives it with a pool of
raw HTTP clients (aiohttp, or plain asyncio streams with ``--driver raw``) pinned to another core.
Reported:

* requests/s observed by the driver (bounded by the driver itself when it is slower);
* server CPU time per request and the capacity it implies on one core
  (requests / server CPU seconds) -- the acceptance number (>= 3,000 req/s);
* the same for a bare aiohttp.web server answering a constant 207 body (baseline measured in the
  same run), and the emulator/baseline ratio;
* the server's RSS before and after the measured requests (it must not grow with requests).

Usage: ``python benchmarks/emulator.py`` (a few seconds), ``--full`` (longer runs),
``--driver raw|aiohttp``, ``--concurrency N``, ``--devices N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from iris360_async.testing import EmulatorProcess  # noqa: E402

CHUNK = 100
TARGET = 3000.0

BARE_SERVER = r"""
import asyncio, json, sys
from aiohttp import web
ITEM = b'{"headers":{},"original":{"data":"Command sent!!"},"exception":null}'
BODY = b"[" + b",".join([ITEM] * 100) + b"]"
async def bulk(request):
    await request.read()
    return web.Response(body=BODY, status=207, content_type="application/json")
async def login(request):
    await request.read()
    return web.json_response({"token": "t", "refreshToken": "r"})
async def main():
    app = web.Application()
    app.router.add_post("/api/public/v1/devices/sendCommandsBulk", bulk)
    app.router.add_post("/api/public/v1/login", login)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(json.dumps({"base_url": f"http://127.0.0.1:{port}", "username": "u",
                      "password": "p", "tenant": "t", "scope": "/"}), flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


class BareProcess(EmulatorProcess):
    """A bare aiohttp.web server with the same endpoint shape (the baseline)."""

    def __init__(self, cpu: int | None) -> None:
        super().__init__(cpu=cpu)
        self._args = [sys.executable, "-c", BARE_SERVER]


def _bodies(devices: int, count: int = 200) -> list[bytes]:
    out = []
    for i in range(count):
        serials = [f"SN{(i * CHUNK + j) % devices + 1:06d}" for j in range(CHUNK)]
        out.append(json.dumps({"device_serials": serials, "w_ota": True}).encode())
    return out


async def _login(api: str, server: EmulatorProcess) -> str:
    async with aiohttp.ClientSession() as session, session.post(
        api + "/login", json={"email": server.username, "password": server.password}
    ) as resp:
        data: dict[str, Any] = await resp.json()
        return str(data["token"])


async def _drive_aiohttp(
    api: str, token: str, bodies: list[bytes], seconds: float, concurrency: int
) -> int:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json"}
    url = api + "/devices/sendCommandsBulk"
    done = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker(w: int) -> None:
            nonlocal done
            i = w
            while time.perf_counter() < deadline:
                async with session.post(url, data=bodies[i % len(bodies)]) as resp:
                    await resp.read()
                    if resp.status != 207:
                        raise RuntimeError(f"unexpected status {resp.status}")
                done += 1
                i += concurrency

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return done


async def _drive_raw(
    api: str, token: str, bodies: list[bytes], seconds: float, concurrency: int
) -> int:
    host_port = api.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    path = "/" + api.split("//", 1)[1].split("/", 1)[1] + "/devices/sendCommandsBulk"
    requests = [
        (f"POST {path} HTTP/1.1\r\nHost: {host_port}\r\nAuthorization: Bearer {token}\r\n"
         f"Content-Type: application/json\r\nAccept: application/json\r\n"
         f"Content-Length: {len(b)}\r\n\r\n").encode() + b
        for b in bodies
    ]
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(host, int(port))
        i = w
        try:
            while time.perf_counter() < deadline:
                writer.write(requests[i % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 207"):
                    raise RuntimeError(head[:40].decode(errors="replace"))
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                done += 1
                i += concurrency
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return done


def _measure(
    server: EmulatorProcess, args: argparse.Namespace, bodies: list[bytes]
) -> dict[str, float]:
    api = server.base_url + "/api/public/v1"
    token = asyncio.run(_login(api, server))
    drive = _drive_raw if args.driver == "raw" else _drive_aiohttp
    asyncio.run(drive(api, token, bodies, args.warmup, args.concurrency))
    rss_before = server.rss_bytes()
    cpu_before = server.cpu_seconds()
    started = time.perf_counter()
    done = asyncio.run(drive(api, token, bodies, args.seconds / 2, args.concurrency))
    rss_mid = server.rss_bytes()
    done += asyncio.run(drive(api, token, bodies, args.seconds / 2, args.concurrency))
    elapsed = time.perf_counter() - started
    cpu = server.cpu_seconds() - cpu_before
    rss_after = server.rss_bytes()
    return {
        "requests": done,
        "observed_rps": done / elapsed,
        "server_cpu_s": cpu,
        "cpu_us_per_request": cpu / done * 1e6 if done else float("nan"),
        "capacity_rps": done / cpu if cpu > 0 else float("inf"),
        "rss_before_mb": rss_before / 1e6,
        "rss_mid_mb": rss_mid / 1e6,
        "rss_after_mb": rss_after / 1e6,
    }


def _run(args: argparse.Namespace, driver: str, server_cpu: int | None,
         bodies: list[bytes]) -> dict[str, dict[str, float]]:
    args.driver = driver
    results: dict[str, dict[str, float]] = {}

    def keep_best(name: str, result: dict[str, float]) -> None:
        best = results.get(name)
        if best is None or result["capacity_rps"] > best["capacity_rps"]:
            results[name] = result

    for _ in range(max(1, args.repeat)):
        if not args.no_baseline:
            with BareProcess(server_cpu) as bare:
                keep_best("bare aiohttp", _measure(bare, args, bodies))
        with EmulatorProcess(devices=args.devices, cpu=server_cpu) as emu:
            keep_best("emulator", _measure(emu, args, bodies))
    print(f"\ndriver={driver}")
    print(f"{'server':<14}{'requests':>10}{'observed/s':>12}{'cpu us/req':>12}"
          f"{'capacity/s':>12}{'rss before':>12}{'rss after':>11}")
    for name, r in results.items():
        print(f"{name:<14}{r['requests']:>10.0f}{r['observed_rps']:>12.0f}"
              f"{r['cpu_us_per_request']:>12.0f}{r['capacity_rps']:>12.0f}"
              f"{r['rss_before_mb']:>10.1f}MB{r['rss_after_mb']:>9.1f}MB")
    emu_r = results["emulator"]
    if "bare aiohttp" in results:
        for key, label in (("observed_rps", "observed"), ("capacity_rps", "capacity")):
            ratio = emu_r[key] / results["bare aiohttp"][key]
            print(f"emulator / bare aiohttp ({label}): {ratio:.2f}")
    growth = emu_r["rss_after_mb"] - emu_r["rss_before_mb"]
    second_half = emu_r["rss_after_mb"] - emu_r["rss_mid_mb"]
    print(f"emulator RSS growth over {emu_r['requests']:.0f} requests: {growth:+.1f} MB "
          f"(second half of the run: {second_half:+.1f} MB)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--full", action="store_true", help="longer runs (30 s each)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before measuring")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--driver", choices=("raw", "aiohttp", "both"), default="both",
                        help="aiohttp client pool, plain asyncio streams (can saturate the "
                             "server from one core), or both")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--repeat", type=int, default=2,
                        help="alternate the runs this many times and keep each server's best "
                             "(the machine may be shared)")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 30.0 if args.full else 2.0
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_cpu = cpus[0] if len(cpus) >= 2 else None
    if server_cpu is not None:
        os.sched_setaffinity(0, set(cpus[1:]))
    bodies = _bodies(args.devices)
    print(f"sendCommandsBulk, {CHUNK} serials/request, {args.devices} devices, "
          f"concurrency={args.concurrency}, {args.seconds:g} s per run, best of {args.repeat}, "
          f"server pinned to CPU {server_cpu}, driver pinned to CPUs {cpus[1:] or cpus}")
    drivers = ("aiohttp", "raw") if args.driver == "both" else (args.driver,)
    best = 0.0
    served = 0.0
    for driver in drivers:
        emu_r = _run(args, driver, server_cpu, bodies)["emulator"]
        best = max(best, emu_r["capacity_rps"])
        served = max(served, emu_r["observed_rps"])
    verdict = "OK" if best >= TARGET else "BELOW TARGET"
    print(f"\nemulator capacity on one core: {best:.0f} req/s (highest observed: {served:.0f} "
          f"req/s; target >= {TARGET:.0f}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
