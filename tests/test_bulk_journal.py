"""The bulk journal: resume, truncated lines, changed commands, at-most-once across a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from test_bulk_engine import FakeServer, check_accounting, http_error, serials_

from iris360_async import errors
from iris360_async._bulk import CommandDispatcher, send_commands
from iris360_async._bulk.journal import INFLIGHT, Journal, commands_digest
from iris360_async.models.bulk import CommandOutcome, CommandStatus

CMD = {"w_ota": True}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_commands_digest_is_canonical() -> None:
    assert commands_digest({"a": 1, "b": 2}) == commands_digest({"b": 2, "a": 1})
    assert commands_digest({"a": 1}) != commands_digest({"a": 2})


def test_journal_layout(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    j = Journal.open(path, CMD, wall=lambda: 123.0)
    j.write_inflight(0, ["A", "B"])
    j.write_outcomes(
        [
            CommandOutcome("A", CommandStatus.SENT),
            CommandOutcome("B", CommandStatus.REJECTED, "You cannot send any of: w_ota"),
            CommandOutcome("A", CommandStatus.SKIPPED, "duplicate serial in input"),
        ]
    )
    j.close()
    j.close()
    assert j.closed
    header, inflight, a, b = lines(path)
    assert header["journal"] == "iris360-bulk"
    assert header["commands_sha256"] == commands_digest(CMD)
    assert header["commands"] == ["w_ota"]
    assert inflight == {"inflight": ["A", "B"], "chunk": 0, "ts": 123.0}
    assert a == {"serial": "A", "status": "sent", "detail": None, "ts": 123.0}
    assert b["status"] == "rejected"
    again = Journal.open(path, CMD)
    assert again.previous == {"A": "sent", "B": "rejected"}
    again.close()


def test_truncated_last_line_is_tolerated_and_cut(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    j = Journal.open(path, CMD)
    j.write_outcomes([CommandOutcome("A", CommandStatus.SENT)])
    j.close()
    with path.open("ab") as fh:
        fh.write(b'{"serial": "B", "status": "se')
    j = Journal.open(path, CMD)
    assert j.previous == {"A": "sent"}
    j.write_outcomes([CommandOutcome("C", CommandStatus.FAILED, "x")])
    j.close()
    assert [r.get("serial") for r in lines(path)] == [None, "A", "C"]


def test_truncated_header_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    path.write_bytes(b'{"journal": "iris3')
    j = Journal.open(path, CMD)
    j.close()
    assert lines(path)[0]["journal"] == "iris360-bulk"


def test_changed_commands_are_refused_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    Journal.open(path, CMD).close()
    with pytest.raises(ValueError, match="different commands"):
        Journal.open(path, {"w_ota": False})
    Journal.open(path, {"w_ota": False}, force=True).close()


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(ValueError, match="not a bulk command journal"):
        Journal.open(path, CMD)
    path.write_text("not json\n")
    with pytest.raises(ValueError, match="not a bulk command journal"):
        Journal.open(path, CMD)


def test_inflight_without_result_reads_back_as_inflight(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    j = Journal.open(path, CMD)
    j.write_inflight(0, ["A", "B"])
    j.write_outcomes([CommandOutcome("A", CommandStatus.SENT)])
    j.close()
    j = Journal.open(path, CMD, fsync=True)
    assert j.previous == {"A": "sent", "B": INFLIGHT}
    j.close()


async def test_resume_skips_everything_settled(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    serials = serials_(40)
    server = FakeServer(rejecting={serials[3]}, unknown_serials={serials[4]})
    server.fail(2, http_error(errors.InternalServerError, 500), applied=True)
    first = await send_commands(
        server, serials[:20], CMD, chunk_size=4, concurrency=1, journal=path
    )
    assert first.counts == {"sent": 14, "rejected": 1, "failed": 1, "unknown": 4, "skipped": 0}

    second = await send_commands(server, serials, CMD, chunk_size=4, concurrency=1, journal=path)
    check_accounting(second)
    assert second.counts == {"sent": 20, "rejected": 0, "failed": 0, "unknown": 0, "skipped": 20}
    details = {o.serial: o.detail for o in second.skipped}
    assert details[serials[0]] == "already sent in journal"
    assert details[serials[3]] == "already rejected in journal: You cannot send any of: w_ota"
    assert details[serials[4]] == f"already failed in journal: Device not found: {serials[4]}"
    assert (details[serials[8]] or "").startswith("already unknown in journal: server error")
    earlier = {o.serial: o.earlier for o in second.skipped}
    assert earlier[serials[0]] is CommandStatus.SENT
    assert earlier[serials[3]] is CommandStatus.REJECTED
    assert earlier[serials[8]] is CommandStatus.UNKNOWN
    assert second.previous_counts == {"sent": 14, "rejected": 1, "failed": 1, "unknown": 4}
    assert second.job_counts == {
        "sent": 34, "rejected": 1, "failed": 1, "unknown": 4, "skipped": 0
    }
    assert not second.ok
    assert max(server.applied.values()) == 1

    # opt-in re-send of failed/rejected/unknown
    third = await send_commands(
        server, serials, CMD, chunk_size=4, journal=path, resend=["rejected", "unknown"]
    )
    assert sorted(third.serials("rejected")) == [serials[3]]
    assert third.counts["sent"] == 4  # the chunk that was unknown (applied: now twice, asked for)
    assert third.counts["skipped"] == 40 - 5


async def test_resume_with_other_commands_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    await send_commands(FakeServer(), ["A"], CMD, journal=path)
    with pytest.raises(ValueError, match="different commands"):
        await send_commands(FakeServer(), ["A"], {"w_ota": False}, journal=path)
    report = await send_commands(
        FakeServer(), ["A"], {"w_ota": False}, journal=path, journal_force=True
    )
    assert report.counts["skipped"] == 1


class Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs in the real process."""


@pytest.mark.parametrize("cut", [0, 7])
async def test_at_most_once_across_a_simulated_crash(tmp_path: Path, cut: int) -> None:
    """The process dies while chunk 5's request is on the wire, after the server applied it;
    the journal is whatever was flushed at that instant (optionally with a torn last line)."""
    path = tmp_path / "job.jsonl"
    serials = serials_(200)
    server = FakeServer()
    snapshot: dict[str, bytes] = {}

    def crash(n: int, chunk: list[str]) -> None:
        if n == 5:
            server._apply(chunk)
            data = path.read_bytes()
            snapshot["data"] = data + b'{"serial": "SN99'[: cut]
            raise Crash

    server.hooks.append(crash)
    with pytest.raises(BaseException) as info:  # noqa: PT011 - a group wrapping Crash
        await send_commands(server, serials, CMD, chunk_size=10, concurrency=4, journal=path)
    assert type(info.value).__name__ in {"Crash", "BaseExceptionGroup"}
    path.write_bytes(snapshot["data"])  # what survived the kill
    server.hooks.clear()

    report = await send_commands(server, serials, CMD, chunk_size=10, concurrency=4, journal=path)
    check_accounting(report)
    assert max(server.applied.values()) == 1
    crashed_chunk = server.calls[5]
    for s in crashed_chunk:
        o = report.outcome(s)
        assert o is not None
        assert o.status is CommandStatus.SKIPPED
        assert "unknown" in (o.detail or "")
    # every device commanded at most once; all but those in flight at the crash exactly once
    marker = "in flight when a previous run stopped"
    ambiguous = {o.serial for o in report.skipped if marker in (o.detail or "")}
    assert set(crashed_chunk) <= ambiguous
    assert len(ambiguous) <= 4 * 10  # at most `concurrency` chunks were on the wire
    assert set(server.applied) | ambiguous == set(serials)
    again = await send_commands(server, serials, CMD, journal=path)
    assert again.counts["skipped"] == 200


async def test_cancelled_job_journals_in_flight_as_unknown(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    server = FakeServer()
    server.gate = anyio.Event()
    d = CommandDispatcher(server, CMD, chunk_size=5, concurrency=2, journal=path)
    with anyio.move_on_after(60) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(d.run, serials_(100))
            await server.wait_in_flight(2)
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught
    j = Journal.open(path, CMD)
    previous = j.previous
    j.close()
    assert sorted(previous) == sorted(s for call in server.calls for s in call)
    assert set(previous.values()) == {"unknown"}
    assert d.report.counts["unknown"] == 10


def test_read_previous_is_read_only(tmp_path: Path) -> None:
    from iris360_async._bulk.journal import read_previous

    path = tmp_path / "job.jsonl"
    assert read_previous(path, CMD) == {}
    j = Journal.open(path, CMD)
    j.write_inflight(0, ["A", "B"])
    j.write_outcomes([CommandOutcome("A", CommandStatus.SENT)])
    j.close()
    with path.open("ab") as fh:
        fh.write(b'{"serial": "B", "sta')
    before = path.read_bytes()
    assert read_previous(path, CMD) == {"A": "sent", "B": INFLIGHT}
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="different commands"):
        read_previous(path, {"w_ota": False})


def test_failures_that_never_reached_a_device_are_not_settled(tmp_path: Path) -> None:
    from iris360_async._bulk.journal import read_previous

    path = tmp_path / "j.jsonl"
    journal = Journal.open(path, {"w_ota": True})
    journal.write_inflight(0, ["A", "B", "C"])
    journal.write_outcomes(
        [
            CommandOutcome("A", CommandStatus.FAILED, "not sent: authentication failed (401)"),
            CommandOutcome("B", CommandStatus.FAILED, "broker timeout"),
            CommandOutcome("C", CommandStatus.REJECTED, "You cannot send any of: w_ota"),
        ]
    )
    journal.close()
    previous = read_previous(path, {"w_ota": True})
    assert "A" not in previous  # provably not acted on: sent again on resume
    assert previous["B"] == "failed"
    assert previous["C"] == "rejected"
