"""Time series: a whole-range pull against the emulator, and decoding msgspec vs pydantic.

**The pull.** N devices x 3 measures x 30 days at 10-minute steps (``--full``: 500 devices,
6,480,000 points; default: 30 devices, 388,800 points) from the emulator running in its own
process, through ``client.timeseries.query(devices, measures, start=…, end=…)`` with no
``limit``. Each variant runs in a fresh child process (so peak RSS, ``ru_maxrss``, belongs to
that variant alone); the child checks that the count is exact (every point once) and reports
its CPU time for the pull and for the conversion:

* ``query + to_columns()`` and ``query + to_pandas()`` (column by column);
* ``query + rows() + DataFrame`` (the baseline: a tuple per point, then pandas);
* ``stream (no result kept)``: the same pull piece by piece, nothing kept (bounded memory).

The emulator's CPU time over each variant gives the points it serves per CPU second.

**Decoding.** A 100,000-point ``POST /timeseries`` body decoded into the SDK's msgspec models and,
as the baseline, into equivalent pydantic v2 models (``TypeAdapter.validate_json``), best process
CPU time of interleaved rounds, with the garbage collector enabled (as in an application: the
headline ratio) and disabled while timing.

Usage::

    python benchmarks/timeseries.py          # seconds
    python benchmarks/timeseries.py --full   # the issue's numbers: 6.48 M points (minutes)

Exit status 1 if a goal is missed: msgspec >= 10x pydantic; ``to_pandas`` >= 3x faster than
``rows()`` + DataFrame (client CPU of pull and conversion); peak RSS of ``to_pandas`` < 1 GB
(``--full``); the emulator >= 1,000,000 points per CPU second.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Optional

try:
    import iris360_async  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec
import pydantic

from iris360_async.models.timeseries import TimeSeriesResponse, decode_timeseries_responses

REQUIRED = 10.0
PULL_SPEEDUP = 3.0
PANDAS_RSS_LIMIT_MB = 1000.0
EMULATOR_POINTS_PER_S = 1_000_000
MEASURES = ["temperature", "humidity", "battery"]
START = datetime(2025, 11, 1)
END = datetime(2025, 12, 1)  # 30 days, 4,320 points per pair
POINTS_PER_PAIR = 4320
VARIANTS = {
    "to_columns": "query + to_columns()",
    "to_pandas": "query + to_pandas()",
    "rows": "query + rows() + DataFrame (baseline)",
    "stream": "stream (no result kept)",
}


# -- the pydantic baseline (same fields, same types) ------------------------------------------


class PAggregation(pydantic.BaseModel):
    type: str
    interval: str


class POptions(pydantic.BaseModel):
    tenant: Optional[str] = None  # noqa: UP045 - pydantic evaluates these at runtime (3.10)
    scope: Optional[str] = None  # noqa: UP045
    start_date: Optional[str] = None  # noqa: UP045
    end_date: Optional[str] = None  # noqa: UP045
    order: Optional[Literal["asc", "desc"]] = None  # noqa: UP045
    limit: Optional[int] = None  # noqa: UP045
    aggregation: Optional[PAggregation] = None  # noqa: UP045
    period: Optional[list[dict[str, Any]]] = None  # noqa: UP045
    query_id: Optional[str] = None  # noqa: UP045
    where: Optional[dict[str, Any]] = None  # noqa: UP045


class PValue(pydantic.BaseModel):
    timestamp: datetime
    value: Any = None


class PSeries(pydantic.BaseModel):
    device_id: str
    measure_id: str
    values: list[PValue] = []


class PResponse(pydantic.BaseModel):
    time_series: list[PSeries] = []
    options: POptions = POptions()


# -- the body ---------------------------------------------------------------------------------


def make_body(points: int, series: int = 100, responses: int = 4) -> bytes:
    """A response array with ``points`` points spread over ``series`` series."""
    per_series = points // series
    start = datetime(2025, 1, 1)
    per_response = series // responses
    body = []
    for r in range(responses):
        items = []
        for s in range(per_response):
            n = r * per_response + s
            values = [
                {
                    "timestamp": (
                        start + timedelta(seconds=600 * k, microseconds=904 * k)
                    ).isoformat(timespec="microseconds"),
                    "value": round(20 + (n * 7 + k) % 97 / 10, 2) if n % 5 else (n + k) % 1000,
                }
                for k in range(per_series)
            ]
            items.append(
                {
                    "device_id": f"urn:ngsi-ld:Device:SN{n:06d}",
                    "measure_id": ("temperature", "humidity", "battery", "pm10")[n % 4],
                    "values": values,
                }
            )
        body.append(
            {
                "time_series": items,
                "options": {
                    "start_date": "2025-01-01T00:00:00",
                    "end_date": None,
                    "order": "asc",
                    "limit": per_series,
                    "aggregation": None,
                    "period": None,
                    "query_id": f"q-{r}",
                    "where": None,
                    "tenant": "libelium",
                    "scope": "/",
                },
            }
        )
    return msgspec.json.encode(body)


def best_times(
    repeat: int, candidates: dict[str, Callable[[], Any]], *, gc_enabled: bool
) -> dict[str, float]:
    """Best CPU time of each candidate over ``repeat`` interleaved rounds, in seconds.

    Rounds alternate the candidates so that load from other processes hits all of them alike;
    process CPU time (not wall time) leaves out the time the process was not running. Every
    timing starts after a full collection; with ``gc_enabled`` the cyclic garbage collector
    runs as it does in an application (decoded objects that it tracks make it traverse more),
    otherwise it is switched off while timing.
    """
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(repeat):
        for name, fn in candidates.items():
            gc.collect()
            if not gc_enabled:
                gc.disable()
            try:
                start = time.process_time()
                fn()
                best[name] = min(best[name], time.process_time() - start)
            finally:
                gc.enable()
    return best


def check_same(body: bytes) -> None:
    """Both decoders read the same points (the comparison is only fair if they agree)."""
    ours = msgspec.json.decode(body, type=list[TimeSeriesResponse])
    theirs = pydantic.TypeAdapter(list[PResponse]).validate_json(body)
    ours_points = [(v.timestamp, v.value) for r in ours for s in r.time_series for v in s.values]
    their_points = [
        (v.timestamp.replace(tzinfo=None), v.value)
        for r in theirs
        for s in r.time_series
        for v in s.values
    ]
    assert [(t.replace(tzinfo=None), v) for t, v in ours_points] == their_points
    assert all(t.tzinfo is not None for t, _ in ours_points[:10])


def run(points: int, repeat: int) -> float:
    body = make_body(points)
    check_same(body)
    adapter = pydantic.TypeAdapter(list[PResponse])
    decoder = msgspec.json.Decoder(list[TimeSeriesResponse])
    candidates: dict[str, Callable[[], Any]] = {
        "msgspec.json.decode(type=list[TimeSeriesResponse])": lambda: msgspec.json.decode(
            body, type=list[TimeSeriesResponse]
        ),
        "msgspec Decoder(list[TimeSeriesResponse])": lambda: decoder.decode(body),
        "iris360_async decode_timeseries_responses": lambda: decode_timeseries_responses(body),
        "pydantic v2 TypeAdapter.validate_json": lambda: adapter.validate_json(body),
        "json.loads only (no models)": lambda: json.loads(body),
    }
    ratios = {}
    for gc_enabled in (True, False):
        times = best_times(repeat, candidates, gc_enabled=gc_enabled)
        baseline = times["pydantic v2 TypeAdapter.validate_json"]
        state = "enabled (as in an application)" if gc_enabled else "disabled while timing"
        print(
            f"{points:,} points, {len(body) / 1e6:.1f} MB of JSON, best CPU time of {repeat}, "
            f"garbage collector {state}"
        )
        print(f"{'decoder':<52} {'ms':>8} {'vs pydantic':>12}")
        for name, seconds in times.items():
            print(f"{name:<52} {seconds * 1000:>8.1f} {baseline / seconds:>11.1f}x")
        print()
        ratios[gc_enabled] = baseline / times["msgspec.json.decode(type=list[TimeSeriesResponse])"]
    return ratios[True]


# -- the pull (one child process per variant) ------------------------------------------------


def _rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def _pull(variant: str, server: dict[str, str], devices: list[str]) -> dict[str, float]:
    import pandas as pd

    from iris360_async import Iris360Client

    async with Iris360Client(
        server["base_url"], username=server["username"], password=server["password"],
        tenant=server["tenant"], scope=server["scope"],
    ) as client:  # fmt: skip
        await client.auth.login()
        gc.collect()
        rss_start = _rss_mb()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if variant == "stream":
            points = 0
            async with client.timeseries.stream(devices, MEASURES, start=START, end=END) as s:
                async for piece in s:
                    points += len(piece.values)
            cpu1, wall1 = time.process_time(), time.perf_counter()
            return {"points": points, "pull_cpu": cpu1 - cpu0, "pull_wall": wall1 - wall0,
                    "convert_cpu": 0.0, "rss_start": rss_start}  # fmt: skip
        result = await client.timeseries.query(devices, MEASURES, start=START, end=END)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        assert not result.truncated
        assert not result.missing
        assert result.complete
        if variant == "to_columns":
            columns = result.to_columns()
            points = len(columns.value)
        elif variant == "to_pandas":
            frame = result.to_pandas()
            points = len(frame)
        else:
            frame = pd.DataFrame(
                list(result.rows()), columns=["device_id", "measure_id", "timestamp", "value"]
            )
            points = len(frame)
        cpu2 = time.process_time()
        return {"points": points, "pull_cpu": cpu1 - cpu0, "pull_wall": wall1 - wall0,
                "convert_cpu": cpu2 - cpu1, "rss_start": rss_start}  # fmt: skip


def child(variant: str, server_json: str, devices: int) -> int:
    """Run one variant and print its numbers as one JSON line."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    server = json.loads(server_json)
    urns = [f"urn:ngsi-ld:Device:SN{i:06d}" for i in range(1, devices + 1)]
    out = asyncio.run(_pull(variant, server, urns))
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps(out))
    return 0


def pull(devices: int, variants: list[str]) -> dict[str, dict[str, float]]:
    """Every variant in its own child process against one emulator process."""
    from iris360_async.testing import EmulatorProcess

    expected = devices * len(MEASURES) * POINTS_PER_PAIR
    cpus = os.cpu_count() or 1
    results: dict[str, dict[str, float]] = {}
    with EmulatorProcess(devices=devices, cpu=1 if cpus > 1 else None,
                         extra_args=["--token-ttl", "3600"]) as emu:  # fmt: skip
        server = json.dumps({k: str(emu.info[k]) for k in
                             ("base_url", "username", "password", "tenant", "scope")})  # fmt: skip
        for variant in variants:
            server_cpu = emu.cpu_seconds()
            done = subprocess.run(
                [sys.executable, __file__, "--child", variant, "--server", server,
                 "--devices", str(devices)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"variant {variant} failed:\n{done.stderr}")
            out = json.loads(done.stdout.strip().splitlines()[-1])
            out["server_cpu"] = emu.cpu_seconds() - server_cpu
            if out["points"] != expected:
                raise RuntimeError(f"{variant}: {out['points']} points, expected {expected}")
            results[variant] = out
    return results


def report_pull(devices: int, results: dict[str, dict[str, float]]) -> list[str]:
    """Print the table; the goals missed."""
    points = devices * len(MEASURES) * POINTS_PER_PAIR
    print(f"{devices} devices x {len(MEASURES)} measures x 30 days at 10 min = {points:,} points "
          "(count exact in every variant)")  # fmt: skip
    head = (f"{'variant':<40} {'pull':>8} {'convert':>8} {'total':>8} {'vs rows':>8} "
            f"{'wall s':>7} {'peak RSS':>9} {'emulator':>10}")  # fmt: skip
    print(head)
    print(f"{'':<40} {'µs/pt':>8} {'µs/pt':>8} {'µs/pt':>8} {'':>8} {'':>7} {'MB':>9} "
          f"{'Mpts/CPU-s':>10}")  # fmt: skip
    baseline = results.get("rows")
    base_total = (baseline["pull_cpu"] + baseline["convert_cpu"]) if baseline else None
    for variant, r in results.items():
        total = r["pull_cpu"] + r["convert_cpu"]
        ratio = f"{base_total / total:.2f}x" if base_total else "-"
        served = points / r["server_cpu"] / 1e6 if r["server_cpu"] > 0 else float("inf")
        print(f"{VARIANTS[variant]:<40} {r['pull_cpu'] / points * 1e6:>8.2f} "
              f"{r['convert_cpu'] / points * 1e6:>8.2f} {total / points * 1e6:>8.2f} "
              f"{ratio:>8} {r['pull_wall']:>7.1f} {r['peak_rss']:>9.0f} {served:>10.2f}")
    missed = []
    pandas = results.get("to_pandas")
    if pandas and baseline and base_total:
        total = pandas["pull_cpu"] + pandas["convert_cpu"]
        conversion = baseline["convert_cpu"] / max(pandas["convert_cpu"], 1e-9)
        print(f"to_pandas vs rows() + DataFrame: {base_total / total:.2f}x end to end, "
              f"{conversion:.1f}x for the conversion alone (goal >= {PULL_SPEEDUP:.0f}x)")
        if base_total / total < PULL_SPEEDUP:
            missed.append("to_pandas speed-up")
        if devices >= 500 and pandas["peak_rss"] >= PANDAS_RSS_LIMIT_MB:
            missed.append("to_pandas peak RSS")
    served = min(points / r["server_cpu"] for r in results.values() if r["server_cpu"] > 0)
    print(f"emulator: at least {served / 1e6:.2f} M points per CPU second "
          f"(goal >= {EMULATOR_POINTS_PER_S / 1e6:.0f} M)")
    if served < EMULATOR_POINTS_PER_S:
        missed.append("emulator throughput")
    print()
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="500 devices, more repetitions")
    parser.add_argument("--devices", type=int, default=None, help="devices of the pull")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.server, args.devices)
    devices = args.devices or (500 if args.full else 30)
    missed = report_pull(devices, pull(devices, args.variants.split(",")))
    repeat = 25 if args.full else 10
    ratio = run(100_000, repeat)
    verdict = "OK" if ratio >= REQUIRED else "TOO SLOW"
    print(f"msgspec vs pydantic at 100,000 points, GC enabled: {ratio:.1f}x", end=" ")
    print(f"(required {REQUIRED:.0f}x) {verdict}")
    if ratio < REQUIRED:
        missed.append("msgspec vs pydantic")
    if missed:
        print("goals missed:", ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
