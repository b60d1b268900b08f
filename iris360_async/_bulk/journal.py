"""The bulk job journal: a JSON-lines file that makes a killed job resumable.

Layout (one JSON object per line, UTF-8; ``ts`` is wall-clock seconds since the epoch)::

    {"journal": "iris360-bulk", "version": 2, "commands_sha256": "…", "commands": […],
     "base_url": "https://iris.example.com", "tenant": "libelium", "scope": "/", "ts": …}
    {"inflight": ["SN1", "SN2"], "chunk": 0, "ts": …}
    {"serial": "SN1", "status": "sent", "detail": null, "ts": …}
    {"serial": "SN2", "status": "sent", "detail": "confirmed from command state",
     "reconciled": "confirmed", "ts": …}

The header also carries the command ``values`` (so a journal alone says what to reconcile and
track). A line with ``reconciled`` is a verdict of reconciliation (:mod:`.reconcile`): it
settles the serial like any line, except ``"reconciled": "not_applied"``, which leaves the
serial to be sent again (the server provably did not act on it).

What the journal guarantees (its lock, its binding to commands, server, tenant and scope, the
``inflight`` lines, the ``not sent:`` rule, truncated last lines) is written down once, in
docs/bulk.md ("Journal and resume").
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from ..models.bulk import FAILURE_STATUSES, CommandOutcome, CommandStatus

__all__ = [
    "INFLIGHT",
    "NOT_APPLIED",
    "NOT_SENT_PREFIX",
    "Journal",
    "JournalLockedError",
    "JournalTarget",
    "commands_digest",
    "journal_commands",
    "normalize_base_url",
    "read_previous",
]

NOT_SENT_PREFIX = "not sent:"
"""Start of the detail of a ``failed`` outcome whose request provably never reached a device
(connection never established, no access token, refused by validation, rate limited)."""

INFLIGHT = "inflight"
"""State of a serial whose request was sent but whose result never reached the journal."""

INFLIGHT_DETAIL = "in flight when a previous run stopped"

NOT_APPLIED = "not_applied"
"""The ``reconciled`` verdict that leaves a serial to be sent again."""
"""The earlier detail of an :data:`INFLIGHT` serial (it counts as ``unknown``)."""

_MAGIC = "iris360-bulk"
_VERSION = 2
_FORCE_HINT = "journal_force=True (--journal-force on the command line)"
_SETTLED = frozenset(s.value for s in CommandStatus if s is not CommandStatus.SKIPPED)
_KEEP_DETAIL = frozenset(s.value for s in FAILURE_STATUSES)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class JournalLockedError(ValueError):
    """Another job (in this process or another one) holds the journal's lock.

    Raised before anything is sent. A ``ValueError`` like the journal's other refusals
    (other commands, other server).

    Attributes:
        path: the journal file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        super().__init__(
            f"journal {self.path} is in use by another job (it is locked); wait for that job "
            "to end or use another journal"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path,))


def commands_digest(commands: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the commands, canonically encoded (keys sorted)."""
    encoded = msgspec.json.encode(commands, order="sorted")
    return hashlib.sha256(encoded).hexdigest()


def normalize_base_url(url: str) -> str:
    """``url`` as a journal records it: scheme and host lower-cased, the default port dropped,
    no credentials, query or fragment, no trailing slash (``HTTPS://u:p@Iris.example:443/x/``
    -> ``https://iris.example/x``)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    netloc = parts.netloc.rpartition("@")[2].lower()
    host = parts.hostname
    try:
        port = parts.port
    except ValueError:  # refused by the client anyway; keep what was written
        port = None
        host = None
    if host is not None:
        host = f"[{host}]" if ":" in host else host
        netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


class JournalTarget(msgspec.Struct, frozen=True):
    """The server, tenant and scope a journal is bound to (see :func:`normalize_base_url`).

    Build it with :meth:`of`; the devices resource passes the client's.
    """

    base_url: str | None = None
    tenant: str | None = None
    scope: str | None = None

    @classmethod
    def of(cls, base_url: str | None, tenant: str | None, scope: str | None) -> JournalTarget:
        """The target with ``base_url`` normalised."""
        return cls(normalize_base_url(base_url) if base_url else None, tenant, scope)


class _Header(msgspec.Struct):
    journal: str
    version: int
    commands_sha256: str
    base_url: str | None = None
    tenant: str | None = None
    scope: str | None = None
    values: dict[str, Any] | None = None


class _Previous:
    """What earlier runs recorded: statuses, details of rejected/failed/unknown lines, and the
    serials whose last line is a reconciliation verdict."""

    __slots__ = ("details", "not_applied", "reconciled", "states")

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.details: dict[str, str] = {}
        self.reconciled: set[str] = set()
        self.not_applied: set[str] = set()


# -- the lock --------------------------------------------------------------------------------

_HELD: set[tuple[int, int]] = set()  # (device, inode) of journals locked by this process


def _file_key(fh: IO[bytes]) -> tuple[int, int]:
    st = os.fstat(fh.fileno())
    return st.st_dev, st.st_ino


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _os_lock(fh: IO[bytes]) -> bool:
        fh.seek(0)
        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _os_unlock(fh: IO[bytes]) -> None:
        fh.seek(0)
        with contextlib.suppress(OSError):  # closing the handle releases it anyway
            msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _os_lock(fh: IO[bytes]) -> bool:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _os_unlock(fh: IO[bytes]) -> None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _lock(fh: IO[bytes], path: Path) -> tuple[int, int]:
    """Lock the open journal exclusively; its registry key. Raises JournalLockedError."""
    key = _file_key(fh)
    if key in _HELD or not _os_lock(fh):
        raise JournalLockedError(path)
    _HELD.add(key)
    return key


def _unlock(fh: IO[bytes], key: tuple[int, int]) -> None:
    _HELD.discard(key)
    _os_unlock(fh)


class Journal:
    """An open, locked journal file. Create with :meth:`open`; close with :meth:`close`
    (which releases the lock).

    Attributes:
        path: the file.
        previous: what earlier runs recorded: serial -> ``"sent"``/``"rejected"``/``"failed"``/
            ``"unknown"`` or :data:`INFLIGHT`.
        details: serial -> the recorded detail, for serials ``previous`` holds as
            ``rejected``/``failed``/``unknown`` (only these are kept in memory).
        reconciled: serials whose status comes from a reconciliation verdict.
        not_applied: serials whose last line is a ``not_applied`` verdict (to be sent again;
            not in ``previous``).
        fsync: whether every flush is followed by :func:`os.fsync`.
    """

    def __init__(
        self,
        path: Path,
        fh: IO[bytes],
        previous: _Previous,
        *,
        fsync: bool,
        wall: Callable[[], float],
        lock_key: tuple[int, int] | None = None,
    ) -> None:
        self.path = path
        self.previous = previous.states
        self.details = previous.details
        self.reconciled = previous.reconciled
        self.not_applied = previous.not_applied
        self.fsync = fsync
        self._fh: IO[bytes] | None = fh
        self._wall = wall
        self._lock_key = lock_key
        self._encode = msgspec.json.Encoder().encode

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        commands: Mapping[str, Any],
        *,
        target: JournalTarget | None = None,
        force: bool = False,
        fsync: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> Journal:
        """Open (or create) and lock the journal at ``path`` for a job sending ``commands``
        to ``target`` (server, tenant, scope; ``None``: none recorded).

        Raises:
            JournalLockedError: another job holds the journal.
            ValueError: the journal belongs to a job with other commands or another target,
                or is a version-1 journal (unless ``force``), or the file is not a journal.
        """
        p = Path(path)
        target = target if target is not None else JournalTarget()
        digest = commands_digest(commands)
        fh = os.fdopen(os.open(p, os.O_RDWR | os.O_CREAT, 0o666), "r+b")
        key: tuple[int, int] | None = None
        try:
            key = _lock(fh, p)
            data = fh.read()
            keep = data.rfind(b"\n") + 1  # a truncated last line is dropped
            previous = _Previous()
            header_ok = _load(p, data[:keep], digest, target, force, previous)
            fh.truncate(keep)
            fh.seek(keep)
            journal = cls(p, fh, previous, fsync=fsync, wall=wall, lock_key=key)
            if not header_ok:
                journal._write_line(
                    {
                        "journal": _MAGIC,
                        "version": _VERSION,
                        "commands_sha256": digest,
                        "commands": sorted(commands),
                        "base_url": target.base_url,
                        "tenant": target.tenant,
                        "scope": target.scope,
                        "values": dict(commands),
                        "ts": wall(),
                    }
                )
                journal.flush()
        except BaseException:
            if key is not None:
                _unlock(fh, key)
            fh.close()
            raise
        return journal

    def _write_line(self, obj: Any) -> None:
        if self._fh is None:
            raise ValueError("the journal is closed")
        self._fh.write(self._encode(obj) + b"\n")

    def write_inflight(self, chunk: int, serials: Iterable[str]) -> None:
        """Record that ``serials`` are about to be sent (call :meth:`flush` before sending)."""
        listed = list(serials)
        self.not_applied.difference_update(listed)
        self._write_line({"inflight": listed, "chunk": chunk, "ts": self._wall()})

    def write_outcomes(self, outcomes: Iterable[CommandOutcome]) -> None:
        """Record settled serials (``skipped`` ones are not journal entries and are ignored)."""
        ts = self._wall()
        for o in outcomes:
            if o.status is CommandStatus.SKIPPED:
                continue
            self.not_applied.discard(o.serial)
            self._write_line(
                {"serial": o.serial, "status": o.status.value, "detail": o.detail, "ts": ts}
            )

    def write_verdict(
        self, serial: str, verdict: str, status: CommandStatus, detail: str | None
    ) -> None:
        """Record a reconciliation verdict (``confirmed``, ``not_applied``, ``mixed``,
        ``unreadable``) for ``serial`` with the status it leaves (``sent`` or ``unknown``).

        The in-memory state follows, as a reopened journal would read it: a ``not_applied``
        serial is no longer settled (it may be sent again in this job or on resume).
        """
        self._write_line({"serial": serial, "status": status.value, "detail": detail,
                          "reconciled": verdict, "ts": self._wall()})
        self.details.pop(serial, None)
        if verdict == NOT_APPLIED:
            self.previous.pop(serial, None)
            self.reconciled.discard(serial)
            self.not_applied.add(serial)
            return
        self.not_applied.discard(serial)
        self.previous[serial] = status.value
        self.reconciled.add(serial)
        if status in FAILURE_STATUSES and detail is not None:
            self.details[serial] = detail

    def earlier(self, serial: str) -> tuple[CommandStatus, str | None] | None:
        """How an earlier run left ``serial`` (an :data:`INFLIGHT` one counts as ``unknown``),
        with its recorded detail; ``None`` when no earlier run settled it."""
        state = self.previous.get(serial)
        if state is None:
            return None
        if state == INFLIGHT:
            return CommandStatus.UNKNOWN, INFLIGHT_DETAIL
        return CommandStatus(state), self.details.get(serial)

    def flush(self) -> None:
        """Push written lines to the operating system (and to disk when ``fsync``)."""
        if self._fh is None:
            return
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Flush, unlock and close the file (idempotent)."""
        fh = self._fh
        if fh is None:
            return
        try:
            self.flush()
        finally:
            self._fh = None
            try:
                if self._lock_key is not None:
                    _unlock(fh, self._lock_key)
            finally:
                fh.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._fh is None


def read_previous(
    path: str | os.PathLike[str],
    commands: Mapping[str, Any],
    *,
    target: JournalTarget | None = None,
    force: bool = False,
) -> dict[str, str]:
    """What the journal at ``path`` settled (serial -> status or :data:`INFLIGHT`), read only
    and without taking the lock (a preview: a running job may still add lines).

    A missing or empty file settled nothing; a truncated last line is ignored. ``target``,
    when given, must match the journal's (``None``: not checked).

    Raises:
        ValueError: not a bulk journal, or written for other commands or another target,
            or a version-1 journal (unless ``force``).
    """
    p = Path(path)
    previous = _Previous()
    if p.exists():
        data = p.read_bytes()
        _load(
            p, data[: data.rfind(b"\n") + 1], commands_digest(commands), target, force, previous
        )
    return previous.states


def journal_commands(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The commands (``name -> value``) recorded in the header of the journal at ``path``;
    ``None`` for a journal written before headers carried the values.

    Raises:
        ValueError: the file is missing, empty or not a bulk journal.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            first = fh.readline()
    except FileNotFoundError:
        raise ValueError(f"{p} does not exist") from None
    if not first.strip():
        raise ValueError(f"{p} is empty: not a bulk command journal")
    try:
        header = msgspec.json.decode(first, type=_Header)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"{p} is not a bulk command journal") from exc
    if header.journal != _MAGIC:
        raise ValueError(f"{p} is not a bulk command journal")
    if header.values is None or commands_digest(header.values) != header.commands_sha256:
        return None
    return header.values


def _check_header(
    path: Path, header: _Header, digest: str, target: JournalTarget | None, force: bool
) -> None:
    """Refuse a journal of another job (unless ``force``), naming what differs."""
    if header.journal != _MAGIC:
        raise ValueError(f"{path} is not a bulk command journal")
    if header.version not in (1, _VERSION):
        raise ValueError(
            f"{path} has journal version {header.version}; this release reads versions 1 "
            f"and {_VERSION}"
        )
    if force:
        return
    if header.version == 1:
        raise ValueError(
            f"{path} is a version-1 journal, which does not record the server, tenant and "
            f"scope it was written for; use a new journal, or {_FORCE_HINT} to resume it "
            "if it belongs to this server, tenant and scope"
        )
    if header.commands_sha256 != digest:
        raise ValueError(
            f"{path} was written by a job with different commands; use a new journal, or "
            f"{_FORCE_HINT} to resume it anyway"
        )
    if target is None:
        return
    for name in ("base_url", "tenant", "scope"):
        was, now = getattr(header, name), getattr(target, name)
        if was != now:
            raise ValueError(
                f"{path} was written for another {name.replace('_', ' ')} ({was!r}; this job: "
                f"{now!r}); use a new journal, or {_FORCE_HINT} to resume it anyway"
            )


def _load(
    path: Path,
    data: bytes,
    digest: str,
    target: JournalTarget | None,
    force: bool,
    previous: _Previous,
) -> bool:
    """Parse complete journal lines into ``previous``; return whether a header was found."""
    lines = data.split(b"\n")
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first >= len(lines):
        return False
    try:
        header = msgspec.json.decode(lines[first], type=_Header)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"{path} is not a bulk command journal") from exc
    _check_header(path, header, digest, target, force)
    _read_lines(lines[first + 1 :], previous)
    return True


def _read_lines(lines: list[bytes], previous: _Previous) -> None:
    decoder = msgspec.json.Decoder()
    states = previous.states
    details = previous.details
    reconciled = previous.reconciled
    not_applied = previous.not_applied
    for line in lines:
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
                    states[serial] = INFLIGHT
                    details.pop(serial, None)
                    reconciled.discard(serial)
                    not_applied.discard(serial)
            continue
        serial = rec.get("serial")
        status = rec.get("status")
        if not (isinstance(serial, str) and isinstance(status, str) and status in _SETTLED):
            continue
        detail = rec.get("detail")
        detail = detail if isinstance(detail, str) else None
        verdict = rec.get("reconciled")
        if verdict == NOT_APPLIED:
            not_applied.add(serial)
        else:
            not_applied.discard(serial)
        if verdict == NOT_APPLIED or (
            status == "failed" and detail is not None and detail.startswith(NOT_SENT_PREFIX)
        ):
            # the server provably did not act: nothing to protect, send it on resume
            states.pop(serial, None)
            details.pop(serial, None)
            reconciled.discard(serial)
            continue
        if isinstance(verdict, str):
            reconciled.add(serial)
        else:
            reconciled.discard(serial)
        states[serial] = status
        if status in _KEEP_DETAIL and detail is not None:
            details[serial] = detail
        else:
            details.pop(serial, None)
