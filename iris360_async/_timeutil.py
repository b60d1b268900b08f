"""Timestamp parsing and formatting shared by the models.

The API does not guarantee one timestamp format (API reference §7.14): the time-series service
emits ISO 8601 without an offset (meaning UTC), other endpoints return whatever the database
prints (``2025-01-01 10:00:00``). Decoding never fails on a timestamp: values that cannot be
read become ``None`` (or, for time-series points, :data:`UNPARSEABLE_TIMESTAMP`).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from msgspec.structs import force_setattr

__all__ = [
    "UNPARSEABLE_TIMESTAMP",
    "UTC",
    "LenientTimestamp",
    "fix_timestamps",
    "format_datetime",
    "format_duration",
    "parse_timestamp",
]

UTC = timezone.utc

UNPARSEABLE_TIMESTAMP = datetime.min.replace(tzinfo=UTC)
"""Stands in for a time-series point's timestamp the server sent in an unreadable form."""

if TYPE_CHECKING:
    LenientTimestamp = datetime
else:
    # msgspec sees ``Any`` and hands the raw JSON value to ``__post_init__``, which converts it
    # with :func:`parse_timestamp`; type checkers see ``datetime``.
    LenientTimestamp = Any

_FRACTION = re.compile(r"\.(\d+)")


def _normalise_fraction(match: re.Match[str]) -> str:
    digits = match.group(1)
    return "." + (digits + "000000")[:6]


def parse_timestamp(value: object) -> datetime | None:
    """A timezone-aware datetime from a JSON timestamp, or ``None`` when it cannot be read.

    Accepts ISO 8601 / RFC 3339 (``T`` or space separator, ``Z`` or an offset, any number of
    fraction digits), plain dates, ``datetime`` objects and numbers (seconds since the epoch).
    Values without an offset are UTC.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        candidate = text.replace("Z", "+00:00").replace("z", "+00:00")
        candidate = _FRACTION.sub(_normalise_fraction, candidate, count=1)
        try:
            parsed = datetime.fromisoformat(candidate)
        except ValueError:
            return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def fix_timestamps(obj: Any, names: tuple[str, ...]) -> None:
    """Replace the raw values of the timestamp fields ``names`` of a (frozen) struct in place."""
    for name in names:
        raw = getattr(obj, name)
        if raw is None or (isinstance(raw, datetime) and raw.tzinfo is not None):
            continue
        force_setattr(obj, name, parse_timestamp(raw))


def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix; naive datetimes are taken as UTC."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat() + "Z"


def format_duration(value: timedelta) -> str:
    """An ISO 8601 duration without years or months (``P1DT2H``, ``PT15M``, ``PT0.5S``).

    Raises:
        ValueError: if ``value`` is zero or negative.
    """
    if value <= timedelta(0):
        raise ValueError("a duration must be positive")
    days = value.days
    seconds = value.seconds
    micros = value.microseconds
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    out = "P"
    if days:
        out += f"{days}D"
    time_part = ""
    if hours:
        time_part += f"{hours}H"
    if minutes:
        time_part += f"{minutes}M"
    if seconds or micros:
        if micros:
            time_part += f"{seconds}.{micros:06d}".rstrip("0") + "S"
        else:
            time_part += f"{seconds}S"
    if time_part:
        out += "T" + time_part
    return out
