"""Following devices until they have applied the commands sent to them."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from .._retry import Clock, SystemClock
from .reader import CommandStateReader, StateUnreadable
from .reconcile import check_commands, check_concurrency, check_serials, for_each
from .rules import TrackState, track_state

__all__ = ["DeviceChange", "TrackSummary", "TrackUpdate", "track_commands"]

WAVE_PER_WORKER = 8
"""Devices read per worker between two updates (an update every ``concurrency * 8`` reads)."""


class DeviceChange(msgspec.Struct, frozen=True):
    """A device whose state changed (its first read counts as a change).

    Attributes:
        serial: the device.
        state: where it stands now.
        previous: where it stood at the previous read (``None`` at the first).
        detail: why it is ``superseded`` or ``unreadable`` (``None`` otherwise).
    """

    serial: str
    state: TrackState
    previous: TrackState | None = None
    detail: str | None = None


class TrackSummary(msgspec.Struct, frozen=True):
    """Where the fleet stands.

    Attributes:
        total: devices tracked.
        applied, pending, superseded, unreadable: devices in each state (devices not read yet
            count as ``pending``).
        sweeps: passes over the devices not done so far.
        requests: reads issued so far.
        elapsed: seconds since tracking started (on the tracking clock).
        complete: every device is done (applied, superseded, or unreadable for good).
        finished: this is the last update (complete, or ``until`` reached).
    """

    total: int
    applied: int
    pending: int
    superseded: int
    unreadable: int
    sweeps: int
    requests: int
    elapsed: float
    complete: bool
    finished: bool

    @property
    def counts(self) -> dict[str, int]:
        """``state -> devices`` for the four states."""
        return {"applied": self.applied, "pending": self.pending,
                "superseded": self.superseded, "unreadable": self.unreadable}


class TrackUpdate(msgspec.Struct, frozen=True):
    """What changed since the previous update, and the running summary."""

    changes: list[DeviceChange]
    summary: TrackSummary


def _check_interval(interval: float) -> float:
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise TypeError("interval must be a number of seconds")
    if not (math.isfinite(interval) and interval >= 0):
        raise ValueError("interval must be a finite number of seconds >= 0")
    return float(interval)


def _deadline(until: float | datetime | None, clock: Clock, start: float) -> float | None:
    """``until`` as a time on ``clock.monotonic()``."""
    if until is None:
        return None
    if isinstance(until, datetime):
        if until.tzinfo is None:
            raise ValueError("until must be an aware datetime (or seconds from now)")
        return start + (until.timestamp() - clock.time())
    if isinstance(until, bool) or not isinstance(until, (int, float)):
        raise TypeError("until must be seconds from now, a datetime or None")
    if not (math.isfinite(until) and until >= 0):
        raise ValueError("until must be a finite number of seconds >= 0")
    return start + float(until)


async def track_commands(
    reader: CommandStateReader,
    serials: Iterable[str],
    commands: Mapping[str, Any],
    *,
    until: float | datetime | None = None,
    interval: float = 60.0,
    concurrency: int = 8,
    clock: Clock | None = None,
) -> AsyncIterator[TrackUpdate]:
    """Read the command state of ``serials`` again and again until they have applied
    ``commands``; yield what changed and a running summary.

    Each sweep reads every device not done yet (a done device -- applied, superseded, or
    unreadable for good such as an unknown serial -- is not read again), ``concurrency`` reads
    at once, yielding an update every ``concurrency * 8`` reads; sweeps start ``interval``
    seconds apart. The first read of a device costs two requests (its row, then its entity),
    later reads one; for many devices the rows come from the device list instead
    (:meth:`~.reader.CommandStateReader.survey`). Tracking ends when every device is done or
    at ``until`` (after one last sweep at that time, read in full; a sweep the deadline
    overtakes ends between two updates); the last update has
    ``summary.finished``.

    Args:
        reader: where the state comes from (:meth:`CommandStateReader.for_client`).
        serials: the devices (duplicates tracked once).
        commands: the commands sent, ``name -> value``.
        until: stop after this many seconds, or at this (aware) datetime; ``None``: when done.
        interval: seconds from the start of one sweep to the start of the next.
        concurrency: reads in flight at most.
        clock: where time comes from (``monotonic``, ``time``, ``sleep``); the real clock by
            default (an emulator's ``emu.clock`` runs on emulated time).
    """
    names = check_commands(commands)
    todo = check_serials(serials)
    check_concurrency(concurrency)
    pause = _check_interval(interval)
    clock = clock if clock is not None else SystemClock()
    start = clock.monotonic()
    deadline = _deadline(until, clock, start)
    states: dict[str, TrackState] = {}
    counts = dict.fromkeys(TrackState, 0)
    counts[TrackState.PENDING] = len(todo)
    done: set[str] = set()
    sweeps = 0
    wave = concurrency * WAVE_PER_WORKER

    def summary(*, finished: bool) -> TrackSummary:
        return TrackSummary(
            total=len(todo), applied=counts[TrackState.APPLIED],
            pending=counts[TrackState.PENDING], superseded=counts[TrackState.SUPERSEDED],
            unreadable=counts[TrackState.UNREADABLE], sweeps=sweeps, requests=reader.requests,
            elapsed=clock.monotonic() - start, complete=len(done) == len(todo),
            finished=finished,
        )

    def past_deadline() -> bool:
        return deadline is not None and clock.monotonic() >= deadline

    found: list[DeviceChange] = []

    async def look(serial: str) -> None:
        detail: str | None
        try:
            attrs = await reader.read(serial, names)
        except StateUnreadable as exc:
            state, detail, final = TrackState.UNREADABLE, exc.reason, exc.final
        else:
            state, detail = track_state(commands, attrs)
            final = state.final
        if final:
            done.add(serial)
        previous = states.get(serial)
        if previous is not state:
            states[serial] = state
            counts[state] += 1
            counts[previous if previous is not None else TrackState.PENDING] -= 1
            found.append(DeviceChange(serial, state, previous, detail))

    def update(*, finished: bool) -> TrackUpdate:
        changes = found.copy()
        found.clear()
        return TrackUpdate(changes, summary(finished=finished))

    await reader.survey(todo, concurrency=concurrency)  # many devices: rows from the list
    await reader.locate_all(todo, concurrency=concurrency)  # the rest, before any is read
    remaining = list(todo)
    while remaining:
        sweeps += 1
        sweep_start = clock.monotonic()
        waves = [remaining[i:i + wave] for i in range(0, len(remaining), wave)]
        last_sweep = past_deadline()  # one started at the deadline is read in full
        for number, devices in enumerate(waves, start=1):
            await for_each(devices, look, concurrency)
            if number < len(waves):
                if not last_sweep and past_deadline():
                    yield update(finished=True)
                    return
                yield update(finished=False)
        remaining = [s for s in remaining if s not in done]
        if not remaining or past_deadline():
            break
        yield update(finished=False)
        wake = sweep_start + pause
        if deadline is not None:
            wake = min(wake, deadline)
        await clock.sleep(max(0.0, wake - clock.monotonic()))
    yield update(finished=True)
