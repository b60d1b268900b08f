"""Deterministic time series: values computed from ``(seed, urn, measure, point index)``.

Every entity measure has one point every ``fleet.series_interval`` seconds from
``fleet.series_start`` up to the emulator clock's *now*; nothing is stored. This module also holds
the time-series query engine (bounds, order, limit, aggregation, period filters).
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import random
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from .fleet import Measure, stable_hash

if TYPE_CHECKING:
    from .fleet import Fleet

__all__ = [
    "BUCKET_ORIGIN",
    "Aggregation",
    "SeriesQuery",
    "encoded_values",
    "latest_point",
    "run_query",
    "timestamp_db",
    "timestamp_naive",
    "value_at",
    "values_between",
]

BUCKET_ORIGIN = 946857600  # 2000-01-03T00:00:00Z, TimescaleDB's time_bucket origin
_EPOCH = datetime(1970, 1, 1)
_encode = msgspec.json.encode


_NOISE_SIZE = 1 << 16
_NOISE_MASK = _NOISE_SIZE - 1
_NOISE_STRIDE = 40503  # odd: point k of a series walks every table entry before repeating
_STRIDE_INVERSE = pow(_NOISE_STRIDE, -1, _NOISE_SIZE)


@functools.cache
def _noise() -> tuple[int, ...]:
    """65,536 pseudo-random 16-bit numbers, the same in every process.

    Point ``k`` of a series with key ``key`` uses entry ``(key + k * STRIDE) mod 65536``.
    """
    raw = random.Random(0x1215360).randbytes(2 * _NOISE_SIZE)
    return struct.unpack(f"<{_NOISE_SIZE}H", raw)


@functools.cache
def _walk(spread: int | None) -> tuple[int, ...]:
    """The noise table in the order a series walks it (twice, so any range is one slice):
    entry ``j`` is the one of ``(j * STRIDE) mod 65536``. With ``spread``, scaled to
    ``-spread..spread`` hundredths."""
    table = _noise()
    if spread is not None:
        width = 2 * spread
        table = tuple((u * width) // 65535 - spread for u in table)
    walked = tuple(table[(j * _NOISE_STRIDE) & _NOISE_MASK] for j in range(_NOISE_SIZE))
    return walked + walked


def _walk_slice(spread: int | None, key: int, k_lo: int, count: int) -> list[int]:
    """Noise entries of points ``k_lo .. k_lo + count - 1`` of the series ``key``."""
    table = _walk(spread)
    out: list[int] = []
    j = (key * _STRIDE_INVERSE + k_lo) & _NOISE_MASK
    while count > 0:
        take = min(count, _NOISE_SIZE)
        out.extend(table[j : j + take])
        count -= take
    return out


def _noise_at(spread: int | None, key: int, k: int) -> int:
    return _walk(spread)[(key * _STRIDE_INVERSE + k) & _NOISE_MASK]


def _series_key(seed: int, urn: str, measure: Measure) -> int:
    return stable_hash(seed, urn, measure.name)


def _spread(measure: Measure) -> int:
    return round(measure.noise * 100)


def _daily_hundredths(measure: Measure, key: int, t: int) -> int:
    phase = (key % 628) / 100.0
    return round(measure.amplitude * 100 * math.sin(2 * math.pi * (t % 86400) / 86400 + phase))


def value_at(seed: int, urn: str, measure: Measure, k: int, t: int) -> Any:
    """The value of ``measure`` of entity ``urn`` at point ``k`` (timestamp ``t``, seconds).

    :func:`values_between` computes the same values for a whole range at once.
    """
    key = _series_key(seed, urn, measure)
    kind = measure.value_type
    if kind == "double":
        noise = _noise_at(_spread(measure), key, k)
        return (round(measure.base * 100) + _daily_hundredths(measure, key, t) + noise) / 100
    if kind == "integer":
        if measure.name == "battery":
            return 100 - ((k + key % 97) // 12) % 80
        return (k * 600 + key % 3600) % 2_592_000
    u = _noise_at(None, key, k)
    if kind == "bool":
        return (u % 10) != 0
    return f"v1.{(k // 1440 + key) % 10}.{u % 3}"


def values_between(
    seed: int, urn: str, measure: Measure, k_lo: int, k_hi: int, t0: int, iv: int
) -> list[Any]:
    """``[value_at(seed, urn, measure, k, t0 + k * iv) for k in k_lo..k_hi]``, fast."""
    count = k_hi - k_lo + 1
    if count <= 0:
        return []
    key = _series_key(seed, urn, measure)
    kind = measure.value_type
    if kind == "double":
        noise = _walk_slice(_spread(measure), key, k_lo, count)
        base = round(measure.base * 100)
        if 86400 % iv == 0:  # the daily curve repeats every `period` points
            period = 86400 // iv
            one_day = [
                base + _daily_hundredths(measure, key, t0 + (k_lo + j) * iv)
                for j in range(min(period, count))
            ]
            daily: Iterable[int] = itertools.islice(itertools.cycle(one_day), count)
        else:
            daily = (base + _daily_hundredths(measure, key, t0 + k * iv)
                     for k in range(k_lo, k_hi + 1))
        return [(d + n) / 100 for d, n in zip(daily, noise, strict=False)]
    ks = range(k_lo, k_hi + 1)
    if kind == "integer":
        if measure.name == "battery":
            shift = key % 97
            return [100 - ((k + shift) // 12) % 80 for k in ks]
        offset = key % 3600
        return [(k * 600 + offset) % 2_592_000 for k in ks]
    bits = _walk_slice(None, key, k_lo, count)
    if kind == "bool":
        return [u % 10 != 0 for u in bits]
    return [f"v1.{(k // 1440 + key) % 10}.{u % 3}" for k, u in zip(ks, bits, strict=True)]


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


@functools.lru_cache(maxsize=32)
def _timestamps(t0: int, iv: int, k_lo: int, k_hi: int) -> tuple[str, ...]:
    """:func:`timestamp_naive` of points ``k_lo..k_hi`` (shared by every pair of a request)."""
    first = _EPOCH + timedelta(seconds=t0 + k_lo * iv)
    step = timedelta(seconds=iv)
    return tuple((first + step * j).isoformat() for j in range(k_hi - k_lo + 1))


@functools.lru_cache(maxsize=32)
def _prefixes(t0: int, iv: int, k_lo: int, k_hi: int) -> tuple[bytes, ...]:
    """``{"timestamp":"…","value":`` of points ``k_lo..k_hi``, encoded."""
    stamps = _timestamps(t0, iv, k_lo, k_hi)
    return tuple(b'{"timestamp":"%s","value":' % s.encode() for s in stamps)


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


def _index_range(fleet: Fleet, query: SeriesQuery, now: float) -> tuple[int, int]:
    """Indexes ``k_lo..k_hi`` of the points inside the query's bounds (empty: k_hi < k_lo)."""
    t0 = fleet.series_start
    iv = fleet.series_interval
    upper = now if query.end is None else min(now, query.end)
    if upper < t0:
        return 0, -1
    k_hi = int((upper - t0) // iv)
    k_lo = 0 if query.start is None else max(0, math.ceil((query.start - t0) / iv))
    return k_lo, k_hi


def _raw_slice(fleet: Fleet, query: SeriesQuery, now: float) -> tuple[int, int] | None:
    """For a query without aggregation and period filter: the indexes ``k_lo..k_hi`` that
    ``limit`` keeps (``None`` when the query needs the general path)."""
    if query.aggregation is not None or query.period:
        return None
    if not isinstance(fleet.series_start, int) or not isinstance(fleet.series_interval, int):
        return None
    k_lo, k_hi = _index_range(fleet, query, now)
    if query.descending:
        return max(k_lo, k_hi - query.limit + 1), k_hi
    return k_lo, min(k_hi, k_lo + query.limit - 1)


def encoded_values(
    fleet: Fleet, urn: str, measure: Measure, query: SeriesQuery, now: float
) -> bytes | None:
    """The JSON ``values`` array of one pair, built from pre-encoded pieces (the fast path of
    :func:`run_query`, same result); ``b"[]"`` without points, ``None`` when the query has an
    aggregation or a period filter."""
    span = _raw_slice(fleet, query, now)
    if span is None:
        return None
    k_lo, k_hi = span
    if k_hi < k_lo:
        return b"[]"
    prefixes = _prefixes(fleet.series_start, fleet.series_interval, k_lo, k_hi)
    values = values_between(fleet.seed, urn, measure, k_lo, k_hi, fleet.series_start,
                            fleet.series_interval)
    # generated values are numbers, booleans and short strings: none contains a comma
    parts = _encode(values)[1:-1].split(b",")
    if query.descending:
        prefixes = prefixes[::-1]
        parts.reverse()
    return b"[" + b"},".join(map(operator.add, prefixes, parts)) + b"}]"


def run_query(
    fleet: Fleet, urn: str, measure: Measure, query: SeriesQuery, now: float
) -> list[dict[str, Any]]:
    """The ``values`` of one (entity, measure) pair."""
    t0 = fleet.series_start
    iv = fleet.series_interval
    raw = _raw_slice(fleet, query, now)
    if raw is not None:
        lo, hi = raw
        stamps = _timestamps(t0, iv, lo, hi) if hi >= lo else ()
        generated = values_between(fleet.seed, urn, measure, lo, hi, t0, iv)
        if query.descending:
            return [{"timestamp": s, "value": v}
                    for s, v in zip(reversed(stamps), reversed(generated), strict=True)]
        return [{"timestamp": s, "value": v} for s, v in zip(stamps, generated, strict=True)]
    k_lo, k_hi = _index_range(fleet, query, now)
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
