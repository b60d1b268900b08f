"""``send_commands`` / ``stream_commands``: a bulk job over any ``send_chunk`` callable.

Every option is spelled out (``help()`` and IDEs show them); they are those of
:class:`~.options.JobOptions`, which validates them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterable, Collection, Iterable, Mapping
from typing import Any

from .._lifecycle import CommandStateReader
from .._retry import Clock
from ..models.bulk import CommandOutcome, CommandReport, CommandStatus
from .engine import CommandDispatcher, SendChunk
from .journal import JournalTarget
from .options import (
    DEFAULT_MAX_CONCURRENCY,
    CancelCallback,
    Concurrency,
    JobOptions,
    ProgressCallback,
)
from .reconcile import Reconciler

__all__ = ["send_commands", "stream_commands"]


async def send_commands(
    send_chunk: SendChunk,
    serials: Iterable[Any] | AsyncIterable[Any],
    commands: Mapping[str, Any],
    *,
    chunk_size: int = 100,
    concurrency: Concurrency = "auto",
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
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
    total: int | None = None,
    clock: Clock | None = None,
    journal_target: JournalTarget | None = None,
    reconcile_with: CommandStateReader | None = None,
) -> CommandReport:
    """Run a bulk job and return its report (the options: :class:`~.options.JobOptions`).

    ``reconcile_with``: look up the serials that end ``unknown`` through this reader and
    settle them (:class:`~.reconcile.Reconciler`).

    Raises:
        TypeError, ValueError: bad ``commands``, options or input (nothing is sent).
    """
    options = JobOptions.from_arguments(locals())
    if reconcile_with is not None:
        return await Reconciler(
            send_chunk, commands, options, reconcile_with, clock=clock,
            journal_target=journal_target,
        ).run(serials)
    dispatcher = CommandDispatcher(
        send_chunk, commands, options, clock=clock, journal_target=journal_target
    )
    return await dispatcher.run(serials)


def stream_commands(
    send_chunk: SendChunk,
    serials: Iterable[Any] | AsyncIterable[Any],
    commands: Mapping[str, Any],
    *,
    chunk_size: int = 100,
    concurrency: Concurrency = "auto",
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
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
    total: int | None = None,
    clock: Clock | None = None,
    journal_target: JournalTarget | None = None,
    reconcile_with: CommandStateReader | None = None,
) -> AsyncGenerator[CommandOutcome, None]:
    """Run a bulk job, yielding outcomes as chunks settle (see
    :meth:`~.engine.CommandDispatcher.stream`). ``commands`` and the options are validated at
    once, before anything is sent. With ``reconcile_with``, ``unknown`` outcomes are held back
    until reconciled (:meth:`~.reconcile.Reconciler.stream`).
    """
    options = JobOptions.from_arguments(locals())
    if reconcile_with is not None:
        return Reconciler(
            send_chunk, commands, options, reconcile_with, clock=clock,
            journal_target=journal_target,
        ).stream(serials)
    dispatcher = CommandDispatcher(
        send_chunk, commands, options, clock=clock, journal_target=journal_target
    )
    return dispatcher.stream(serials)
