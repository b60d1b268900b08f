"""``devices.send_commands(reconcile=True)``, ``stream_commands``, ``devices.reconcile`` and
``devices.track_commands`` against the emulator: what the client claims matches the emulator's
ledger, and nothing is commanded twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from emulator_support import client_for

from iris360_async import CommandStatus, TrackUpdate
from iris360_async._lifecycle import CONFIRMED_DETAIL
from iris360_async.models.bulk import ProgressStats
from iris360_async.testing import FaultProfile, Iris360Emulator
from iris360_async.testing.server_model import ServerModelSettings

T0 = 1_767_225_600.0
COMMANDS = {"w_reboot": True}
CHAOS = FaultProfile(drop_rate=0.1, error_rate=0.05, error_status=503)


async def test_a_faulty_job_ends_with_no_unknown_and_matches_the_ledger() -> None:
    async with Iris360Emulator(devices=400, seed=7, clock_start=T0, token_ttl=1e7) as emu, \
            client_for(emu) as iris:
        emu.set_faults(CHAOS, endpoint="devices.bulk")
        report = await iris.devices.send_commands(
            emu.fleet.serials, COMMANDS, chunk_size=10, concurrency=8, reconcile=True)
        assert report.counts["unknown"] == 0
        assert report.total == 400
        assert sum(report.counts.values()) == 400
        stats = report.reconciliation
        assert stats is not None
        assert stats.looked_up > 0
        assert stats.confirmed
        assert stats.resent
        assert stats.unresolved == 0
        # one device look-up per serial at most, one entity read per serial and round
        lookups = emu.stats.requests["devices.paginate"]
        assert lookups <= stats.looked_up
        assert stats.reads == lookups + emu.stats.requests["entities.latest"]
        assert emu.stats.requests["entities.latest"] <= stats.looked_up + len(stats.resent)
        # no device commanded twice; every sent one was applied, every other one was not
        assert emu.stats.max_applications("w_reboot") == 1
        assert emu.stats.commanded_serials("w_reboot") == set(report.sent)
        for serial in stats.confirmed:
            outcome = report.outcome(serial)
            assert outcome is not None
            assert outcome.status is CommandStatus.SENT


async def test_a_stream_yields_every_serial_once_none_unknown() -> None:
    async with Iris360Emulator(devices=200, seed=8, clock_start=T0, token_ttl=1e7) as emu, \
            client_for(emu) as iris:
        emu.set_faults(CHAOS, endpoint="devices.bulk")
        outcomes = [o async for o in iris.devices.stream_commands(
            emu.fleet.serials, COMMANDS, chunk_size=10, concurrency=4, reconcile=True)]
        assert sorted(o.serial for o in outcomes) == sorted(emu.fleet.serials)
        assert {o.status for o in outcomes} == {CommandStatus.SENT}
        assert any(o.detail == CONFIRMED_DETAIL for o in outcomes)
        assert emu.stats.max_applications("w_reboot") == 1


async def test_reconciling_an_earlier_jobs_journal(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    async with Iris360Emulator(devices=100, seed=9, clock_start=T0, token_ttl=1e7) as emu, \
            client_for(emu) as iris:
        emu.set_faults(CHAOS, endpoint="devices.bulk")
        first = await iris.devices.send_commands(
            emu.fleet.serials, COMMANDS, chunk_size=5, journal=journal)
        unknown = set(first.serials("unknown"))
        assert unknown
        emu.clear_faults()
        emu.stats.reset()
        report = await iris.devices.reconcile(journal)  # the commands come from the journal
        assert report.total == len(unknown)
        assert report.counts["sent"] == len(unknown)
        assert report.reconciliation is not None
        assert set(report.reconciliation.confirmed) | set(report.reconciliation.resent) == unknown
        assert emu.stats.commanded_serials("w_reboot") == set(report.reconciliation.resent)
        # a second pass finds nothing left to do
        again = await iris.devices.reconcile(journal, COMMANDS)
        assert again.total == 0
        with pytest.raises(ValueError, match="different commands"):
            await iris.devices.reconcile(journal, {"w_reboot": False})


async def test_tracking_a_journals_devices_until_they_applied(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    async with Iris360Emulator(devices=30, seed=4, clock_start=T0, sync_interval=(60, 600),
                               token_ttl=1e7) as emu, client_for(emu) as iris:
        await iris.devices.send_commands(emu.fleet.serials, COMMANDS, journal=journal)
        updates: list[TrackUpdate] = [
            u async for u in iris.devices.track_commands(
                journal=journal, interval=60, clock=emu.clock)
        ]
        final = updates[-1].summary
        assert (final.total, final.applied, final.complete) == (30, 30, True)
        assert final.elapsed <= 660
        with pytest.raises(TypeError, match="serials or journal"):
            iris.devices.track_commands(emu.fleet.serials, COMMANDS, journal=journal)
        with pytest.raises(TypeError, match="commands are needed"):
            iris.devices.track_commands(emu.fleet.serials)


async def test_a_journal_without_values_needs_the_commands(tmp_path: Path) -> None:
    journal = tmp_path / "old.jsonl"
    async with Iris360Emulator(devices=5, seed=1, clock_start=T0) as emu, \
            client_for(emu) as iris:
        await iris.devices.send_commands(emu.fleet.serials, COMMANDS, journal=journal)
        lines = journal.read_text().splitlines()
        header = json.loads(lines[0])
        del header["values"]
        journal.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
        with pytest.raises(ValueError, match="does not record the command values"):
            await iris.devices.reconcile(journal)
        report = await iris.devices.reconcile(journal, COMMANDS)
        assert report.total == 0


@pytest.mark.parametrize("needle", ["SN00012", "sn000299", "case-0007", "Sensor", "zz\tq", "\n"])
async def test_the_emulators_indexed_search_matches_a_scan(needle: str) -> None:
    async with Iris360Emulator(devices=300, seed=3, clock_start=T0) as emu, \
            client_for(emu) as iris:
        fleet = emu.fleet
        low = needle.lower()
        expected = {
            fleet.serials[i] for i in range(len(fleet.serials))
            if any(low in field.lower() for field in (
                fleet.serials[i], fleet.device_name(i), fleet.case_id(i) or "",
                fleet.device_type(i).name))
        }
        found = {d.serial async for d in iris.devices.paginate(search=needle, page_size=500)}
        assert found == expected


async def test_gateway_timeouts_of_the_server_model_are_reconciled_and_match_the_ledger() -> None:
    # 2 workers, 20 ms per 100 devices, the gateway gives up after 70 ms: ten requests at
    # once queue five deep, so the last ones time out (504) while the backend applies them
    model = ServerModelSettings.preset("capacity_bound", workers=2).scaled(0.1)
    async with Iris360Emulator(devices=1000, seed=11, clock_start=T0, token_ttl=1e7,
                               no_ota_fraction=0.0, server_model=model) as emu, \
            client_for(emu) as iris:
        emu.set_faults(CHAOS, endpoint="devices.bulk")
        report = await iris.devices.send_commands(
            emu.fleet.serials, COMMANDS, chunk_size=100, concurrency=10, reconcile=True)
        assert emu.server_model is not None
        timeouts = emu.server_model.stats.gateway_timeouts
        assert timeouts > 0
        assert report.total == 1000
        assert report.counts["unknown"] == 0
        stats = report.reconciliation
        assert stats is not None
        assert stats.looked_up >= 100 * timeouts  # a 504 leaves its whole chunk unknown
        assert stats.unresolved == 0
        assert stats.reads <= 2 * stats.looked_up + len(stats.resent)
        # no device commanded twice; the sent ones are exactly the ones the server applied
        assert emu.stats.max_applications("w_reboot") == 1
        assert emu.stats.commanded_serials("w_reboot") == set(report.sent)
        assert set(report.sent) == set(emu.fleet.serials)


async def test_under_auto_the_reads_follow_the_jobs_limit_and_resolve_every_unknown() -> None:
    model = ServerModelSettings.preset("capacity_bound", workers=2).scaled(0.1)
    async with Iris360Emulator(devices=600, seed=12, clock_start=T0, token_ttl=1e7,
                               no_ota_fraction=0.0, server_model=model) as emu, \
            client_for(emu) as iris:
        emu.set_faults(FaultProfile(drop_rate=0.3, error_rate=0.1, error_status=503),
                       endpoint="devices.bulk")
        seen: list[ProgressStats] = []
        report = await iris.devices.send_commands(
            emu.fleet.serials, COMMANDS, chunk_size=100, concurrency="auto",
            max_concurrency=8, reconcile=True, on_progress=seen.append)
        stats = report.reconciliation
        assert stats is not None
        assert stats.looked_up > 0
        assert report.counts["unknown"] == 0
        assert [s.reconciling for s in seen if s.reconciling] == [stats.looked_up]
        assert emu.stats.max_applications("w_reboot") == 1
        assert emu.stats.commanded_serials("w_reboot") == set(report.sent)


async def test_reconciling_a_journal_under_auto(tmp_path: Path) -> None:
    journal = tmp_path / "job.jsonl"
    async with Iris360Emulator(devices=100, seed=9, clock_start=T0, token_ttl=1e7) as emu, \
            client_for(emu) as iris:
        emu.set_faults(CHAOS, endpoint="devices.bulk")
        first = await iris.devices.send_commands(
            emu.fleet.serials, COMMANDS, chunk_size=5, journal=journal)
        unknown = set(first.serials("unknown"))
        assert unknown
        emu.clear_faults()
        report = await iris.devices.reconcile(journal, concurrency="auto")
        assert report.total == len(unknown)
        assert report.counts["sent"] == len(unknown)
        assert emu.stats.max_applications("w_reboot") == 1
