"""Inputs of a bulk command job: serials files, ``--set`` assignments and the dry-run plan."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .._validation import validate_commands
from ._errors import CliError

__all__ = [
    "JobPlan",
    "SerialsSource",
    "open_serials",
    "parse_assignments",
    "parse_value",
    "plan_job",
]

RESERVED_COMMAND_NAMES = frozenset({"device_serials"})


_NON_FINITE_WORDS = frozenset({"nan", "inf", "infinity"})
_JSON_WORDS = {"true": "true", "false": "false", "null": "null", "none": "null"}
"""JSON literals by the spellings meant for them: ``True``, ``FALSE`` or ``None`` (as Python
writes them) are mistakes for ``true``, ``false`` and ``null``, not strings to send (``none``
in lower case is a plausible string and is sent as one)."""
_JSON_OPENERS = ("{", "[", '"')
"""How a value meant as a JSON object, list or string starts: one that does not parse is a
mistake, not a string to send."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _finite(value: Any) -> bool:
    """Whether ``value`` (parsed JSON) holds finite numbers only, at any depth."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    return True


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (``true``, ``300``, ``"300"``, ``[1,2]``),
    otherwise the text itself.

    Raises:
        CliError: a number JSON cannot carry (``NaN``, ``inf``, ``1e999``), also inside a list
            or an object; a bare ``nan``/``inf``/``infinity`` (a string needs quotes); or a
            value that starts like a JSON object, list or string (``{``, ``[``, ``"``) but
            does not parse; or ``True``, ``False``, ``None`` and other spellings of JSON's
            ``true``, ``false`` and ``null`` not in lower case.
    """
    literal = _JSON_WORDS.get(text.strip().lower())
    if literal is not None and text.strip() != literal and text.strip() != "none":
        raise CliError(
            f"{text!r} would be sent as the string {json.dumps(text)}; JSON writes "
            f"{literal} in lower case; to send the string, quote it: '{json.dumps(text)}'"
        )
    if text.strip().lstrip("+-").lower() in _NON_FINITE_WORDS:
        raise CliError(
            f"{text!r} is not a finite number, and JSON cannot carry it; "
            f"to send it as a string, quote it: '\"{text}\"'"
        )
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        if exc.args and exc.args[0] in ("NaN", "Infinity", "-Infinity"):
            raise CliError(f"{text!r} holds {exc.args[0]}, which JSON cannot carry") from None
        if text.strip().startswith(_JSON_OPENERS):
            reason = (
                f"{exc.msg} at character {exc.pos + 1}"
                if isinstance(exc, json.JSONDecodeError)
                else str(exc)
            )
            raise CliError(
                f"{text!r} is not valid JSON ({reason}); correct it, or to send the text "
                f"as a string, give it as a JSON string: '{json.dumps(text)}'"
            ) from None
        return text
    if not _finite(value):
        raise CliError(f"{text!r} holds a number too large for JSON (it would become inf)")
    return value


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``["w_ota=true", "period=300"]`` -> ``{"w_ota": True, "period": 300}``.

    The result has passed the bulk engine's validation of command values.

    Raises:
        CliError: an item without ``=``, an empty or reserved name, a name given twice, or a
            value the bulk engine refuses (``NaN``, ``inf``, a number out of range …).
    """
    commands: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CliError(f"--set expects NAME=VALUE, got {item!r}")
        if name in RESERVED_COMMAND_NAMES:
            raise CliError(f"--set {name}: {name!r} is not a command name")
        if name in commands:
            raise CliError(f"--set {name} given twice")
        try:
            commands[name] = parse_value(raw)
        except CliError as exc:
            raise CliError(f"--set {name}: {exc.message}") from None
    if not commands:
        raise CliError("give at least one command with --set NAME=VALUE")
    try:
        return validate_commands(commands)
    except (TypeError, ValueError) as exc:
        raise CliError(f"--set: {exc}") from None


_BOM = "\ufeff"


_RECORD_MARKS = (",", ";", "\t", "{", "}", '"')
"""Characters no serial holds, but CSV rows and JSON records (a ``devices list`` output given
as the serials file) do."""


def _check_serial(serial: str, source: str) -> None:
    """Refuse a line of ``source`` that is a record rather than a serial.

    Raises:
        CliError: the line holds a character of :data:`_RECORD_MARKS`.
    """
    if not any(mark in serial for mark in _RECORD_MARKS):
        return
    what = "a JSON record" if serial.startswith("{") else "a row of several columns"
    shown = serial if len(serial) <= 60 else serial[:60] + "…"
    raise CliError(
        f"{source} holds {what}, not a serial: {shown!r}; it needs one serial per line, "
        "e.g. from: iris360 devices list --serials-only > serials.txt"
    )


def _clean(lines: Iterable[str]) -> Iterator[str]:
    """Serials of ``lines``: stripped, without blank lines, ``#`` comments and a UTF-8 byte
    order mark at the start (Windows editors write one)."""
    first = True
    for line in lines:
        if first:
            line = line.removeprefix(_BOM)
            first = False
        serial = line.strip()
        if serial and not serial.startswith("#"):
            yield serial


@dataclass
class SerialsSource:
    """The serials of a job, re-iterable, with their number known in advance.

    A file is read twice (once to count, once while sending) and never held in memory;
    standard input is read once into a list.
    """

    name: str
    total: int
    _path: Path | None = None
    _items: list[str] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._items is not None:
            yield from self._items
            return
        assert self._path is not None
        with self._path.open(encoding="utf-8") as handle:
            yield from _clean(handle)


def open_serials(path: str, stdin: TextIO) -> SerialsSource:
    """The serials of ``path`` (one per line; blank lines and ``#`` comments ignored), or of
    standard input when ``path`` is ``-``.

    Raises:
        CliError: the file cannot be read, or holds CSV rows or JSON records instead of
            serials.
    """
    if path == "-":
        items = list(_clean(stdin))
        for serial in items:
            _check_serial(serial, "standard input")
        return SerialsSource(name="<stdin>", total=len(items), _items=items)
    file = Path(path)
    total = 0
    try:
        with file.open(encoding="utf-8") as handle:
            for serial in _clean(handle):
                _check_serial(serial, f"serials file {path}")
                total += 1
    except OSError as exc:
        raise CliError(f"cannot read serials file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"serials file {path} is not UTF-8 text") from None
    return SerialsSource(name=path, total=total, _path=file)


@dataclass(frozen=True)
class JobPlan:
    """What a job would do (``--dry-run``)."""

    serials: int
    duplicates: int
    already_settled: int
    to_send: int
    chunk_size: int
    concurrency: int | str
    requests: int
    estimated_seconds: float
    commands: dict[str, Any]
    first_duplicates: tuple[str, ...]

    def as_record(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "serials": self.serials,
            "duplicates": self.duplicates,
            "already_settled": self.already_settled,
            "to_send": self.to_send,
            "commands": self.commands,
            "chunk_size": self.chunk_size,
            "chunks": self.requests,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "estimated_seconds": round(self.estimated_seconds, 1),
            "first_duplicates": list(self.first_duplicates),
        }


def plan_job(
    serials: Iterable[str],
    commands: dict[str, Any],
    *,
    chunk_size: int,
    concurrency: int | str,
    settled: frozenset[str] = frozenset(),
    request_seconds: float = 0.25,
    device_seconds: float = 0.02,
) -> JobPlan:
    """Count what a job would send, without sending anything.

    The estimate assumes each request costs ``request_seconds`` plus ``device_seconds`` per
    serial on the server (which processes the serials of one request one after another), and
    that ``concurrency`` requests run side by side (``"auto"``: estimated as 16, the
    server decides).
    """
    seen: set[str] = set()
    total = duplicates = already = 0
    first_dups: list[str] = []
    for serial in serials:
        total += 1
        if serial in seen:
            duplicates += 1
            if len(first_dups) < 10:
                first_dups.append(serial)
            continue
        seen.add(serial)
        if serial in settled:
            already += 1
    to_send = len(seen) - already
    requests = math.ceil(to_send / chunk_size) if to_send else 0
    full_waves, rest = divmod(requests, concurrency if isinstance(concurrency, int) else 16)
    per_request = request_seconds + chunk_size * device_seconds
    estimated = full_waves * per_request
    if rest:
        estimated += per_request
    if requests and to_send < chunk_size:
        estimated = request_seconds + to_send * device_seconds
    return JobPlan(
        serials=total,
        duplicates=duplicates,
        already_settled=already,
        to_send=to_send,
        chunk_size=chunk_size,
        concurrency=concurrency,
        requests=requests,
        estimated_seconds=estimated,
        commands=commands,
        first_duplicates=tuple(first_dups),
    )
