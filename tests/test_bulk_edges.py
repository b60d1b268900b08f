"""Edges of the bulk engine: token failures, locks, resumability of local refusals, resumed
reports, worker counts and option forms (issue 11)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_bulk_emulator import ROOT, client_for
from test_bulk_engine import FakeServer, check_accounting, http_error, serials_

from iris360_async import Iris360Client, errors
from iris360_async._bulk import CommandDispatcher, resend_statuses, send_commands
from iris360_async._bulk.journal import (
    Journal,
    JournalLockedError,
    JournalTarget,
    commands_digest,
    normalize_base_url,
)
from iris360_async.models.bulk import CommandStatus
from iris360_async.testing import FaultProfile, Iris360Emulator

CMD = {"w_ota": True}
SKIPPED = CommandStatus.SKIPPED
FAILED = CommandStatus.FAILED


def token_error(exc: errors.Iris360Error) -> errors.Iris360Error:
    exc.while_authenticating = True
    return exc


# -- 1. a failure to obtain a token never makes a chunk unknown --------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        http_error(errors.InternalServerError, 503),
        errors.APITimeoutError("login timed out", request_sent=True),
        errors.APIConnectionError("connection reset during login", request_sent=True),
        http_error(errors.RateLimitError, 429),
        errors.ResponseDecodeError("token body unreadable", status=200),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_token_failure_stops_the_job_and_leaves_every_serial_resumable(
    tmp_path: Path, exc: errors.Iris360Error
) -> None:
    serials = serials_(100)
    journal = tmp_path / "job.jsonl"
    server = FakeServer()
    server.fail(0, token_error(exc))
    report = await send_commands(
        server, serials, CMD, chunk_size=10, concurrency=1, journal=journal
    )
    check_accounting(report)
    assert report.stopped_reason == "authentication failed"
    assert report.counts["unknown"] == 0
    assert report.counts["failed"] == 10
    assert all(
        (o.detail or "").startswith("not sent: could not obtain an access token (")
        for o in report.failures
    )
    assert all(
        o.detail == "not sent: job stopped (authentication failed)" for o in report.skipped
    )
    assert server.applied == {}

    resumed = await send_commands(
        FakeServer(), serials, CMD, chunk_size=10, concurrency=1, journal=journal
    )
    assert resumed.counts["sent"] == 100
    assert resumed.ok


async def test_login_answering_503_sends_nothing_and_a_resumed_job_sends_everything(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "job.jsonl"
    async with Iris360Emulator(devices=1000, seed=11) as emu:
        serials = list(emu.fleet.serials)
        emu.set_faults(FaultProfile(error_rate=1.0, error_status=503), endpoint="login")
        async with client_for(emu, max_retries=0) as client:
            report = await client.devices.send_commands(
                serials, CMD, chunk_size=50, concurrency=8, journal=journal
            )
        raised = report.failures[0].raw if report.failures else None
        assert getattr(raised, "while_authenticating", False)
        assert report.counts["unknown"] == 0
        assert report.counts["sent"] == 0
        assert emu.stats.requests["devices.bulk"] == 0
        assert report.stopped_reason == "authentication failed"
        for o in [*report.failures, *report.skipped]:
            assert (o.detail or "").startswith("not sent:"), o
        emu.set_faults(None, endpoint="login")
        async with client_for(emu) as client:
            resumed = await client.devices.send_commands(
                serials, CMD, chunk_size=50, concurrency=8, journal=journal
            )
        assert resumed.counts["skipped"] == 0
        assert resumed.counts["sent"] + resumed.counts["rejected"] == 1000
        assert emu.stats.max_applications("w_ota") == 1


# -- 9. command values JSON carries exactly ---------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), b"\x00", {1, 2}, 2**70])
async def test_inexact_command_values_are_refused_before_anything_is_sent(value: Any) -> None:
    server = FakeServer()
    with pytest.raises((TypeError, ValueError), match="command value w_ota"):
        await send_commands(server, ["A"], {"w_ota": value})
    assert server.calls == []


# -- 6. serials refused locally are resumable ---------------------------------------------------


async def test_non_string_serial_is_not_sent_and_a_fixed_resume_sends_it(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    server = FakeServer()
    first = await send_commands(server, ["A", 12345, "B"], CMD, journal=journal)
    (refused,) = first.failures
    assert refused.serial == "12345"
    assert refused.status is FAILED
    assert (refused.detail or "").startswith("not sent: invalid serial")
    resumed = await send_commands(server, ["A", "12345", "B"], CMD, journal=journal)
    assert resumed.counts["sent"] == 1
    assert server.applied == {"A": 1, "B": 1, "12345": 1}


async def test_serial_too_long_for_the_body_limit_is_resumable(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    long_serial = "L" * 80
    server = FakeServer()
    first = await send_commands(
        server, ["A", long_serial], CMD, journal=journal, max_body_bytes=60
    )
    (refused,) = first.failures
    assert (refused.detail or "").startswith("not sent: invalid serial: too long")
    resumed = await send_commands(
        server, ["A", long_serial], CMD, journal=journal, max_body_bytes=200
    )
    assert resumed.sent == [long_serial]
    assert server.applied[long_serial] == 1


# -- 10. workers, concurrency ceiling, resend forms ----------------------------------------------


async def test_workers_never_exceed_the_chunks_available() -> None:
    server = FakeServer()
    dispatcher = CommandDispatcher(server, CMD, chunk_size=100, concurrency=1024)
    report = await dispatcher.run(["A", "B"])
    assert report.sent == ["A", "B"]
    assert dispatcher._workers <= 2

    async def agen() -> Any:
        for s in serials_(25):
            yield s

    dispatcher = CommandDispatcher(FakeServer(), CMD, chunk_size=10, concurrency=1024)
    report = await dispatcher.run(agen())
    assert report.counts["sent"] == 25
    assert dispatcher._workers <= 4  # three chunks, and one worker that found the end


async def test_workers_still_fill_the_concurrency() -> None:
    server = FakeServer(steps=20)
    report = await send_commands(server, serials_(200), CMD, chunk_size=10, concurrency=8)
    assert report.counts["sent"] == 200
    assert server.max_in_flight == 8


def test_concurrency_has_a_ceiling() -> None:
    CommandDispatcher(FakeServer(), CMD, concurrency=1024)
    with pytest.raises(ValueError, match="concurrency must be <= 1024"):
        CommandDispatcher(FakeServer(), CMD, concurrency=1025)


@pytest.mark.parametrize(
    ("resend", "expected"),
    [
        ("unknown", {"unknown"}),
        ("failed,unknown", {"failed", "unknown"}),
        (" Failed , rejected ", {"failed", "rejected"}),
        (CommandStatus.UNKNOWN, {"unknown"}),
        (("failed",), {"failed"}),
        (["rejected", CommandStatus.FAILED], {"rejected", "failed"}),
        ({"unknown"}, {"unknown"}),
        ((), set()),
        (None, set()),
        ("", set()),
    ],
)
def test_resend_forms(resend: Any, expected: set[str]) -> None:
    assert resend_statuses(resend) == expected
    CommandDispatcher(FakeServer(), CMD, resend=resend)


@pytest.mark.parametrize(
    ("resend", "error", "match"),
    [
        ("u", ValueError, "'rejected', 'failed' and/or 'unknown'.*got 'u'"),
        ("sent", ValueError, "never sent again"),
        (["failed", "skipped"], ValueError, "got 'skipped'"),
        ([1], TypeError, "got int"),
        (5, TypeError, "got int"),
    ],
)
def test_bad_resend_lists_the_valid_statuses(
    resend: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        CommandDispatcher(FakeServer(), CMD, resend=resend)


async def test_resend_as_a_plain_string_resends_that_status(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    server = FakeServer()
    server.fail(0, http_error(errors.InternalServerError, 500), applied=False)
    first = await send_commands(server, ["A", "B"], CMD, journal=journal)
    assert first.counts["unknown"] == 2
    again = await send_commands(server, ["A", "B"], CMD, journal=journal, resend="unknown")
    assert again.counts["sent"] == 2


# -- 3. one job per journal ----------------------------------------------------------------------


async def test_a_second_job_on_a_locked_journal_is_refused_in_the_same_process(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "job.jsonl"
    first_server = FakeServer()
    first_server.gate = anyio.Event()
    first = CommandDispatcher(first_server, CMD, chunk_size=5, concurrency=2, journal=journal)
    second_server = FakeServer()
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.run, serials_(20))
        await first_server.wait_in_flight(2)
        with pytest.raises(JournalLockedError, match=f"journal {journal} is in use") as info:
            await send_commands(second_server, serials_(20), CMD, journal=journal)
        assert isinstance(info.value, ValueError)
        assert info.value.path == str(journal)
        first_server.gate.set()
    assert second_server.calls == []
    assert first.report.counts["sent"] == 20
    again = await send_commands(FakeServer(), serials_(20), CMD, journal=journal)
    assert again.counts["skipped"] == 20


def test_a_journal_locked_by_another_process_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    with subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(journal)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "locked"
            server = FakeServer()
            with pytest.raises(JournalLockedError):
                asyncio.run(send_commands(server, ["A"], CMD, journal=journal))
            assert server.calls == []
        finally:
            holder.kill()
    # the holder died: the operating system released its lock
    report = asyncio.run(send_commands(FakeServer(), ["A"], CMD, journal=journal))
    assert report.sent == ["A"]


LOCK_HOLDER = """
import sys
from iris360_async._bulk.journal import Journal
journal = Journal.open(sys.argv[1], {"w_ota": True})
print("locked", flush=True)
sys.stdin.read()
"""


async def test_the_lock_is_released_when_the_job_is_cancelled_or_fails(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    server = FakeServer()
    server.gate = anyio.Event()
    dispatcher = CommandDispatcher(server, CMD, chunk_size=5, concurrency=2, journal=journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.run, serials_(20))
        await server.wait_in_flight(2)
        tg.cancel_scope.cancel()
    Journal.open(journal, CMD).close()  # not locked any more

    def broken_progress(stats: Any) -> None:
        raise RuntimeError("bug in the progress callback")

    with pytest.raises(RuntimeError, match="progress callback"):
        await send_commands(
            FakeServer(), ["X"], CMD, journal=journal, on_progress=broken_progress
        )
    Journal.open(journal, CMD).close()


def test_journal_open_refusal_releases_the_lock(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    Journal.open(journal, CMD).close()
    with pytest.raises(ValueError, match="different commands"):
        Journal.open(journal, {"w_ota": False})
    Journal.open(journal, CMD).close()


# -- 7. a journal is bound to its server, tenant and scope ----------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://iris.example.com", "https://iris.example.com"),
        ("HTTPS://Iris.Example.COM/", "https://iris.example.com"),
        ("https://iris.example.com:443/", "https://iris.example.com"),
        ("http://iris.example.com:80", "http://iris.example.com"),
        ("http://iris.example.com:8080/", "http://iris.example.com:8080"),
        ("https://user:secret@iris.example.com/base/?token=abc#x", "https://iris.example.com/base"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
    ],
)
def test_base_url_normalisation(url: str, expected: str) -> None:
    assert normalize_base_url(url) == expected


def test_header_binds_the_target(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    target = JournalTarget.of("https://u:pw@IRIS.example.com:443/", "libelium", "/")
    Journal.open(journal, CMD, target=target).close()
    header = json.loads(journal.read_text().splitlines()[0])
    assert header["version"] == 2
    assert (header["base_url"], header["tenant"], header["scope"]) == (
        "https://iris.example.com", "libelium", "/",
    )
    assert "pw" not in journal.read_text()
    same = JournalTarget.of("https://iris.example.com", "libelium", "/")
    Journal.open(journal, CMD, target=same).close()


@pytest.mark.parametrize(
    ("other", "what"),
    [
        (JournalTarget.of("https://other.example.com", "libelium", "/"), "base url"),
        (JournalTarget.of("https://iris.example.com", "acme", "/"), "tenant"),
        (JournalTarget.of("https://iris.example.com", "libelium", "/plant"), "scope"),
    ],
)
async def test_another_target_is_refused_naming_the_override(
    tmp_path: Path, other: JournalTarget, what: str
) -> None:
    journal = tmp_path / "job.jsonl"
    target = JournalTarget.of("https://iris.example.com", "libelium", "/")
    await send_commands(FakeServer(), ["A"], CMD, journal=journal, journal_target=target)
    server = FakeServer()
    with pytest.raises(ValueError, match=f"another {what} .*journal_force=True") as info:
        await send_commands(server, ["A", "B"], CMD, journal=journal, journal_target=other)
    assert "--journal-force" in str(info.value)
    assert server.calls == []
    forced = await send_commands(
        server, ["A", "B"], CMD, journal=journal, journal_target=other, journal_force=True
    )
    assert forced.sent == ["B"]


async def test_commands_mismatch_message_names_an_option_that_exists(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    await send_commands(FakeServer(), ["A"], CMD, journal=journal)
    with pytest.raises(ValueError, match="different commands") as info:
        await send_commands(FakeServer(), ["A"], {"w_ota": False}, journal=journal)
    assert "force=True" not in str(info.value).replace("journal_force=True", "")
    report = await send_commands(
        FakeServer(), ["A"], {"w_ota": False}, journal=journal, journal_force=True
    )
    assert report.counts["skipped"] == 1


async def test_version_1_journal_is_refused_unless_forced(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    header = {"journal": "iris360-bulk", "version": 1, "commands_sha256": commands_digest(CMD)}
    line = {"serial": "A", "status": "sent", "detail": None}
    journal.write_text(json.dumps(header) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(ValueError, match=r"version-1 journal.*journal_force=True"):
        await send_commands(FakeServer(), ["A", "B"], CMD, journal=journal)
    server = FakeServer()
    report = await send_commands(server, ["A", "B"], CMD, journal=journal, journal_force=True)
    assert report.sent == ["B"]
    assert server.applied == {"B": 1}


async def test_devices_resource_binds_the_client_target(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    async with Iris360Emulator(devices=20, seed=5) as emu:
        serials = list(emu.fleet.serials)
        async with client_for(emu) as client:
            first = await client.devices.send_commands(serials[:10], CMD, journal=journal)
        assert first.counts["sent"] + first.counts["rejected"] == 10
        header = json.loads(journal.read_text().splitlines()[0])
        assert header["base_url"] == normalize_base_url(emu.base_url)
        assert (header["tenant"], header["scope"]) == (emu.tenant, emu.scope)
        requests = emu.stats.requests["devices.bulk"]
        async with Iris360Client(
            base_url=emu.base_url, username=emu.username, password=emu.password,
            tenant="another-tenant", scope=emu.scope,
        ) as other:
            with pytest.raises(ValueError, match="another tenant"):
                await other.devices.send_commands(serials, CMD, journal=journal)
        assert emu.stats.requests["devices.bulk"] == requests
        async with Iris360Client(
            base_url=emu.base_url.rstrip("/") + "/", username=emu.username,
            password=emu.password, tenant=emu.tenant, scope=emu.scope,
        ) as same:
            resumed = await same.devices.send_commands(serials, CMD, journal=journal)
        assert resumed.counts["skipped"] == 10
        assert emu.stats.max_applications("w_ota") == 1


# -- 8. a resumed report tells the whole job ------------------------------------------------------


async def test_resumed_report_carries_the_earlier_outcomes(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    serials = serials_(12)
    server = FakeServer(rejecting={serials[0]}, unknown_serials={serials[1]})
    server.fail(1, http_error(errors.InternalServerError, 500), applied=True)
    first = await send_commands(server, serials, CMD, chunk_size=4, concurrency=1, journal=journal)
    assert first.counts == {"sent": 6, "rejected": 1, "failed": 1, "unknown": 4, "skipped": 0}
    # a run killed with one chunk in flight: its serials read back as unknown
    with journal.open("a") as fh:
        fh.write(json.dumps({"inflight": ["X1", "X2"], "chunk": 9}) + "\n")

    resumed = await send_commands(
        server, [*serials, "X1", "X2", "NEW"], CMD, chunk_size=4, journal=journal
    )
    assert resumed.counts == {"sent": 1, "rejected": 0, "failed": 0, "unknown": 0, "skipped": 14}
    assert resumed.previous_counts == {"sent": 6, "rejected": 1, "failed": 1, "unknown": 6}
    assert resumed.job_counts == {"sent": 7, "rejected": 1, "failed": 1, "unknown": 6, "skipped": 0}
    assert not resumed.ok
    assert resumed.completed
    assert not resumed.failures
    by_serial = {o.serial: o for o in resumed.previous_failures}
    assert len(by_serial) == 8
    assert by_serial[serials[0]].status is SKIPPED
    assert by_serial[serials[0]].earlier is CommandStatus.REJECTED
    assert by_serial[serials[0]].detail == (
        "already rejected in journal: You cannot send any of: w_ota"
    )
    assert by_serial["X1"].earlier is CommandStatus.UNKNOWN
    assert by_serial["X1"].detail == (
        "already unknown in journal: in flight when a previous run stopped"
    )
    outcome = resumed.outcome(serials[4])
    assert outcome is not None
    assert outcome.earlier is CommandStatus.UNKNOWN
    data = resumed.to_dict()
    assert data["ok"] is False
    assert data["previous_counts"] == resumed.previous_counts
    assert data["job_counts"] == resumed.job_counts
    assert {"serial": "X2", "status": "skipped", "earlier": "unknown",
            "detail": "already unknown in journal: in flight when a previous run stopped"} in (
        data["previous_failures"]
    )
    json.dumps(data)


async def test_resumed_report_of_a_clean_job_is_ok(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    await send_commands(FakeServer(), serials_(10), CMD, journal=journal)
    again = await send_commands(FakeServer(), serials_(10), CMD, journal=journal)
    assert again.counts["skipped"] == 10
    assert again.previous_counts["sent"] == 10
    assert again.ok


async def test_streamed_job_counts_earlier_outcomes(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    await send_commands(FakeServer(rejecting={"A"}), ["A", "B"], CMD, journal=journal)
    dispatcher = CommandDispatcher(FakeServer(), CMD, journal=journal)
    outcomes = [o async for o in dispatcher.stream(["A", "B", "C"])]
    earlier = {o.serial: o.earlier for o in outcomes}
    assert earlier == {"A": CommandStatus.REJECTED, "B": CommandStatus.SENT, "C": None}
    assert dispatcher.report.previous_counts == {
        "sent": 1, "rejected": 1, "failed": 0, "unknown": 0
    }
    assert not dispatcher.report.ok


def test_journal_locked_error_is_public_and_picklable(tmp_path: Path) -> None:
    import pickle

    import iris360_async

    exc = iris360_async.JournalLockedError(tmp_path / "job.jsonl")
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is iris360_async.JournalLockedError
    assert again.path == exc.path
    assert str(again) == str(exc)
