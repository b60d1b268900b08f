"""Validation of time-series options, with the time-series service's (FastAPI) error shapes."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from .series import Adjustment, Aggregation, Scope, SeriesQuery

__all__ = ["OptionsError", "format_duration", "parse_options"]

_DURATION = re.compile(
    r"^P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_AGG = re.compile(r"^(mean|moving_avg|sum|min|max|percentile-(\d+))$")
_HOUR = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


class OptionsError(Exception):
    """A FastAPI-style validation failure; ``detail`` is the list of pydantic error objects."""

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__("invalid options")
        self.detail = detail


def format_duration(seconds: float) -> str:
    """A timedelta as pydantic serialises it (``PT30S``, ``PT1H30M``, ``P1D``)."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    frac = seconds - int(seconds)
    out = "P"
    if days:
        out += f"{days}D"
    time_part = ""
    if hours:
        time_part += f"{hours}H"
    if minutes:
        time_part += f"{minutes}M"
    if secs or frac:
        time_part += f"{secs + frac:g}S"
    if time_part:
        out += "T" + time_part
    return out if out != "P" else "PT0S"


def _duration_seconds(text: str, *, allow_calendar: bool) -> float | None:
    m = _DURATION.match(text)
    if m is None or text in ("P", "PT") or text.endswith("T"):
        return None
    if not allow_calendar and (m.group("y") or m.group("mo")):
        return None
    parts = {k: float(v) for k, v in m.groupdict().items() if v}
    return (
        parts.get("y", 0) * 365 * 86400 + parts.get("mo", 0) * 30 * 86400
        + parts.get("w", 0) * 7 * 86400 + parts.get("d", 0) * 86400
        + parts.get("h", 0) * 3600 + parts.get("mi", 0) * 60 + parts.get("s", 0)
    )


def _format_dt(dt: datetime) -> str:
    text = dt.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class _Parser:
    def __init__(self, index: int, now: float) -> None:
        self.index = index
        self.now = now
        self.errors: list[dict[str, Any]] = []

    def err(self, loc: list[Any], kind: str, msg: str, value: Any) -> None:
        self.errors.append(
            {"type": kind, "loc": ["body", self.index, "options", *loc], "msg": msg,
             "input": value}
        )

    def date(self, name: str, value: Any) -> tuple[float | None, str | None]:
        if value is None:
            return None, None
        if not isinstance(value, str):
            self.err([name], "datetime_type", "Input should be a valid datetime", value)
            return None, None
        if value.startswith("P"):
            seconds = _duration_seconds(value, allow_calendar=True)
            if seconds is None:
                self.err([name], "value_error", "Value error, invalid ISO 8601 duration", value)
                return None, None
            resolved = datetime.fromtimestamp(self.now - seconds, timezone.utc).replace(
                tzinfo=None
            )
            return resolved.replace(tzinfo=timezone.utc).timestamp(), _format_dt(resolved)
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            self.err([name], "datetime_from_date_parsing",
                     "Input should be a valid datetime or date, invalid character", value)
            return None, None
        aware = dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)
        return aware.timestamp(), _format_dt(dt)

    def int_list(self, loc: list[Any], value: Any, lo: int, hi: int) -> frozenset[int]:
        if value is None:
            return frozenset()
        if not isinstance(value, list):
            self.err(loc, "list_type", "Input should be a valid list", value)
            return frozenset()
        out: set[int] = set()
        for pos, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int):
                self.err([*loc, pos], "int_type", "Input should be a valid integer", item)
            elif not lo <= item <= hi:
                self.err([*loc, pos], "value_error",
                         f"Value error, values must be between {lo} and {hi}", item)
            else:
                out.add(item)
        return frozenset(out)

    def hour(self, loc: list[Any], value: Any) -> int | None:
        m = _HOUR.match(value) if isinstance(value, str) else None
        if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59 or int(m.group(3) or 0) > 59:
            self.err(loc, "time_parsing", "Input should be in a valid time format", value)
            return None
        return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3) or 0)

    def scope(self, pos: int, raw: Any) -> Scope | None:
        loc: list[Any] = ["period", pos]
        if not isinstance(raw, dict):
            self.err(loc, "model_type", "Input should be a valid dictionary", raw)
            return None
        hours: list[tuple[int, int]] = []
        raw_hours = raw.get("hours")
        if raw_hours is not None:
            if not isinstance(raw_hours, list):
                self.err([*loc, "hours"], "list_type", "Input should be a valid list", raw_hours)
            else:
                for i, pair in enumerate(raw_hours):
                    if not isinstance(pair, list) or len(pair) != 2:
                        self.err([*loc, "hours", i], "tuple_type",
                                 "Input should be a valid tuple", pair)
                        continue
                    lo = self.hour([*loc, "hours", i, 0], pair[0])
                    hi = self.hour([*loc, "hours", i, 1], pair[1])
                    if lo is not None and hi is not None:
                        hours.append((lo, hi))
        extra: list[Adjustment] = []
        raw_extra = raw.get("extra")
        if isinstance(raw_extra, list):
            for i, adj in enumerate(raw_extra):
                if not isinstance(adj, dict):
                    self.err([*loc, "extra", i], "model_type",
                             "Input should be a valid dictionary", adj)
                    continue
                extra.append(self.adjustment([*loc, "extra", i], adj))
        elif raw_extra is not None:
            self.err([*loc, "extra"], "list_type", "Input should be a valid list", raw_extra)
        tz = raw.get("timezone") or "UTC"
        if tz != "UTC":
            try:
                from zoneinfo import ZoneInfo

                ZoneInfo(str(tz))
            except (ValueError, KeyError, OSError, ImportError):
                self.err([*loc, "timezone"], "value_error", "Value error, unknown timezone", tz)
                tz = "UTC"
        return Scope(
            months=self.int_list([*loc, "months"], raw.get("months"), 0, 11),
            month_days=self.int_list([*loc, "month_days"], raw.get("month_days"), 0, 30),
            week_days=self.int_list([*loc, "week_days"], raw.get("week_days"), 0, 6),
            hours=tuple(hours), extra=tuple(extra), timezone=str(tz),
        )

    def adjustment(self, loc: list[Any], adj: dict[str, Any]) -> Adjustment:
        values: dict[str, int | None] = {}
        for name, lo, hi in (("year", 0, 9999), ("month", 0, 11), ("month_day", 0, 30)):
            value = adj.get(name)
            if value is None:
                values[name] = None
            elif isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                self.err([*loc, name], "value_error", f"Value error, invalid {name}", value)
                values[name] = None
            else:
                values[name] = value
        exclude = adj.get("exclude", True)
        return Adjustment(
            values["year"], values["month"], values["month_day"], exclude is not False
        )


def parse_options(
    index: int, options: dict[str, Any], now: float
) -> tuple[SeriesQuery, dict[str, Any]]:
    """Validate one request's ``options``; returns the query and the echoed effective options.

    Raises:
        OptionsError: with FastAPI's ``detail`` list (the server answers 422).
    """
    p = _Parser(index, now)
    start, start_text = p.date("start_date", options.get("start_date"))
    end, end_text = p.date("end_date", options.get("end_date"))
    order = options.get("order")
    if order not in (None, "asc", "desc"):
        p.err(["order"], "enum", "Input should be 'asc' or 'desc'", order)
    limit: Any = options.get("limit", 100)
    if limit is None:
        raise TypeError("'<' not supported between instances of 'NoneType' and 'int'")
    if isinstance(limit, bool) or not isinstance(limit, int):
        p.err(["limit"], "int_type", "Input should be a valid integer", limit)
        limit = 100
    elif limit < 1:
        p.err(["limit"], "value_error", "Value error, limit must be greater than 0", limit)
    aggregation: Aggregation | None = None
    agg_echo: dict[str, Any] | None = None
    raw_agg = options.get("aggregation")
    if raw_agg is not None:
        if not isinstance(raw_agg, dict):
            p.err(["aggregation"], "model_type", "Input should be a valid dictionary", raw_agg)
        else:
            kind = raw_agg.get("type")
            m = _AGG.match(kind) if isinstance(kind, str) else None
            if m is None:
                p.err(["aggregation", "type"], "value_error",
                      "Value error, aggregation type must be one of mean, moving_avg, sum, min, "
                      "max or percentile-N", kind)
            interval = raw_agg.get("interval")
            seconds = (
                _duration_seconds(interval, allow_calendar=False)
                if isinstance(interval, str) else None
            )
            if seconds is None or seconds <= 0 or seconds != int(seconds):
                p.err(["aggregation", "interval"], "value_error",
                      "Value error, interval must be a non-zero ISO 8601 duration without years "
                      "or months", interval)
            elif m is not None:
                pct = float(m.group(2)) / 100 if m.group(2) is not None else 0.0
                if pct > 1:
                    p.err(["aggregation", "type"], "value_error",
                          "Value error, percentile must be between 0 and 100", kind)
                base = "percentile" if m.group(2) is not None else m.group(1)
                aggregation = Aggregation(base, int(seconds), pct)
                agg_echo = {"type": kind, "interval": format_duration(seconds)}
    scopes: list[Scope] = []
    raw_period = options.get("period")
    if raw_period is not None:
        if not isinstance(raw_period, list):
            p.err(["period"], "list_type", "Input should be a valid list", raw_period)
        else:
            for pos, raw in enumerate(raw_period):
                scope = p.scope(pos, raw)
                if scope is not None:
                    scopes.append(scope)
    where = options.get("where")
    if where is not None:
        conds = where.get("conditions") if isinstance(where, dict) else None
        if (
            not isinstance(conds, list) or len(conds) != 1 or not isinstance(conds[0], list)
            or len(conds[0]) != 3 or conds[0][1] != "=" or not isinstance(conds[0][0], str)
        ):
            p.err(["where"], "value_error",
                  "Value error, where needs exactly one [field, '=', value] condition", where)
    query_id = options.get("query_id")
    if query_id is not None and not isinstance(query_id, str):
        p.err(["query_id"], "string_type", "Input should be a valid string", query_id)
    if p.errors:
        raise OptionsError(p.errors)
    query = SeriesQuery(
        start=start, end=end, descending=order == "desc", limit=int(limit),
        aggregation=aggregation, period=tuple(scopes),
    )
    echo: dict[str, Any] = {
        "start_date": start_text,
        "end_date": end_text,
        "order": order,
        "limit": limit,
        "aggregation": agg_echo,
        "period": raw_period,
        "query_id": query_id,
        "where": where,
        "tenant": options.get("tenant"),
        "scope": options.get("scope"),
    }
    return query, echo

