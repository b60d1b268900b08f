"""The emulator's clock: wall time, optionally accelerated, plus an offset tests can move.

Token expiry, ``P1D``-style time-series bounds, the newest generated data point and the moments
devices connect to confirm their commands all read this clock, so a test can expire a token,
let data "arrive" or let devices confirm without sleeping. With ``time_scale=60`` one real
second is one emulated minute (demos of devices confirming over emulated hours).

The clock also has the SDK's ``Clock`` interface (``monotonic``, ``time``, ``sleep``): hand it
to code that waits (``track_commands(..., clock=emu.clock)``) and its waits run on emulated
time -- at once on a frozen clock (which they move forward), ``time_scale`` times faster
otherwise.
"""

from __future__ import annotations

import math
import time

import anyio
import anyio.lowlevel

__all__ = ["EmulatorClock"]


class EmulatorClock:
    """Seconds since the Unix epoch (UTC), as a float.

    Args:
        start: when given, the clock is frozen at this instant (seconds since the epoch) and only
            moves through :meth:`advance` (and :meth:`sleep`); otherwise it follows
            :func:`time.time` plus the offset accumulated by :meth:`advance`.
        time_scale: emulated seconds per real second (``> 0``; ignored when frozen); the
            emulated time equals the wall time when the clock is created and then runs
            ``time_scale`` times faster.
    """

    __slots__ = ("_advanced", "_frozen", "_offset", "_origin", "_scale")

    def __init__(self, start: float | None = None, *, time_scale: float = 1.0) -> None:
        if not (isinstance(time_scale, (int, float)) and math.isfinite(time_scale)
                and time_scale > 0):
            raise ValueError("time_scale must be a positive finite number")
        self._frozen = start
        self._offset = 0.0
        self._advanced = 0.0  # the sum of advance() calls
        self._scale = float(time_scale)
        self._origin = time.time()

    def now(self) -> float:
        """The current emulator time in seconds since the epoch."""
        if self._frozen is not None:
            return self._frozen + self._offset
        if self._scale == 1.0:
            return time.time() + self._offset
        origin = self._origin
        return origin + (time.time() - origin) * self._scale + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError("the emulator clock only moves forward")
        self._offset += seconds
        self._advanced += seconds

    def set_time_scale(self, time_scale: float) -> None:
        """Run the clock ``time_scale`` times faster than real time from now on (the current
        instant is kept; a frozen clock only records the value). A demo can send commands at
        real speed, then let the devices confirm them in accelerated time."""
        if not (isinstance(time_scale, (int, float)) and math.isfinite(time_scale)
                and time_scale > 0):
            raise ValueError("time_scale must be a positive finite number")
        now = self.now()
        self._origin = time.time()
        self._scale = float(time_scale)
        if self._frozen is None:
            self._offset = now - self._origin

    @property
    def frozen(self) -> bool:
        """Whether the clock only moves through :meth:`advance`."""
        return self._frozen is not None

    @property
    def time_scale(self) -> float:
        """Emulated seconds per real second."""
        return self._scale

    def real_speed(self) -> EmulatorClock:
        """This clock at real speed: same instant now, moved by the same :meth:`advance` calls,
        but one emulated second per real second (token lifetimes use it, so a client's JWT
        ``exp`` arithmetic stays right under ``time_scale``, also after
        :meth:`set_time_scale`). The clock itself when it is frozen."""
        if self._frozen is not None:
            return self
        return _RealSpeed(self)

    # -- the SDK's Clock interface ------------------------------------------------------------

    def monotonic(self) -> float:
        """Same as :meth:`now` (the emulator clock never goes back)."""
        return self.now()

    def time(self) -> float:
        """Same as :meth:`now`."""
        return self.now()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of emulated time: on a frozen clock move it forward at once (and let
        other tasks run), otherwise sleep ``seconds / time_scale`` real seconds."""
        seconds = max(0.0, float(seconds))
        if self._frozen is not None:
            self.advance(seconds)
            await anyio.lowlevel.checkpoint()
        else:
            await anyio.sleep(seconds / self._scale)


class _RealSpeed(EmulatorClock):
    """A real-speed view of an accelerated clock (see :meth:`EmulatorClock.real_speed`)."""

    __slots__ = ("_base", "_start")

    def __init__(self, base: EmulatorClock) -> None:
        super().__init__()
        self._base = base
        self._start = base.now() - base._advanced - time.time()  # emulated minus wall, unmoved

    def now(self) -> float:
        return time.time() + self._start + self._base._advanced

    def advance(self, seconds: float) -> None:
        self._base.advance(seconds)
