"""What the emulator has seen: counters tests use to prove behaviour (e.g. exactly-once).

Memory is bounded by the fleet (one counter per serial and command), never by the number of
requests served.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ledger import CommandLedger

__all__ = ["CommandApplications", "EmulatorStats"]


class CommandApplications(Mapping[str, Counter[str]]):
    """Read-only view ``serial -> Counter(command -> times applied since the last reset)``.

    Reading a serial that never received a command gives an empty counter, so
    ``stats.command_applications["SN000001"]["w_ota"]`` is ``0`` rather than a ``KeyError``.
    """

    def __init__(self, ledger: CommandLedger | None) -> None:
        self._ledger = ledger
        self._baseline: dict[str, Counter[str]] = {}

    def _rebase(self) -> None:
        ledger = self._ledger
        self._baseline = {} if ledger is None else {c: n.copy() for c, n in ledger.counts.items()}

    def per_command(self, command: str) -> dict[str, int]:
        """``serial -> times applied`` for ``command`` (only serials applied at least once)."""
        if self._ledger is None:
            return {}
        counts = self._ledger.counts.get(command)
        if counts is None:
            return {}
        base = self._baseline.get(command)
        if base is None:
            return {s: n for s, n in counts.items() if n}
        return {s: n - base[s] for s, n in counts.items() if n - base[s]}

    def __getitem__(self, serial: str) -> Counter[str]:
        out: Counter[str] = Counter()
        if self._ledger is None:
            return out
        for command, counts in self._ledger.counts.items():
            base = self._baseline.get(command)
            n = counts.get(serial, 0) - (base[serial] if base is not None else 0)
            if n:
                out[command] = n
        return out

    def _serials(self) -> dict[str, None]:
        seen: dict[str, None] = {}
        if self._ledger is not None:
            for command in self._ledger.counts:
                seen.update(dict.fromkeys(self.per_command(command)))
        return seen

    def __contains__(self, serial: object) -> bool:
        return isinstance(serial, str) and bool(self[serial])

    def __iter__(self) -> Iterator[str]:
        return iter(self._serials())

    def __len__(self) -> int:
        return len(self._serials())


class EmulatorStats:
    """Counters of one emulator; :meth:`reset` zeroes them all.

    Attributes:
        logins: successful logins.
        login_failures: logins refused (wrong credentials or validation errors).
        refreshes: successful token refreshes.
        refresh_failures: refreshes refused (unknown, reused or expired refresh token).
        unauthenticated: requests answered 401 ``Unauthenticated.``.
        requests: requests received per endpoint key (see :mod:`.faults` for the keys).
        responses: per endpoint key, a counter of the statuses answered (a request whose
            connection was closed on purpose counts under status ``0``).
        faults: faults injected per kind (``error``, ``rate_limit``, ``reset``, ``drop``,
            ``slow``, ``malformed``, ``revoke``, ``redirect``, ``redirect_after``,
            ``forbidden``, ``item_broker_error``, ``item_exception``).
        faults_by_endpoint: the same per endpoint key (request-level faults only).
        in_flight: requests currently being handled (queued ones included).
        max_in_flight: the highest ``in_flight`` seen.
        processing: requests holding one of the ``capacity`` slots (only counted when the
            emulator has a capacity limit).
        max_processing: the highest ``processing`` seen.
        bulk_targets: targets received by ``sendCommandsBulk`` (all outcomes).
        bulk_received: per serial, how many ``sendCommandsBulk`` requests named it -- every
            request received counts, also one answered 401, a fault or an error afterwards (a
            client may call a device ``unknown`` only if a request naming it was received).
        redirect_hits: requests received at the redirect trap (``/redirected/...``, the
            default ``Location`` of redirect faults): clients that followed a redirect.
        command_applications: per serial, how many times each command was applied.
    """

    def __init__(self, ledger: CommandLedger | None = None) -> None:
        self.command_applications = CommandApplications(ledger)
        self._zero()

    def _zero(self) -> None:
        self.logins = 0
        self.login_failures = 0
        self.refreshes = 0
        self.refresh_failures = 0
        self.unauthenticated = 0
        self.requests: Counter[str] = Counter()
        self.responses: dict[str, Counter[int]] = {}
        self.faults: Counter[str] = Counter()
        self.faults_by_endpoint: dict[str, Counter[str]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.processing = 0
        self.max_processing = 0
        self.bulk_targets = 0
        self.bulk_received: Counter[str] = Counter()
        self.redirect_hits = 0
        self.command_applications._rebase()

    def reset(self) -> None:
        """Zero every counter (``in_flight`` keeps counting the requests still running)."""
        in_flight, processing = self.in_flight, self.processing
        self._zero()
        self.in_flight = self.max_in_flight = in_flight
        self.processing = self.max_processing = processing

    def count_fault(self, endpoint: str, kind: str) -> None:
        """Count one fault of ``kind`` injected on ``endpoint``."""
        self.faults[kind] += 1
        counter = self.faults_by_endpoint.get(endpoint)
        if counter is None:
            counter = self.faults_by_endpoint[endpoint] = Counter()
        counter[kind] += 1

    def record_response(self, endpoint: str, status: int) -> None:
        """Count one answer of ``endpoint`` with ``status``."""
        counter = self.responses.get(endpoint)
        if counter is None:
            counter = self.responses[endpoint] = Counter()
        counter[status] += 1

    def applications(self, serial: str, command: str | None = None) -> int:
        """Times ``command`` (or any command, when ``None``) was applied to ``serial``."""
        counts = self.command_applications[serial]
        return counts[command] if command is not None else sum(counts.values())

    def max_applications(self, command: str | None = None) -> int:
        """The highest number of times one serial received ``command`` (any single command
        when ``None``); ``1`` after a job means exactly-once for every commanded serial."""
        view = self.command_applications
        ledger = view._ledger
        commands = [command] if command is not None else list(ledger.counts) if ledger else []
        return max(
            (max(view.per_command(c).values(), default=0) for c in commands), default=0
        )

    def commanded_serials(self, command: str | None = None) -> set[str]:
        """Serials that received ``command`` (any command when ``None``) at least once."""
        view = self.command_applications
        if command is not None:
            return set(view.per_command(command))
        return set(view)

    def total_applications(self) -> int:
        """Commands applied in total (a target with two commands counts twice)."""
        view = self.command_applications
        ledger = view._ledger
        return sum(
            sum(view.per_command(c).values()) for c in (ledger.counts if ledger else ())
        )

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly summary (no per-serial detail)."""
        return {
            "logins": self.logins,
            "login_failures": self.login_failures,
            "refreshes": self.refreshes,
            "refresh_failures": self.refresh_failures,
            "unauthenticated": self.unauthenticated,
            "requests": dict(self.requests),
            "responses": {k: dict(v) for k, v in self.responses.items()},
            "faults": dict(self.faults),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "max_processing": self.max_processing,
            "bulk_targets": self.bulk_targets,
            "bulk_received_serials": len(self.bulk_received),
            "redirect_hits": self.redirect_hits,
            "commanded_serials": len(self.command_applications),
            "total_applications": self.total_applications(),
        }
