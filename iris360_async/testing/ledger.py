"""Every command applied to every device: how many times, whether still pending, which value.

Counts are kept per command as ``Counter(serial -> n)``, pre-filled with every known serial, so
applying a command to a chunk of targets is one C-level ``Counter.update`` and an unknown serial
shows up as a change of the counter's length (then the update is undone). Memory is bounded by
the fleet, not by the number of requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import repeat
from typing import Any

try:  # the C helper behind Counter.update, without its per-call isinstance(Mapping) check
    from collections import _count_elements  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other interpreters

    def _count_elements(mapping: Counter[str], iterable: list[str]) -> None:
        mapping.update(iterable)

__all__ = ["CommandLedger"]


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and bool(a == b)


class CommandLedger:
    """Command bookkeeping of one fleet.

    Args:
        known: the serials of the fleet (a live mapping or set; membership is all that is used).
    """

    def __init__(self, known: dict[str, int]) -> None:
        self._known = known
        self.counts: dict[str, Counter[str]] = {}
        self._acked: dict[str, Counter[str]] = {}
        self._first_value: dict[str, Any] = {}
        self._values: dict[str, dict[str, Any]] = {}

    def counter(self, command: str) -> Counter[str]:
        """The live ``serial -> times applied`` counter of ``command``."""
        counts = self.counts.get(command)
        if counts is None:
            counts = self.counts[command] = Counter(dict.fromkeys(self._known, 0))
        return counts

    def add_serial(self, serial: str) -> None:
        """Make a newly created device known to every counter."""
        for counts in self.counts.values():
            counts.setdefault(serial, 0)

    def apply(
        self, serials: list[str], commands: dict[str, Any], excluded: Sequence[str] = ()
    ) -> bool:
        """Apply ``commands`` once to each of ``serials`` (duplicates count twice), except to
        the occurrences listed in ``excluded`` (a sub-multiset of ``serials``).

        Returns:
            ``False``, with nothing applied, when a serial is not part of the fleet.
        """
        for command, value in commands.items():
            counts = self.counter(command)
            before = len(counts)
            _count_elements(counts, serials)
            if len(counts) != before:
                # only the first command can meet an unknown serial: all counters hold the
                # same known serials, so nothing else needs undoing
                counts.subtract(serials)
                for serial in serials:
                    if serial not in self._known:
                        counts.pop(serial, None)
                return False
            if excluded:
                counts.subtract(excluded)
            if command in self._values or command in self._first_value:
                self._remember(command, value, serials, excluded)
            else:
                self._first_value[command] = value
        return True

    def _remember(
        self, command: str, value: Any, serials: list[str], excluded: Sequence[str]
    ) -> None:
        explicit = self._values.get(command)
        if explicit is None:
            if command not in self._first_value:
                self._first_value[command] = value
                return
            if _same(self._first_value[command], value):
                return
            explicit = self._values[command] = {}
        if excluded:
            skip = set(excluded)
            explicit.update((s, value) for s in serials if s not in skip)
        else:
            explicit.update(zip(serials, repeat(value)))

    def pending(self, serial: str) -> dict[str, Any]:
        """``command -> last value sent`` for the commands of ``serial`` not yet acknowledged."""
        out: dict[str, Any] = {}
        for command, counts in self.counts.items():
            sent = counts.get(serial, 0)
            if sent and sent > self._acked.get(command, Counter())[serial]:
                explicit = self._values.get(command)
                first = self._first_value.get(command)
                out[command] = first if explicit is None else explicit.get(serial, first)
        return out

    def acknowledge(self, serial: str | None = None) -> None:
        """Mark the commands of ``serial`` (of every device when ``None``) as picked up."""
        for command, counts in self.counts.items():
            if serial is None:
                self._acked[command] = counts.copy()
            else:
                acked = self._acked.get(command)
                if acked is None:
                    acked = self._acked[command] = Counter()
                acked[serial] = counts.get(serial, 0)
