"""The bulk job journal: a JSON-lines file that makes a killed job resumable.

Layout (one JSON object per line, UTF-8)::

    {"journal": "iris360-bulk", "version": 1, "commands_sha256": "…", "commands": […], "ts": …}
    {"inflight": ["SN1", "SN2"], "chunk": 0, "ts": …}
    {"serial": "SN1", "status": "sent", "detail": null, "ts": …}
    {"serial": "SN2", "status": "rejected", "detail": "You cannot send any of: w_ota", "ts": …}

* The header names a hash of the commands; resuming with different commands raises
  :class:`ValueError` unless forced.
* An ``inflight`` line is written and flushed **before** a chunk's request is sent. A serial
  whose last line is ``inflight`` (the job died while its request was on the wire) is read back
  as ``unknown``: the device may have the command, so it is not sent again unless asked.
* One result line per settled serial, flushed once per chunk (``fsync`` optional).
* A ``failed`` serial whose detail starts with ``"not sent:"`` (the request provably never
  reached the device: no connection, authentication failed, refused by validation, rate
  limited after retries) is not settled: a resumed job sends it.
* A truncated last line (the process was killed mid-write) is ignored and cut off before new
  lines are appended. The last line about a serial wins.

``ts`` is wall-clock time in seconds since the Unix epoch.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import msgspec

from .models.bulk import CommandOutcome, CommandStatus

__all__ = ["INFLIGHT", "NOT_SENT_PREFIX", "Journal", "commands_digest", "read_previous"]

NOT_SENT_PREFIX = "not sent:"
"""Start of the detail of a ``failed`` outcome whose request provably never reached a device
(connection never established, authentication failed, refused by validation, rate limited)."""

INFLIGHT = "inflight"
"""State of a serial whose request was sent but whose result never reached the journal."""

_MAGIC = "iris360-bulk"
_VERSION = 1
_SETTLED = frozenset(s.value for s in CommandStatus if s is not CommandStatus.SKIPPED)


def commands_digest(commands: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the commands, canonically encoded (keys sorted)."""
    encoded = msgspec.json.encode(commands, order="sorted")
    return hashlib.sha256(encoded).hexdigest()


class _Header(msgspec.Struct):
    journal: str
    version: int
    commands_sha256: str


class Journal:
    """An open journal file. Create with :meth:`open`; close with :meth:`close`.

    Attributes:
        path: the file.
        previous: what earlier runs recorded: serial -> ``"sent"``/``"rejected"``/``"failed"``/
            ``"unknown"`` or :data:`INFLIGHT`.
        fsync: whether every flush is followed by :func:`os.fsync`.
    """

    def __init__(
        self,
        path: Path,
        fh: IO[bytes],
        previous: dict[str, str],
        *,
        fsync: bool,
        wall: Callable[[], float],
    ) -> None:
        self.path = path
        self.previous = previous
        self.fsync = fsync
        self._fh: IO[bytes] | None = fh
        self._wall = wall
        self._encode = msgspec.json.Encoder().encode

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        commands: Mapping[str, Any],
        *,
        force: bool = False,
        fsync: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> Journal:
        """Open (or create) the journal at ``path`` for a job sending ``commands``.

        Raises:
            ValueError: the journal belongs to a job with different commands (and ``force`` is
                false), or the file is not a bulk journal.
        """
        p = Path(path)
        digest = commands_digest(commands)
        previous: dict[str, str] = {}
        header_ok = False
        keep = 0
        if p.exists():
            data = p.read_bytes()
            keep = data.rfind(b"\n") + 1  # a truncated last line is dropped
            header_ok = _load(p, data[:keep], digest, force, previous)
        fh = p.open("r+b" if p.exists() else "wb")
        try:
            fh.truncate(keep)
            fh.seek(keep)
            journal = cls(p, fh, previous, fsync=fsync, wall=wall)
            if not header_ok:
                journal._write_line(
                    {
                        "journal": _MAGIC,
                        "version": _VERSION,
                        "commands_sha256": digest,
                        "commands": sorted(commands),
                        "ts": wall(),
                    }
                )
                journal.flush()
        except BaseException:
            fh.close()
            raise
        return journal

    def _write_line(self, obj: Any) -> None:
        if self._fh is None:
            raise ValueError("the journal is closed")
        self._fh.write(self._encode(obj) + b"\n")

    def write_inflight(self, chunk: int, serials: Iterable[str]) -> None:
        """Record that ``serials`` are about to be sent (call :meth:`flush` before sending)."""
        self._write_line({"inflight": list(serials), "chunk": chunk, "ts": self._wall()})

    def write_outcomes(self, outcomes: Iterable[CommandOutcome]) -> None:
        """Record settled serials (``skipped`` ones are not journal entries and are ignored)."""
        ts = self._wall()
        for o in outcomes:
            if o.status is CommandStatus.SKIPPED:
                continue
            self._write_line(
                {"serial": o.serial, "status": o.status.value, "detail": o.detail, "ts": ts}
            )

    def write_sent(self, serials: Iterable[str]) -> None:
        """Record that every one of ``serials`` ended ``sent``."""
        ts = self._wall()
        for serial in serials:
            self._write_line({"serial": serial, "status": "sent", "detail": None, "ts": ts})

    def flush(self) -> None:
        """Push written lines to the operating system (and to disk when ``fsync``)."""
        if self._fh is None:
            return
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if self._fh is None:
            return
        try:
            self.flush()
        finally:
            self._fh.close()
            self._fh = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._fh is None


def read_previous(
    path: str | os.PathLike[str], commands: Mapping[str, Any], *, force: bool = False
) -> dict[str, str]:
    """What the journal at ``path`` settled (serial -> status or :data:`INFLIGHT`), read only.

    A missing or empty file settled nothing; a truncated last line is ignored.

    Raises:
        ValueError: not a bulk journal, or written for other commands (unless ``force``).
    """
    p = Path(path)
    previous: dict[str, str] = {}
    if p.exists():
        data = p.read_bytes()
        _load(p, data[: data.rfind(b"\n") + 1], commands_digest(commands), force, previous)
    return previous


def _load(path: Path, data: bytes, digest: str, force: bool, previous: dict[str, str]) -> bool:
    """Parse complete journal lines into ``previous``; return whether a header was found."""
    decoder = msgspec.json.Decoder()
    lines = data.split(b"\n")
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first >= len(lines):
        return False
    try:
        header = msgspec.json.decode(lines[first], type=_Header)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{path} is not a bulk command journal") from exc
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path} is not a bulk command journal") from exc
    if header.journal != _MAGIC:
        raise ValueError(f"{path} is not a bulk command journal")
    if header.version != _VERSION:
        raise ValueError(f"{path} has journal version {header.version}; expected {_VERSION}")
    if header.commands_sha256 != digest and not force:
        raise ValueError(
            f"{path} was written by a job with different commands; use a new journal or "
            "force=True to resume anyway"
        )
    for line in lines[first + 1 :]:
        if not line.strip():
            continue
        try:
            rec = decoder.decode(line)
        except msgspec.DecodeError:
            continue  # a damaged line: ignore it, later lines still count
        if not isinstance(rec, dict):
            continue
        inflight = rec.get("inflight")
        if isinstance(inflight, list):
            for serial in inflight:
                if isinstance(serial, str):
                    previous[serial] = INFLIGHT
            continue
        serial = rec.get("serial")
        status = rec.get("status")
        if isinstance(serial, str) and isinstance(status, str) and status in _SETTLED:
            detail = rec.get("detail")
            if (
                status == "failed"
                and isinstance(detail, str)
                and detail.startswith(NOT_SENT_PREFIX)
            ):
                # the server provably did not act: nothing to protect, send it on resume
                previous.pop(serial, None)
            else:
                previous[serial] = status
    return True
