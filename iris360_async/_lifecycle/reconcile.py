"""Resolving ``unknown`` serials from the command state their send left behind."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .reader import CommandStateReader, ReadGate, StateUnreadable, for_each
from .rules import Verdict, reconcile_verdict, unreadable

__all__ = ["check_commands", "check_concurrency", "check_serials", "for_each", "reconcile"]

OnVerdict = Callable[[str, Verdict], None]


def check_commands(commands: Mapping[str, Any]) -> list[str]:
    """The command names of ``commands``; ``ValueError``/``TypeError`` when it is not a
    non-empty mapping of non-empty string names."""
    if not isinstance(commands, Mapping):
        raise TypeError(f"commands must be a mapping, got {type(commands).__name__}")
    if not commands:
        raise ValueError("commands must name at least one command")
    names = list(commands)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"command names must be non-empty strings, got {name!r}")
    return names


def check_serials(serials: Iterable[str]) -> list[str]:
    """``serials`` as a list without duplicates (first occurrence kept); ``TypeError`` /
    ``ValueError`` for anything but non-empty strings."""
    if isinstance(serials, (str, bytes)):
        raise TypeError("serials must be an iterable of strings, not a single string")
    out: dict[str, None] = {}
    for serial in serials:
        if not isinstance(serial, str):
            raise TypeError(f"serials must be strings, got {type(serial).__name__}")
        if not serial.strip():
            raise ValueError("serials must not be empty")
        out.setdefault(serial)
    return list(out)


def check_concurrency(concurrency: int) -> int:
    """``concurrency`` if it is an int >= 1."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise TypeError("concurrency must be an int")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    return concurrency


async def reconcile(
    reader: CommandStateReader,
    serials: Iterable[str],
    commands: Mapping[str, Any],
    *,
    concurrency: int = 8,
    on_verdict: OnVerdict | None = None,
    gate: ReadGate | None = None,
) -> dict[str, Verdict]:
    """Read the command state of every serial and decide what its send did.

    At most two requests per serial (device row, then entity; for many serials the device
    list's pages instead of a row each, :meth:`~.reader.CommandStateReader.survey`), at most
    ``concurrency`` at once
    and, with ``gate``, each one admitted by it (a job's ``concurrency="auto"`` limit). A read
    that fails makes that serial ``unreadable`` (the reason says why); nothing is retried here
    beyond the client's own read retries.

    Args:
        reader: where the state comes from (:meth:`CommandStateReader.for_client`).
        serials: the serials that ended ``unknown`` (duplicates read once).
        commands: the commands that were sent, ``name -> value``.
        concurrency: reads in flight at most.
        on_verdict: called with ``(serial, verdict)`` as each serial is decided (e.g. to
            journal it).
        gate: admits each read request (:class:`~.reader.ReadGate`); ``None``: only
            ``concurrency`` bounds them.

    Returns:
        ``serial -> Verdict`` for every serial, in input order.
    """
    names = check_commands(commands)
    todo = check_serials(serials)
    check_concurrency(concurrency)
    verdicts: dict[str, Verdict] = {}

    async def decide(serial: str) -> None:
        try:
            state = await reader.read(serial, names, gate=gate)
        except StateUnreadable as exc:
            verdict = unreadable(exc.reason)
        else:
            verdict = reconcile_verdict(commands, state)
        verdicts[serial] = verdict
        if on_verdict is not None:
            on_verdict(serial, verdict)

    await reader.survey(todo, gate=gate, concurrency=concurrency)
    await reader.locate_all(todo, gate=gate, concurrency=concurrency)
    await for_each(todo, decide, concurrency)
    return {serial: verdicts[serial] for serial in todo}
