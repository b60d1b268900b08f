"""Deterministic time series: values computed from ``(seed, urn, measure, point index)``.

Every entity measure has one point every ``fleet.series_interval`` seconds from
``fleet.series_start`` up to the emulator clock's *now*; nothing is stored. This module also holds
the time-series query engine (bounds, order, limit, aggregation, period filters).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .fleet import Measure, stable_hash

if TYPE_CHECKING:
    from .fleet import Fleet

__all__ = [
    "BUCKET_ORIGIN",
    "Aggregation",
    "SeriesQuery",
    "latest_point",
    "run_query",
    "timestamp_db",
    "timestamp_naive",
    "value_at",
]

BUCKET_ORIGIN = 946857600  # 2000-01-03T00:00:00Z, TimescaleDB's time_bucket origin
_MASK64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64 finaliser: a well spread 64-bit integer from ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def value_at(seed: int, urn: str, measure: Measure, k: int, t: int) -> Any:
    """The value of ``measure`` of entity ``urn`` at point ``k`` (timestamp ``t``, seconds)."""
    key = stable_hash(seed, urn, measure.name)
    h = _mix(key * 1_000_003 + k)
    kind = measure.value_type
    if kind == "double":
        phase = (key % 628) / 100.0
        daily = math.sin(2 * math.pi * (t % 86400) / 86400 + phase)
        noise = ((h & 0xFFFF) / 65535.0 - 0.5) * 2 * measure.noise
        return round(measure.base + measure.amplitude * daily + noise, 2)
    if kind == "integer":
        if measure.name == "battery":
            return 100 - ((k + key % 97) // 12) % 80
        return (k * 600 + key % 3600) % 2_592_000
    if kind == "bool":
        return (h % 10) != 0
    return f"v1.{(k // 1440 + key) % 10}.{h % 3}"


def numeric(value: Any) -> float | None:
    """``value`` as a number for aggregation (booleans count 0/1); ``None`` if not numeric."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    return None


def latest_point(fleet: Fleet, now: float) -> tuple[int, int] | None:
    """``(index, timestamp)`` of the newest generated point at ``now`` (``None`` before the
    first)."""
    if now < fleet.series_start:
        return None
    k = int((now - fleet.series_start) // fleet.series_interval)
    return k, fleet.series_start + k * fleet.series_interval


def timestamp_naive(t: float) -> str:
    """ISO 8601 without offset (UTC), as the time-series service emits it."""
    whole = int(t)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    micros = round((t - whole) * 1_000_000)
    return f"{text}.{micros:06d}" if micros else text


def timestamp_db(t: float) -> str:
    """The database's default rendering, ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(t)))


# -- period filters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adjustment:
    """A TimeScopeAdjustment: dates removed (``exclude``) or added back."""

    year: int | None
    month: int | None
    month_day: int | None
    exclude: bool


@dataclass(frozen=True)
class Scope:
    """One TimeScope entry, already validated."""

    months: frozenset[int]
    month_days: frozenset[int]
    week_days: frozenset[int]
    hours: tuple[tuple[int, int], ...]  # inclusive second-of-day ranges
    extra: tuple[Adjustment, ...]
    timezone: str

    def matches(self, t: int) -> bool:
        """Whether timestamp ``t`` passes this scope, with the server's quirks: ``months`` is
        compared with the 1-based month and ``week_days`` with PostgreSQL ``dow`` (0 = Sunday)."""
        tm = time.gmtime(t)
        ok = not (
            (self.months and tm.tm_mon not in self.months)
            or (self.month_days and (tm.tm_mday - 1) not in self.month_days)
            or (self.week_days and (tm.tm_wday + 1) % 7 not in self.week_days)
        )
        if ok and self.hours:
            sod = self._second_of_day(t)
            ok = any(
                (lo <= sod <= hi) if lo <= hi else (sod >= lo or sod <= hi) for lo, hi in self.hours
            )
        for adj in self.extra:
            hit = (
                (adj.year is None or adj.year == tm.tm_year)
                and (adj.month is None or adj.month == tm.tm_mon)
                and (adj.month_day is None or adj.month_day == tm.tm_mday - 1)
            )
            if hit:
                ok = not adj.exclude
        return ok

    def _second_of_day(self, t: int) -> int:
        if self.timezone == "UTC":
            return t % 86400
        from datetime import datetime
        from zoneinfo import ZoneInfo

        local = datetime.fromtimestamp(t, ZoneInfo(self.timezone))
        return local.hour * 3600 + local.minute * 60 + local.second


# -- queries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregation:
    """An aggregation: ``kind`` in mean/sum/min/max/percentile/moving_avg; ``interval`` seconds."""

    kind: str
    interval: int
    percentile: float = 0.0


@dataclass(frozen=True)
class SeriesQuery:
    """The effective options of one request, bounds in seconds since the epoch."""

    start: float | None
    end: float | None
    descending: bool
    limit: int
    aggregation: Aggregation | None
    period: tuple[Scope, ...]


def _aggregate(agg: Aggregation, values: list[float]) -> float:
    if agg.kind == "mean":
        return sum(values) / len(values)
    if agg.kind == "sum":
        return sum(values)
    if agg.kind == "min":
        return min(values)
    if agg.kind == "max":
        return max(values)
    ordered = sorted(values)  # percentile_cont: linear interpolation
    pos = agg.percentile * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def run_query(
    fleet: Fleet, urn: str, measure: Measure, query: SeriesQuery, now: float
) -> list[dict[str, Any]]:
    """The ``values`` of one (entity, measure) pair."""
    t0 = fleet.series_start
    iv = fleet.series_interval
    upper = now if query.end is None else min(now, query.end)
    if upper < t0:
        return []
    k_hi = int((upper - t0) // iv)
    k_lo = 0 if query.start is None else max(0, math.ceil((query.start - t0) / iv))
    if k_hi < k_lo:
        return []
    seed = fleet.seed
    period = query.period

    def passes(t: int) -> bool:
        return all(scope.matches(t) for scope in period)

    def points(lo: int, hi: int, descending: bool) -> Iterator[tuple[int, int]]:
        rng = range(hi, lo - 1, -1) if descending else range(lo, hi + 1)
        for k in rng:
            t = t0 + k * iv
            if not period or passes(t):
                yield k, t

    agg = query.aggregation
    out: list[dict[str, Any]] = []
    limit = query.limit
    if agg is None:
        for k, t in points(k_lo, k_hi, query.descending):
            value = value_at(seed, urn, measure, k, t)
            out.append({"timestamp": timestamp_naive(t), "value": value})
            if len(out) >= limit:
                break
        return out
    if measure.value_type == "string":
        return []
    num: Callable[[int, int], float] = lambda k, t: numeric(  # noqa: E731
        value_at(seed, urn, measure, k, t)
    ) or 0.0
    if agg.kind == "moving_avg":
        span = max(1, math.ceil(agg.interval / iv))
        for k, t in points(k_lo, k_hi, query.descending):
            window = [num(j, t0 + j * iv) for j, _ in points(max(k_lo, k - span + 1), k, False)]
            out.append({"timestamp": timestamp_naive(t), "value": sum(window) / len(window)})
            if len(out) >= limit:
                break
        return out
    # walk the points (not the buckets: most buckets may be empty) and cut at bucket changes
    width = agg.interval
    current: int | None = None
    values: list[float] = []
    for k, t in points(k_lo, k_hi, query.descending):
        bucket = BUCKET_ORIGIN + ((t - BUCKET_ORIGIN) // width) * width
        if bucket != current:
            if values and current is not None:
                out.append({"timestamp": timestamp_naive(current),
                            "value": _aggregate(agg, values)})
                if len(out) >= limit:
                    return out
            current = bucket
            values = []
        values.append(num(k, t))
    if values and current is not None:
        out.append({"timestamp": timestamp_naive(current), "value": _aggregate(agg, values)})
    return out
