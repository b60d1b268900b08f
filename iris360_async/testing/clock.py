"""The emulator's clock: wall time plus an offset tests can move forward.

Token expiry, ``P1D``-style time-series bounds and the newest generated data point all read
this clock, so a test can expire a token or let data "arrive" without sleeping.
"""

from __future__ import annotations

import time

__all__ = ["EmulatorClock"]


class EmulatorClock:
    """Seconds since the Unix epoch (UTC), as a float.

    Args:
        start: when given, the clock is frozen at this instant (seconds since the epoch) and only
            moves through :meth:`advance`; otherwise it follows :func:`time.time` plus the offset
            accumulated by :meth:`advance`.
    """

    __slots__ = ("_frozen", "_offset")

    def __init__(self, start: float | None = None) -> None:
        self._frozen = start
        self._offset = 0.0

    def now(self) -> float:
        """The current emulator time in seconds since the epoch."""
        if self._frozen is not None:
            return self._frozen + self._offset
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError("the emulator clock only moves forward")
        self._offset += seconds

    @property
    def frozen(self) -> bool:
        """Whether the clock only moves through :meth:`advance`."""
        return self._frozen is not None
