"""Which way of authenticating is used when settings come from several sources: the token or
the login (username + password) of the highest source wins; a stray half pair from a lower
source is ignored and never shown; ``config show`` says which method is in effect and where
it came from. Client level, ``resolve_settings``, and the command line in-process."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import InProcess

from iris360_async import Iris360Client
from iris360_async._profiles import resolve_settings
from iris360_async.testing import EmulatorThread, Iris360Emulator

STRAY = "stray-secret-987"
FAIL = [sys.executable, "-c", "import sys; sys.exit(3)"]


def client(environ: dict[str, str], **kw: Any) -> Iris360Client:
    return Iris360Client._with_hooks(environ=environ, **kw)


def write_profile(xdg: Path, body: str) -> dict[str, str]:
    path = xdg / "iris360" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[profiles.default]\nbase_url = "https://p.example.com"\n{body}\n')
    path.chmod(0o600)
    return {"XDG_CONFIG_HOME": str(xdg)}


# -- the client ---------------------------------------------------------------------------------


def test_an_explicit_token_is_not_broken_by_a_password_from_the_environment() -> None:
    iris = client({"IRIS360_PASSWORD": STRAY}, base_url="http://h", token="abc")
    assert iris.config.token == "abc"
    assert (iris.config.username, iris.config.password) == (None, None)
    assert iris._transport.tokens.current_token() == "abc"
    assert STRAY not in repr(iris.config)


def test_an_explicit_token_wins_over_a_login_from_the_environment() -> None:
    env = {"IRIS360_USERNAME": "env-user", "IRIS360_PASSWORD": STRAY, "IRIS360_TENANT": "t"}
    iris = client(env, base_url="http://h", token="abc")
    assert (iris.config.token, iris.config.username, iris.config.password) == ("abc", None, None)
    assert iris.tenant == "t"  # other settings still come from the environment
    resolved = resolve_settings({"token": "abc"}, environ=env)
    assert resolved.auth == "token"
    ignored = {name: left.source for name, left in resolved.ignored.items()}
    assert ignored == {"username": "IRIS360_USERNAME", "password": "IRIS360_PASSWORD"}


def test_an_explicit_token_does_not_run_the_profiles_password_command(tmp_path: Path) -> None:
    env = write_profile(tmp_path, f'username = "ops"\npassword_command = {json.dumps(FAIL)}')
    with pytest.raises(ValueError, match="password_command"):
        client(env)  # the command fails: it is run for a login
    iris = client(env, token="abc")
    assert (iris.config.token, iris.config.username, iris.config.password) == ("abc", None, None)


def test_an_explicit_login_wins_over_a_token_from_the_environment() -> None:
    env = {"IRIS360_TOKEN": "env-token", "IRIS360_REFRESH_TOKEN": "env-refresh"}
    iris = client(env, base_url="http://h", username="u", password="p")
    assert (iris.config.username, iris.config.password) == ("u", "p")
    assert (iris.config.token, iris.config.refresh_token) == (None, None)
    assert iris._transport.tokens.current_token() is None
    # a username given explicitly, its password from the environment: still the login
    both = {**env, "IRIS360_PASSWORD": "env-pw"}
    iris = client(both, base_url="http://h", username="u")
    assert (iris.config.username, iris.config.password, iris.config.token) == ("u", "env-pw", None)


def test_a_token_from_the_environment_wins_over_a_login_in_the_profile(tmp_path: Path) -> None:
    env = write_profile(tmp_path, f'username = "ops"\npassword_command = {json.dumps(FAIL)}')
    iris = client({**env, "IRIS360_TOKEN": "env-token"})
    assert (iris.config.token, iris.config.username, iris.config.password) == (
        "env-token", None, None,
    )


def test_token_and_login_from_the_same_source_are_both_kept(tmp_path: Path) -> None:
    env = {"IRIS360_TOKEN": "t", "IRIS360_USERNAME": "u", "IRIS360_PASSWORD": "p"}
    iris = client(env, base_url="http://h")
    assert (iris.config.token, iris.config.username, iris.config.password) == ("t", "u", "p")
    assert resolve_settings({}, environ=env).auth == "token, then login"
    iris = client({}, base_url="http://h", token="t", username="u", password="p")
    assert (iris.config.token, iris.config.username, iris.config.password) == ("t", "u", "p")
    profile = write_profile(tmp_path, 'token = "pt"\nusername = "pu"\npassword = "pp"')
    iris = client(profile)
    assert (iris.config.token, iris.config.username, iris.config.password) == ("pt", "pu", "pp")


def test_a_half_pair_beside_a_token_of_the_same_source_is_ignored() -> None:
    iris = client({"IRIS360_TOKEN": "t", "IRIS360_PASSWORD": STRAY}, base_url="http://h")
    assert (iris.config.token, iris.config.password) == ("t", None)
    iris = client({"IRIS360_TOKEN": "t", "IRIS360_USERNAME": "u"}, base_url="http://h")
    assert (iris.config.token, iris.config.username) == ("t", None)


def test_a_half_pair_is_refused_when_explicit_or_when_nothing_else_authenticates() -> None:
    with pytest.raises(ValueError, match=r"password= was given without a username") as info:
        client({"IRIS360_TOKEN": "t"}, base_url="http://h", password=STRAY)
    assert STRAY not in str(info.value)
    with pytest.raises(ValueError, match=r"username= was given without a password"):
        client({"IRIS360_TOKEN": "t"}, base_url="http://h", username="u")
    with pytest.raises(ValueError, match=r"IRIS360_PASSWORD is set but no username") as info:
        client({"IRIS360_PASSWORD": STRAY}, base_url="http://h")
    assert STRAY not in str(info.value)
    with pytest.raises(ValueError, match=r"no password for the username from IRIS360_USERNAME"):
        client({"IRIS360_USERNAME": "u"}, base_url="http://h")


def test_with_no_credentials_at_all_the_client_is_still_built() -> None:
    assert client({}, base_url="http://h").config.has_credentials is False
    assert resolve_settings({}, environ={}).auth == "none"


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(monkeypatch, capsys)


@pytest.fixture
def emu() -> Iterator[Iris360Emulator]:
    with EmulatorThread(devices=10, seed=3) as emulator:
        yield emulator


def test_cli_token_flag_works_with_a_stray_password_in_the_environment(
    cli: InProcess, emu: Iris360Emulator
) -> None:
    token = emu.issue_token().token
    env = {"IRIS360_BASE_URL": emu.base_url, "IRIS360_PASSWORD": STRAY}
    result = cli("--token", token, "devices", "list", "--limit", "2", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert STRAY not in result.stdout + result.stderr


def test_cli_token_flag_wins_over_a_wrong_login_in_the_environment(
    cli: InProcess, emu: Iris360Emulator
) -> None:
    token = emu.issue_token().token
    env = {
        "IRIS360_BASE_URL": emu.base_url,
        "IRIS360_USERNAME": "someone-else@example.com",
        "IRIS360_PASSWORD": STRAY,
    }
    result = cli("devices", "list", "--limit", "1", "--token", token, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert (emu.stats.logins, emu.stats.login_failures) == (0, 0)  # the token alone was used


def test_cli_username_flag_wins_over_a_token_in_the_environment(
    cli: InProcess, emu: Iris360Emulator
) -> None:
    env = {
        "IRIS360_BASE_URL": emu.base_url,
        "IRIS360_TOKEN": "not-a-valid-token",
        "IRIS360_PASSWORD": emu.password,
    }
    result = cli("--username", emu.username, "devices", "list", "--limit", "1", "--format",
                 "json", env=env)
    assert result.returncode == 0, result.stderr


def test_cli_config_show_names_the_auth_method_and_its_source(cli: InProcess) -> None:
    env = {
        "IRIS360_BASE_URL": "https://env.example.com",
        "IRIS360_USERNAME": "env-user",
        "IRIS360_PASSWORD": STRAY,
    }

    def show(*flags: str, environ: dict[str, str] = env) -> dict[str, dict[str, str]]:
        result = cli("config", "show", *flags, "--format", "json", env=environ)
        assert result.returncode == 0, result.stderr
        assert STRAY not in result.stdout + result.stderr
        return {row["setting"]: row for row in map(json.loads, result.stdout.splitlines())}

    rows = show("--token", "abc")
    assert (rows["auth"]["value"], rows["auth"]["source"]) == ("token", "--token")
    assert rows["token"]["source"] == "--token"
    assert rows["password"]["value"] == "***"
    assert rows["password"]["source"] == "IRIS360_PASSWORD (ignored: token from --token wins)"
    assert rows["username"]["source"] == "IRIS360_USERNAME (ignored: token from --token wins)"

    rows = show()
    assert rows["auth"]["value"] == "login (env-user)"
    assert rows["auth"]["source"] == "IRIS360_USERNAME, IRIS360_PASSWORD"

    rows = show("--username", "flag-user", environ={**env, "IRIS360_TOKEN": "env-token"})
    assert rows["auth"]["value"] == "login (flag-user)"
    assert rows["auth"]["source"] == "--username, IRIS360_PASSWORD"
    assert rows["token"]["source"] == "IRIS360_TOKEN (ignored: login from --username wins)"

    rows = show(environ={"IRIS360_BASE_URL": "https://e", "IRIS360_TOKEN": "t",
                         "IRIS360_PASSWORD": STRAY})
    assert rows["auth"]["value"] == "token"
    assert rows["password"]["source"] == "IRIS360_PASSWORD (ignored: no username)"
