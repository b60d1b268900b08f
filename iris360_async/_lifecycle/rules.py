"""What the command state of an entity says about a command that was sent (pure, no I/O).

After ``sendCommandsBulk`` accepts a target, the target's entity carries each command as a
``Command`` attribute with ``pending: true`` and ``pending_value``; once the device confirms,
``pending`` clears and ``current_value`` holds the value (API.md §4.3, §4.11). Two questions
are answered from that state:

* :func:`reconcile_verdict` -- did a send whose answer was lost reach the server?
* :func:`track_state` -- has the device applied the command yet?

Values are compared as JSON values: ``1 == 1.0``, but ``True`` is not ``1`` and ``"true"`` is
not ``True``; a ``null`` sent is never found (the entity shows ``null`` for "no value" too).
When the two sides differ only in how they could have been encoded (a string against a
non-string, a boolean against 0/1) nothing is concluded: the answer is ``unknown`` with the
reason, never a guess that could re-send a command or claim one arrived.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from ..models.devices import Device
from ..models.entities import EntityAttribute, EntityCommand

__all__ = [
    "EntityRef",
    "TrackState",
    "Verdict",
    "VerdictKind",
    "command_attributes",
    "entity_for",
    "reconcile_verdict",
    "same_value",
    "track_state",
]

CONFIRMED_DETAIL = "confirmed from command state"


class EntityRef(msgspec.Struct, frozen=True):
    """Where the command state of a device is read: an entity URN and the ``tenant`` /
    ``scope`` headers its read needs (``None``: the client's)."""

    urn: str
    tenant: str | None = None
    scope: str | None = None


def entity_for(device: Device) -> EntityRef | None:
    """The entity carrying the command state of ``device``: its main entity.

    This mapping is inferred, not documented (API.md §7 item 9: the server presumably writes a
    device's commands to its main entity); pass another callable wherever ``entity=`` is
    accepted if your platform links them differently. ``None`` when the row has no main entity.
    """
    main = device.main_entity
    if main is None or not main.urn:
        return None
    return EntityRef(main.urn, main.tenant, main.scope)


# -- comparing values ---------------------------------------------------------------------------


class _Same(enum.Enum):
    EQUAL = "equal"
    DIFFERENT = "different"
    AMBIGUOUS = "ambiguous"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _compare(sent: Any, seen: Any) -> _Same:
    if isinstance(sent, bool) or isinstance(seen, bool):
        if isinstance(sent, bool) and isinstance(seen, bool):
            return _Same.EQUAL if sent is seen else _Same.DIFFERENT
        other = seen if isinstance(sent, bool) else sent
        if _is_number(other) and other in (0, 1):
            return _Same.AMBIGUOUS  # a boolean stored as 0/1?
        if isinstance(other, str):
            return _Same.AMBIGUOUS
        return _Same.DIFFERENT
    if _is_number(sent) and _is_number(seen):
        return _Same.EQUAL if sent == seen else _Same.DIFFERENT
    if isinstance(sent, str) != isinstance(seen, str) and seen is not None and sent is not None:
        return _Same.AMBIGUOUS  # one side may be the other's JSON text
    if isinstance(sent, Mapping) and isinstance(seen, Mapping):
        if set(sent) != set(seen):
            return _Same.DIFFERENT
        return _combine(_compare(sent[k], seen[k]) for k in sent)
    if isinstance(sent, (list, tuple)) and isinstance(seen, (list, tuple)):
        if len(sent) != len(seen):
            return _Same.DIFFERENT
        return _combine(_compare(a, b) for a, b in zip(sent, seen, strict=True))
    if type(sent) is type(seen):
        return _Same.EQUAL if sent == seen else _Same.DIFFERENT
    return _Same.DIFFERENT


def _combine(results: Iterable[_Same]) -> _Same:
    found = set(results)
    if _Same.AMBIGUOUS in found:
        return _Same.AMBIGUOUS
    return _Same.DIFFERENT if _Same.DIFFERENT in found else _Same.EQUAL


def same_value(sent: Any, seen: Any) -> bool | None:
    """Whether ``seen`` (from the entity) is the JSON value ``sent``: ``True``, ``False``, or
    ``None`` when it cannot be told (``"true"`` against ``True``, ``1`` against ``True``, a
    ``null`` sent against a ``null`` seen, which is also how a value never set reads)."""
    if sent is None and seen is None:
        return None
    result = _compare(sent, seen)
    return None if result is _Same.AMBIGUOUS else result is _Same.EQUAL


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- reading the attributes ---------------------------------------------------------------------


def command_attributes(state: Iterable[EntityAttribute]) -> dict[str, EntityCommand]:
    """``name -> Command attribute``; of repeated entries the one with the newest
    ``timestamp`` (as the platform's own client does), the later one on a tie."""
    out: dict[str, EntityCommand] = {}
    for attr in state:
        if not isinstance(attr, EntityCommand):
            continue
        kept = out.get(attr.id)
        if kept is None or _newer_or_same(attr, kept):
            out[attr.id] = attr
    return out


def _newer_or_same(a: EntityCommand, b: EntityCommand) -> bool:
    if a.timestamp is None or b.timestamp is None:
        return b.timestamp is None
    try:
        return bool(a.timestamp >= b.timestamp)
    except TypeError:  # naive against aware: keep the later entry
        return True


# -- reconcile ----------------------------------------------------------------------------------


class VerdictKind(str, enum.Enum):
    """What the command state says about a send whose answer was lost."""

    CONFIRMED = "confirmed"
    """Every command is pending with the value sent, or already current: the send arrived."""
    NOT_APPLIED = "not_applied"
    """None of the commands is pending with the value sent and none is current: the server
    did not act on it, so it may be sent again (once)."""
    MIXED = "mixed"
    """Some commands look applied and some not: stays ``unknown``."""
    UNREADABLE = "unreadable"
    """The state could not be read or compared: stays ``unknown``."""

    def __str__(self) -> str:
        return self.value


class Verdict(msgspec.Struct, frozen=True):
    """The answer for one serial.

    Attributes:
        kind: one of :class:`VerdictKind`.
        detail: ``"confirmed from command state"`` or the reason, per command.
    """

    kind: VerdictKind
    detail: str

    @property
    def resolved(self) -> bool:
        """Whether the serial can leave ``unknown`` (confirmed: ``sent``)."""
        return self.kind is VerdictKind.CONFIRMED

    @property
    def resend(self) -> bool:
        """Whether the commands may be sent again (the server provably did not act)."""
        return self.kind is VerdictKind.NOT_APPLIED


def unreadable(reason: str) -> Verdict:
    """A :class:`Verdict` that leaves the serial ``unknown`` because of ``reason``."""
    return Verdict(VerdictKind.UNREADABLE, reason)


def reconcile_verdict(
    commands_sent: Mapping[str, Any], state: Iterable[EntityAttribute]
) -> Verdict:
    """Did the commands reach the device's entity?

    Args:
        commands_sent: ``name -> value`` as sent.
        state: the entity's attributes (``entities.latest``, at least the Command attributes
            of the names sent); other kinds are ignored.

    Returns:
        ``confirmed`` when every command is pending with the value sent or already has it as
        ``current_value``; ``not_applied`` when none is; ``mixed`` when some are;
        ``unreadable`` when a command is missing or a value cannot be compared.
    """
    if not commands_sent:
        raise ValueError("commands_sent must name at least one command")
    attrs = command_attributes(state)
    arrived: list[str] = []
    missing: list[str] = []
    for name, value in commands_sent.items():
        attr = attrs.get(name)
        if attr is None:
            return unreadable(f"command {name!r} not in the entity's state")
        if not isinstance(attr.pending, bool):
            return unreadable(f"command {name!r}: no pending flag ({_show(attr.pending)})")
        pending_same = same_value(value, attr.pending_value) if attr.pending else False
        current_same = same_value(value, attr.current_value)
        if pending_same or current_same:
            arrived.append(name)
        elif pending_same is None or current_same is None:
            seen = attr.pending_value if attr.pending else attr.current_value
            return unreadable(
                f"command {name!r}: {_show(seen)} cannot be compared with {_show(value)} sent"
            )
        else:
            missing.append(name)
    if not missing:
        return Verdict(VerdictKind.CONFIRMED, CONFIRMED_DETAIL)
    if not arrived:
        return Verdict(
            VerdictKind.NOT_APPLIED,
            "not applied: " + ", ".join(_not_there(n, attrs[n]) for n in missing),
        )
    return Verdict(
        VerdictKind.MIXED,
        f"mixed command state: {', '.join(arrived)} written; "
        + ", ".join(_not_there(n, attrs[n]) for n in missing),
    )


def _not_there(name: str, attr: EntityCommand) -> str:
    if attr.pending:
        return f"{name} pending with {_show(attr.pending_value)}"
    return f"{name} not pending, current {_show(attr.current_value)}"


# -- tracking -----------------------------------------------------------------------------------


class TrackState(str, enum.Enum):
    """Where a device stands with the commands sent to it."""

    APPLIED = "applied"
    """No longer pending; the current value is the value sent (every command)."""
    PENDING = "pending"
    """Waiting for the device: pending with the value sent."""
    SUPERSEDED = "superseded"
    """No longer pending with the value sent and the current value differs: the device will
    not end with this value (another value replaced it, or the command never arrived)."""
    UNREADABLE = "unreadable"
    """The state could not be read or compared."""

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        """Whether tracking is over for the device (applied or superseded)."""
        return self in (TrackState.APPLIED, TrackState.SUPERSEDED)


def track_state(
    commands_sent: Mapping[str, Any], state: Iterable[EntityAttribute]
) -> tuple[TrackState, str | None]:
    """Where the device whose entity shows ``state`` stands with ``commands_sent``.

    Returns:
        The state and a detail (``None`` for ``applied`` and ``pending``). Over several
        commands: ``unreadable`` if any is, else ``superseded`` if any is, else ``pending`` if
        any is, else ``applied``.
    """
    if not commands_sent:
        raise ValueError("commands_sent must name at least one command")
    attrs = command_attributes(state)
    result, detail = TrackState.APPLIED, None
    for name, value in commands_sent.items():
        attr = attrs.get(name)
        if attr is None:
            return TrackState.UNREADABLE, f"command {name!r} not in the entity's state"
        if not isinstance(attr.pending, bool):
            return TrackState.UNREADABLE, f"command {name!r}: no pending flag"
        seen = attr.pending_value if attr.pending else attr.current_value
        same = same_value(value, seen)
        if same is None:
            return TrackState.UNREADABLE, (
                f"command {name!r}: {_show(seen)} cannot be compared with {_show(value)} sent"
            )
        if not same:
            result = TrackState.SUPERSEDED
            detail = _not_there(name, attr)
        elif attr.pending and result is TrackState.APPLIED:
            result = TrackState.PENDING
    return result, detail
