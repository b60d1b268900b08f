"""Configuration profiles: the file (XDG-aware), which profile is used, precedence
(arguments > environment > profile), secrets from the environment or a password_command, the
warning about a readable file, ``iris360 --profile`` and ``iris360 config show``."""

from __future__ import annotations

import json
import os
import stat
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import InProcess

from iris360_async import Iris360Client, Timeout
from iris360_async._profiles import config_file, load_profile, resolve_settings
from iris360_async.testing import EmulatorThread, Iris360Emulator

PASSWORD = "pw-from-command-123"
PRINT_PASSWORD = [sys.executable, "-c", f"print({PASSWORD[::-1]!r}[::-1])"]  # no literal
FAIL = [sys.executable, "-c", "import sys; sys.stderr.write('locked'); sys.exit(3)"]


def _toml(value: Any) -> str:
    return json.dumps(value)  # TOML strings, numbers, booleans and arrays read like JSON


def write_config(home: Path, text: str, mode: int = 0o600) -> Path:
    path = home / "iris360" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


TWO_PROFILES = f"""
default_profile = "prod"

[profiles.prod]
base_url = "https://prod.example.com"
username = "ops@example.com"
password_command = {_toml(PRINT_PASSWORD)}
tenant = "libelium"
scope = "/"
timeout = 30
max_retries = 5

[profiles.staging]
base_url = "https://staging.example.com"
token = "staging-token"
tenant = "test"
scope = "/lab"
timeout = {{ connect = 5, read = 20, total = 40 }}
connection_limit = 8
proxy = "http://127.0.0.1:3128"
"""


@pytest.fixture
def xdg(tmp_path: Path) -> Path:
    return tmp_path / "xdg"


def client(environ: dict[str, str], **kw: Any) -> Iris360Client:
    return Iris360Client._with_hooks(environ=environ, **kw)


def test_the_file_is_found_through_xdg_config_home_or_home(tmp_path: Path) -> None:
    assert config_file({"XDG_CONFIG_HOME": "/x"}) == Path("/x/iris360/config.toml")
    assert config_file({"HOME": "/h"}) == Path("/h/.config/iris360/config.toml")
    assert config_file({"HOME": "/h", "XDG_CONFIG_HOME": "relative"}) == Path(
        "/h/.config/iris360/config.toml"
    )  # a relative XDG_CONFIG_HOME is ignored, as the specification says
    assert config_file({"IRIS360_CONFIG_FILE": "/etc/iris.toml", "HOME": "/h"}) == Path(
        "/etc/iris.toml"
    )
    assert config_file({}) is None
    write_config(tmp_path / ".config", TWO_PROFILES)
    iris = client({"HOME": str(tmp_path)})
    assert iris.base_url == "https://prod.example.com"


def test_default_profile_and_the_profile_chosen_by_argument_or_environment(xdg: Path) -> None:
    write_config(xdg, TWO_PROFILES)
    env = {"XDG_CONFIG_HOME": str(xdg)}
    prod = client(env)
    assert (prod.base_url, prod.tenant, prod.scope) == ("https://prod.example.com", "libelium", "/")
    assert prod.config.username == "ops@example.com"
    assert prod.config.password == PASSWORD  # from password_command
    assert prod.config.timeout == Timeout(total=30.0)
    assert prod.config.max_retries == 5 == prod._transport.policy.max_retries

    staging = client(env, profile="staging")
    assert staging.base_url == "https://staging.example.com"
    assert staging.config.timeout == Timeout(connect=5, read=20, total=40)
    assert staging.config.connection_limit == 8
    assert staging.config.proxy == "http://127.0.0.1:3128"
    assert staging._transport.tokens.current_token() == "staging-token"

    by_env = client({**env, "IRIS360_PROFILE": "staging"})
    assert by_env.tenant == "test"
    assert client({**env, "IRIS360_PROFILE": "staging"}, profile="prod").tenant == "libelium"


def test_a_profile_named_default_is_used_without_default_profile(xdg: Path) -> None:
    write_config(xdg, '[profiles.default]\nbase_url = "https://d.example.com"\ntoken = "t"\n')
    assert client({"XDG_CONFIG_HOME": str(xdg)}).base_url == "https://d.example.com"
    write_config(xdg, '[profiles.other]\nbase_url = "https://o.example.com"\n')
    with pytest.raises(ValueError, match="base_url is required"):
        client({"XDG_CONFIG_HOME": str(xdg)})  # no default: no profile is used


def test_arguments_win_over_environment_which_wins_over_the_profile(xdg: Path) -> None:
    write_config(xdg, TWO_PROFILES)
    env = {"XDG_CONFIG_HOME": str(xdg), "IRIS360_TENANT": "from-env", "IRIS360_TIMEOUT": "9"}
    iris = client(env)
    assert iris.tenant == "from-env"
    assert iris.config.timeout == Timeout(total=9.0)
    assert iris.scope == "/"  # only the profile sets it
    iris = client(env, tenant="from-argument", timeout=3, base_url="https://arg.example.com")
    assert (iris.tenant, iris.base_url) == ("from-argument", "https://arg.example.com")
    assert iris.config.timeout == Timeout(total=3.0)
    resolved = resolve_settings({"tenant": "x"}, environ=env, run_commands=False)
    assert resolved.sources["tenant"] == "argument"
    assert resolved.sources["timeout"] == "IRIS360_TIMEOUT"
    assert resolved.sources["scope"].startswith("profile prod (")
    assert resolved.sources["password"] == "password_command of profile prod"


def test_the_password_command_runs_only_when_no_password_was_given(xdg: Path) -> None:
    write_config(xdg, TWO_PROFILES.replace(_toml(PRINT_PASSWORD), _toml(FAIL)))
    env = {"XDG_CONFIG_HOME": str(xdg)}
    failed = r"password_command of profile prod failed \(exit status 3\): locked"
    with pytest.raises(ValueError, match=failed):
        client(env)
    assert client({**env, "IRIS360_PASSWORD": "pw"}).config.password == "pw"
    assert client(env, password="pw2").config.password == "pw2"
    assert client(env, profile="staging").config.password is None  # no username: not run


def test_refusals_name_the_file_the_profile_and_the_setting(xdg: Path) -> None:
    path = write_config(xdg, TWO_PROFILES)
    env = {"XDG_CONFIG_HOME": str(xdg)}
    missing = r"no profile 'qa' in .*config.toml \(profiles: prod, staging\)"
    with pytest.raises(ValueError, match=missing):
        client(env, profile="qa")
    write_config(xdg, '[profiles.prod]\nbase_url = "https://p"\ntenent = "x"\n')
    with pytest.raises(ValueError, match=r"profile 'prod': unknown setting 'tenent'"):
        client(env, profile="prod")
    write_config(xdg, '[profiles.prod]\nbase_url = "https://p"\nmax_retries = -1\n')
    with pytest.raises(ValueError, match=r"profile 'prod': max_retries must be an integer >= 0"):
        client(env, profile="prod")
    path.write_text("[profiles.prod\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        client(env, profile="prod")
    with pytest.raises(ValueError, match="no config file"):
        client({"XDG_CONFIG_HOME": str(xdg / "none")}, profile="prod")
    with pytest.raises(TypeError, match="profile"):
        client(env, profile=3)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_a_readable_file_holding_a_secret_is_warned_about(xdg: Path) -> None:
    text = '[profiles.default]\nbase_url = "https://p"\nusername = "u"\npassword = "s3cret"\n'
    path = write_config(xdg, text, mode=0o644)
    env = {"XDG_CONFIG_HOME": str(xdg)}
    readable = r"other users may read it \(mode 644\).*chmod 600"
    with pytest.warns(UserWarning, match=readable) as seen:
        client(env)
    assert "s3cret" not in str(seen[0].message)
    path.chmod(0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert client(env).config.password == "s3cret"
    write_config(xdg, TWO_PROFILES, mode=0o644)  # a password_command is no secret
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client(env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_rows_mask_secrets_and_show_defaults(xdg: Path) -> None:
    write_config(xdg, TWO_PROFILES)
    profile = load_profile("staging", {"XDG_CONFIG_HOME": str(xdg)})
    assert profile is not None
    resolved = resolve_settings({}, environ={}, profile=profile)
    rows = {name: (value, source) for name, value, source in resolved.rows()}
    assert rows["token"] == ("***", profile.origin)
    assert rows["max_retries"] == ("3", "default")
    assert rows["timeout"][0] == "connect=5, read=20, total=40, deadline=None"
    assert "staging-token" not in repr(resolved.rows())
    with_password = resolve_settings(
        {"proxy": "http://ops:proxy-pw@127.0.0.1:3128"}, environ={}, profile=profile
    )
    shown = {name: value for name, value, _ in with_password.rows()}
    assert shown["proxy"] == "http://***@127.0.0.1:3128"


# -- the command line -----------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(monkeypatch, capsys)


@pytest.fixture
def emu() -> Iterator[Iris360Emulator]:
    with EmulatorThread(devices=30, seed=5) as emulator:
        yield emulator


def test_cli_profile_connects_with_the_password_from_its_command(
    cli: InProcess, emu: Iris360Emulator, xdg: Path
) -> None:
    command = [sys.executable, "-c", f"print({emu.password!r})"]
    write_config(
        xdg,
        f'[profiles.emu]\nbase_url = "{emu.base_url}"\nusername = "{emu.username}"\n'
        f"password_command = {_toml(command)}\ntenant = \"{emu.tenant}\"\n",
    )
    result = cli("--profile", "emu", "devices", "list", "--limit", "3", "--format", "json",
                 env={"XDG_CONFIG_HOME": str(xdg)})
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    result = cli("devices", "list", "--limit", "2", "--format", "json",
                 env={"XDG_CONFIG_HOME": str(xdg), "IRIS360_PROFILE": "emu"})
    assert result.returncode == 0, result.stderr
    result = cli("devices", "list", "--profile", "nope", env={"XDG_CONFIG_HOME": str(xdg)})
    assert result.returncode == 2
    assert "no profile 'nope'" in result.stderr


def test_cli_config_show_prints_values_and_sources_with_secrets_masked(
    cli: InProcess, xdg: Path
) -> None:
    write_config(xdg, TWO_PROFILES)
    env = {"XDG_CONFIG_HOME": str(xdg), "IRIS360_TENANT": "env-tenant"}
    result = cli("config", "show", "--scope", "/flag", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {row["setting"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows["base_url"]["value"] == "https://prod.example.com"
    assert rows["base_url"]["source"].startswith("profile prod (")
    assert rows["tenant"] == {
        "setting": "tenant", "value": "env-tenant", "source": "IRIS360_TENANT",
    }
    assert rows["scope"]["source"] == "--scope"
    assert rows["password"] == {
        "setting": "password", "value": "***", "source": "password_command of profile prod",
    }
    assert rows["connection_limit"] == {
        "setting": "connection_limit", "value": "100", "source": "default",
    }
    assert PASSWORD not in result.stdout  # the command was not run
    staging = cli("--profile", "staging", "config", "show", "--format", "csv", env=env)
    assert staging.returncode == 0, staging.stderr
    assert "token,***," in staging.stdout
    assert "staging-token" not in staging.stdout
