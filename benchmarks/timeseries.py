"""Decoding a 100,000-point ``POST /timeseries`` response: msgspec models vs pydantic v2.

The body has the server's shape (API reference §4.1): timestamps in ISO 8601 without an offset
and with microseconds, numeric values. It is decoded into the SDK's typed models with
``msgspec.json.decode(body, type=list[TimeSeriesResponse])`` (and through the SDK's own decoding
function) and, as the baseline, into equivalent pydantic v2 models with
``TypeAdapter(list[Response]).validate_json(body)``. Same run, same bytes; the best process CPU
time of N interleaved rounds, so that other load on the machine distorts the ratio less.

Timed twice: with the garbage collector enabled, as in an application (the headline ratio:
``TimeSeriesValue`` is a ``gc=False`` struct, so 100,000 points add nothing for the collector
to traverse, while 100,000 pydantic models do), and with it disabled while timing (pure
decoding work).

Usage::

    python benchmarks/timeseries.py          # a few seconds
    python benchmarks/timeseries.py --full   # more repetitions, plus a 1,000,000-point body

Exit status 1 if msgspec is less than 10x faster than pydantic.
"""

from __future__ import annotations

import argparse
import gc
import json
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="more repetitions, a bigger body")
    args = parser.parse_args(argv)
    repeat = 25 if args.full else 10
    ratio = run(100_000, repeat)
    if args.full:
        run(1_000_000, 3)
    verdict = "OK" if ratio >= REQUIRED else "TOO SLOW"
    print(f"msgspec vs pydantic at 100,000 points, GC enabled: {ratio:.1f}x", end=" ")
    print(f"(required {REQUIRED:.0f}x) {verdict}")
    return 0 if ratio >= REQUIRED else 1


if __name__ == "__main__":
    sys.exit(main())
