"""Devices that confirm their commands: when each device connects, and the command state it
leaves on its entity.

Every device connects on its own schedule: every ``interval`` emulated seconds (drawn once per
device, uniformly from the configured range, from ``(seed, serial)``), at the instants
``phase + k * interval``. A device of the ``offline_fraction`` never connects. A command sent at
``t`` is confirmed at the first connection after ``t``: ``pending`` clears and ``current_value``
becomes the value sent. Nothing runs in the background -- the state is computed from the clock
when it is read, so it is the same whenever and however often it is read.

Only the last send per (device, command) and the last confirmed value are stored; one send of a
chunk shares one record between its serials, so memory is bounded by the fleet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any, NamedTuple

from .fleet import stable_hash

__all__ = ["CommandState", "DeviceSync"]

_UNIT = float(2**32)


class _Send(NamedTuple):
    at: float
    value: Any


class CommandState(NamedTuple):
    """What the entity of a device shows for one command at a given instant.

    Attributes:
        pending: a sent value waits for the device.
        pending_value: that value (``None`` when nothing is pending).
        current_value: the last value the device confirmed (``None`` before any).
        changed_at: when the state last changed (sent, or confirmed), epoch seconds; ``None``
            for a command never sent.
    """

    pending: bool
    pending_value: Any
    current_value: Any
    changed_at: float | None


_NEVER = CommandState(False, None, None, None)


class DeviceSync:
    """When devices connect, and the command state that follows.

    Args:
        seed: seed of the per-device schedules.
        interval: ``(shortest, longest)`` emulated seconds between two connections of a device
            (the interval of each device is drawn uniformly from it, once), or ``None`` for
            devices that never connect on their own.
        offline_fraction: share of the devices that never connect (``0..1``).
    """

    def __init__(
        self, *, seed: int, interval: tuple[float, float] | None, offline_fraction: float = 0.0
    ) -> None:
        if interval is not None:
            low, high = interval
            if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
                raise ValueError("sync interval must be 0 < shortest <= longest (seconds)")
        if not 0.0 <= offline_fraction <= 1.0:
            raise ValueError("offline_fraction must be between 0 and 1")
        self.seed = seed
        self.interval = interval
        self.offline_fraction = offline_fraction
        self._schedules: dict[str, tuple[float, float] | None] = {}
        self._sent: dict[str, dict[str, _Send]] = {}
        self._current: dict[str, dict[str, tuple[Any, float]]] = {}

    # -- schedules ----------------------------------------------------------------------------

    def _unit(self, what: str, serial: str) -> float:
        return stable_hash(self.seed, what, serial) / _UNIT

    def online(self, serial: str) -> bool:
        """Whether ``serial`` ever connects (devices of the offline fraction never do)."""
        return self.schedule(serial) is not None

    def schedule(self, serial: str) -> tuple[float, float] | None:
        """``(interval, phase)`` of ``serial``: it connects at ``phase + k * interval`` (epoch
        seconds, any integer ``k``); ``None`` when it never connects."""
        if serial in self._schedules:
            return self._schedules[serial]
        found: tuple[float, float] | None = None
        if self.interval is not None and self._unit("offline", serial) >= self.offline_fraction:
            low, high = self.interval
            every = low + (high - low) * self._unit("interval", serial)
            found = (every, every * self._unit("phase", serial))
        self._schedules[serial] = found
        return found

    def next_sync(self, serial: str, after: float) -> float | None:
        """The first connection of ``serial`` strictly after ``after`` (``None``: never)."""
        plan = self.schedule(serial)
        if plan is None:
            return None
        every, phase = plan
        return phase + (math.floor((after - phase) / every) + 1) * every

    # -- commands -----------------------------------------------------------------------------

    def record(
        self, serials: Sequence[str], commands: dict[str, Any], now: float,
        excluded: Iterable[str] = (),
    ) -> None:
        """``commands`` were written (pending) to each of ``serials`` at ``now``, except to
        those in ``excluded``."""
        skip = set(excluded)
        targets = [s for s in serials if s not in skip] if skip else serials
        for command, value in commands.items():
            sent = self._sent.get(command)
            if sent is None:
                sent = self._sent[command] = {}
            elif self.interval is not None:
                self._settle(command, sent, targets, now)
            sent.update(zip(targets, repeat(_Send(now, value))))

    def _settle(
        self, command: str, sent: dict[str, _Send], serials: Sequence[str], now: float
    ) -> None:
        """Before a new send replaces the last one: keep the value the device confirmed."""
        current = self._current.setdefault(command, {})
        for serial in serials:
            last = sent.get(serial)
            if last is not None:
                confirmed = self.next_sync(serial, last.at)
                if confirmed is not None and confirmed <= now:
                    current[serial] = (last.value, confirmed)

    def state(self, serial: str, command: str, now: float) -> CommandState:
        """The state of ``command`` on the entity of ``serial`` at ``now``."""
        last = self._sent.get(command, {}).get(serial)
        if last is not None:
            confirmed = self.next_sync(serial, last.at)
            if confirmed is not None and confirmed <= now:
                return CommandState(False, None, last.value, confirmed)
        current = self._current.get(command, {}).get(serial)
        if last is not None:
            return CommandState(True, last.value, None if current is None else current[0],
                                last.at)
        if current is not None:
            return CommandState(False, None, current[0], current[1])
        return _NEVER

    def acknowledge(self, serial: str | None, now: float) -> None:
        """The device ``serial`` (every device when ``None``) connects at ``now``: its pending
        commands are confirmed."""
        for command, sent in self._sent.items():
            current = self._current.setdefault(command, {})
            serials = list(sent) if serial is None else [serial] if serial in sent else []
            for s in serials:
                last = sent.pop(s)
                confirmed = self.next_sync(s, last.at)
                at = confirmed if confirmed is not None and confirmed <= now else now
                current[s] = (last.value, at)
