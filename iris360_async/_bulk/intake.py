"""The intake: owns a job's input and turns it into chunks.

One adapter reads iterables and async iterables alike; every item then goes through the same
rules, in this order: not a string -> ``failed`` (``not sent: invalid serial``); stripped,
blank -> ignored; repeated -> ``skipped`` (an exact ``set``); settled by an earlier run ->
``skipped`` (journal); too long for ``max_body_bytes`` -> ``failed`` (``not sent:``); else to
the planner. The rules themselves: docs/bulk.md ("Input").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import anyio
import anyio.lowlevel

from ..models.bulk import CommandOutcome, CommandReport, CommandStatus
from .classify import not_sent
from .journal import NOT_SENT_PREFIX, Journal
from .planner import ChunkPlanner

__all__ = ["Intake", "check_input"]

Emit = Callable[[list[CommandOutcome]], Awaitable[None]]
"""Where the intake hands the outcomes of items it settles itself (never sent)."""

_CHECKPOINT_EVERY = 1024  # items read without a chunk between two yields to the event loop
_DUPLICATE = "duplicate serial in input"
_strip = str.strip
_TOO_LONG = f"{NOT_SENT_PREFIX} invalid serial: too long to fit max_body_bytes"


def check_input(serials: object) -> None:
    """Refuse what cannot be a job's input (``TypeError``)."""
    if isinstance(serials, (str, bytes, bytearray)):
        raise TypeError("serials must be an iterable of serials, not a single string")
    if not isinstance(serials, (Iterable, AsyncIterable)):
        raise TypeError(f"serials must be iterable, got {type(serials).__name__}")


class _Source:
    """One adapter over an iterable or an async iterable: ``take(n)`` returns up to ``n`` items
    (an async iterable gives one at a time), ``[]`` at the end. The input is opened by the
    first ``take``, so an ``__iter__`` that raises fails the job like a later item would."""

    __slots__ = ("_ait", "_error", "_it", "_serials", "blocking")

    def __init__(self, serials: Iterable[Any] | AsyncIterable[Any]) -> None:
        self._serials = serials
        self._it: Iterator[Any] | None = None
        self._ait: AsyncIterator[Any] | None = None
        self._error: Exception | None = None
        self.blocking = isinstance(serials, AsyncIterable)
        """Whether reading may wait (an async iterable)."""

    async def take(self, n: int) -> list[Any]:
        if not self.blocking:
            return self.take_now(n)
        if self._error is not None:
            raise self._error
        if self._ait is None:
            serials = self._serials
            assert isinstance(serials, AsyncIterable)
            self._ait = serials.__aiter__()
        try:
            return [await self._ait.__anext__()]
        except StopAsyncIteration:
            return []

    def take_now(self, n: int) -> list[Any]:
        """``take`` for an iterable, which never waits."""
        if self._error is not None:
            raise self._error
        if self._it is None:
            serials = self._serials
            assert not isinstance(serials, AsyncIterable)
            self._it = iter(serials)
        batch: list[Any] = []
        try:
            batch.extend(islice(self._it, n))
        except Exception as exc:
            if not batch:
                raise
            self._error = exc  # the items before it are still read; raised on the next take
        return batch


class Intake:
    """Reads the input lazily, a chunk at a time, and settles the items it does not send.

    Args:
        serials: the job's input.
        planner: cuts the accepted serials into chunks (owned by the intake from now on).
        report: its ``total`` counts the items read (blank ones excepted).
        emit: receives the outcomes of items not sent (invalid, duplicate, settled in the
            journal), always before the chunk read after them is returned.
        dedupe: skip repeated serials.
        journal: the job's journal, whose settled serials are skipped.
        resend: the journal statuses sent again.
    """

    __slots__ = (
        "_chunks",
        "_emit",
        "_immediate",
        "_journal",
        "_lock",
        "_planner",
        "_ready",
        "_report",
        "_resend",
        "_scope",
        "_seen",
        "_source",
        "_stopped",
        "exhausted",
    )

    def __init__(
        self,
        serials: Iterable[Any] | AsyncIterable[Any],
        planner: ChunkPlanner,
        report: CommandReport,
        emit: Emit,
        *,
        dedupe: bool,
        journal: Journal | None,
        resend: frozenset[str],
    ) -> None:
        check_input(serials)
        self._source = _Source(serials)
        self._planner = planner
        self._report = report
        self._emit = emit
        self._seen: set[str] | None = set() if dedupe else None
        self._journal = journal if journal is not None and journal.previous else None
        self._resend = resend
        self._ready: deque[list[str]] = deque()
        self._immediate: list[CommandOutcome] = []
        self._scope: anyio.CancelScope | None = None
        self._stopped = False
        self._lock = asyncio.Lock()  # taken without yielding when free
        self._chunks = 0
        self.exhausted = False

    def stop(self) -> None:
        """Read no further; interrupt a read that is waiting."""
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()

    async def next_chunk(self) -> tuple[int, list[str]] | None:
        """The next chunk to send and its number (0, 1, ...); ``None`` at the end of the input
        or once stopped. One reader at a time: concurrent callers take turns.

        Raises:
            Exception: whatever the input raised (the items before it are accounted for).
        """
        async with self._lock:
            serials = await self._read_chunk()
            if serials is None:
                return None
            self._chunks += 1
            return self._chunks - 1, serials

    async def _read_chunk(self) -> list[str] | None:
        idle = 0
        planner = self._planner
        source = self._source
        while not self._ready and not self.exhausted and not self._stopped:
            n = planner.chunk_size - len(planner)
            items = await self._read(n) if source.blocking else source.take_now(n)
            if items is None:
                break
            if not items:
                self.exhausted = True
                tail = planner.flush()
                if tail is not None:
                    self._ready.append(tail)
                break
            self._accept(items)
            idle += len(items)
            if len(self._immediate) >= planner.chunk_size:
                await self._emit(self.take_outcomes())
                idle = 0
            elif idle >= _CHECKPOINT_EVERY:
                await anyio.lowlevel.checkpoint()
                idle = 0
        if self._immediate:
            await self._emit(self.take_outcomes())
        if self._stopped or not self._ready:
            return None
        return self._ready.popleft()

    async def _read(self, n: int) -> list[Any] | None:
        """Up to ``n`` items from an async iterable; ``None`` when a stop interrupted the
        wait."""
        with anyio.CancelScope() as scope:
            self._scope = scope
            try:
                return await self._source.take(n)
            finally:
                self._scope = None
        return None

    def drain(self, reason: str) -> list[CommandOutcome]:
        """Once the job ended: the outcomes settled here and not yet emitted, then the serials
        read but never handed out (``skipped``, ``not sent: job stopped (<reason>)``)."""
        out = self.take_outcomes()
        out.extend(not_sent(self.unsent(), reason))
        return out

    def take_outcomes(self) -> list[CommandOutcome]:
        """The outcomes settled by the intake and not yet emitted."""
        out = self._immediate
        self._immediate = []
        return out

    def unsent(self) -> list[str]:
        """The serials read and accepted but not handed out (chunks not taken, the partial
        chunk), in input order; they are forgotten."""
        out = [serial for chunk in self._ready for serial in chunk]
        self._ready.clear()
        out.extend(self._planner.pending())
        self._planner.flush()
        return out

    def _accept(self, items: list[Any]) -> None:
        """Apply the input rules to ``items``, in order."""
        dedupe = self._seen is not None
        seen: set[str] = self._seen if self._seen is not None else set()
        add = seen.add
        planner = self._planner
        check = self._journal is not None or planner.max_body_bytes is not None
        accepted: list[str] = []
        keep = accepted.append
        blank = 0
        for item in items:
            try:
                serial = _strip(item)  # str and its subclasses; TypeError for anything else
            except TypeError:
                self._settle_now(
                    repr(item),
                    CommandStatus.FAILED,
                    f"{NOT_SENT_PREFIX} invalid serial: expected str, got {type(item).__name__}",
                )
                continue
            if not serial:
                blank += 1
                continue
            if dedupe:
                if serial in seen:
                    self._settle_now(serial, CommandStatus.SKIPPED, _DUPLICATE)
                    continue
                add(serial)
            if not check or self._sendable(serial):
                keep(serial)
        self._report.total += len(items) - blank
        self._ready.extend(planner.feed(accepted))

    def _settle_now(self, serial: str, status: CommandStatus, detail: str) -> None:
        self._immediate.append(CommandOutcome(serial, status, detail))

    def _sendable(self, serial: str) -> bool:
        """Whether ``serial`` is to be sent: not settled by an earlier run (journal), short
        enough for ``max_body_bytes``; otherwise its outcome is settled now."""
        if self._journal is not None:
            skipped = _journal_skip(self._journal, serial, self._resend)
            if skipped is not None:
                self._immediate.append(skipped)
                return False
        if not self._planner.fits_alone(serial):
            self._settle_now(serial, CommandStatus.FAILED, _TOO_LONG)
            return False
        return True

def _journal_skip(journal: Journal, serial: str, resend: frozenset[str]) -> CommandOutcome | None:
    """The ``skipped`` outcome of a serial an earlier run settled (carrying how it ended then),
    or ``None`` when it is to be sent (not in the journal, or its status is in ``resend``)."""
    earlier = journal.earlier(serial)
    if earlier is None:
        return None
    status, detail = earlier
    if status._value_ in resend:
        return None
    text = f"already {status._value_} in journal"
    return CommandOutcome(
        serial, CommandStatus.SKIPPED, f"{text}: {detail}" if detail else text, earlier=status
    )
