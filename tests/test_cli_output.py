"""Output for scripts and people: ``--fields`` of the list commands, and a timeout that names
``--timeout`` and its value."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from cli_support import InProcess, cli_env, json_lines

from iris360_async.cli._errors import describe_error
from iris360_async.cli._fields import CONNECTOR_FIELDS, DEVICE_FIELDS, ENTITY_FIELDS
from iris360_async.cli._settings import ConnectionSettings
from iris360_async.errors import APITimeoutError
from iris360_async.models import Device, Entity, SimpleOutConnector
from iris360_async.testing import EmulatorThread, FaultProfile, Iris360Emulator


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(monkeypatch, capsys)


@pytest.fixture(scope="module")
def emu() -> Iterator[Iris360Emulator]:
    with EmulatorThread(devices=40, seed=5) as emulator:
        yield emulator


# -- --fields -----------------------------------------------------------------------------------


def test_fields_choose_the_csv_columns_and_urn_is_one(cli: InProcess, emu: Iris360Emulator) -> None:
    fields = "serial,urn,type_code,properties.firmware"
    result = cli("devices", "list", "--format", "csv", "--fields", fields, env=cli_env(emu))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["serial", "urn", "type_code", "properties.firmware"]
    assert [r["serial"] for r in rows] == emu.fleet.serials
    assert all(r["urn"] == f"urn:ngsi-ld:Device:{r['serial']}" for r in rows)
    assert {r["type_code"] for r in rows} <= {"SCP", "SAP", "SEP", "GLG"}
    assert all(r["properties.firmware"].startswith("v") for r in rows)


def test_fields_keep_only_those_keys_in_json_lines(cli: InProcess, emu: Iris360Emulator) -> None:
    result = cli("devices", "list", "--limit", "3", "--fields", "serial,urn", env=cli_env(emu))
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout) == [
        {"serial": s, "urn": f"urn:ngsi-ld:Device:{s}"} for s in emu.fleet.serials[:3]
    ]


def test_without_fields_json_lines_keep_every_field(cli: InProcess, emu: Iris360Emulator) -> None:
    result = cli("devices", "list", "--limit", "1", env=cli_env(emu))
    assert {"serial", "main_entity", "type", "properties"} <= set(json_lines(result.stdout)[0])


def test_fields_of_entities_and_connectors(cli: InProcess, emu: Iris360Emulator) -> None:
    entities = cli("entities", "list", "--limit", "2", "--fields", "urn,datamodel",
                   "--format", "csv", env=cli_env(emu))  # fmt: skip
    assert entities.stdout.splitlines()[0] == "urn,datamodel"
    assert len(entities.stdout.splitlines()) == 3
    connectors = cli("connectors", "list", "--fields", "id,status", env=cli_env(emu))
    assert connectors.returncode == 0, connectors.stderr
    assert all(set(row) == {"id", "status"} for row in json_lines(connectors.stdout))


def test_fields_in_a_table_are_its_headers(cli: InProcess, emu: Iris360Emulator) -> None:
    result = cli("devices", "list", "--limit", "2", "--format", "table", "--fields",
                 "urn,last_data", env=cli_env(emu))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "urn" in result.stdout
    assert "last_data" in result.stdout
    assert "serial" not in result.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["devices", "list", "--fields", "serial,serail"], "'serail' is not a field of devices"),
        (["devices", "list", "--fields", "serial,"], "comma-separated names"),
        (["devices", "list", "--fields", "nope.firmware"], "'nope.firmware' is not a field"),
        (["entities", "list", "--fields", "serial"], "'serial' is not a field of entities"),
        (["devices", "list", "--fields", "serial", "--serials-only"], "cannot be combined"),
    ],
)
def test_bad_fields_are_refused_before_any_request(
    cli: InProcess, emu: Iris360Emulator, argv: list[str], message: str
) -> None:
    before = sum(emu.stats.requests.values())
    result = cli(*argv, env=cli_env(emu))
    assert result.returncode == 2
    assert message in result.stderr
    assert sum(emu.stats.requests.values()) == before


def test_the_unknown_field_message_lists_the_names(cli: InProcess, emu: Iris360Emulator) -> None:
    result = cli("devices", "list", "--fields", "urm", env=cli_env(emu))
    assert "choose from id, serial, urn, name" in result.stderr


@pytest.mark.parametrize(
    ("fields", "model"),
    [(DEVICE_FIELDS, Device), (ENTITY_FIELDS, Entity), (CONNECTOR_FIELDS, SimpleOutConnector)],
)
def test_field_paths_start_at_fields_of_the_record(fields: object, model: type) -> None:
    wire = {f.encode_name for f in msgspec.structs.fields(model)}
    assert fields.record_keys == wire  # type: ignore[attr-defined]
    for path in fields.named.values():  # type: ignore[attr-defined]
        assert path.split(".")[0] in wire


# -- timeouts -----------------------------------------------------------------------------------


def test_a_timeout_names_the_flag_and_the_value() -> None:
    url = "https://iris.example.com/api/public/v1/devices/paginate"
    exc = APITimeoutError("POST /api/public/v1/devices/paginate: timed out", method="POST", url=url)
    message, code = describe_error(exc, timeout=(30.0, "--timeout 30"))
    assert code == 2
    assert message == (
        "timed out after 30 s (--timeout 30) waiting for POST "
        "https://iris.example.com/api/public/v1/devices/paginate; raise --timeout "
        "(e.g. --timeout 60) if the server is slow"
    )


def test_a_connect_timeout_points_at_the_address_not_at_timeout() -> None:
    exc = APITimeoutError("timed out connecting", method="GET", url="https://x.example/a",
                          request_sent=False)  # fmt: skip
    message, _ = describe_error(exc, timeout=(30.0, "--timeout 30"))
    assert message.startswith("timed out connecting to the server (GET https://x.example/a)")
    assert "--base-url" in message


def test_the_timeout_and_its_origin() -> None:
    default = ConnectionSettings("https://x.example")
    assert (default.attempt_timeout("devices.list"), default.timeout_origin()) == (
        120.0,
        "the default",
    )
    assert default.attempt_timeout("timeseries.get") == 240.0
    flag = ConnectionSettings("https://x.example", timeout=30.0, timeout_source="--timeout")
    assert flag.timeout_origin() == "--timeout 30"
    env = ConnectionSettings("https://x.example", timeout=7.5, timeout_source="IRIS360_TIMEOUT")
    assert env.timeout_origin() == "IRIS360_TIMEOUT=7.5"
    # raising --timeout is enough: the wait for data is limited by the same value
    limits = ConnectionSettings("https://x.example", timeout=300.0).client_timeout("x")
    assert (limits.total, limits.read, limits.connect) == (300.0, 300.0, 10.0)
    assert ConnectionSettings("https://x.example", timeout=2.0).client_timeout("x").connect == 2.0


def test_a_timed_out_command_says_which_timeout_fired(
    cli: InProcess, emu: Iris360Emulator
) -> None:
    emu.set_faults(FaultProfile(slow_rate=1.0, slow_delay=5.0), endpoint="connectors.get")
    try:
        result = cli("connectors", "get", "1", "--timeout", "0.3",
                     env=cli_env(emu, IRIS360_MAX_RETRIES="0"))  # fmt: skip
    finally:
        emu.clear_faults()
    assert result.returncode == 2
    assert result.stderr.startswith("iris360: error: timed out after 0.3 s (--timeout 0.3) ")
    assert "GET " in result.stderr
    assert "raise --timeout (e.g. --timeout 0.6)" in result.stderr


def test_a_job_whose_requests_timed_out_names_the_timeout(
    cli: InProcess, emu: Iris360Emulator, tmp_path: Path
) -> None:
    serials = tmp_path / "serials.txt"
    serials.write_text("".join(f"{s}\n" for s in emu.fleet.serials[:20]), encoding="utf-8")
    emu.set_faults(FaultProfile(slow_rate=1.0, slow_delay=5.0), endpoint="devices.bulk")
    try:
        result = cli("devices", "send-commands", "--serials-file", str(serials), "--set",
                     "w_reboot=true", "--chunk-size", "10", "--concurrency", "2",
                     "--timeout", "0.3", env=cli_env(emu), cwd=tmp_path)  # fmt: skip
    finally:
        emu.clear_faults()
    assert result.returncode == 1
    assert (
        "iris360: 20 unknown after requests timed out after 0.3 s (--timeout 0.3); "
        "raise --timeout (e.g. --timeout 0.6) if the server is slow"
    ) in result.stderr
