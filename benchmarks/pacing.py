"""Benchmark of ``concurrency="auto"`` against fixed concurrencies on modelled servers.

For each profile of the emulator's server model (``iris360_async.testing.server_model``):

* the oracle: the best fixed ``concurrency`` of a sweep (the fastest job that lost no device to
  a gateway timeout) and its job time;
* ``auto``: its job time as a ratio of the oracle's throughput, and the default fixed 16;
* gateway timeouts (504), 429s, ``unknown`` devices; median and p95 request latency against
  the unloaded time of a request (a lone 100-device request on an idle server);
* a plot of the ``auto`` run: limit, requests in flight and throughput over time
  (``--plots DIR``, matplotlib from the ``bench`` extra).

Profiles (``--full``: the issue's sizes; the default divides every duration by five, and uses
fewer devices, so the whole run takes about a minute):

* capacity_bound: 4 workers, 0.2 s per 100-device request, gateway timeout 0.7 s;
* rate_limited: 32 workers, gateway token bucket of 20 requests/s (burst 10), ``Retry-After``
  in whole seconds;
* drifting: 4 workers, the per-device cost doubles 5 s into the job, gateway timeout 3x the
  unloaded time (at the higher cost);
* shared: 8 workers, other tenants take 4 of them from 3 s to 8 s;
* fast: 64 workers, 20 ms per request (never scaled); 1,000,000 devices (``--full``: two
  million), so that the oracle's job takes seconds and the ramp is a small part of it.

The server model runs in this process, without HTTP: ``send_chunk`` hands a stand-in request
to :meth:`ServerModel.wrap` and turns its answer into what the client's transport returns or
raises (a 207 with its headers, a 429 waited out at a shared gate and repeated as the
transport does, 503/504 as status errors). The model is latency-bound (timers, no CPU), so
one process measures the pacing, not the HTTP stack; the engine's own per-chunk work is
included (it is what limits the ``fast`` profile here). Client and server model share one
event loop: how late that loop ran timers during the ``auto`` run (its *lag*, median and
p99) is printed with the table, so a starved server model would show.

Usage::

    python benchmarks/pacing.py                     # about a minute
    python benchmarks/pacing.py --full              # the issue's sizes (several minutes)
    python benchmarks/pacing.py --plots docs/images # also write the PNGs
    python benchmarks/pacing.py --profile capacity_bound
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec
from aiohttp import web

from iris360_async import errors
from iris360_async._bulk import CommandDispatcher
from iris360_async._bulk.pacer import AnsweredItems
from iris360_async._retry import RateGate, SystemClock
from iris360_async.testing.server_model import PRESETS, ServerModel, ServerModelSettings

CHUNK = 100
MAX_TRANSPORT_RETRIES = 3  # the client's default max_retries (a 429 is repeated after waiting)


class Item(msgspec.Struct):
    original: Any
    headers: dict[str, Any] = {}
    exception: Any = None


SENT = [Item({"data": "Command sent!!"}) for _ in range(CHUNK)]


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    settings: ServerModelSettings
    devices: int
    sweep: tuple[int, ...]
    note: str


def profiles(full: bool) -> list[Profile]:
    scale = 1.0 if full else 0.2
    size = 1 if full else 0  # index into (default, full) device counts
    scaled = "" if full else " (durations x0.2)"

    def p(name: str, devices: tuple[int, int], sweep: tuple[int, ...], note: str,
          settings: ServerModelSettings | None = None) -> Profile:
        base = PRESETS[name] if settings is None else settings
        return Profile(name, base.scaled(scale), devices[size], sweep, note + scaled)

    return [
        p("capacity_bound", (6_000, 6_000), (1, 2, 3, 4, 5, 6, 8, 12, 16),
          "4 workers, 0.2 s/request, gateway 0.7 s"),
        p("rate_limited", (10_000, 20_000), (1, 2, 4, 8, 16),
          "gateway 20 requests/s, burst 10"),
        p("drifting", (30_000, 60_000), (2, 3, 4, 5, 6, 8),
          "cost doubles at 5 s, gateway 3x unloaded"),
        p("shared", (30_000, 60_000), (4, 6, 8, 10, 12, 16),
          "4 of 8 workers taken 3-8 s"),
        # never scaled: 20 ms is the point of this profile; sized so that the ramp from 2 to
        # 64 (a few round trips) is a small part of the job, as in a real fleet job
        Profile("fast", PRESETS["fast"], 1_000_000 if not full else 2_000_000,
                (16, 32, 48, 64), "64 workers, 20 ms/request"),
    ]


class _Request:
    """What :class:`ServerModel` reads of a request: the body (here: the target count)."""

    __slots__ = ("_body",)

    def __init__(self, targets: int) -> None:
        self._body = str(targets).encode()

    async def read(self) -> bytes:
        return self._body


async def _applied(_request: Any) -> web.StreamResponse:
    return web.Response(status=207)


@dataclasses.dataclass
class Run:
    label: str
    elapsed: float = 0.0
    unknown: int = 0
    sent: int = 0
    gateway_timeouts: int = 0
    rate_limited: int = 0
    requests: int = 0
    latencies: list[float] = dataclasses.field(default_factory=list)
    trace: list[tuple[float, int, int, int]] = dataclasses.field(default_factory=list)
    lag: list[float] = dataclasses.field(default_factory=list)  # event-loop lag, seconds

    @property
    def clean(self) -> bool:
        return self.unknown == 0 and self.gateway_timeouts == 0

    def latency(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _error(status: int, headers: Mapping[str, str]) -> errors.APIStatusError:
    cls = errors.status_error_class(status)
    kw: dict[str, Any] = {}
    if status == 429:
        kw["retry_after"] = float(headers.get("Retry-After", "1"))
    return cls(f"POST /devices/sendCommandsBulk -> {status}", status=status, method="POST",
               url="http://127.0.0.1/devices/sendCommandsBulk", headers=dict(headers), **kw)


async def run_job(profile: Profile, concurrency: int | str, *, sample: float) -> Run:
    model = ServerModel(profile.settings, targets=lambda body: int(body))
    handler = model.wrap(_applied)
    gate = RateGate(SystemClock())
    loop = asyncio.get_running_loop()
    run = Run(str(concurrency))

    async def send(serials: list[str]) -> list[Item]:
        for attempt in range(MAX_TRANSPORT_RETRIES + 1):
            await gate.wait()
            started = loop.time()
            response = await handler(_Request(len(serials)))  # type: ignore[arg-type]
            status = response.status
            if status == 207:
                run.latencies.append(loop.time() - started)
                return AnsweredItems(SENT[: len(serials)], status, response.headers)
            if status == 429 and attempt < MAX_TRANSPORT_RETRIES:
                gate.close_for(float(response.headers.get("Retry-After", "1")))
                continue
            raise _error(status, response.headers)
        raise AssertionError("unreachable")

    serials = [f"SN{i:07d}" for i in range(profile.devices)]
    dispatcher = CommandDispatcher(
        send, {"w_reboot": True}, chunk_size=CHUNK, concurrency=concurrency, dedupe=False
    )

    async def sampler() -> None:
        start = loop.time()
        while True:
            now = loop.time()
            run.trace.append((now - start, dispatcher.limit, dispatcher.in_flight,
                              dispatcher.report.counts["sent"]
                              + dispatcher.report.counts["unknown"]))
            await asyncio.sleep(sample)
            run.lag.append(max(0.0, loop.time() - now - sample))

    task = asyncio.create_task(sampler())
    try:
        report = await dispatcher.run(serials)
    finally:
        task.cancel()
    await model.drain()
    stats = model.stats
    run.elapsed = report.elapsed
    run.unknown = report.counts["unknown"]
    run.sent = report.counts["sent"]
    run.gateway_timeouts = stats.gateway_timeouts
    run.rate_limited = stats.rate_limited
    run.requests = stats.requests
    return run


@dataclasses.dataclass
class Result:
    profile: Profile
    oracle: Run
    oracle_concurrency: int
    auto: Run
    fixed16: Run

    @property
    def ratio(self) -> float:
        return self.oracle.elapsed / self.auto.elapsed


async def measure(profile: Profile, *, sample: float, quiet: bool) -> Result:
    sweep: dict[int, Run] = {}
    for c in profile.sweep:
        sweep[c] = await run_job(profile, c, sample=sample)
        if not quiet:
            r = sweep[c]
            print(f"  {profile.name:<15} fixed {c:>3}: {r.elapsed:6.2f} s  unknown {r.unknown:>5}"
                  f"  504 {r.gateway_timeouts:>3}  429 {r.rate_limited:>3}", file=sys.stderr)
    clean = {c: r for c, r in sweep.items() if r.clean} or sweep
    best = min(clean, key=lambda c: (clean[c].elapsed, c))
    fixed16 = sweep[16] if 16 in sweep else await run_job(profile, 16, sample=sample)
    auto = await run_job(profile, "auto", sample=sample)
    if not quiet:
        print(f"  {profile.name:<15} auto     : {auto.elapsed:6.2f} s  unknown {auto.unknown:>5}"
              f"  504 {auto.gateway_timeouts:>3}  429 {auto.rate_limited:>3}", file=sys.stderr)
    return Result(profile, sweep[best], best, auto, fixed16)


def table(results: list[Result]) -> str:
    head = ("| profile | oracle (best fixed) | auto | auto / oracle throughput | fixed 16 "
            "| auto 504 / 429 / unknown | fixed 16 504 / unknown | auto latency median / p95 "
            "(unloaded) |")
    lines = [head, "|" + "---|" * 8]
    for r in results:
        unloaded = r.profile.settings.unloaded_time(CHUNK)
        a, f = r.auto, r.fixed16
        rl = f"{a.rate_limited} ({100 * a.rate_limited / max(1, a.requests):.1f} %)"
        lines.append(
            f"| {r.profile.name} | {r.oracle_concurrency}: {r.oracle.elapsed:.2f} s "
            f"| {a.elapsed:.2f} s | **{r.ratio:.2f}** | {f.elapsed:.2f} s "
            f"| {a.gateway_timeouts} / {rl} / {a.unknown} "
            f"| {f.gateway_timeouts} / {f.unknown:,} "
            f"| {1000 * statistics.median(a.latencies):.0f} / {1000 * a.latency(0.95):.0f} ms "
            f"({1000 * unloaded:.0f} ms) |"
        )
    return "\n".join(lines)


def lags(results: list[Result]) -> list[str]:
    """How late the shared event loop ran timers during each ``auto`` run (client and server
    model alike): a starved server model would show here."""
    out = []
    for r in results:
        lag = sorted(r.auto.lag) or [0.0]
        p99 = lag[min(len(lag) - 1, int(0.99 * len(lag)))]
        out.append(f"{r.profile.name}: event-loop lag median {1000 * statistics.median(lag):.1f}"
                   f" ms, p99 {1000 * p99:.1f} ms, max {1000 * lag[-1]:.1f} ms")
    return out


def goals(results: list[Result]) -> list[str]:
    by = {r.profile.name: r for r in results}
    out = []
    ratios = [r.ratio for r in results]
    out.append(f"auto >= 0.85x oracle on every profile: {min(ratios) >= 0.85} "
               f"(lowest {min(ratios):.2f})")
    out.append(f"auto >= 0.9x oracle on most: {sum(x >= 0.9 for x in ratios)} of {len(ratios)}")
    for name in ("capacity_bound", "drifting"):
        if name in by:
            a = by[name].auto
            out.append(f"{name}: 504 {a.gateway_timeouts}, unknown {a.unknown}: "
                       f"{a.gateway_timeouts == 0 and a.unknown == 0}")
    if "rate_limited" in by:
        a = by["rate_limited"].auto
        share = a.rate_limited / max(1, a.requests)
        out.append(f"rate_limited: 429s {100 * share:.1f} % of requests <= 2 %: {share <= 0.02}")
    if "capacity_bound" in by:
        r = by["capacity_bound"]
        med = statistics.median(r.auto.latencies)
        unloaded = r.profile.settings.unloaded_time(CHUNK)
        out.append(f"capacity_bound: median latency {med / unloaded:.2f}x unloaded <= 2: "
                   f"{med <= 2 * unloaded}")
    return out


def plot(result: Result, directory: Path, window: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = result.auto.trace
    times = [t for t, *_ in trace]
    limits = [limit for _, limit, _, _ in trace]
    flying = [n for _, _, n, _ in trace]
    rates: list[float] = []
    j = 0
    for i, (t, _, _, done) in enumerate(trace):
        while trace[j][0] < t - window:
            j += 1
        span = t - trace[j][0]
        rates.append((done - trace[j][3]) / span if span > 0 and i > j else 0.0)
    fig, ax = plt.subplots(figsize=(7.5, 3.2), dpi=100)
    ax.step(times, limits, where="post", label="limit", color="#1f77b4", linewidth=1.6)
    ax.step(times, flying, where="post", label="in flight", color="#9ecae1", linewidth=1.0)
    ax.axhline(result.oracle_concurrency, color="#555555", linestyle=":", linewidth=1.0,
               label=f"oracle fixed {result.oracle_concurrency}")
    ax.set_xlabel("seconds into the job")
    ax.set_ylabel("requests")
    ax.set_ylim(0, max(max(limits, default=1), result.oracle_concurrency) * 1.25 + 1)
    right = ax.twinx()
    right.plot(times, rates, color="#d62728", linewidth=1.2, label="devices/s")
    right.set_ylabel("devices/s", color="#d62728")
    right.set_ylim(0, max(rates, default=1) * 1.15 + 1)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_title(f"{result.profile.name}: {result.profile.note} "
                 f"(auto {result.ratio:.2f}x oracle)", fontsize=10)
    fig.tight_layout()
    path = directory / f"pacing-{result.profile.name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


async def main_async(args: argparse.Namespace) -> list[Result]:
    chosen = [p for p in profiles(args.full) if not args.profile or p.name in args.profile]
    results = []
    for profile in chosen:
        sample = max(0.005, profile.settings.unloaded_time(CHUNK) / 4)
        results.append(await measure(profile, sample=sample, quiet=args.quiet))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the issue's sizes and durations")
    parser.add_argument("--profile", action="append", choices=sorted(PRESETS))
    parser.add_argument("--plots", type=Path, default=None, metavar="DIR",
                        help="write pacing-<profile>.png into DIR (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no per-run lines on stderr")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    print(table(results))
    print()
    for line in goals(results):
        print("-", line)
    print()
    for line in lags(results):
        print("-", line)
    if args.plots is not None:
        args.plots.mkdir(parents=True, exist_ok=True)
        for r in results:
            window = max(0.1, 5 * r.profile.settings.unloaded_time(CHUNK))
            print("wrote", plot(r, args.plots, window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
