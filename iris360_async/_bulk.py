"""The bulk command engine: send one command set to any number of devices, exactly accounted.

The engine knows nothing about HTTP. It drives a ``send_chunk`` callable (the raw
``sendCommandsBulk`` call, which raises :mod:`iris360_async.errors` exceptions and already
repeats the failures that are provably safe to repeat) and turns every serial of its input into
exactly one :class:`~iris360_async.models.bulk.CommandOutcome`.

Pipeline::

    input (iterable / async iterable, read lazily, only when a worker is free)
      -> ``concurrency`` workers on one anyio task group; a free worker reads the next chunk
         (strip, validate, de-duplicate, skip journaled serials, cut by count and bytes),
         journals it "inflight", sends it, classifies the answer, journals the results
      -> report (``send_commands``) or the caller's ``async for`` (``stream_commands``)

Workers pull from the shared input in turn (a lock, taken without yielding when free) instead
of being fed through a memory object stream: a hand-over through an anyio stream costs tens of
microseconds per chunk, as much as a fifth of the HTTP request itself, and pulling reads
nothing ahead. At most ``concurrency * chunk_size`` serials are read and not yet settled (one
chunk per busy worker, the reading worker holding none), within the
``(concurrency + 1) * chunk_size`` bound promised to callers.

Decisions (also stated in the docs of :class:`CommandDispatcher`):

* Input items are stripped of surrounding whitespace; blank strings (empty lines of a file)
  are ignored and not counted. An item that is not a ``str``, or a serial too long for
  ``max_body_bytes``, ends ``failed`` with ``"not sent: invalid serial: …"`` without being sent
  (an input read lazily cannot be refused before the first request); the journal does not
  count it as settled, so a resumed job with the input fixed sends it.
* Duplicates end ``skipped`` (``"duplicate serial in input"``); the first occurrence wins.
  ``send_commands`` keeps an exact ``set`` of the serials (the report holds them anyway);
  ``stream_commands``, which keeps nothing else per serial, keeps a compact set of 64-bit
  salted hashes (about 16 bytes per serial, no copy of the strings) where two different
  serials collide with probability below ``n**2 / 2**65`` (about 3e-8 for a million).
  A ``list`` or ``tuple`` of at least 20,000 serials is checked for repeats in one pass
  before the job; when none can repeat, no set is kept. ``dedupe=False`` turns
  de-duplication off for other inputs known to be unique.
* Cancellation propagates unchanged (the asyncio way); the partial report is handed to
  ``on_cancel`` and stays on :attr:`CommandDispatcher.report`.
* Journal resume never sends again a serial the journal settled, whatever its status, unless
  ``resend`` names that status (``rejected``, ``failed``, ``unknown``; never ``sent``): a
  ``failed`` item may be a broker timeout that did reach the device. The exception is a
  ``failed`` whose detail starts with ``"not sent:"`` (no connection, authentication failed,
  refused by validation, rate limited after retries): the server provably did not act, so a
  resumed job sends it.
* ``sent`` needs ``{"data": "Command sent!!"}`` (extra keys tolerated when there is no
  ``errors``). A body with ``data`` and no ``errors`` but another sentence is ``unknown``: it
  looks like success but is not the documented one, so it is neither claimed as sent nor
  invited to a blind re-send.
* When the job stops early (deadline, authentication lost, ``max_failures``, cancellation),
  serials already read but not yet sent end ``skipped`` with ``"not sent: job stopped (…)"``
  and are not journaled, so a resumed job sends them; serials never read are not in the report.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import random
from array import array
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter
from typing import Any, Protocol, TypedDict

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec

from . import errors
from ._journal import NOT_SENT_PREFIX, Journal, JournalTarget
from ._retry import Clock, SystemClock
from ._validation import validate_commands
from .models.bulk import (
    CommandOutcome,
    CommandReport,
    CommandStatus,
    ProgressStats,
)
from .models.devices import SENT_ITEM, MalformedBulkItem

__all__ = [
    "MAX_CONCURRENCY",
    "BulkItem",
    "ChunkPlanner",
    "CommandDispatcher",
    "ErrorVerdict",
    "JobOptions",
    "SendChunk",
    "body_base_size",
    "classify_chunk",
    "classify_exception",
    "classify_item",
    "plan_chunks",
    "resend_statuses",
    "send_commands",
    "serial_size",
    "stream_commands",
]

SENT_MESSAGE = "Command sent!!"
REJECTED_PREFIX = "You cannot send any of"

_SENT = CommandStatus.SENT
_REJECTED = CommandStatus.REJECTED
_FAILED = CommandStatus.FAILED
_UNKNOWN = CommandStatus.UNKNOWN
_SKIPPED = CommandStatus.SKIPPED

_encode = msgspec.json.encode


class BulkItem(Protocol):
    """One element of the 207 answer; only ``original`` carries information (API §4.11)."""

    @property
    def original(self) -> Any: ...


SendChunk = Callable[[list[str]], Awaitable[Sequence[BulkItem]]]
"""The raw call: serials in, one item per serial (request order) out; raises ``errors.*``."""

ProgressCallback = Callable[[ProgressStats], Awaitable[None] | None]
CancelCallback = Callable[[CommandReport], None]


# --------------------------------------------------------------------------------------------
# Classification (pure)
# --------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    try:
        text = _encode(value).decode("utf-8", "replace")
    except (TypeError, msgspec.EncodeError):
        text = repr(value)
    return errors.condense(text)


def classify_item(original: Any) -> tuple[CommandStatus, str | None]:
    """The status and detail of one item of the 207 answer, from its ``original`` body.

    * ``{"data": "Command sent!!"}`` -> ``sent``
    * ``{"errors": "You cannot send any of: …"}`` -> ``rejected`` (detail: the message)
    * any other object (a broker error object), a string (an exception text) or ``null``
      -> ``failed``: the documented shapes of a failure for that device (API §4.11)
    * an object with ``data`` but no ``errors`` and another sentence, the bare string
      ``"Command sent!!"``, a number, a boolean, a list, a missing ``original`` -> ``unknown``:
      not a shape the platform documents, so it proves neither success nor failure

    Server text in details is condensed (:func:`iris360_async.errors.condense`).
    """
    if isinstance(original, dict):
        data = original.get("data")
        errs = original.get("errors")
        if errs is None or errs == [] or errs == {}:
            if data == SENT_MESSAGE:
                return _SENT, None
            if "data" in original:
                return _UNKNOWN, f"unrecognised success body: {_describe(original)}"
        if isinstance(errs, str):
            if errs.startswith(REJECTED_PREFIX):
                return _REJECTED, errors.condense(errs)
            return _FAILED, errors.condense(errs)
        message = errors.extract_server_message(original)
        return _FAILED, errors.condense(message) if message else _describe(original)
    if isinstance(original, str):
        if original.strip() == SENT_MESSAGE:
            return _UNKNOWN, (
                f"unrecognised item: the bare string {SENT_MESSAGE!r} instead of "
                "{\"data\": ...}"
            )
        return _FAILED, errors.condense(original) or "empty error text from the server"
    if original is None:
        return _FAILED, "the server gave no detail (the broker answered with a non-JSON body)"
    if original is msgspec.UNSET:
        return _UNKNOWN, "unrecognised item: no 'original'"
    return _UNKNOWN, f"unrecognised item: {type(original).__name__} {_describe(original)}"


_SENT_BODY = {"data": SENT_MESSAGE}


_get_original = attrgetter("original")


def _all_sent(items: Sequence[BulkItem]) -> bool:
    """Whether every item is exactly the documented success (the common case, checked fast)."""
    if type(items) is list and items.count(SENT_ITEM) == len(items):
        return True  # the resource's shared success item: compared by identity first
    try:
        originals = list(map(_get_original, items))
    except AttributeError:
        return False
    return originals.count(_SENT_BODY) == len(originals) and not any(
        isinstance(item, MalformedBulkItem) for item in items
    )


def classify_chunk(
    serials: Sequence[str], items: Sequence[BulkItem]
) -> tuple[list[CommandOutcome], bool]:
    """Outcomes for a chunk whose request answered; and whether the chunk is wholly ``unknown``.

    A length mismatch between the answer and the request makes every serial ``unknown``.
    """
    if len(items) != len(serials):
        reason = f"the answer has {len(items)} items for {len(serials)} serials"
        return [CommandOutcome(s, _UNKNOWN, reason) for s in serials], True
    out: list[CommandOutcome] = []
    append = out.append
    for serial, item in zip(serials, items, strict=True):
        try:
            original = item.original
        except AttributeError:
            append(CommandOutcome(serial, _UNKNOWN, "unrecognised item: no 'original'"))
            continue
        if isinstance(item, MalformedBulkItem):
            reason = f"unrecognised item: not an object with 'original': {_describe(original)}"
            append(CommandOutcome(serial, _UNKNOWN, reason, original))
            continue
        if original == _SENT_BODY:
            append(CommandOutcome(serial, _SENT))
            continue
        status, detail = classify_item(original)
        append(CommandOutcome(serial, status, detail, original))
    return out, False


@dataclass(frozen=True)
class ErrorVerdict:
    """What an exception from ``send_chunk`` means for every serial of its chunk.

    Attributes:
        status: ``unknown`` (the server may have acted) or ``failed`` (it did not).
        detail: the reason, without credentials.
        stop: the job cannot go on (authentication lost, unexpected error).
        retryable: re-sending may help (used only with ``retry_unknown``).
        stop_reason: the job's ``stopped_reason`` when ``stop`` (default:
            ``"error: <ExceptionType>"``).
    """

    status: CommandStatus
    detail: str
    stop: bool = False
    retryable: bool = False
    stop_reason: str | None = None


AUTH_STOP_REASON = "authentication failed"


def _status_detail(exc: errors.APIStatusError) -> str:
    message = exc.server_message
    return f"HTTP {exc.status}: {errors.condense(message)}" if message else f"HTTP {exc.status}"


def _error_text(exc: BaseException) -> str:
    """A short description of ``exc`` for a detail (server text condensed)."""
    if isinstance(exc, errors.APIStatusError):
        return _status_detail(exc)
    if isinstance(exc, errors.Iris360Error):
        return f"{type(exc).__name__}: {errors.condense(exc.message)}"
    return f"{type(exc).__name__}: {errors.condense(str(exc))}"


def _token_verdict(exc: BaseException) -> ErrorVerdict:
    """Obtaining the access token failed: the bulk request was never sent; the job stops."""
    return ErrorVerdict(
        _FAILED,
        f"{NOT_SENT_PREFIX} could not obtain an access token ({_error_text(exc)})",
        stop=True,
        stop_reason=AUTH_STOP_REASON,
    )


def _redirect_verdict(exc: errors.RedirectError) -> ErrorVerdict:
    target = f" to {exc.location}" if exc.location else ""
    return ErrorVerdict(
        _UNKNOWN,
        f"the server answered with a redirect ({exc.status}{target}); it may have acted "
        "(redirects are never followed)",
    )


def classify_exception(exc: BaseException) -> ErrorVerdict:
    """The verdict for a chunk whose ``send_chunk`` raised ``exc`` (after its own retries).

    ``unknown`` only when the bytes of the bulk request may have reached the server. An error
    raised while obtaining an access token (``while_authenticating``, whatever its type) means
    the request was never sent: ``failed`` with a ``not sent:`` detail, and the job stops.
    """
    if getattr(exc, "while_authenticating", False):
        return _token_verdict(exc)
    if isinstance(exc, errors.APIConnectionError):
        if not exc.request_sent:
            return ErrorVerdict(
                _FAILED,
                f"{NOT_SENT_PREFIX} the connection could not be established "
                f"({errors.condense(exc.message)})",
            )
        what = "timed out" if isinstance(exc, errors.APITimeoutError) else "connection lost"
        return ErrorVerdict(
            _UNKNOWN,
            f"{what} after the request was sent ({errors.condense(exc.message)})",
            retryable=True,
        )
    if isinstance(exc, errors.RedirectError):
        return _redirect_verdict(exc)
    if isinstance(exc, errors.AuthenticationError):
        # 401 before processing although fresh tokens were obtained (the transport renews a
        # bounded number of times per request): this chunk is refused, later ones may pass
        return ErrorVerdict(
            _FAILED,
            f"{NOT_SENT_PREFIX} the server refused the token, also after renewing it "
            f"({_status_detail(exc)})",
        )
    if isinstance(exc, errors.RateLimitError):
        return ErrorVerdict(
            _FAILED, f"{NOT_SENT_PREFIX} rate limited after retries ({_status_detail(exc)})"
        )
    if isinstance(
        exc,
        (errors.BadRequestError, errors.NotFoundError, errors.UnprocessableEntityError),
    ):
        return ErrorVerdict(
            _FAILED, f"{NOT_SENT_PREFIX} the server refused the request ({_status_detail(exc)})"
        )
    if isinstance(exc, errors.PermissionDeniedError):
        return ErrorVerdict(
            _UNKNOWN,
            "the server refused one target mid-chunk; targets before it may have the command "
            f"({_status_detail(exc)})",
        )
    if isinstance(exc, errors.InternalServerError):
        return ErrorVerdict(
            _UNKNOWN, f"server error; the chunk may be partly applied ({_status_detail(exc)})",
            retryable=True,
        )
    if isinstance(exc, errors.APIStatusError):
        return ErrorVerdict(_UNKNOWN, f"unexpected answer ({_status_detail(exc)})")
    if isinstance(exc, errors.ResponseTooLargeError):
        return ErrorVerdict(
            _UNKNOWN,
            f"the answer exceeded the size limit ({exc.limit} bytes) and was not read; "
            "the server may have acted",
        )
    if isinstance(exc, errors.ResponseDecodeError):
        return ErrorVerdict(
            _UNKNOWN, f"the answer could not be read ({errors.condense(exc.message)})",
            retryable=True,
        )
    if isinstance(exc, errors.Iris360Error):
        return ErrorVerdict(_UNKNOWN, errors.condense(exc.message))
    return ErrorVerdict(_UNKNOWN, f"unexpected error: {_error_text(exc)}", stop=True)


# --------------------------------------------------------------------------------------------
# Chunk planning (pure)
# --------------------------------------------------------------------------------------------


def body_base_size(commands: Mapping[str, Any]) -> int:
    """Bytes of the request body with an empty serial list (``{"device_serials":[],…}``)."""
    return len(_encode({"device_serials": [], **commands}))


def serial_size(serial: str) -> int:
    """Bytes ``serial`` adds to the body's serial list, its separating comma included."""
    return len(_encode(serial)) + 1


class ChunkPlanner:
    """Cuts a stream of serials into chunks of at most ``chunk_size`` serials and, when
    ``max_body_bytes`` is given, at most that many bytes of JSON body (``base_bytes`` being the
    body without serials, see :func:`body_base_size`). Order is kept.
    """

    __slots__ = ("_bytes", "_current", "base_bytes", "chunk_size", "max_body_bytes")

    def __init__(
        self, chunk_size: int, max_body_bytes: int | None = None, base_bytes: int = 0
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        self.chunk_size = chunk_size
        self.max_body_bytes = max_body_bytes
        self.base_bytes = base_bytes
        self._current: list[str] = []
        self._bytes = base_bytes - 1

    def fits_alone(self, serial: str) -> bool:
        """Whether a chunk holding only ``serial`` respects ``max_body_bytes``."""
        limit = self.max_body_bytes
        return limit is None or self.base_bytes + serial_size(serial) - 1 <= limit

    def add(self, serial: str) -> list[str] | None:
        """Add ``serial``; return the chunk it closed, if any (``serial`` then starts the next).

        With ``max_body_bytes``, a serial that does not fit even alone must be refused by the
        caller first (:meth:`fits_alone`).
        """
        current = self._current
        limit = self.max_body_bytes
        if limit is None:
            current.append(serial)
            if len(current) >= self.chunk_size:
                self._current = []
                return current
            return None
        size = serial_size(serial)
        done: list[str] | None = None
        if current and self._bytes + size > limit:
            done = current
            current = self._current = []
            self._bytes = self.base_bytes - 1
        current.append(serial)
        self._bytes += size
        if len(current) >= self.chunk_size:
            # never together with ``done``: a byte-closed chunk leaves one serial behind, which
            # fills a chunk only when chunk_size == 1, and then ``current`` was empty
            self._current = []
            self._bytes = self.base_bytes - 1
            return current
        return done

    def flush(self) -> list[str] | None:
        """The last, partial chunk (``None`` when empty)."""
        current = self._current
        if not current:
            return None
        self._current = []
        self._bytes = self.base_bytes - 1
        return current

    def pending(self) -> list[str]:
        """The serials of the chunk being filled (not yet returned)."""
        return list(self._current)


def plan_chunks(
    serials: Iterable[str],
    chunk_size: int,
    max_body_bytes: int | None = None,
    base_bytes: int = 0,
) -> Iterator[list[str]]:
    """Chunks of ``serials`` in order (see :class:`ChunkPlanner`).

    Raises:
        ValueError: a serial does not fit ``max_body_bytes`` even alone.
    """
    planner = ChunkPlanner(chunk_size, max_body_bytes, base_bytes)
    for serial in serials:
        if not planner.fits_alone(serial):
            raise ValueError(f"serial {serial!r} does not fit max_body_bytes on its own")
        done = planner.add(serial)
        if done is not None:
            yield done
    tail = planner.flush()
    if tail is not None:
        yield tail


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class _HashSet:
    """A compact set of strings for de-duplication: 64-bit salted hashes (Python's ``hash``)
    in open-addressing tables of machine integers (8 to 32 bytes per member; no reference to
    the strings is kept). Two different strings collide with probability ``2**-64`` per pair.
    Used by streaming jobs, which keep nothing else per serial.

    The hashes are spread over 16 independent tables that double one at a time, so growing
    never needs more than a sixteenth of the set's memory on top of it (16 MiB of tables for
    a million members).
    """

    __slots__ = ("_fills", "_limits", "_masks", "_size", "_tables")

    _PARTS = 16

    def __init__(self, bits: int = 8) -> None:
        size = 1 << bits
        self._tables: list[array[int]] = [array("q", [0]) * size for _ in range(self._PARTS)]
        self._masks = [size - 1] * self._PARTS
        self._fills = [0] * self._PARTS
        self._limits = [size // 2] * self._PARTS
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: str) -> bool:
        h = hash(key) or 1
        part = h & 15
        table = self._tables[part]
        mask = self._masks[part]
        i = (h >> 4) & mask
        v = table[i]
        while v:
            if v == h:
                return True
            i = (i + 1) & mask
            v = table[i]
        return False

    def add(self, key: str) -> None:
        """Add ``key`` (no effect when it is a member)."""
        self.add_new(key)

    def add_new(self, key: str) -> bool:
        """Add ``key``; ``True`` when it was not a member."""
        h = hash(key) or 1
        part = h & 15
        table = self._tables[part]
        mask = self._masks[part]
        i = (h >> 4) & mask
        v = table[i]
        while v:
            if v == h:
                return False
            i = (i + 1) & mask
            v = table[i]
        table[i] = h
        self._size += 1
        fill = self._fills[part] = self._fills[part] + 1
        if fill >= self._limits[part]:
            self._grow(part)
        return True

    def _grow(self, part: int) -> None:
        old = self._tables[part]
        size = len(old) * 2
        table = array("q", [0]) * size
        mask = size - 1
        for h in old:
            if h:
                i = (h >> 4) & mask
                while table[i]:
                    i = (i + 1) & mask
                table[i] = h
        self._tables[part] = table
        self._masks[part] = mask
        self._limits[part] = size // 2


class _RateLimiter:
    """Spaces request starts at least ``1 / rate`` seconds apart (a token bucket of depth 1)."""

    __slots__ = ("_clock", "_interval", "_next")

    def __init__(self, rate: float, clock: Clock) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._next = -math.inf

    async def acquire(self) -> None:
        now = self._clock.monotonic()
        start = self._next if self._next > now else now
        self._next = start + self._interval
        if start > now:
            await self._clock.sleep(start - now)


class _Chunk:
    __slots__ = ("index", "serials")

    def __init__(self, index: int, serials: list[str]) -> None:
        self.index = index
        self.serials = serials


_Sink = Callable[[list[CommandOutcome]], Awaitable[None]]

_RESENDABLE_NAMES = frozenset({"rejected", "failed", "unknown"})
_CHECKPOINT_EVERY = 1024
_SCAN_FROM = 20_000  # inputs this long (lists, tuples) are checked for repeats before the job
_SCAN_SLICE = 65_536  # serials checked between two yields to the event loop


async def _all_distinct(serials: list[Any] | tuple[Any, ...]) -> bool:
    """Whether ``serials`` are all non-blank strings, no two alike once stripped.

    One pass over an input already in memory, before anything is sent, yielding to the event
    loop every few ten thousand serials. When it holds, the job needs no de-duplication: that
    saves a look-up per serial in a set of every serial, which costs more interleaved with the
    requests (the set's memory no longer in the CPU caches) than in one tight pass here.
    """
    forms: set[str] = set()
    strip = str.strip
    for start in range(0, len(serials), _SCAN_SLICE):
        part = serials[start : start + _SCAN_SLICE]
        try:
            forms.update(map(strip, part))
        except TypeError:  # not a string
            return False
        if len(forms) != start + len(part):
            return False  # a repeat (or the list changed under us)
        await anyio.lowlevel.checkpoint()
    return "" not in forms and len(forms) == len(serials)


MAX_CONCURRENCY = 1024
"""The ceiling of ``concurrency`` (requests in flight, one worker each)."""

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
        serial, _SKIPPED, f"{text}: {detail}" if detail else text, earlier=status
    )


def _not_sent(serials: Iterable[str], reason: str) -> list[CommandOutcome]:
    detail = f"{NOT_SENT_PREFIX} job stopped ({reason})"
    return [CommandOutcome(s, _SKIPPED, detail) for s in serials]


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


class JobOptions(TypedDict, total=False):
    """The options of a bulk job as keyword arguments (see :class:`CommandDispatcher`)."""

    chunk_size: int
    concurrency: int
    max_body_bytes: int | None
    max_rate: float | None
    retry_unknown: int
    retry_backoff: float
    deadline: float | None
    deadline_grace: float | None
    max_failures: int | None
    dedupe: bool
    journal: str | os.PathLike[str] | None
    resend: Collection[CommandStatus | str] | str | None
    journal_force: bool
    journal_fsync: bool
    on_progress: ProgressCallback | None
    progress_interval: float
    on_cancel: CancelCallback | None


class CommandDispatcher:
    """Runs one bulk command job over a ``send_chunk`` callable.

    Use :meth:`run` (returns a :class:`CommandReport`) or :meth:`stream` (an async generator of
    outcomes as chunks settle), once per dispatcher. :attr:`report` is live while the job runs
    and holds the partial result after a cancellation.

    Args:
        send_chunk: the raw call, ``await send_chunk(serials) -> items`` (one per serial, in
            order). It raises ``iris360_async.errors`` exceptions and repeats the provably safe
            failures itself; the engine never repeats a chunk unless ``retry_unknown`` asks.
        commands: ``name -> value``; validated at construction (``TypeError``/``ValueError``).
        chunk_size: serials per request (>= 1).
        concurrency: requests in flight at most (1 to :data:`MAX_CONCURRENCY`, 1024): the
            most workers the job starts. Workers start one per chunk read, so a job never has
            more workers than chunks.
        max_body_bytes: also cut chunks so the JSON body stays within this many bytes; a
            serial too long to fit alone ends ``failed`` (``not sent:``, resumable).
        max_rate: at most this many requests started per second (smoothing); ``None``: no limit.
        retry_unknown: re-send a chunk that ended wholly ``unknown`` after a timeout, lost
            connection, 5xx or unreadable answer up to this many times (only for commands that
            are safe to apply twice). 0 (default): never.
        retry_backoff: base of the exponential backoff between those re-sends, seconds
            (full jitter, capped at 30 s).
        deadline: seconds after the start when the job stops reading input and dispatching.
        deadline_grace: seconds in-flight requests may still settle after the deadline before
            they are cancelled (and end ``unknown``); ``None``: let them finish.
        max_failures: stop the job (like a deadline, but in-flight requests settle) once this
            many serials ended ``rejected``/``failed``/``unknown``. ``None`` (default): never
            stop early: every serial is accounted for.
        dedupe: skip repeated serials (default). Turn off only for inputs known to be unique.
            A ``list`` or ``tuple`` of many serials is checked in one pass before the job;
            when none can repeat, the job does without per-serial look-ups.
        journal: path of a JSON-lines journal (see :mod:`iris360_async._journal`): serials it
            records as settled are ``skipped`` (``"already sent in journal"`` …) and results
            are appended, flushed per chunk.
        resend: statuses recorded in the journal that are sent again on resume, among
            ``"rejected"``, ``"failed"``, ``"unknown"``: one status (``"unknown"``), a
            comma-separated string (``"failed,unknown"``) or a collection of statuses.
            Default: none (a serial the journal settled is never sent twice; ``sent`` is never
            re-sent).
        journal_force: resume a journal written for other commands, another server, tenant
            or scope, or a version-1 journal (which records none of those).
        journal_fsync: ``os.fsync`` the journal at every flush (safer against power loss,
            slower).
        on_progress: ``callback(ProgressStats)``, sync or async, at most every
            ``progress_interval`` seconds while chunks settle and once when the job ends
            (also after a cancellation). An exception from it stops the job and is raised.
        progress_interval: seconds between progress calls.
        on_cancel: ``callback(report)`` called with the partial report when the job is
            cancelled, before the cancellation propagates.
        clock: the time source (tests inject a manual clock).
        journal_target: the server, tenant and scope the journal is bound to (set by
            ``devices.send_commands`` from the client's configuration).
    """

    def __init__(
        self,
        send_chunk: SendChunk,
        commands: Mapping[str, Any],
        *,
        chunk_size: int = 100,
        concurrency: int = 16,
        max_body_bytes: int | None = None,
        max_rate: float | None = None,
        retry_unknown: int = 0,
        retry_backoff: float = 1.0,
        deadline: float | None = None,
        deadline_grace: float | None = 0.0,
        max_failures: int | None = None,
        dedupe: bool = True,
        journal: str | os.PathLike[str] | None = None,
        resend: Collection[CommandStatus | str] | str | None = (),
        journal_force: bool = False,
        journal_fsync: bool = False,
        on_progress: ProgressCallback | None = None,
        progress_interval: float = 0.1,
        on_cancel: CancelCallback | None = None,
        clock: Clock | None = None,
        journal_target: JournalTarget | None = None,
    ) -> None:
        self._commands = validate_commands(commands)
        for name, value in (("chunk_size", chunk_size), ("concurrency", concurrency)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int")
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if concurrency > MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be <= {MAX_CONCURRENCY}, got {concurrency}")
        if isinstance(retry_unknown, bool) or not isinstance(retry_unknown, int):
            raise TypeError("retry_unknown must be an int")
        if retry_unknown < 0:
            raise ValueError("retry_unknown must be >= 0")
        if max_rate is not None and not max_rate > 0:
            raise ValueError("max_rate must be > 0 requests per second")
        if deadline is not None and not deadline >= 0:
            raise ValueError("deadline must be >= 0 seconds")
        if deadline_grace is not None and not deadline_grace >= 0:
            raise ValueError("deadline_grace must be >= 0 seconds")
        if max_failures is not None and max_failures < 1:
            raise ValueError("max_failures must be >= 1")
        if progress_interval < 0:
            raise ValueError("progress_interval must be >= 0 seconds")
        resend_names = resend_statuses(resend)
        self._base_bytes = body_base_size(self._commands)
        if max_body_bytes is not None and max_body_bytes < self._base_bytes + 3:
            raise ValueError(
                f"max_body_bytes={max_body_bytes} leaves no room for a serial "
                f"(the commands alone take {self._base_bytes} bytes)"
            )
        self._send_chunk = send_chunk
        self._chunk_size = chunk_size
        self._concurrency = concurrency
        self._max_body_bytes = max_body_bytes
        self._retry_unknown = retry_unknown
        self._retry_backoff = retry_backoff
        self._deadline = deadline
        self._deadline_grace = deadline_grace
        self._max_failures = max_failures
        self._dedupe = dedupe
        self._journal_path = journal
        self._resend = resend_names
        self._journal_force = journal_force
        self._journal_fsync = journal_fsync
        self._journal_target = journal_target
        self._on_progress = on_progress
        self._progress_interval = progress_interval
        self._on_cancel = on_cancel
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._limiter = _RateLimiter(max_rate, self._clock) if max_rate is not None else None
        self._random = random.Random()

        self.report = CommandReport()
        self._keep = True
        self._used = False
        self._journal: Journal | None = None
        self._stop_reason: str | None = None
        self._read_scope: anyio.CancelScope | None = None
        self._read_lock = asyncio.Lock()  # taken without yielding when free
        self._it: Iterator[Any] | None = None
        self._ait: AsyncIterator[Any] | None = None
        self._exhausted = False
        self._chunk_index = 0
        self._planner = ChunkPlanner(chunk_size, max_body_bytes, self._base_bytes)
        self._immediate: list[CommandOutcome] = []
        self._seen: set[str] | _HashSet | None = None
        self._job_scope: anyio.CancelScope | None = None
        self._workers_group: anyio.abc.TaskGroup | None = None
        self._workers = 0
        self._cancel_detail = "the job was cancelled while the request was in flight"
        self._fatal: BaseException | None = None
        self._failures = 0
        self._in_flight = 0
        self._settled = 0
        self._started = 0.0
        self._last_progress = 0.0

    # -- public ----------------------------------------------------------------------------

    @property
    def stopped_reason(self) -> str | None:
        """Why the job stopped early, once it did."""
        return self._stop_reason

    @property
    def in_flight(self) -> int:
        """Requests on the wire right now."""
        return self._in_flight

    async def run(self, serials: Iterable[Any] | AsyncIterable[Any]) -> CommandReport:
        """Run the job over ``serials`` and return the full report.

        Cancelling the calling task stops reading, ends in-flight chunks ``unknown``, flushes
        the journal, calls ``on_cancel(report)`` and the final ``on_progress``, and lets the
        cancellation propagate; :attr:`report` keeps the partial result.

        Raises:
            TypeError: ``serials`` is a string or not iterable.
            ValueError: the journal belongs to other commands.
        """
        await self._execute(serials, None)
        return self.report

    async def stream(
        self, serials: Iterable[Any] | AsyncIterable[Any]
    ) -> AsyncGenerator[CommandOutcome, None]:
        """Run the job over ``serials``, yielding every outcome as its chunk settles.

        Safe to leave early: ``break``, an exception in the loop, or ``aclose()`` cancel the
        job (in-flight chunks end ``unknown`` and are journaled) and wait for its tasks; use
        ``contextlib.aclosing`` to make that deterministic. :attr:`report` keeps counts only.
        """
        self._check_input(serials)
        self._keep = False
        tx, rx = anyio.create_memory_object_stream[list[CommandOutcome]](self._concurrency)

        async def produce() -> None:
            with tx:
                await self._execute(serials, tx.send)

        task = asyncio.get_running_loop().create_task(produce())
        try:
            async for batch in rx:
                for outcome in batch:
                    yield outcome
            await task
        finally:
            if not task.done():
                task.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({task})
            rx.close()
            if not task.cancelled():
                task.exception()  # retrieved (raised above when it ended the loop)

    # -- job -------------------------------------------------------------------------------

    @staticmethod
    def _check_input(serials: object) -> None:
        if isinstance(serials, (str, bytes, bytearray)):
            raise TypeError("serials must be an iterable of serials, not a single string")
        if not isinstance(serials, (Iterable, AsyncIterable)):
            raise TypeError(f"serials must be iterable, got {type(serials).__name__}")

    async def _execute(
        self, serials: Iterable[Any] | AsyncIterable[Any], sink: _Sink | None
    ) -> None:
        if self._used:
            raise RuntimeError("a CommandDispatcher runs one job; create another")
        self._used = True
        self._check_input(serials)
        if self._journal_path is not None:
            self._journal = Journal.open(
                self._journal_path,
                self._commands,
                target=self._journal_target,
                force=self._journal_force,
                fsync=self._journal_fsync,
            )
        self._open_input(serials)
        self._started = self._last_progress = self._clock.monotonic()
        cancelled = False
        try:
            await self._start_dedupe(serials)
            async with anyio.create_task_group() as outer:
                if self._deadline is not None:
                    outer.start_soon(self._watch_deadline)
                async with anyio.create_task_group() as tg:
                    self._job_scope = tg.cancel_scope
                    self._workers_group = tg
                    self._add_worker(sink)
                outer.cancel_scope.cancel()
            stranded = self._stranded()
            if stranded:
                await self._deliver(stranded, sink)
        except BaseException as exc:
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            if cancelled and self._stop_reason is None:
                self._stop_reason = "cancelled"
            self._settle(self._stranded())
            raise
        finally:
            self._finish()
            with anyio.CancelScope(shield=True):
                try:
                    await self._progress(final=True)
                finally:
                    if cancelled and self._on_cancel is not None:
                        self._on_cancel(self.report)
        if self._fatal is not None:
            raise self._fatal

    def _finish(self) -> None:
        self.report.elapsed = self._clock.monotonic() - self._started
        self.report.stopped_reason = self._stop_reason
        if self._journal is not None:
            self._journal.close()

    def _request_stop(self, reason: str) -> None:
        """Stop reading input; in-flight chunks settle (or are cancelled by the caller)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._read_scope is not None:
            self._read_scope.cancel()

    def _abort(self, exc: BaseException) -> None:
        """Stop the job because of ``exc`` (raised once in-flight chunks settled)."""
        if self._fatal is None:
            self._fatal = exc
        self._request_stop(f"error: {type(exc).__name__}")

    async def _watch_deadline(self) -> None:
        assert self._deadline is not None
        await self._clock.sleep(self._deadline)
        self._request_stop("deadline")
        if self._deadline_grace is None:
            return
        if self._deadline_grace > 0:
            await self._clock.sleep(self._deadline_grace)
        if self._job_scope is not None:
            self._cancel_detail = "the job deadline passed while the request was in flight"
            self._job_scope.cancel()

    # -- settling --------------------------------------------------------------------------

    def _settle(self, outcomes: list[CommandOutcome]) -> None:
        """Account ``outcomes`` (synchronous: also runs while cancelled)."""
        report = self.report
        counts = report.counts
        n_sent = 0
        others: list[CommandOutcome] = []
        for o in outcomes:
            if o.status is _SENT:
                n_sent += 1
            else:
                others.append(o)
        if self._keep:
            if n_sent == len(outcomes):
                report.sent.extend([o.serial for o in outcomes])
            else:
                report.sent.extend([o.serial for o in outcomes if o.status is _SENT])
            for o in others:
                report._add(o)
        else:
            for o in others:
                counts[o.status._value_] += 1
                if o.earlier is not None:
                    report._add_earlier(o, keep=False)
        counts["sent"] += n_sent
        self._settled += len(outcomes)
        if self._journal is not None:
            self._journal.write_outcomes(outcomes)
            self._journal.flush()
        if self._max_failures is not None and others:
            self._failures += sum(1 for o in others if o.status is not _SKIPPED)
            if self._failures >= self._max_failures:
                self._request_stop("max_failures")

    async def _deliver_sent(self, serials: list[str], sink: _Sink | None) -> None:
        """The fast path of :meth:`_deliver` for a chunk that was wholly ``sent``."""
        report = self.report
        if self._keep:
            report.sent.extend(serials)
        report.counts["sent"] += len(serials)
        self._settled += len(serials)
        if self._journal is not None:
            self._journal.write_sent(serials)
            self._journal.flush()
        if self._on_progress is not None:
            await self._progress()
        if sink is not None and serials:
            await sink([CommandOutcome(s, _SENT) for s in serials])

    async def _deliver(self, outcomes: list[CommandOutcome], sink: _Sink | None) -> None:
        self._settle(outcomes)
        if self._on_progress is not None:
            await self._progress()
        if sink is not None and outcomes:
            await sink(outcomes)

    def _stats(self, now: float, final: bool) -> ProgressStats:
        elapsed = now - self._started
        return ProgressStats(
            elapsed=elapsed,
            read=self.report.total,
            settled=self._settled,
            counts=dict(self.report.counts),
            in_flight_chunks=self._in_flight,
            requests=self.report.requests,
            rate=self._settled / elapsed if elapsed > 0 else 0.0,
            done=final,
            stopped_reason=self._stop_reason,
        )

    async def _progress(self, final: bool = False) -> None:
        callback = self._on_progress
        if callback is None:
            return
        now = self._clock.monotonic()
        if not final and now - self._last_progress < self._progress_interval:
            return
        self._last_progress = now
        result = callback(self._stats(now, final))
        if inspect.isawaitable(result):
            await result

    # -- reading (workers take turns) ------------------------------------------------------

    def _open_input(self, serials: Iterable[Any] | AsyncIterable[Any]) -> None:
        if isinstance(serials, AsyncIterable):
            self._ait = serials.__aiter__()
        else:
            self._it = iter(serials)

    async def _start_dedupe(self, serials: Iterable[Any] | AsyncIterable[Any]) -> None:
        """Create the set of serials seen so far, unless there is nothing to de-duplicate."""
        if not self._dedupe:
            return
        if (
            isinstance(serials, (list, tuple))
            and type(serials) in (list, tuple)  # not a subclass: its items are as listed
            and len(serials) >= _SCAN_FROM
            and await _all_distinct(serials)
        ):
            return  # no serial can repeat
        # sending jobs keep every serial in the report anyway: an exact set costs little
        # more; streaming jobs keep nothing per serial but the compact hashes
        self._seen = set() if self._keep else _HashSet()

    def _stranded(self) -> list[CommandOutcome]:
        """Outcomes read but not delivered, and serials read but never sent (job stopped)."""
        out = self._immediate[:]
        self._immediate.clear()
        pending = self._planner.pending()
        self._planner.flush()
        if pending:
            out.extend(_not_sent(pending, self._stop_reason or "cancelled"))
        return out

    def _accept(self, item: Any) -> list[str] | None:
        """Take one input item; return the chunk it completed, if any."""
        immediate = self._immediate
        report = self.report
        if isinstance(item, str):
            serial = item.strip()
            if not serial:
                return None
        else:
            report.total += 1
            immediate.append(
                CommandOutcome(
                    repr(item),
                    _FAILED,
                    f"{NOT_SENT_PREFIX} invalid serial: expected str, got {type(item).__name__}",
                )
            )
            return None
        report.total += 1
        seen = self._seen
        if seen is not None:
            if serial in seen:
                immediate.append(CommandOutcome(serial, _SKIPPED, "duplicate serial in input"))
                return None
            seen.add(serial)
        journal = self._journal
        if journal is not None and journal.previous:
            skipped = _journal_skip(journal, serial, self._resend)
            if skipped is not None:
                immediate.append(skipped)
                return None
        planner = self._planner
        if not planner.fits_alone(serial):
            immediate.append(
                CommandOutcome(
                    serial,
                    _FAILED,
                    f"{NOT_SENT_PREFIX} invalid serial: too long to fit max_body_bytes",
                )
            )
            return None
        return planner.add(serial)

    async def _flush_immediate(self, sink: _Sink | None) -> None:
        batch = self._immediate[:]
        self._immediate.clear()
        await self._deliver(batch, sink)

    async def _next_chunk(self, sink: _Sink | None) -> _Chunk | None:
        """The next chunk to send, read from the input by whichever worker is free; ``None``
        when the input is exhausted or the job stopped. At most one worker reads at a time."""
        async with self._read_lock:
            if self._exhausted or self._stop_reason is not None:
                return None
            serials: list[str] | None = None
            try:
                if self._ait is not None:
                    # an async input may block: a stop request must be able to interrupt it
                    with anyio.CancelScope() as scope:
                        self._read_scope = scope
                        try:
                            serials = await self._read_async(self._ait, sink)
                        finally:
                            self._read_scope = None
                    if scope.cancelled_caught:
                        return None
                elif self._max_body_bytes is None:
                    serials = await self._read_batches(sink)
                else:
                    serials = await self._read_items(sink)
            except Exception as exc:  # the input itself failed: stop, raise it at the end
                self._exhausted = True
                self._abort(exc)
                return None
            if serials is None:
                self._exhausted = True
                return None
            if self._stop_reason is not None:
                # stopped while this chunk was being read: it is not sent (see _stranded)
                self._planner._current = serials + self._planner._current
                return None
            if self._immediate:
                await self._flush_immediate(sink)
            chunk = _Chunk(self._chunk_index, serials)
            self._chunk_index += 1
            self._add_worker(sink)
            return chunk

    async def _finish_input(self, sink: _Sink | None) -> list[str] | None:
        tail = self._planner.flush()
        if tail is None and self._immediate:
            await self._flush_immediate(sink)
        return tail

    async def _after_item(self, idle: int, sink: _Sink | None) -> int:
        """Deliver piled-up immediate outcomes and yield now and then; the new idle count."""
        if len(self._immediate) >= self._chunk_size:
            await self._flush_immediate(sink)
            return 0
        if idle >= _CHECKPOINT_EVERY:
            await anyio.lowlevel.checkpoint()
            return 0
        return idle

    async def _read_async(self, ait: AsyncIterator[Any], sink: _Sink | None) -> list[str] | None:
        idle = 0
        while self._stop_reason is None:
            try:
                item = await ait.__anext__()
            except StopAsyncIteration:
                return await self._finish_input(sink)
            done = self._accept(item)
            if done is not None:
                return done
            idle = await self._after_item(idle + 1, sink)
        return None

    async def _read_items(self, sink: _Sink | None) -> list[str] | None:
        assert self._it is not None
        idle = 0
        for item in self._it:
            if self._stop_reason is not None:
                return None
            done = self._accept(item)
            if done is not None:
                return done
            idle = await self._after_item(idle + 1, sink)
        return await self._finish_input(sink)

    async def _read_batches(self, sink: _Sink | None) -> list[str] | None:
        """The hot path for synchronous inputs without a byte limit: pull the serials the
        current chunk still needs (``islice``), check and de-duplicate them with set operations
        implemented in C, and fall back to :meth:`_accept` item by item for a batch with
        anything unusual (non-strings, blanks, duplicates, journaled serials).
        """
        it = self._it
        assert it is not None
        chunk_size = self._chunk_size
        planner = self._planner
        report = self.report
        immediate = self._immediate
        previous = self._journal.previous if self._journal is not None else None
        seen = self._seen
        exact = seen if isinstance(seen, set) else None
        compact = seen if isinstance(seen, _HashSet) else None
        idle = 0
        while self._stop_reason is None:
            current = planner._current
            batch: list[Any] = []
            try:
                batch.extend(islice(it, chunk_size - len(current)))
            except Exception:
                # the input failed part-way: account for what it yielded first, then re-raise
                for item in batch:
                    self._accept(item)
                raise
            if not batch:
                return await self._finish_input(sink)
            stripped: list[str] | None
            try:
                stripped = list(map(str.strip, batch))  # TypeError: not all strings
            except TypeError:
                stripped = None
            else:
                if not all(stripped) or (previous and not previous.keys().isdisjoint(stripped)):
                    stripped = None  # blanks or journaled serials: item by item
            if stripped is not None and exact is not None:
                if exact.isdisjoint(stripped):
                    before = len(exact)
                    exact.update(stripped)
                    if len(exact) - before != len(stripped):  # a duplicate inside the batch
                        exact.difference_update(stripped)
                        stripped = None
                else:
                    stripped = None
            if stripped is None:
                for item in batch:
                    done = self._accept(item)
                    if done is not None:
                        return done
            else:
                report.total += len(stripped)
                if compact is not None:
                    for serial, fresh in zip(
                        stripped, list(map(compact.add_new, stripped)), strict=True
                    ):
                        if fresh:
                            current.append(serial)
                        else:
                            immediate.append(
                                CommandOutcome(serial, _SKIPPED, "duplicate serial in input")
                            )
                else:
                    current.extend(stripped)
                if len(current) >= chunk_size:
                    planner._current = []
                    return current
            idle = await self._after_item(idle + len(batch), sink)
        return None

    # -- workers ---------------------------------------------------------------------------

    def _add_worker(self, sink: _Sink | None) -> None:
        """Start one more worker, up to ``concurrency``. Called once at the start and once per
        chunk read, so the job never has more workers than chunks (plus the one that finds
        the input exhausted)."""
        if self._workers < self._concurrency and self._workers_group is not None:
            self._workers += 1
            self._workers_group.start_soon(self._worker, sink)

    async def _worker(self, sink: _Sink | None) -> None:
        while True:
            try:
                chunk = await self._next_chunk(sink)
                if chunk is None:
                    return
                if self._stop_reason is not None:
                    outcomes: list[CommandOutcome] | None = _not_sent(
                        chunk.serials, self._stop_reason
                    )
                else:
                    outcomes = await self._dispatch(chunk)
                if outcomes is None:
                    await self._deliver_sent(chunk.serials, sink)
                else:
                    await self._deliver(outcomes, sink)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:  # a callback or the consumer failed
                self._abort(exc)
                return

    async def _dispatch(self, chunk: _Chunk) -> list[CommandOutcome] | None:
        """Send the chunk; its outcomes, or ``None`` when every serial ended ``sent``."""
        serials = chunk.serials
        sent_once = False
        attempt = 0
        self.report.chunks += 1
        try:
            while True:
                if self._limiter is not None:
                    await self._limiter.acquire()
                if not sent_once and self._journal is not None:
                    self._journal.write_inflight(chunk.index, serials)
                    self._journal.flush()
                sent_once = True
                self._in_flight += 1
                self.report.requests += 1
                try:
                    items = await self._send_chunk(serials)
                except anyio.get_cancelled_exc_class():
                    raise
                except Exception as exc:
                    verdict = classify_exception(exc)
                    outcomes = [
                        CommandOutcome(s, verdict.status, verdict.detail, exc) for s in serials
                    ]
                    retryable = verdict.retryable
                    if verdict.stop:
                        self._request_stop(
                            verdict.stop_reason or f"error: {type(exc).__name__}"
                        )
                else:
                    if len(items) == len(serials) and _all_sent(items):
                        return None
                    outcomes, retryable = classify_chunk(serials, items)
                finally:
                    self._in_flight -= 1
                if not retryable or attempt >= self._retry_unknown or self._stop_reason:
                    return outcomes
                attempt += 1
                self.report.retried_chunks += 1
                cap = min(30.0, self._retry_backoff * (2 ** (attempt - 1)))
                await self._clock.sleep(self._random.uniform(0, cap))
        except anyio.get_cancelled_exc_class():
            if sent_once:
                self._settle([CommandOutcome(s, _UNKNOWN, self._cancel_detail) for s in serials])
            else:
                self._settle(_not_sent(serials, self._stop_reason or "cancelled"))
            raise


# --------------------------------------------------------------------------------------------
# Functional entry points (what DevicesResource.send_commands / stream_commands call)
# --------------------------------------------------------------------------------------------


async def send_commands(
    send_chunk: SendChunk,
    serials: Iterable[Any] | AsyncIterable[Any],
    commands: Mapping[str, Any],
    **options: Any,
) -> CommandReport:
    """Run a bulk job and return its report (options: see :class:`CommandDispatcher`)."""
    return await CommandDispatcher(send_chunk, commands, **options).run(serials)


def stream_commands(
    send_chunk: SendChunk,
    serials: Iterable[Any] | AsyncIterable[Any],
    commands: Mapping[str, Any],
    **options: Any,
) -> AsyncGenerator[CommandOutcome, None]:
    """Run a bulk job, yielding outcomes as chunks settle (see :meth:`CommandDispatcher.stream`).

    ``commands`` and the options are validated at once, before anything is sent.
    """
    return CommandDispatcher(send_chunk, commands, **options).stream(serials)
