"""The ``iris360`` command against an emulator in a background thread, run in-process through
``main()``: help, formats, exit codes, error lines, the read commands, ``emulator`` and
``demo``. A few smoke tests start a real process (the console script, ``emulator``, ``demo``)."""

from __future__ import annotations

import csv
import io
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import (
    InProcess,
    cli_command,
    cli_env,
    json_lines,
    process_env,
    run_process,
)

from iris360_async.testing import EmulatorThread, Iris360Emulator

PASSWORD = "emulator-password"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(monkeypatch, capsys)


@pytest.fixture
def emu() -> Iterator[Iris360Emulator]:
    with EmulatorThread(devices=120, seed=3) as emulator:
        yield emulator


@pytest.fixture
def env(emu: Iris360Emulator) -> dict[str, str]:
    """The emulator's settings, tenant and scope included."""
    return cli_env(emu, tenant=True)


# -- help and usage -----------------------------------------------------------------------------

LEAVES = [
    ["demo"],
    ["emulator"],
    ["devices", "list"],
    ["devices", "send-commands"],
    ["entities", "list"],
    ["entities", "latest"],
    ["timeseries", "get"],
    ["connectors", "list"],
    ["connectors", "get"],
]


def test_help_lists_every_command_with_examples(cli: InProcess) -> None:
    result = cli("--help")
    assert result.returncode == 0
    for name in ("demo", "emulator", "devices", "entities", "timeseries", "connectors"):
        assert name in result.stdout
    assert "examples:" in result.stdout
    assert "IRIS360_PASSWORD" in result.stdout
    assert "exit codes:" in result.stdout


@pytest.mark.parametrize("leaf", LEAVES, ids=" ".join)
def test_every_command_has_help_with_examples(cli: InProcess, leaf: list[str]) -> None:
    result = cli(*leaf, "--help")
    assert result.returncode == 0, result.stderr
    assert "examples:" in result.stdout
    assert f"iris360 {' '.join(leaf)}" in result.stdout


def test_a_group_without_command_prints_its_help_and_exits_2(cli: InProcess) -> None:
    result = cli("devices")
    assert result.returncode == 2
    assert "send-commands" in result.stderr


def test_bad_flag_is_a_usage_error(cli: InProcess) -> None:
    result = cli("devices", "list", "--no-such-flag")
    assert result.returncode == 2
    assert "error: unrecognized arguments: --no-such-flag" in result.stderr
    assert result.stdout == ""


def test_version(cli: InProcess) -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("iris360 ")


def test_no_server_configured_is_a_usage_error(cli: InProcess) -> None:
    result = cli("devices", "list", env={})
    assert result.returncode == 2
    assert result.stderr.startswith("iris360: error: no server")
    assert "Traceback" not in result.stderr


def test_console_script_runs_the_same_main() -> None:
    # the README installs the package into a virtualenv: the script sits beside its python
    script = Path(sys.executable).parent / "iris360"
    if not script.exists():
        found = shutil.which("iris360")
        assert found is not None, "the iris360 console script is not installed"
        script = Path(found)
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, env=process_env({})
    )
    assert result.returncode == 0, result.stderr
    assert "send-commands" in result.stdout or "devices" in result.stdout


# -- devices list and formats -----------------------------------------------------------------


def test_devices_list_is_json_lines_when_piped(
    cli: InProcess, env: dict[str, str], emu: Iris360Emulator
) -> None:
    result = cli("devices", "list", "--page-size", "50", env=env)
    assert result.returncode == 0, result.stderr
    rows = json_lines(result.stdout)
    assert [r["serial"] for r in rows] == emu.fleet.serials
    assert rows[0]["type"]["name"]
    assert result.stderr == ""  # no progress bars or noise when not on a terminal


def test_devices_list_csv_and_limit(
    cli: InProcess, env: dict[str, str], emu: Iris360Emulator
) -> None:
    result = cli("devices", "list", "--limit", "7", "--format", "csv", env=env)
    assert result.returncode == 0, result.stderr
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(table) == 7
    assert list(table[0]) == ["id", "serial", "urn", "name", "type", "subscribed", "last_data"]
    assert [row["serial"] for row in table] == emu.fleet.serials[:7]
    assert table[0]["urn"] == f"urn:ngsi-ld:Device:{emu.fleet.serials[0]}"


def test_devices_list_table(cli: InProcess, env: dict[str, str], emu: Iris360Emulator) -> None:
    result = cli("--format", "table", "devices", "list", "--limit", "3", env=env)
    assert result.returncode == 0, result.stderr
    assert "serial" in result.stdout
    assert emu.fleet.serials[2] in result.stdout
    assert "3 rows" in result.stdout


def test_serials_only(cli: InProcess, env: dict[str, str], emu: Iris360Emulator) -> None:
    result = cli("devices", "list", "--serials-only", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == emu.fleet.serials


def test_wrong_password_one_login_clear_message_no_secret(
    cli: InProcess, env: dict[str, str], emu: Iris360Emulator
) -> None:
    secret = "not-the-password-42"
    result = cli("devices", "list", env={**env, "IRIS360_PASSWORD": secret})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("iris360: error: authentication failed (HTTP 401)")
    assert secret not in result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert emu.stats.login_failures == 1
    assert emu.stats.logins == 0
    assert emu.stats.requests["devices.paginate"] == 0


def test_debug_shows_a_traceback_without_secrets(
    cli: InProcess, env: dict[str, str], emu: Iris360Emulator
) -> None:
    secret = "not-the-password-43"
    result = cli("--debug", "devices", "list", env={**env, "IRIS360_PASSWORD": secret})
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert secret not in result.stdout + result.stderr


def test_connection_refused_exits_2(cli: InProcess) -> None:
    env = cli_env(None, IRIS360_BASE_URL="http://127.0.0.1:9", IRIS360_TOKEN="t0ken-value",
                  IRIS360_MAX_RETRIES="0")  # fmt: skip
    result = cli("devices", "list", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("iris360: error: cannot connect to the server")
    assert "check the server URL http://127.0.0.1:9 (IRIS360_BASE_URL)" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "t0ken-value" not in result.stderr


def test_a_server_url_with_the_api_root_is_refused_before_any_request(cli: InProcess) -> None:
    env = cli_env(None, IRIS360_BASE_URL="http://127.0.0.1:9/api/public/v1", IRIS360_TOKEN="t0k")
    result = cli("devices", "list", env=env)
    assert result.returncode == 2
    assert "must not end with /api/public/v1, which the client adds" in result.stderr
    assert "cannot connect" not in result.stderr


# -- entities, time series, connectors ----------------------------------------------------------


def test_entities_list_by_type(cli: InProcess, env: dict[str, str], emu: Iris360Emulator) -> None:
    result = cli("entities", "list", "--type", "Device", "--limit", "5", env=env)
    assert result.returncode == 0, result.stderr
    rows = json_lines(result.stdout)
    assert len(rows) == 5
    assert {r["datamodel"] for r in rows} == {"Device"}


def test_entities_latest(cli: InProcess, env: dict[str, str], emu: Iris360Emulator) -> None:
    urn = f"urn:ngsi-ld:Device:{emu.fleet.serials[0]}"
    result = cli("entities", "latest", urn, "--format", "csv", env=env)
    assert result.returncode == 0, result.stderr
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    by_id = {row["id"]: row for row in table}
    assert by_id["temperature"]["type"] == "Property"
    assert by_id["temperature"]["value"]
    assert "Command" in {row["type"] for row in table}


def test_entities_latest_of_a_missing_entity_exits_1(
    cli: InProcess, env: dict[str, str], emu: Iris360Emulator
) -> None:
    result = cli("entities", "latest", "urn:ngsi-ld:Device:NOPE", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("iris360: error: HTTP 404")
    assert "Entity not found" in result.stderr


def test_entities_latest_needs_tenant_and_scope(cli: InProcess, env: dict[str, str]) -> None:
    del env["IRIS360_TENANT"]
    result = cli("entities", "latest", "urn:ngsi-ld:Device:X", env=env)
    assert result.returncode == 2
    assert "tenant" in result.stderr


def test_timeseries_get_csv(cli: InProcess, env: dict[str, str], emu: Iris360Emulator) -> None:
    urn = f"urn:ngsi-ld:Device:{emu.fleet.serials[0]}"
    result = cli(
        "timeseries", "get", "--device", urn, "--measure", "temperature",
        "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-01T01:00:00Z", "--format", "csv",
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(table) == 6  # one point every 10 minutes, start inclusive, end exclusive
    assert table[0]["device_id"] == urn
    assert table[0]["measure_id"] == "temperature"
    assert table[0]["timestamp"] == "2025-01-01T00:00:00Z"
    assert table[-1]["timestamp"] == "2025-01-01T00:50:00Z"
    float(table[0]["value"])


def test_timeseries_get_limit_and_order(
    cli: InProcess, env: dict[str, str], emu: Iris360Emulator
) -> None:
    urn = f"urn:ngsi-ld:Device:{emu.fleet.serials[1]}"
    result = cli(
        "timeseries", "get", "--device", urn, "--measure", "humidity",
        "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-02T00:00:00Z",
        "--limit", "3", "--order", "desc", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json_lines(result.stdout)
    assert [r["timestamp"] for r in rows] == [  # the end is exclusive
        "2025-01-01T23:50:00Z",
        "2025-01-01T23:40:00Z",
        "2025-01-01T23:30:00Z",
    ]


def test_timeseries_get_aggregate(
    cli: InProcess, env: dict[str, str], emu: Iris360Emulator
) -> None:
    urn = f"urn:ngsi-ld:Device:{emu.fleet.serials[0]}"
    result = cli(
        "timeseries", "get", "--device", urn, "--measure", "temperature",
        "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-01T23:59:59Z",
        "--aggregate", "mean:PT6H", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json_lines(result.stdout)
    assert [r["timestamp"][11:16] for r in rows] == ["00:00", "06:00", "12:00", "18:00"]
    bad = cli("timeseries", "get", "--device", urn, "--aggregate", "mean", env=env)
    assert bad.returncode == 2
    assert "TYPE:INTERVAL" in bad.stderr


def test_connectors_list_and_get_masks_secrets(
    cli: InProcess, env: dict[str, str], emu: Iris360Emulator
) -> None:
    listed = cli("connectors", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json_lines(listed.stdout)
    assert len(rows) == len(emu.fleet.connectors)
    mqtt = next(r for r in rows if r["type"] == "mqtt")

    shown = cli("connectors", "get", str(mqtt["id"]), env=env)
    assert shown.returncode == 0, shown.stderr
    (record,) = json_lines(shown.stdout)
    assert record["id"] == mqtt["id"]
    assert record["password"] == "***"

    clear = cli("connectors", "get", str(mqtt["id"]), "--show-secrets", env=env)
    (record,) = json_lines(clear.stdout)
    assert record["password"] not in ("***", None)


def test_connector_not_found_exits_1(
    cli: InProcess, env: dict[str, str], emu: Iris360Emulator
) -> None:
    result = cli("connectors", "get", "9999", env=env)
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr


# -- emulator and demo --------------------------------------------------------------------------


def test_emulator_command_serves_until_interrupted(cli: InProcess) -> None:
    """Smoke test: a real process serving until Ctrl-C."""
    proc = subprocess.Popen(
        cli_command("emulator", "--port", "0", "--devices", "25"),
        env=process_env({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        exports: dict[str, str] = {}
        for _ in range(20):
            line = proc.stdout.readline()
            if not line or line.startswith("Press Ctrl-C"):
                break
            if line.strip().startswith("export "):
                name, _, value = line.strip()[len("export ") :].partition("=")
                exports[name] = value
        assert set(exports) == {
            "IRIS360_BASE_URL", "IRIS360_USERNAME", "IRIS360_PASSWORD", "IRIS360_TENANT",
            "IRIS360_SCOPE",
        }  # fmt: skip
        result = cli("devices", "list", env=exports)
        assert result.returncode == 0, result.stderr
        assert len(json_lines(result.stdout)) == 25
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_demo_runs_a_small_fleet_and_exits_0() -> None:
    """Smoke test: ``python -m iris360_async.cli demo`` as a real process."""
    result = run_process("demo", "--devices", "400", "--latency-ms", "0", "--format", "json",
                         "--track-minutes", "0", env={})  # fmt: skip
    assert result.returncode == 0, result.stderr
    (summary,) = json_lines(result.stdout)
    counts = summary["counts"]
    assert sum(counts.values()) == summary["discovered"] == 400
    assert counts["sent"] > 300
    assert summary["pages"] == 1
    assert summary["commands_applied"] == counts["sent"]
    assert summary["logins"] == 1
    assert "discovered 400 devices in 1 page (" in result.stderr


def test_demo_table_summary_and_forced_progress_bars(cli: InProcess) -> None:
    result = cli(
        "demo", "--devices", "150", "--latency-ms", "0", "--faults", "none",
        "--progress", "always", "--track-minutes", "0", env={},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for word in ("sent", "rejected", "unknown", "devices/s", "retries", "refreshes", "elapsed"):
        assert word in result.stdout
    assert "\x1b[" not in result.stdout  # the summary is plain text when piped
    assert "discover" in result.stderr  # the bars went to stderr
    assert "w_ota=true" in result.stderr
    assert "150/150" in result.stderr


def test_without_rich_help_works_and_commands_explain_the_extra(
    cli: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)  # `import rich` raises ImportError
    assert cli("--help", env={}).returncode == 0
    result = cli("devices", "list", env={})
    assert result.returncode == 2
    assert "pip install 'iris360-async[cli]'" in result.stderr
