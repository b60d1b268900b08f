"""Outcomes and reports of bulk command jobs (``devices.send_commands`` / ``stream_commands``).

Every serial read from a job's input ends with exactly one :class:`CommandOutcome` whose
:class:`CommandStatus` is one of:

========== ================================================================================
``sent``     the server answered ``{"data": "Command sent!!"}`` for that device
``rejected`` ``{"errors": "You cannot send any of: …"}``: nothing was sent to that device
``failed``   the item says the device did not get it (a broker error object, an exception
             text, ``null``), or the request provably never reached the server (the detail
             starts ``not sent:``; a resumed job sends it)
``unknown``  the request may have reached the server and its answer does not say (timeout
             after sending, 5xx, 3xx, unreadable answer or item): the device may or may not
             have the command
``skipped``  not sent by this job on purpose: duplicate in the input, already settled in the
             journal (``earlier`` then says how), or the job stopped before the serial's chunk
             was sent
========== ================================================================================

A :class:`CommandReport` keeps the outcomes compactly: ``sent`` serials as plain strings,
``skipped`` serials as strings plus a shared detail, full :class:`CommandOutcome` objects only
for ``rejected``/``failed``/``unknown`` (:attr:`CommandReport.failures`) and for serials the
journal had settled that way (:attr:`CommandReport.previous_failures`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from enum import Enum
from typing import Any

import msgspec

__all__ = [
    "CommandOutcome",
    "CommandReport",
    "CommandStatus",
    "OutcomeBatch",
    "ProgressStats",
    "Reconciliation",
]


class CommandStatus(str, Enum):
    """What happened to one serial of a bulk command job."""

    SENT = "sent"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


STATUSES: tuple[CommandStatus, ...] = tuple(CommandStatus)
_SENT = CommandStatus.SENT
FAILURE_STATUSES: frozenset[CommandStatus] = frozenset(
    {CommandStatus.REJECTED, CommandStatus.FAILED, CommandStatus.UNKNOWN}
)


class CommandOutcome(msgspec.Struct, frozen=True, gc=False):
    """The outcome of one serial.

    Attributes:
        serial: the device serial as sent (surrounding whitespace stripped); for an input item
            that is not a string, its ``repr``.
        status: one of :class:`CommandStatus`.
        detail: a human-readable reason for anything but ``sent`` (``None`` for ``sent``).
        raw: the item's ``original`` body from the server, or the exception that settled the
            chunk; ``None`` when there is nothing more to show.
        earlier: for a serial ``skipped`` because the journal settled it in an earlier run,
            the status it ended with then (its detail follows ``detail``); ``None`` otherwise.
    """

    serial: str
    status: CommandStatus
    detail: str | None = None
    raw: Any = None
    earlier: CommandStatus | None = None


class OutcomeBatch:
    """The outcomes of a batch of serials (a chunk's answer, serials the intake settled), held
    compactly: every serial in order, and the outcome of each serial that is not ``sent`` by
    its position. A ``sent`` serial needs no object until someone iterates (a stream, the
    journal). Iterating gives every outcome, in order.
    """

    __slots__ = ("others", "serials")

    def __init__(self, serials: list[str], others: dict[int, CommandOutcome]) -> None:
        self.serials = serials
        self.others = others

    @classmethod
    def of(cls, outcomes: Iterable[CommandOutcome]) -> OutcomeBatch:
        """The batch of ``outcomes`` (returned as is when already a batch)."""
        if isinstance(outcomes, OutcomeBatch):
            return outcomes
        serials: list[str] = []
        others: dict[int, CommandOutcome] = {}
        for i, outcome in enumerate(outcomes):
            serials.append(outcome.serial)
            if outcome.status is not _SENT:
                others[i] = outcome
        return cls(serials, others)

    def __len__(self) -> int:
        return len(self.serials)

    def __iter__(self) -> Iterator[CommandOutcome]:
        get = self.others.get
        for i, serial in enumerate(self.serials):
            outcome = get(i)
            yield CommandOutcome(serial, _SENT) if outcome is None else outcome

    def __contains__(self, outcome: object) -> bool:
        return any(o == outcome for o in self)

    def sent(self) -> list[str]:
        """The ``sent`` serials, in order."""
        others = self.others
        if not others:
            return self.serials
        return [serial for i, serial in enumerate(self.serials) if i not in others]


class ProgressStats(msgspec.Struct, frozen=True):
    """A snapshot handed to ``on_progress`` (at most every ``progress_interval`` seconds and
    once more when the job ends).

    Attributes:
        elapsed: seconds since the job started.
        read: serials read from the input so far (duplicates included).
        settled: serials with an outcome so far.
        counts: settled serials per status (all five keys always present).
        in_flight_chunks: chunks whose request is on the wire right now (requests in
            flight).
        requests: requests made so far (retries included).
        rate: settled serials per second since the start.
        done: ``True`` on the final call.
        stopped_reason: why the job stopped early, when it did.
        limit: requests allowed in flight now: the adaptive limit under
            ``concurrency="auto"``, the fixed ``concurrency`` otherwise.
        latency: smoothed latency of recent answered requests (seconds, on the job's clock;
            ``None`` before the first answer).
        total: serials in the input, when known (``len()`` of a list or tuple, or the
            ``total=`` hint of the job); ``None`` otherwise.
        eta: estimated seconds until every serial of ``total`` is settled, at the rate so far
            (``None`` without a total or before the first outcome; 0 when done).
        reconciling: serials being reconciled now (``reconcile=True``): the job sent every
            chunk and reads the command state of those that ended ``unknown``, re-sending the
            ones not applied; 0 otherwise (the final call has the reconciled counts).
    """

    elapsed: float
    read: int
    settled: int
    counts: dict[str, int]
    in_flight_chunks: int
    requests: int
    rate: float
    done: bool = False
    stopped_reason: str | None = None
    limit: int | None = None
    latency: float | None = None
    # -- known input length (total) and the time left it allows (eta) --
    total: int | None = None
    eta: float | None = None
    reconciling: int = 0


def input_total(serials: object, hint: int | None) -> int | None:
    """The ``total`` of a job's progress: ``hint`` if given, else ``len(serials)`` for a list
    or tuple (other inputs are read as they come and may be unbounded)."""
    if hint is not None:
        return hint
    return len(serials) if isinstance(serials, (list, tuple)) else None


def estimate_eta(total: int | None, settled: int, elapsed: float, done: bool) -> float | None:
    """Seconds left to settle ``total`` serials at the rate so far (see
    :attr:`ProgressStats.eta`)."""
    if done:
        return 0.0
    if total is None or settled <= 0 or elapsed <= 0:
        return None
    return max(total - settled, 0) * elapsed / settled


class Reconciliation(msgspec.Struct):
    """What reconciling a job's ``unknown`` serials did (``send_commands(reconcile=True)``,
    ``devices.reconcile``; the rules: docs/bulk.md, "What happened to every device").

    Attributes:
        looked_up: serials that were ``unknown`` and had their command state read.
        confirmed: serials the command state showed had the command: now ``sent``.
        resent: serials the command state showed were not applied, sent again (each listed
            once, even when sent again twice); their outcome is that of the re-send.
        unresolved: serials left ``unknown`` (a mixed or unreadable state, or a re-send that
            was itself ``unknown`` after the last round).
        reads: read requests made: a device look-up once per serial (none when the reader
            knows its entity), then one entity read per serial and round.
        rounds: rounds of reads.
    """

    looked_up: int = 0
    confirmed: list[str] = msgspec.field(default_factory=list)
    resent: list[str] = msgspec.field(default_factory=list)
    unresolved: int = 0
    reads: int = 0
    rounds: int = 0


class CommandReport:
    """The result of a bulk command job.

    Attributes:
        total: serials read from the input, duplicates included (blank lines are not serials).
            Serials the job never read (it stopped early) are not counted.
        counts: serials per status; all five keys always present and summing to ``total``.
        failures: every ``rejected``, ``failed`` and ``unknown`` outcome, in settling order.
        sent: the serials that ended ``sent``, in settling order.
        elapsed: seconds the job ran.
        requests: requests made (retries included).
        chunks: chunks dispatched to the server.
        retried_chunks: re-sends of ``unknown`` chunks (``retry_unknown``).
        stopped_reason: ``None`` when the job read its whole input; otherwise why it stopped
            (``"cancelled"``, ``"deadline"``, ``"max_failures"``, ``"authentication failed"``,
            ``"error: <ExceptionType>"`` for an unexpected error of the sender, the input or a
            callback).
        previous_counts: serials ``skipped`` because the journal had settled them, per the
            status they ended with then (keys ``sent``, ``rejected``, ``failed``,
            ``unknown``; a serial in flight when a run died counts as ``unknown``).
        previous_failures: those of them that ended ``rejected``/``failed``/``unknown``: their
            ``skipped`` outcomes, marked by ``earlier`` (the earlier status) and a detail
            ``"already <status> in journal: <earlier detail>"``. Kept by ``send_commands``
            only, like ``failures``.
        reconciliation: what reconciling the ``unknown`` serials did (``None``: the job did
            not reconcile). A reconciled serial's outcome replaces its ``unknown`` one.
        unstreamed: a streaming job cancelled or left early: the outcomes it settled (counted,
            journaled) but did not yield -- chunks cut short in flight (``unknown``), serials
            read but not sent (``skipped``), outcomes waiting for the consumer -- so that every
            serial's outcome is still at hand. Empty for ``send_commands``.
    """

    __slots__ = (
        "_index",
        "_skipped",
        "_skipped_detail",
        "_skipped_earlier",
        "chunks",
        "counts",
        "elapsed",
        "failures",
        "previous_counts",
        "previous_failures",
        "reconciliation",
        "requests",
        "retried_chunks",
        "sent",
        "stopped_reason",
        "total",
        "unstreamed",
    )

    def __init__(self) -> None:
        self.total = 0
        self.counts: dict[str, int] = {s.value: 0 for s in STATUSES}
        self.failures: list[CommandOutcome] = []
        self.sent: list[str] = []
        self._skipped: list[str] = []
        self._skipped_detail: list[str] = []
        self._skipped_earlier: list[CommandStatus | None] = []
        self.previous_counts: dict[str, int] = {
            s.value: 0 for s in STATUSES if s is not CommandStatus.SKIPPED
        }
        self.previous_failures: list[CommandOutcome] = []
        self.elapsed = 0.0
        self.requests = 0
        self.chunks = 0
        self.retried_chunks = 0
        self.stopped_reason: str | None = None
        self.reconciliation: Reconciliation | None = None
        self._index: dict[str, CommandOutcome] | None = None
        self.unstreamed: list[CommandOutcome] = []

    # -- building (engine side) --------------------------------------------------------------

    def _record(self, outcomes: Collection[CommandOutcome], *, keep: bool) -> None:
        """Account settled ``outcomes`` (a list or an :class:`OutcomeBatch`); ``keep=False``
        (streaming jobs): counts only."""
        batch = OutcomeBatch.of(outcomes)
        others = batch.others
        self.counts["sent"] += len(batch.serials) - len(others)
        if keep:
            self.sent.extend(batch.sent())
            self._index = None
        for outcome in others.values():
            self._add_other(outcome, keep)

    def _add_other(self, outcome: CommandOutcome, keep: bool) -> None:
        """Account one outcome that is not ``sent``."""
        status = outcome.status
        self.counts[status._value_] += 1
        if keep:
            if status is CommandStatus.SKIPPED:
                self._skipped.append(outcome.serial)
                self._skipped_detail.append(outcome.detail or "")
                self._skipped_earlier.append(outcome.earlier)
            else:
                self.failures.append(outcome)
        if outcome.earlier is not None:
            self._add_earlier(outcome, keep=keep)

    def _add_earlier(self, outcome: CommandOutcome, *, keep: bool) -> None:
        """Account a serial skipped because the journal settled it (``outcome.earlier``)."""
        earlier = outcome.earlier
        assert earlier is not None
        self.previous_counts[earlier._value_] += 1
        if keep and earlier in FAILURE_STATUSES:
            self.previous_failures.append(outcome)

    def _replace(
        self, pairs: list[tuple[CommandOutcome, CommandOutcome]], *, keep: bool
    ) -> None:
        """Replace settled outcomes: ``(old, new)`` pairs, ``old`` an ``unknown`` outcome or a
        ``skipped`` one with ``earlier`` (reconciliation). ``keep=False``: counts only."""
        if not pairs:
            return
        gone: set[str] = set()
        for old, _ in pairs:
            self.counts[old.status._value_] -= 1
            if old.earlier is not None:
                self.previous_counts[old.earlier._value_] -= 1
            gone.add(old.serial)
        if keep:
            self.failures = [
                o for o in self.failures
                if not (o.serial in gone and o.status is CommandStatus.UNKNOWN)
            ]
            self.previous_failures = [o for o in self.previous_failures if o.serial not in gone]
            kept = [
                i for i, (serial, earlier) in enumerate(
                    zip(self._skipped, self._skipped_earlier, strict=True)
                )
                if earlier is None or serial not in gone
            ]
            if len(kept) != len(self._skipped):
                self._skipped = [self._skipped[i] for i in kept]
                self._skipped_detail = [self._skipped_detail[i] for i in kept]
                self._skipped_earlier = [self._skipped_earlier[i] for i in kept]
        self._record([new for _, new in pairs], keep=keep)

    # -- reading ---------------------------------------------------------------------------

    @property
    def throughput(self) -> float:
        """Serials the job dispatched (everything except ``skipped``) per second."""
        if self.elapsed <= 0:
            return 0.0
        return (self.total - self.counts["skipped"]) / self.elapsed

    @property
    def completed(self) -> bool:
        """Whether the job read its whole input (it was not stopped early)."""
        return self.stopped_reason is None

    @property
    def job_counts(self) -> dict[str, int]:
        """The whole job's counts over every run of its journal: this run's counts, with the
        serials skipped because the journal settled them counted at their earlier status."""
        counts = dict(self.counts)
        for name, n in self.previous_counts.items():
            counts[name] += n
            counts["skipped"] -= n
        return counts

    @property
    def ok(self) -> bool:
        """Whether the whole job succeeded: this run completed, no serial ended
        ``rejected``/``failed``/``unknown`` in it, and none skipped because the journal had
        settled it ended that way in an earlier run."""
        failed = FAILURE_STATUSES
        return (
            self.completed
            and not any(self.counts[s._value_] for s in failed)
            and not any(self.previous_counts[s._value_] for s in failed)
        )

    @property
    def skipped(self) -> list[CommandOutcome]:
        """Every ``skipped`` outcome with its reason (and ``earlier``), in settling order."""
        return [
            CommandOutcome(s, CommandStatus.SKIPPED, d or None, earlier=e)
            for s, d, e in zip(
                self._skipped, self._skipped_detail, self._skipped_earlier, strict=True
            )
        ]

    def serials(self, status: CommandStatus | str) -> list[str]:
        """The serials that ended with ``status``, in settling order."""
        status = CommandStatus(status)
        if status is CommandStatus.SENT:
            return list(self.sent)
        if status is CommandStatus.SKIPPED:
            return list(self._skipped)
        return [o.serial for o in self.failures if o.status is status]

    def outcomes(self, status: CommandStatus | str | None = None) -> Iterator[CommandOutcome]:
        """Every outcome (or those with ``status``), grouped by status."""
        wanted = None if status is None else CommandStatus(status)
        if wanted in (None, CommandStatus.SENT):
            for serial in self.sent:
                yield CommandOutcome(serial, CommandStatus.SENT)
        if wanted is None:
            yield from self.failures
        elif wanted in (CommandStatus.REJECTED, CommandStatus.FAILED, CommandStatus.UNKNOWN):
            yield from (o for o in self.failures if o.status is wanted)
        if wanted in (None, CommandStatus.SKIPPED):
            yield from self.skipped

    def outcome(self, serial: str) -> CommandOutcome | None:
        """The outcome of ``serial`` (the first one, for a duplicated serial), or ``None``.

        The first call builds an index over every outcome (one dict entry per serial).
        """
        if self._index is None:
            index: dict[str, CommandOutcome] = {}
            for o in self.outcomes():
                if o.serial not in index or index[o.serial].status is CommandStatus.SKIPPED:
                    index[o.serial] = o
            self._index = index
        return self._index.get(serial)

    def to_dict(self, *, include_sent: bool = False) -> dict[str, Any]:
        """A JSON-friendly summary (``failures`` and ``previous_failures`` in full; ``sent``
        serials on request)."""
        data: dict[str, Any] = {
            "total": self.total,
            "counts": dict(self.counts),
            "previous_counts": dict(self.previous_counts),
            "job_counts": self.job_counts,
            "ok": self.ok,
            "elapsed": round(self.elapsed, 6),
            "throughput": round(self.throughput, 3),
            "requests": self.requests,
            "chunks": self.chunks,
            "retried_chunks": self.retried_chunks,
            "stopped_reason": self.stopped_reason,
            "failures": [
                {"serial": o.serial, "status": o.status.value, "detail": o.detail}
                for o in self.failures
            ],
            "previous_failures": [
                {
                    "serial": o.serial,
                    "status": o.status.value,
                    "earlier": o.earlier.value if o.earlier is not None else None,
                    "detail": o.detail,
                }
                for o in self.previous_failures
            ],
        }
        if self.reconciliation is not None:
            data["reconciliation"] = msgspec.structs.asdict(self.reconciliation)
        if include_sent:
            data["sent"] = list(self.sent)
        return data

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        stop = f", stopped_reason={self.stopped_reason!r}" if self.stopped_reason else ""
        return (
            f"CommandReport(total={self.total}, {counts}, elapsed={self.elapsed:.3f}s"
            f"{stop})"
        )
