"""Reconciliation inside a bulk job, over a fake fleet (no HTTP): each branch, the journal,
resume after a kill, and one outcome per serial in reports and streams."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest

from iris360_async import errors
from iris360_async._bulk import send_commands, stream_commands
from iris360_async._bulk.journal import Journal, read_previous
from iris360_async._bulk.options import JobOptions
from iris360_async._bulk.reconcile import RESEND_DETAIL, Reconciler, reconcile_journal
from iris360_async._lifecycle import CONFIRMED_DETAIL, CommandStateReader, EntityRef
from iris360_async.models import Device, EntityAttribute, EntityCommand, ProgressStats
from iris360_async.models.bulk import CommandOutcome, CommandReport, CommandStatus
from iris360_async.models.devices import DeviceMainEntity

COMMANDS = {"w_ota": True}
MIXED_COMMANDS = {"w_ota": True, "w_sleep": 60}
SENT_BODY = {"data": "Command sent!!"}


class Item(msgspec.Struct):
    original: Any
    headers: dict[str, Any] = {}
    exception: Any = None


class Fleet:
    """A fake server: ``send`` applies commands like ``sendCommandsBulk`` and keeps the
    command state each send leaves; ``find_device``/``read_commands`` read it back.

    ``plan[serial]``: what each send to that serial meets, in turn -- ``"drop"`` (applied,
    answer lost), ``"lost"`` (not applied, answer lost), ``"ok"`` (the default once the plan
    is used up). ``mixed``/``garbled``/``missing``: serials whose state reads mixed, cannot
    be compared, or that do not exist; ``failing``: serials whose reads fail.
    """

    def __init__(
        self, plan: dict[str, list[str]] | None = None, commands: dict[str, Any] = COMMANDS
    ) -> None:
        self.commands = commands
        self.plan = {s: list(p) for s, p in (plan or {}).items()}
        self.state: dict[str, dict[str, Any]] = {}
        self.applied: Counter[str] = Counter()
        self.sends: list[list[str]] = []
        self.reads: Counter[str] = Counter()
        self.mixed: set[str] = set()
        self.garbled: set[str] = set()
        self.missing: set[str] = set()
        self.failing: set[str] = set()
        self.on_read: Any = None

    async def send(self, serials: list[str]) -> Sequence[Item]:
        self.sends.append(list(serials))
        await anyio.lowlevel.checkpoint()
        modes = {self.plan[s].pop(0) if self.plan.get(s) else "ok" for s in serials}
        if "lost" in modes:
            raise errors.APITimeoutError("timed out", request_sent=True)
        for serial in serials:
            self.applied[serial] += 1
            for name, value in self.commands.items():
                self.state.setdefault(serial, {})[name] = value
        if "drop" in modes:
            raise errors.APIConnectionError("connection lost", request_sent=True)
        return [Item(SENT_BODY) for _ in serials]

    async def find_device(self, serial: str) -> Device | None:
        self.reads[serial] += 1
        await anyio.lowlevel.checkpoint()
        if self.on_read is not None:
            self.on_read(serial)
        if serial in self.failing:
            raise errors.APIConnectionError("read failed", request_sent=True)
        if serial in self.missing:
            return None
        return Device(id=1, serial=serial, name=serial,
                      main_entity=DeviceMainEntity(id=1, urn="urn:x:" + serial))

    async def read_commands(self, ref: EntityRef, names: Sequence[str]) -> list[EntityAttribute]:
        serial = ref.urn.removeprefix("urn:x:")
        self.reads[serial] += 1
        await anyio.lowlevel.checkpoint()
        if self.on_read is not None:
            self.on_read(serial)
        out: list[EntityAttribute] = []
        for name in names:
            if serial in self.garbled:
                out.append(EntityCommand(id=name, pending=True, pending_value="true"))
            elif name in self.state.get(serial, {}):
                value = self.state[serial][name]
                out.append(EntityCommand(id=name, pending=True, pending_value=value))
            else:
                out.append(EntityCommand(id=name, pending=False, current_value=None))
        if serial in self.mixed:
            out.append(EntityCommand(id="w_sleep", pending=True, pending_value=30))
        return out

    def reader(self) -> CommandStateReader:
        return CommandStateReader(self.find_device, self.read_commands)




def serials_(n: int) -> list[str]:
    return [f"SN{i:04d}" for i in range(n)]


def check(report: CommandReport, expected_total: int) -> None:
    """Every serial once: counts add up, and every outcome is listed once."""
    assert report.total == expected_total
    assert sum(report.counts.values()) == report.total
    listed = [o.serial for o in report.outcomes()]
    assert len(listed) == len(set(listed)) == report.total


async def test_lost_answers_are_confirmed_from_command_state() -> None:
    fleet = Fleet({"SN0001": ["drop"], "SN0004": ["drop"]})
    report = await send_commands(fleet.send, serials_(6), COMMANDS, chunk_size=1,
                                 reconcile_with=fleet.reader())
    check(report, 6)
    assert report.counts["sent"] == 6
    assert report.counts["unknown"] == 0
    assert report.reconciliation is not None
    assert report.reconciliation.confirmed == ["SN0001", "SN0004"]
    assert report.reconciliation.resent == []
    assert report.reconciliation.reads == 4  # two per unknown serial
    assert all(n == 1 for n in fleet.applied.values())
    assert set(fleet.reads) == {"SN0001", "SN0004"}


async def test_a_send_the_server_did_not_act_on_is_sent_again_once() -> None:
    fleet = Fleet({"SN0002": ["lost"]})
    report = await send_commands(fleet.send, serials_(4), COMMANDS, chunk_size=1,
                                 reconcile_with=fleet.reader())
    check(report, 4)
    assert report.counts == {"sent": 4, "rejected": 0, "failed": 0, "unknown": 0, "skipped": 0}
    assert report.reconciliation is not None
    assert report.reconciliation.resent == ["SN0002"]
    assert fleet.applied == Counter({s: 1 for s in serials_(4)})  # exactly once each
    assert report.requests == 5
    assert report.chunks == 5
    assert fleet.reads["SN0002"] == 2


async def test_a_resend_that_ends_unknown_is_reconciled_again_a_bounded_number_of_times() -> None:
    # lost, lost again, then applied with the answer lost: confirmed at the third read
    fleet = Fleet({"SN0000": ["lost", "lost", "drop"], "SN0001": ["lost", "lost", "lost"]})
    report = await send_commands(fleet.send, serials_(2), COMMANDS, chunk_size=1,
                                 reconcile_with=fleet.reader())
    check(report, 2)
    assert report.outcome("SN0000") == CommandOutcome("SN0000", CommandStatus.SENT)
    assert report.reconciliation is not None
    assert report.reconciliation.confirmed == ["SN0000"]
    assert report.reconciliation.rounds == 3
    # the server never acted on SN0001 in three sends: it did not get the command
    failed = report.outcome("SN0001")
    assert failed is not None
    assert failed.status is CommandStatus.FAILED
    assert failed.detail == "not applied after 2 re-sends: not applied: w_ota not pending, " \
        "current None"
    assert fleet.applied == Counter({"SN0000": 1})
    assert len(fleet.sends) == 6


async def test_mixed_and_unreadable_states_stay_unknown_with_the_reason() -> None:
    fleet = Fleet({s: ["drop"] for s in serials_(3)}, MIXED_COMMANDS)
    fleet.mixed.add("SN0000")
    fleet.garbled.add("SN0001")
    fleet.missing.add("SN0002")
    report = await send_commands(fleet.send, serials_(3), MIXED_COMMANDS, chunk_size=1,
                                 reconcile_with=fleet.reader())
    check(report, 3)
    assert report.counts["unknown"] == 3
    details = {o.serial: o.detail for o in report.failures}
    assert details["SN0000"] == ("unknown after reconciliation: mixed command state: w_ota "
                                 "written; w_sleep pending with 30")
    assert details["SN0001"] is not None
    assert "cannot be compared" in details["SN0001"]
    assert details["SN0002"] == "unknown after reconciliation: device 'SN0002' not found"
    assert report.reconciliation is not None
    assert report.reconciliation.unresolved == 3
    assert fleet.applied == Counter({s: 1 for s in serials_(3)})  # nothing re-sent


async def test_failing_reads_leave_the_serial_unknown_and_send_nothing() -> None:
    fleet = Fleet({"SN0000": ["lost"], "SN0001": ["drop"]})
    fleet.failing.update({"SN0000", "SN0001"})
    report = await send_commands(fleet.send, serials_(2), COMMANDS, chunk_size=1,
                                 reconcile_with=fleet.reader())
    check(report, 2)
    assert report.counts["unknown"] == 2
    for outcome in report.failures:
        assert outcome.detail is not None
        assert outcome.detail.startswith(
            "unknown after reconciliation: device look-up failed: APIConnectionError")
    assert len(fleet.sends) == 2  # a failed read never leads to a re-send


async def test_a_stream_yields_each_serial_once_with_its_reconciled_outcome() -> None:
    fleet = Fleet({"SN0001": ["drop"], "SN0003": ["lost"]})
    fleet.failing.add("SN0005")
    fleet.plan["SN0005"] = ["drop"]
    seen: list[ProgressStats] = []
    stream = stream_commands(fleet.send, serials_(6), COMMANDS, chunk_size=1, concurrency=16,
                             reconcile_with=fleet.reader(), on_progress=seen.append,
                             progress_interval=0)
    outcomes = [o async for o in stream]
    assert sorted(o.serial for o in outcomes) == serials_(6)
    by_serial = {o.serial: o for o in outcomes}
    assert by_serial["SN0001"] == CommandOutcome("SN0001", CommandStatus.SENT, CONFIRMED_DETAIL)
    assert by_serial["SN0003"] == CommandOutcome("SN0003", CommandStatus.SENT, RESEND_DETAIL)
    assert by_serial["SN0005"].status is CommandStatus.UNKNOWN
    # the reconciled ones come last, after every outcome of the job itself
    assert [o.serial for o in outcomes[-3:]] == ["SN0001", "SN0003", "SN0005"]
    finals = [s for s in seen if s.done]
    assert len(finals) == 1
    assert finals[0] is seen[-1]
    assert finals[0].counts == {"sent": 5, "rejected": 0, "failed": 0, "unknown": 1,
                                "skipped": 0}


async def test_verdicts_are_journaled_and_a_resume_does_not_redo_them(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    fleet = Fleet({"SN0001": ["drop"], "SN0002": ["lost"]}, MIXED_COMMANDS)
    fleet.mixed.add("SN0003")
    fleet.plan["SN0003"] = ["drop"]
    report = await send_commands(fleet.send, serials_(4), MIXED_COMMANDS, chunk_size=1,
                                 journal=journal, reconcile_with=fleet.reader())
    assert report.counts["sent"] == 3
    assert report.counts["unknown"] == 1
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert lines[0]["values"] == MIXED_COMMANDS
    verdicts = {(ln["serial"], ln["reconciled"]) for ln in lines if "reconciled" in ln}
    assert verdicts == {("SN0001", "confirmed"), ("SN0002", "not_applied"),
                        ("SN0003", "mixed")}
    assert read_previous(journal, MIXED_COMMANDS) == {
        "SN0000": "sent", "SN0001": "sent", "SN0002": "sent", "SN0003": "unknown"}
    reads = sum(fleet.reads.values())
    again = await send_commands(fleet.send, serials_(4), MIXED_COMMANDS, chunk_size=1,
                                journal=journal, reconcile_with=fleet.reader())
    assert again.counts["skipped"] == 4
    assert sum(fleet.reads.values()) == reads  # the mixed verdict is not read again
    assert fleet.applied == Counter({s: 1 for s in serials_(4)})


async def test_resume_after_a_kill_during_reconciliation(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    lost = serials_(8)
    fleet = Fleet({s: ["drop" if i % 2 else "lost"] for i, s in enumerate(lost)})
    killed = anyio.Event()
    decided: list[str] = []

    def kill_after_four_entity_reads(serial: str) -> None:
        decided.append(serial)
        if len(decided) == len(lost) + 4:  # every serial located, then four entities read
            killed.set()

    fleet.on_read = kill_after_four_entity_reads
    async with anyio.create_task_group() as tg:
        async def job() -> None:
            await send_commands(fleet.send, lost, COMMANDS, chunk_size=2, concurrency=1,
                                journal=journal, reconcile_with=fleet.reader())

        tg.start_soon(job)
        await killed.wait()
        tg.cancel_scope.cancel()
    text = journal.read_text()
    assert '"inflight"' in text
    assert '"reconciled"' in text
    fleet.on_read = None
    before = dict(fleet.applied)
    report = await send_commands(fleet.send, lost, COMMANDS, chunk_size=2, concurrency=1,
                                 journal=journal, reconcile_with=fleet.reader())
    assert report.counts["unknown"] == 0
    assert report.counts["failed"] == 0
    assert report.job_counts["sent"] == 8
    assert all(n == 1 for n in fleet.applied.values())
    assert len(fleet.applied) == 8
    assert before.keys() <= fleet.applied.keys()
    final = read_previous(journal, COMMANDS)
    assert set(final.values()) == {"sent"}
    assert len(final) == 8


async def test_a_stopped_job_keeps_its_unknown_serials_for_later(tmp_path: Path) -> None:
    fleet = Fleet({s: ["drop"] for s in serials_(4)})
    report = await send_commands(fleet.send, serials_(4), COMMANDS, chunk_size=1,
                                 concurrency=1, max_failures=2, journal=tmp_path / "j.jsonl",
                                 reconcile_with=fleet.reader())
    assert report.stopped_reason == "max_failures"
    assert report.counts["unknown"] == 2
    assert not fleet.reads
    # ... which reconciling the journal resolves
    options = JobOptions(journal=tmp_path / "j.jsonl")
    later = await reconcile_journal(Reconciler(fleet.send, COMMANDS, options, fleet.reader()))
    assert later.total == 2
    assert later.counts["sent"] == 2
    assert later.reconciliation is not None
    assert len(later.reconciliation.confirmed) == 2
    j = Journal.open(tmp_path / "j.jsonl", COMMANDS)
    try:
        assert j.reconciled == set(later.reconciliation.confirmed)
    finally:
        j.close()


@pytest.mark.parametrize("streaming", [False, True])
async def test_cancelled_while_reconciling_calls_on_cancel_once(streaming: bool) -> None:
    fleet = Fleet({s: ["drop"] for s in serials_(3)})
    started = anyio.Event()
    fleet.on_read = lambda serial: started.set()
    cancelled: list[CommandReport] = []

    async def job() -> None:
        if streaming:
            async for _ in stream_commands(fleet.send, serials_(3), COMMANDS, chunk_size=1,
                                           reconcile_with=fleet.reader(),
                                           on_cancel=cancelled.append):
                pass
        else:
            await send_commands(fleet.send, serials_(3), COMMANDS, chunk_size=1,
                                reconcile_with=fleet.reader(), on_cancel=cancelled.append)

    async with anyio.create_task_group() as tg:
        tg.start_soon(job)
        await started.wait()
        tg.cancel_scope.cancel()
    assert len(cancelled) == 1
    assert cancelled[0].stopped_reason == "cancelled"
    assert cancelled[0].counts["unknown"] == 3  # none decided yet


async def test_a_stopped_stream_yields_its_unknown_serials_as_they_stand() -> None:
    fleet = Fleet({s: ["drop"] for s in serials_(4)})
    outcomes = [o async for o in stream_commands(
        fleet.send, serials_(4), COMMANDS, chunk_size=1, concurrency=1, max_failures=2,
        reconcile_with=fleet.reader())]
    assert [o.status for o in outcomes] == [CommandStatus.UNKNOWN] * 2
    assert len({o.serial for o in outcomes}) == 2
    assert not fleet.reads  # a stopped job is not reconciled


@pytest.mark.parametrize("streaming", [False, True])
async def test_progress_says_how_many_serials_are_being_reconciled(streaming: bool) -> None:
    fleet = Fleet({"SN0001": ["drop"], "SN0004": ["lost"], "SN0006": ["drop"]})
    seen: list[ProgressStats] = []
    reading: list[int] = []
    fleet.on_read = lambda serial: reading.append(len(seen))
    kwargs: dict[str, Any] = {"chunk_size": 1, "concurrency": 2, "on_progress": seen.append,
                              "reconcile_with": fleet.reader()}
    if streaming:
        async for _ in stream_commands(fleet.send, serials_(8), COMMANDS, **kwargs):
            pass
    else:
        await send_commands(fleet.send, serials_(8), COMMANDS, **kwargs)
    marked = [i for i, s in enumerate(seen) if s.reconciling]
    assert len(marked) == 1
    stats = seen[marked[0]]
    assert stats.reconciling == 3
    assert not stats.done
    assert stats.settled == 8  # every chunk settled; three of them wait for their verdict
    assert reading
    assert min(reading) == marked[0] + 1  # said before the first read
    assert seen[-1].done
    assert seen[-1].reconciling == 0
    assert seen[-1].counts["unknown"] == 0
    assert [s.done for s in seen].count(True) == 1


class HeldReads(Fleet):
    """A fleet whose reads each take a few scheduler turns, counting reads in flight."""

    def __init__(self, plan: dict[str, list[str]]) -> None:
        super().__init__(plan)
        self.in_flight = 0
        self.peak = 0
        self.limit: Any = None  # () -> the limit reads are under, if any
        self.over_limit = 0

    async def find_device(self, serial: str) -> Device | None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.limit is not None and self.in_flight > self.limit():
            self.over_limit += 1
        try:
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            return await super().find_device(serial)
        finally:
            self.in_flight -= 1


async def test_reads_under_a_fixed_concurrency_use_all_of_it() -> None:
    fleet = HeldReads({s: ["drop"] for s in serials_(40)})
    report = await send_commands(fleet.send, serials_(40), COMMANDS, chunk_size=40,
                                 concurrency=16, reconcile_with=fleet.reader())
    assert report.counts["sent"] == 40
    assert fleet.peak == 16


async def test_reads_under_auto_follow_the_jobs_adaptive_limit() -> None:
    fleet = HeldReads({s: ["drop"] for s in serials_(40)})
    reconciler = Reconciler(fleet.send, COMMANDS,
                            JobOptions(chunk_size=40, concurrency="auto", max_concurrency=16),
                            fleet.reader())
    fleet.limit = lambda: reconciler._pacer.limit.limit  # type: ignore[union-attr]
    report = await reconciler.run(serials_(40))
    assert report.counts["sent"] == 40
    assert report.reconciliation is not None
    assert len(report.reconciliation.confirmed) == 40
    # the job's one lost answer halved its limit; the reads start there and grow it slowly,
    # never above it, where max_concurrency alone would allow 16 of them
    assert fleet.over_limit == 0
    assert 1 <= fleet.peak < 16


async def test_paced_reads_feed_the_limit_and_back_off_on_overload() -> None:
    from iris360_async._bulk.pacer import Pacer
    from iris360_async._bulk.reconcile import PacedReads
    from iris360_async._pacing import AdaptiveLimit
    from iris360_async._retry import ManualClock

    clock = ManualClock()
    pacer = Pacer(AdaptiveLimit(max_limit=32, initial=8), clock)
    reads = PacedReads(pacer, clock)
    async with reads.request():
        assert pacer.limit.in_flight == 1
    assert pacer.limit.in_flight == 0
    assert pacer.limit.limit == 8
    overloaded = errors.status_error_class(503)(
        "GET /entities -> 503", status=503, method="GET", url="http://127.0.0.1/entities")
    with pytest.raises(errors.APIStatusError):
        async with reads.request():
            raise overloaded
    assert pacer.limit.in_flight == 0
    assert pacer.limit.limit == 4  # multiplicative decrease
    with pytest.raises(errors.NotFoundError):  # not a load signal
        async with reads.request():
            raise errors.status_error_class(404)(
                "GET /entities -> 404", status=404, method="GET", url="http://127.0.0.1/e")
    assert pacer.limit.limit == 4
