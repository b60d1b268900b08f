"""Usage of ``iris360``: errors name the command at fault and suggest what was meant, each
command shows and accepts only the global options it uses (``--tenant`` where the server has
no tenant filter is refused, not ignored), and completion scripts for bash, zsh and fish."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from cli_support import InProcess, cli_env

from iris360_async.testing import EmulatorThread, Iris360Emulator


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(monkeypatch, capsys)


@pytest.fixture(scope="module")
def emu() -> Iterator[Iris360Emulator]:
    with EmulatorThread(devices=30, seed=2) as emulator:
        yield emulator


def _requests(emu: Iris360Emulator) -> int:
    return sum(emu.stats.requests.values())


# -- "did you mean" -----------------------------------------------------------------------------


@pytest.mark.parametrize("typo", [["--limt", "3"], ["--limt=3"]])
def test_a_mistyped_option_shows_the_commands_usage_and_a_suggestion(
    cli: InProcess, typo: list[str]
) -> None:
    result = cli("devices", "list", *typo)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: iris360 devices list ")
    assert "iris360 devices list: error: unrecognized arguments: --limt" in result.stderr
    assert "(did you mean --limit?)" in result.stderr
    assert result.stdout == ""


def test_a_typo_before_a_missing_required_option_is_pointed_out(cli: InProcess) -> None:
    result = cli("devices", "send-commands", "--serials-fle", "x.txt", "--set", "w_ota=true")
    assert result.returncode == 2
    assert "required: --serials-file" in result.stderr
    assert "(did you mean --serials-file?)" in result.stderr


def test_an_unknown_option_instead_of_a_required_one_is_named(cli: InProcess) -> None:
    result = cli("devices", "send-commands", "--serials-file", "x.txt", "--values", "{}")
    assert result.returncode == 2
    assert "required: --set (--values: no such option here; see iris360 devices " in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("argv", "usage", "suggestion"),
    [
        (["devcies", "list"], "usage: iris360 [", "did you mean devices?"),
        (["devices", "lsit"], "usage: iris360 devices [", "did you mean list?"),
        (["connectors", "gte", "7"], "usage: iris360 connectors [", "did you mean get?"),
        (["devices", "list", "--format", "tabel"], "usage: iris360 devices list",
         "did you mean table?"),
    ],
)  # fmt: skip
def test_a_mistyped_command_or_choice_gets_a_suggestion(
    cli: InProcess, argv: list[str], usage: str, suggestion: str
) -> None:
    result = cli(*argv)
    assert result.returncode == 2
    assert result.stderr.startswith(usage)
    assert suggestion in result.stderr


def test_nothing_is_suggested_when_nothing_is_close(cli: InProcess) -> None:
    result = cli("devices", "list", "--no-such-flag")
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in result.stderr
    assert "did you mean" not in result.stderr


def test_several_typos_get_one_suggestion_each(cli: InProcess) -> None:
    result = cli("devices", "list", "--limt", "3", "--serch", "x")
    assert result.returncode == 2
    assert "did you mean --limit for --limt, --search for --serch?" in result.stderr


# -- global options a command does not use ------------------------------------------------------


def test_emulator_help_lists_only_what_the_emulator_uses(cli: InProcess) -> None:
    result = cli("emulator", "--help")
    assert result.returncode == 0
    for option in ("--base-url", "--username", "--token", "--tenant", "--scope", "--timeout",
                   "--format"):  # fmt: skip
        assert option not in result.stdout
    for option in ("--port", "--devices", "--latency-ms", "--faults", "--seed", "--debug"):
        assert option in result.stdout


def test_demo_help_has_its_output_format_but_no_connection(cli: InProcess) -> None:
    result = cli("demo", "--help")
    assert "--format" in result.stdout
    assert "--base-url" not in result.stdout
    assert "--tenant" not in result.stdout


@pytest.mark.parametrize("where", ["after", "before"])
def test_devices_list_refuses_a_tenant_instead_of_listing_every_tenant(
    cli: InProcess, emu: Iris360Emulator, where: str
) -> None:
    before = _requests(emu)
    argv = ["devices", "list", "--tenant", "other"]
    if where == "before":
        argv = ["--tenant", "other", "devices", "list"]
    result = cli(*argv, env=cli_env(emu))
    assert result.returncode == 2
    assert "--tenant is not accepted here" in result.stderr
    assert "not filtered by tenant" in result.stderr
    assert "iris360 entities list --tenant TENANT --scope SCOPE --type Device" in result.stderr
    assert result.stdout == ""
    assert _requests(emu) == before  # refused before anything was sent


def test_the_tenant_of_the_environment_is_a_default_not_a_filter(
    cli: InProcess, emu: Iris360Emulator
) -> None:
    result = cli("devices", "list", "--fields", "serial", env=cli_env(emu, tenant=True))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 30


def test_connectors_refuse_a_scope(cli: InProcess, emu: Iris360Emulator) -> None:
    result = cli("connectors", "list", "--scope", "/lab", env=cli_env(emu))
    assert result.returncode == 2
    assert "--scope is not accepted here: outbound connectors are not filtered" in result.stderr


def test_entities_list_sends_the_tenant_it_is_given(cli: InProcess, emu: Iris360Emulator) -> None:
    mine = cli("entities", "list", "--tenant", emu.tenant, "--fields", "urn", env=cli_env(emu))
    other = cli("entities", "list", "--tenant", "other", "--fields", "urn", env=cli_env(emu))
    assert mine.returncode == other.returncode == 0, mine.stderr + other.stderr
    assert len(mine.stdout.splitlines()) >= 30
    assert other.stdout == ""  # the emulator's fleet lives in its own tenant only


def test_the_emulator_refuses_connection_flags(cli: InProcess) -> None:
    result = cli("--base-url", "https://iris.example.com", "emulator")
    assert result.returncode == 2
    assert "--base-url is not accepted here: iris360 emulator runs its own emulator" in (
        result.stderr
    )


# -- completion -------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_name_every_command_and_option(cli: InProcess, shell: str) -> None:
    result = cli("completion", shell)
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert "iris360" in script
    for word in ("devices", "send-commands", "entities", "latest", "timeseries", "connectors",
                 "completion", "--serials-file", "--journal", "--fields", "--limit",
                 "--concurrency"):  # fmt: skip
        assert word in script, f"{shell}: {word}"


def _bash_complete(script: str, words: list[str]) -> list[str]:
    """The candidates the bash script offers for the last of ``words``."""
    program = (
        script
        + "\nCOMP_WORDS=(" + " ".join(f"'{w}'" for w in words) + ")\n"
        + f"COMP_CWORD={len(words) - 1}\nCOMP_LINE='{' '.join(words)}'\n"
        + "COMP_POINT=${#COMP_LINE}\n_shtab_iris360\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )  # fmt: skip
    done = subprocess.run(
        ["bash", "--norc", "--noprofile"], input=program, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_the_bash_script_completes_commands_and_options(cli: InProcess) -> None:
    script = cli("completion", "bash").stdout
    assert _bash_complete(script, ["iris360", "dev"]) == ["devices"]
    assert set(_bash_complete(script, ["iris360", "devices", ""])) >= {"list", "send-commands"}
    assert "--limit" in _bash_complete(script, ["iris360", "devices", "list", "--li"])
    assert "--tenant" not in _bash_complete(script, ["iris360", "devices", "list", "--"])


def test_completion_without_shtab_names_the_extra(
    cli: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "shtab", None)
    result = cli("completion", "bash")
    assert result.returncode == 2
    assert "pip install 'iris360-async[cli]'" in result.stderr
    assert result.stdout == ""
