"""The options of a bulk job: one frozen dataclass, validated once, defined once.

``send_commands`` and ``stream_commands`` spell every option out in their signatures (so that
``help()`` and IDEs show them) and build a :class:`JobOptions` from them; a test keeps those
signatures and this class in step.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from ..models.bulk import CommandReport, CommandStatus, ProgressStats

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "MAX_CONCURRENCY",
    "CancelCallback",
    "Concurrency",
    "JobOptions",
    "ProgressCallback",
    "resend_statuses",
]

ProgressCallback = Callable[[ProgressStats], Awaitable[None] | None]
"""``on_progress(stats)``, sync or async."""

CancelCallback = Callable[[CommandReport], None]
"""``on_cancel(report)``: the partial report of a cancelled job."""

MAX_CONCURRENCY = 1024
"""The ceiling of ``concurrency`` and ``max_concurrency`` (requests in flight, one worker
each)."""

DEFAULT_MAX_CONCURRENCY = 64
"""The default bound of ``concurrency="auto"`` (``max_concurrency``)."""

Concurrency = int | Literal["auto"]
"""Requests in flight: a fixed number, or ``"auto"`` (paced to the server)."""

_RESENDABLE_NAMES = frozenset({"rejected", "failed", "unknown"})
_RESEND_HELP = (
    "resend takes 'rejected', 'failed' and/or 'unknown': one status, a comma-separated "
    "string ('failed,unknown') or a list of them"
)


def resend_statuses(resend: Collection[CommandStatus | str] | str | None) -> frozenset[str]:
    """The journal statuses ``resend`` names: a status, a comma-separated string
    (``"failed,unknown"``), or a collection of statuses; ``None`` or empty: none.

    Raises:
        TypeError: not a string or a collection of strings.
        ValueError: a name that is not ``rejected``, ``failed`` or ``unknown``.
    """
    if resend is None:
        return frozenset()
    if isinstance(resend, str):
        items: list[object] = [part.strip() for part in resend.split(",") if part.strip()]
    elif isinstance(resend, (bytes, bytearray)) or not isinstance(resend, Iterable):
        raise TypeError(f"{_RESEND_HELP}; got {type(resend).__name__}")
    else:
        items = list(resend)
    out: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{_RESEND_HELP}; got {type(item).__name__} {item!r}")
        name = item.value if isinstance(item, CommandStatus) else item.strip().lower()
        if name not in _RESENDABLE_NAMES:
            never = " (a sent serial is never sent again)" if name == "sent" else ""
            raise ValueError(f"{_RESEND_HELP}; got {item!r}{never}")
        out.add(name)
    return frozenset(out)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")


@dataclass(frozen=True)
class JobOptions:
    """The options of one bulk job (the rules behind them: docs/bulk.md).

    Attributes:
        chunk_size: serials per request (>= 1).
        concurrency: requests in flight at most (1 to :data:`MAX_CONCURRENCY`, 1024), or
            ``"auto"``: as many as the server answers without queueing them (an adaptive limit,
            see docs/bulk.md "Pacing"), at most ``max_concurrency``. A job never starts more
            workers than it has chunks.
        max_concurrency: the ceiling of ``concurrency="auto"`` (1 to 1024, default 64);
            ignored under a fixed ``concurrency``.
        max_body_bytes: also cut chunks so the JSON body stays within this many bytes; a
            serial too long to fit alone ends ``failed`` (``not sent:``, resumable).
        max_rate: at most this many requests started per second; ``None``: no limit.
        retry_unknown: re-send a chunk that ended wholly ``unknown`` after a timeout, lost
            connection, 5xx or unreadable answer up to this many times (only for commands
            safe to apply twice). 0: never.
        retry_backoff: base of the exponential backoff between those re-sends, seconds (full
            jitter, capped at 30 s).
        deadline: seconds after the start when the job stops reading input and dispatching.
        deadline_grace: seconds in-flight requests may still settle after the deadline before
            they are cancelled (and end ``unknown``); ``None``: let them finish.
        max_failures: stop the job (in-flight requests settle) once this many serials ended
            ``rejected``/``failed``/``unknown``; ``None``: never stop early.
        dedupe: skip repeated serials (exact, a ``set`` of the serials). Turn off only for
            inputs known to be unique.
        journal: path of a JSON-lines journal that makes the job resumable without sending
            any command twice.
        resend: journal statuses sent again on resume, among ``"rejected"``, ``"failed"``,
            ``"unknown"``: one status, a comma-separated string or a collection (stored as a
            ``frozenset`` of names). Never ``sent``.
        journal_force: resume a journal written for other commands, another server, tenant or
            scope, or a version-1 journal.
        journal_fsync: ``os.fsync`` the journal at every flush.
        on_progress: ``callback(ProgressStats)``, sync or async, at most every
            ``progress_interval`` seconds and once when the job ends. An exception from it
            stops the job and is raised.
        progress_interval: seconds between progress calls.
        on_cancel: ``callback(report)`` with the partial report when the job is cancelled.
        total: how many serials the input holds, when it is not a list or tuple (a file, a
            generator): progress then shows ``total`` and an ``eta``.

    Raises:
        TypeError, ValueError: an option out of range (at construction).
    """

    chunk_size: int = 100
    concurrency: Concurrency = "auto"
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_body_bytes: int | None = None
    max_rate: float | None = None
    retry_unknown: int = 0
    retry_backoff: float = 1.0
    deadline: float | None = None
    deadline_grace: float | None = 0.0
    max_failures: int | None = None
    dedupe: bool = True
    journal: str | os.PathLike[str] | None = None
    resend: Collection[CommandStatus | str] | str | None = ()
    journal_force: bool = False
    journal_fsync: bool = False
    on_progress: ProgressCallback | None = None
    progress_interval: float = 0.1
    on_cancel: CancelCallback | None = None
    total: int | None = None

    def __post_init__(self) -> None:
        _check_int("chunk_size", self.chunk_size, 1)
        if isinstance(self.concurrency, str):
            if self.concurrency != "auto":
                raise ValueError(
                    f"concurrency must be an int or 'auto', got {self.concurrency!r}"
                )
        else:
            _check_int("concurrency", self.concurrency, 1, MAX_CONCURRENCY)
        _check_int("max_concurrency", self.max_concurrency, 1, MAX_CONCURRENCY)
        _check_int("retry_unknown", self.retry_unknown, 0)
        if self.max_rate is not None and not self.max_rate > 0:
            raise ValueError("max_rate must be > 0 requests per second")
        for name in ("deadline", "deadline_grace"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0 seconds")
        if self.max_failures is not None and self.max_failures < 1:
            raise ValueError("max_failures must be >= 1")
        if self.progress_interval < 0:
            raise ValueError("progress_interval must be >= 0 seconds")
        if self.total is not None:
            _check_int("total", self.total, 0)
        object.__setattr__(self, "resend", resend_statuses(self.resend))

    @property
    def auto(self) -> bool:
        """Whether ``concurrency`` is ``"auto"``."""
        return self.concurrency == "auto"

    @property
    def workers(self) -> int:
        """Requests in flight at most: ``concurrency``, or ``max_concurrency`` under
        ``"auto"``."""
        concurrency = self.concurrency
        return self.max_concurrency if isinstance(concurrency, str) else concurrency

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> JobOptions:
        """The options named in ``arguments`` (a function's ``locals()``); other keys are
        ignored."""
        return cls(**{f.name: arguments[f.name] for f in fields(cls) if f.name in arguments})

    def check_body_room(self, base_bytes: int) -> None:
        """Refuse a ``max_body_bytes`` that leaves no room for a serial next to commands that
        take ``base_bytes``."""
        limit = self.max_body_bytes
        if limit is not None and limit < base_bytes + 3:
            raise ValueError(
                f"max_body_bytes={limit} leaves no room for a serial "
                f"(the commands alone take {base_bytes} bytes)"
            )
