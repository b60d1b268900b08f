"""The chunk planner (pure): cuts serials into chunks by count and, optionally, body bytes.

Sealed: its state changes only through :meth:`ChunkPlanner.add` and
:meth:`ChunkPlanner.flush`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import msgspec

__all__ = ["ChunkPlanner", "body_base_size", "plan_chunks", "serial_size"]

_encode = msgspec.json.encode


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

    def __len__(self) -> int:
        """Serials in the chunk being filled."""
        return len(self._current)

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

    def feed(self, serials: list[str]) -> list[list[str]]:
        """Add ``serials`` in order; the chunks they closed (see :meth:`add`)."""
        if self.max_body_bytes is not None:
            return [done for done in map(self.add, serials) if done is not None]
        out: list[list[str]] = []
        size = self.chunk_size
        current = self._current
        start = 0
        while len(serials) - start >= size - len(current):
            end = start + size - len(current)
            current.extend(serials[start:end])
            out.append(current)
            current = self._current = []
            start = end
        current.extend(serials[start:])
        return out

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
