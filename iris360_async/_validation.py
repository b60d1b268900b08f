"""Argument checks that run before any request is sent.

Pure functions: each one returns the normalised value or raises ``TypeError`` (wrong kind of
value) / ``ValueError`` (right kind, unacceptable value) with a message naming the argument.
The resources, the bulk engine and the time-series helper share them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from ._timeutil import format_duration

__all__ = [
    "AGGREGATION_TYPES",
    "join_list_filter",
    "query_bool",
    "quote_urn",
    "validate_aggregation",
    "validate_aggregation_interval",
    "validate_aggregation_type",
    "validate_commands",
    "validate_limit",
    "validate_page_size",
    "validate_positive_int",
    "validate_serials",
    "validate_tenant_scope",
    "validate_urn",
]

AGGREGATION_TYPES = ("mean", "moving_avg", "sum", "min", "max")
"""Aggregation functions besides ``percentile-N``."""

_PERCENTILE = re.compile(r"percentile-(\d+)")
# ISO 8601 duration without years and months: PnW, PnD, PTnHnMnS (fractional seconds allowed).
_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?"
)


def _type_name(value: object) -> str:
    return type(value).__name__


def validate_serials(serials: Iterable[str]) -> list[str]:
    """A non-empty list of non-empty serial strings.

    Raises:
        TypeError: ``serials`` is a bare string/bytes or not iterable, or an item is no string.
        ValueError: the list is empty or an item is empty/blank.
    """
    if isinstance(serials, (str, bytes, bytearray)):
        raise TypeError("serials must be a list of strings, not a single string")
    if isinstance(serials, Mapping):
        raise TypeError("serials must be a list of strings, not a mapping")
    try:
        items = list(serials)
    except TypeError:
        raise TypeError(
            f"serials must be an iterable of strings, got {_type_name(serials)}"
        ) from None
    if not items:
        raise ValueError("serials must not be empty")
    for index, serial in enumerate(items):
        if not isinstance(serial, str):
            raise TypeError(f"serials[{index}] must be a string, got {_type_name(serial)}")
        if not serial.strip():
            raise ValueError(f"serials[{index}] is empty")
    return items


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MAX_DEPTH = 64
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _child_path(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENTIFIER.fullmatch(key) else f"{path}[{key!r}]"


def _check_json_value(value: object, path: str, depth: int = 0) -> None:
    """Raise unless ``value`` is a value JSON carries exactly (see :func:`validate_commands`);
    ``path`` names it in the message (``w_cfg[2].x``)."""
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(
                f"command value {path} = {value} is outside the signed 64-bit integer range"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(
                f"command value {path} = {value!r} is not a finite number (JSON has no "
                "NaN or infinity)"
            )
        return
    if depth >= _MAX_DEPTH:
        raise ValueError(f"command value {path} is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json_value(item, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"command value {path} has a {_type_name(key)} key {key!r}; JSON object "
                    "keys are strings"
                )
            _check_json_value(item, _child_path(path, key), depth + 1)
        return
    raise TypeError(
        f"command value {path} is a {_type_name(value)}, which JSON cannot carry exactly; "
        "use str, int, float, bool, None, or lists and dicts of them"
    )


def validate_commands(commands: Mapping[str, Any]) -> dict[str, Any]:
    """A non-empty ``name -> value`` mapping of values JSON carries exactly.

    A value is ``None``, a ``bool``, a ``str``, an ``int`` within the signed 64-bit range, a
    finite ``float``, or a ``list`` (or ``tuple``) / ``dict`` with string keys of such values,
    nested at most 64 levels. Anything else (NaN, infinity, ``bytes``, sets, ``datetime``,
    ``Decimal``, ``2**70``, other objects) would be changed or dropped by the encoder, so it is
    refused; the message names the command and the path inside its value (``w_cfg[2].x``).

    Raises:
        TypeError: not a mapping, a name or object key is no string, or a value has a type
            JSON cannot carry.
        ValueError: empty, an empty name, the reserved key ``device_serials``, a number JSON
            cannot carry (NaN, infinity, outside 64 bits) or a value nested too deep.
    """
    if not isinstance(commands, Mapping):
        raise TypeError(f"commands must be a mapping of name -> value, got {_type_name(commands)}")
    if not commands:
        raise ValueError("commands must contain at least one command")
    out: dict[str, Any] = {}
    for name, value in commands.items():
        if not isinstance(name, str):
            raise TypeError(f"command names must be strings, got {_type_name(name)}")
        if not name:
            raise ValueError("command names must not be empty")
        if name == "device_serials":
            raise ValueError("'device_serials' is reserved and cannot be a command name")
        _check_json_value(value, name)
        out[name] = value
    return out


def validate_positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {_type_name(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def validate_page_size(page_size: object, *, maximum: int = 10_000) -> int:
    """Items per page: an int between 1 and ``maximum``.

    ``0`` is refused although the server accepts it (it silently falls back to its own default,
    so pages would not have the size the paginator expects).
    """
    value = validate_positive_int("page_size", page_size)
    if value > maximum:
        raise ValueError(f"page_size must be <= {maximum}, got {value}")
    return value


def validate_limit(limit: object) -> int:
    """A time-series ``limit`` (points per device/measure pair): an int ``>= 1``.

    ``None`` is refused: the server answers an explicit ``null`` with an error; leave the
    option unset instead to get the server default (100).
    """
    if limit is None:
        raise ValueError("limit must be an int >= 1; leave it unset for the server default")
    return validate_positive_int("limit", limit)


def validate_urn(urn: object) -> str:
    """A non-empty entity URN without whitespace or control characters."""
    if not isinstance(urn, str):
        raise TypeError(f"urn must be a string, got {_type_name(urn)}")
    if not urn:
        raise ValueError("urn must not be empty")
    if any(ch.isspace() or ord(ch) < 32 for ch in urn):
        raise ValueError(f"urn must not contain whitespace or control characters: {urn!r}")
    return urn


def quote_urn(urn: str) -> str:
    """The URN as one path segment: percent-encoded, keeping ``:`` (legal in a segment)."""
    return quote(urn, safe=":")


def join_list_filter(values: Iterable[str] | str, *, name: str = "values") -> str:
    """Comma-join filter values for the parameters the server splits on ``,``.

    A single string is taken as one value. Raises ``ValueError`` for an empty list, an empty
    item or an item containing a comma, ``TypeError`` for non-string items.
    """
    items = [values] if isinstance(values, str) else list(values)
    if not items:
        raise ValueError(f"{name} must not be empty")
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} items must be strings, got {_type_name(item)}")
        if not item:
            raise ValueError(f"{name} items must not be empty")
        if "," in item:
            raise ValueError(
                f"{name} items must not contain ',' (the server splits on it): {item!r}"
            )
    return ",".join(items)


def query_bool(value: bool) -> str:
    """A boolean query parameter as the server reads it: ``"1"`` or ``"0"``.

    The server casts query strings loosely, so ``"false"`` would count as true.
    """
    if not isinstance(value, bool):
        raise TypeError(f"expected a bool, got {_type_name(value)}")
    return "1" if value else "0"


def validate_tenant_scope(tenant: str | None, scope: str | None) -> None:
    """``scope`` needs ``tenant`` (the server rejects a scope without a tenant); both strings."""
    for name, value in (("tenant", tenant), ("scope", scope)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {_type_name(value)}")
        if value is not None and not value:
            raise ValueError(f"{name} must not be empty")
    if scope is not None and tenant is None:
        raise ValueError("scope requires a tenant")


def validate_aggregation_type(type_: object) -> str:
    """``mean``, ``moving_avg``, ``sum``, ``min``, ``max`` or ``percentile-N`` (0 < N <= 100)."""
    if not isinstance(type_, str):
        raise TypeError(f"aggregation type must be a string, got {_type_name(type_)}")
    if type_ in AGGREGATION_TYPES:
        return type_
    match = _PERCENTILE.fullmatch(type_)
    if match is not None:
        n = int(match.group(1))
        if 0 < n <= 100:
            return type_
        raise ValueError(f"percentile must be between 1 and 100, got {n}")
    raise ValueError(
        f"unknown aggregation type {type_!r}; expected one of "
        f"{', '.join(AGGREGATION_TYPES)} or percentile-N"
    )


def validate_aggregation_interval(interval: object) -> str:
    """A positive ISO 8601 duration without years/months (``PT1H``, ``P1D``, ``PT15M``).

    A ``timedelta`` is converted to that form.
    """
    if isinstance(interval, timedelta):
        return format_duration(interval)
    if not isinstance(interval, str):
        raise TypeError(
            f"aggregation interval must be an ISO 8601 duration string or timedelta, "
            f"got {_type_name(interval)}"
        )
    match = _DURATION.fullmatch(interval)
    if match is None or interval in ("P", "PT") or interval.endswith("T"):
        raise ValueError(
            f"aggregation interval must be an ISO 8601 duration without years or months "
            f"(e.g. PT15M, PT1H, P1D), got {interval!r}"
        )
    total = 0.0
    for part, factor in (
        ("weeks", 604800.0), ("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0),
        ("seconds", 1.0),
    ):
        text = match.group(part)
        if text:
            total += float(text.replace(",", ".")) * factor
    if total <= 0:
        raise ValueError(f"aggregation interval must be longer than zero, got {interval!r}")
    return interval


def validate_aggregation(type_: object, interval: object) -> tuple[str, str]:
    """Both parts of a time-series aggregation, normalised (see the two validators)."""
    return validate_aggregation_type(type_), validate_aggregation_interval(interval)
