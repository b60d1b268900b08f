"""What happened to every device: resolving ``unknown`` outcomes and tracking confirmations.

Both read the state a command leaves on the device's main entity (``pending`` /
``pending_value`` / ``current_value``, API.md §4.3):

* :mod:`.rules` -- pure decisions: :func:`reconcile_verdict`, :func:`track_state`, the
  serial -> entity mapping :func:`entity_for` (inferred; replaceable);
* :mod:`.reader` -- :class:`CommandStateReader`, the reads (device row once, then the entity)
  over two async callables, bound to a client by :meth:`CommandStateReader.for_client`;
* :mod:`.reconcile` -- :func:`reconcile`: a verdict per unknown serial, reads bounded;
* :mod:`.track` -- :func:`track_commands`: an async iterator of changes and a running summary.
"""

from __future__ import annotations

from .reader import (
    CommandStateReader,
    EntityLocator,
    FindDevice,
    ReadCommands,
    ReadGate,
    StateUnreadable,
)
from .reconcile import reconcile
from .rules import (
    CONFIRMED_DETAIL,
    EntityRef,
    TrackState,
    Verdict,
    VerdictKind,
    entity_for,
    reconcile_verdict,
    same_value,
    track_state,
)
from .track import DeviceChange, TrackSummary, TrackUpdate, track_commands

__all__ = [
    "CONFIRMED_DETAIL",
    "CommandStateReader",
    "DeviceChange",
    "EntityLocator",
    "EntityRef",
    "FindDevice",
    "ReadCommands",
    "ReadGate",
    "StateUnreadable",
    "TrackState",
    "TrackSummary",
    "TrackUpdate",
    "Verdict",
    "VerdictKind",
    "entity_for",
    "reconcile",
    "reconcile_verdict",
    "same_value",
    "track_commands",
    "track_state",
]
