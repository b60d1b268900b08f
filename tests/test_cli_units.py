"""The command line's pure parts: argument parsing, settings, plans, output and error lines."""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from iris360_async.cli._demo import _note_reconciled, _write_summary
from iris360_async.cli._errors import CliError, describe_error, redact
from iris360_async.cli._job import JobResult
from iris360_async.cli._output import Column, Output, cell_text, choose_format, lookup
from iris360_async.cli._parser import build_parser
from iris360_async.cli._progress import format_counts
from iris360_async.cli._read import mask_secrets
from iris360_async.cli._serials import open_serials, parse_assignments, parse_value, plan_job
from iris360_async.cli._settings import resolve_connection
from iris360_async.errors import (
    APIConnectionError,
    AuthenticationError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
)

# -- --set values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("300", 300),
        ("2.5", 2.5),
        ('"300"', "300"),
        ("eco", "eco"),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ("null", None),
        ("", ""),
        ("hello world", "hello world"),
    ],
)
def test_set_values_are_json_with_string_fallback(text: str, expected: object) -> None:
    assert parse_value(text) == expected


NON_FINITE = ["nan", "NaN", "-nan", "inf", "+Inf", "-Infinity", "infinity", "1e999", "-1e400",
              "[1, NaN]", '{"a": {"b": Infinity}}']  # fmt: skip


@pytest.mark.parametrize("text", NON_FINITE)
def test_numbers_json_cannot_carry_are_refused(text: str) -> None:
    with pytest.raises(CliError) as info:
        parse_value(text)
    assert info.value.exit_code == 2
    assert "JSON cannot carry" in info.value.message or "too large" in info.value.message


def test_a_quoted_non_number_is_a_string() -> None:
    assert parse_value('"nan"') == "nan"
    assert parse_value('"inf"') == "inf"
    assert parse_value("nano") == "nano"
    assert parse_value("1e308") == 1e308


@pytest.mark.parametrize("text", ["{true", "[1, 2", '"eco', ' {"a": 1,}'])
def test_a_value_that_starts_like_json_but_does_not_parse_is_refused(text: str) -> None:
    with pytest.raises(CliError, match="is not valid JSON") as info:
        parse_assignments([f"mode={text}"])
    assert info.value.exit_code == 2
    assert info.value.message.startswith("--set mode: ")
    assert json.dumps(text) in info.value.message  # how to send it as a string
    assert parse_value(json.dumps(text)) == text


@pytest.mark.parametrize(("text", "literal"), [("True", "true"), ("FALSE", "false"),
                                               ("None", "null"), ("Null", "null")])  # fmt: skip
def test_python_spellings_of_json_literals_are_refused(text: str, literal: str) -> None:
    with pytest.raises(CliError, match=f"JSON writes {literal} in lower case") as info:
        parse_assignments([f"w_ota={text}"])
    assert info.value.exit_code == 2
    assert f"'\"{text}\"'" in info.value.message  # how to send the string
    assert parse_value(f'"{text}"') == text
    assert parse_value("none") == "none"  # a plausible string in lower case


def test_bad_values_name_the_command() -> None:
    with pytest.raises(CliError, match=r"^--set w_cfg: '\[1, NaN\]' holds NaN") as info:
        parse_assignments(["w_ota=true", "w_cfg=[1, NaN]"])
    assert info.value.exit_code == 2


def test_assignments_keep_order_and_split_at_first_equals() -> None:
    assert parse_assignments(["w_ota=true", "period=300", "expr=a=b"]) == {
        "w_ota": True,
        "period": 300,
        "expr": "a=b",
    }


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["w_ota"], "NAME=VALUE"),
        (["=true"], "NAME=VALUE"),
        (["device_serials=[]"], "not a command name"),
        (["a=1", "a=2"], "given twice"),
        ([], "at least one"),
    ],
)
def test_bad_assignments_are_usage_errors(items: list[str], message: str) -> None:
    with pytest.raises(CliError, match=message) as info:
        parse_assignments(items)
    assert info.value.exit_code == 2


# -- serials and plans --------------------------------------------------------------------


def test_serials_file_skips_blanks_and_comments_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "serials.txt"
    path.write_text("# fleet\nSN1\n\n  SN2  \nSN1\n", encoding="utf-8")
    source = open_serials(str(path), io.StringIO())
    assert source.total == 3
    assert list(source) == ["SN1", "SN2", "SN1"]
    assert list(source) == ["SN1", "SN2", "SN1"]  # re-iterable (read again from the file)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ("id,serial,urn\n1,SN1,urn:ngsi-ld:Device:SN1\n", "a row of several columns"),
        ('{"id":1,"serial":"SN1"}\n', "a JSON record"),
        ("SN1\nSN2;SN3\n", "a row of several columns"),
        ("SN1\tSmart Cities PRO\n", "a row of several columns"),
    ],
)
def test_a_devices_listing_given_as_serials_is_refused(
    tmp_path: Path, content: str, what: str
) -> None:
    path = tmp_path / "devices.csv"
    path.write_text(content, encoding="utf-8")
    for name, stdin in ((str(path), io.StringIO()), ("-", io.StringIO(content))):
        with pytest.raises(CliError, match=f"holds {what}, not a serial") as info:
            open_serials(name, stdin)
        assert info.value.exit_code == 2
        assert "iris360 devices list --serials-only" in info.value.message


def test_serials_from_stdin() -> None:
    source = open_serials("-", io.StringIO("A\nB\n"))
    assert (source.name, source.total, list(source)) == ("<stdin>", 2, ["A", "B"])


def test_a_byte_order_mark_is_stripped_from_the_first_serial_only(tmp_path: Path) -> None:
    path = tmp_path / "serials.txt"
    path.write_bytes(b"\xef\xbb\xbfSN1\r\nSN2\r\n")
    assert list(open_serials(str(path), io.StringIO())) == ["SN1", "SN2"]
    assert open_serials(str(path), io.StringIO()).total == 2
    stdin = open_serials("-", io.StringIO("\ufeffSN1\nSN2\n"))
    assert list(stdin) == ["SN1", "SN2"]
    commented = open_serials("-", io.StringIO("\ufeff# fleet\nSN1\n"))
    assert list(commented) == ["SN1"]


def test_missing_serials_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="cannot read serials file") as info:
        open_serials(str(tmp_path / "nope.txt"), io.StringIO())
    assert info.value.exit_code == 2


def test_plan_counts_duplicates_journal_and_chunks() -> None:
    serials = [f"SN{i}" for i in range(250)] + ["SN0", "SN1"]
    plan = plan_job(
        serials,
        {"w_ota": True},
        chunk_size=100,
        concurrency=2,
        settled=frozenset({"SN5", "SN6"}),
        request_seconds=0.5,
        device_seconds=0.01,
    )
    assert (plan.serials, plan.duplicates, plan.already_settled, plan.to_send) == (
        252,
        2,
        2,
        248,
    )
    assert plan.requests == 3
    assert plan.first_duplicates == ("SN0", "SN1")
    # 3 requests, 2 at a time: two waves of (0.5 s + 100 x 0.01 s)
    assert plan.estimated_seconds == pytest.approx(3.0)
    record = plan.as_record()
    assert record["dry_run"] is True
    assert record["chunks"] == 3


def test_plan_of_nothing_to_send() -> None:
    plan = plan_job(["A", "A"], {"x": 1}, chunk_size=10, concurrency=4, settled=frozenset({"A"}))
    assert (plan.to_send, plan.requests, plan.estimated_seconds) == (0, 0, 0.0)


# -- connection settings ------------------------------------------------------------------


def _args(**values: object) -> argparse.Namespace:
    defaults: dict[str, object] = dict.fromkeys(
        ("base_url", "username", "token", "tenant", "scope", "timeout")
    )
    defaults.update(values)
    return argparse.Namespace(**defaults)


def _no_prompt(_: str) -> str:
    raise AssertionError("must not prompt")


ENV = {
    "IRIS360_BASE_URL": "https://env.example.com",
    "IRIS360_USERNAME": "env-user",
    "IRIS360_PASSWORD": "env-secret",
    "IRIS360_TENANT": "env-tenant",
    "IRIS360_SCOPE": "/env",
}


def test_flags_win_over_environment() -> None:
    settings = resolve_connection(
        _args(base_url="https://flag.example.com", tenant="t", timeout=5.0),
        ENV,
        interactive=False,
        prompt=_no_prompt,
    )
    assert settings.base_url == "https://flag.example.com"
    assert (settings.username, settings.password) == ("env-user", "env-secret")
    assert (settings.tenant, settings.scope, settings.timeout) == ("t", "/env", 5.0)
    assert "env-secret" not in repr(settings)


def test_the_server_url_knows_where_it_came_from() -> None:
    def origin(args: argparse.Namespace) -> str:
        return resolve_connection(args, ENV, interactive=False, prompt=_no_prompt).server_origin()

    assert origin(_args()) == "https://env.example.com (IRIS360_BASE_URL)"
    assert origin(_args(base_url="https://f.example.com")) == "https://f.example.com (--base-url)"


def test_missing_password_is_prompted_only_on_a_terminal() -> None:
    env = {k: v for k, v in ENV.items() if k != "IRIS360_PASSWORD"}
    prompts: list[str] = []

    def prompt(text: str) -> str:
        prompts.append(text)
        return "typed-secret"

    settings = resolve_connection(_args(), env, interactive=True, prompt=prompt)
    assert settings.password == "typed-secret"
    assert len(prompts) == 1
    assert "env-user" in prompts[0]
    with pytest.raises(CliError, match="IRIS360_PASSWORD") as info:
        resolve_connection(_args(), env, interactive=False, prompt=_no_prompt)
    assert info.value.exit_code == 2


def test_token_alone_needs_no_password() -> None:
    settings = resolve_connection(
        _args(base_url="https://x.example.com", token="tok-123"),
        {},
        interactive=True,
        prompt=_no_prompt,
    )
    assert (settings.token, settings.username, settings.password) == ("tok-123", None, None)
    assert "tok-123" not in repr(settings)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (_args(), {}, "no server"),
        (_args(base_url="ftp://x"), {}, "must start with http"),
        (_args(base_url="https://x.example.com"), {}, "no credentials"),
        (
            _args(base_url="https://x.example.com", token="t"),
            {"IRIS360_TIMEOUT": "soon"},
            "IRIS360_TIMEOUT",
        ),
    ],
)
def test_unusable_settings_are_usage_errors(
    args: argparse.Namespace, env: dict[str, str], message: str
) -> None:
    with pytest.raises(CliError, match=message):
        resolve_connection(args, env, interactive=False, prompt=_no_prompt)


# -- parser -----------------------------------------------------------------------------------


def test_global_options_are_accepted_before_and_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--format", "csv", "--tenant", "a", "entities", "list"])
    after = parser.parse_args(["entities", "list", "--format", "csv", "--tenant", "a"])
    both = parser.parse_args(["--format", "json", "entities", "list", "--format", "csv"])
    for args in (before, after, both):
        assert (args.command, args.format) == ("entities.list", "csv")
    assert before.tenant == after.tenant == "a"


def test_send_commands_options() -> None:
    args = build_parser().parse_args(
        [
            "devices", "send-commands", "--serials-file", "-", "--set", "w_ota=true",
            "--set", "period=300", "--chunk-size", "50", "--concurrency", "4",
            "--journal", "j.jsonl", "--dry-run", "--report", "r.jsonl", "--resend", "failed",
        ]
    )  # fmt: skip
    assert args.command == "devices.send-commands"
    assert args.commands == ["w_ota=true", "period=300"]
    assert (args.chunk_size, args.concurrency, args.journal, args.report) == (
        50,
        4,
        "j.jsonl",
        "r.jsonl",
    )
    assert args.dry_run is True
    assert args.resend == ["failed"]
    assert args.journal_force is False


def test_concurrency_ceiling_shows_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["devices", "send-commands", "--help"])
    assert "1 to 1024" in " ".join(capsys.readouterr().out.split())
    assert build_parser().parse_args(["demo", "--concurrency", "1024"]).concurrency == 1024


@pytest.mark.parametrize(
    "argv",
    [
        ["devices", "send-commands", "--set", "a=1"],  # --serials-file missing
        ["devices", "send-commands", "--serials-file", "x", "--set", "a=1", "--chunk-size", "0"],
        ["devices", "list", "--format", "xml"],
        ["demo", "--devices", "-3"],
        ["nope"],
        ["devices", "send-commands", "--serials-file", "x", "--set", "a=1", "--concurrency",
         "1025"],
        ["demo", "--concurrency", "100000"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


# -- output -----------------------------------------------------------------------------------


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_default_format_depends_on_the_terminal() -> None:
    assert choose_format(None, _Stream(tty=True)) == "table"
    assert choose_format(None, _Stream(tty=False)) == "json"
    assert choose_format("csv", _Stream(tty=True)) == "csv"


ROWS = [
    {"id": 1, "serial": "SN1", "type": {"name": "Smart"}, "ok": True, "tags": ["a", "b"]},
    {"id": 2, "serial": "SN2", "type": None, "ok": False, "tags": None},
]
COLUMNS = (
    Column("id", "id"),
    Column("serial", "serial"),
    Column("type", "type.name"),
    Column("ok", "ok"),
    Column("tags", "tags"),
)


def test_rows_as_json_lines_keep_every_field() -> None:
    stream = _Stream(tty=False)
    assert Output("json", stream).rows(ROWS, COLUMNS) == 2
    lines = stream.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == ROWS


def test_rows_as_csv_flatten_the_columns() -> None:
    stream = _Stream(tty=False)
    Output("csv", stream).rows(ROWS, COLUMNS)
    table = list(csv.reader(io.StringIO(stream.getvalue())))
    assert table == [
        ["id", "serial", "type", "ok", "tags"],
        ["1", "SN1", "Smart", "true", '["a","b"]'],
        ["2", "SN2", "", "false", ""],
    ]


def test_rows_as_table() -> None:
    stream = _Stream(tty=False)
    Output("table", stream).rows(ROWS, COLUMNS, title="devices")
    text = stream.getvalue()
    assert "serial" in text
    assert "SN1" in text
    assert "Smart" in text
    assert "2 rows" in text


def test_lookup_and_cell_text() -> None:
    assert lookup({"a": {"b": 3}}, "a.b") == 3
    assert lookup({"a": None}, "a.b") is None
    assert cell_text(None) == ""
    assert cell_text(1.5) == "1.5"
    assert cell_text({"k": [1]}) == '{"k":[1]}'


def test_outcome_counts_text() -> None:
    counts = {"sent": 1234, "rejected": 3, "failed": 0, "unknown": 0, "skipped": 2}
    assert format_counts(counts) == "1,234 sent · 3 rejected · 2 skipped"
    assert format_counts(counts, compact=True) == "1,234 ok · 3 rej · 2 skip"
    assert format_counts({}) == "0 sent"
    assert "[green]" in format_counts(counts, markup=True)


def test_secrets_of_connectors_are_masked() -> None:
    record = {"id": 1, "password": "p4ss", "nested": {"identity_key": "k"}, "sslCert": None}
    assert mask_secrets(record) == {
        "id": 1,
        "password": "***",
        "nested": {"identity_key": "***"},
        "sslCert": None,
    }


# -- error lines ------------------------------------------------------------------------------


def _status(cls: Callable[..., Exception], status: int, body: object) -> Exception:
    return cls("refused", status=status, method="GET", url="https://x.example.com/api", body=body)


@pytest.mark.parametrize(
    ("exc", "code", "fragment"),
    [
        (CliError("bad flag"), 2, "bad flag"),
        (
            _status(AuthenticationError, 401, {"email": "The provided credentials are incorrect"}),
            2,
            "authentication failed (HTTP 401): The provided credentials are incorrect",
        ),
        (_status(PermissionDeniedError, 403, {"message": "nope"}), 2, "permission denied"),
        (_status(NotFoundError, 404, "Entity not found"), 1, "HTTP 404"),
        (_status(InternalServerError, 500, None), 1, "HTTP 500"),
        (APIConnectionError("POST /login: could not connect", request_sent=False), 2, "connect"),
        (ValueError("tenant required"), 2, "tenant required"),
        (RuntimeError("boom"), 1, "--debug"),
    ],
)
def test_errors_become_one_line_and_an_exit_code(exc: Exception, code: int, fragment: str) -> None:
    message, exit_code = describe_error(exc)
    assert exit_code == code
    assert fragment in message
    assert "\n" not in message


SERVER = "http://127.0.0.1:18099 (IRIS360_BASE_URL)"


def test_an_unreachable_server_names_its_url_and_where_it_came_from() -> None:
    refused = APIConnectionError("POST /api/public/v1/login: could not connect", request_sent=False)
    message, code = describe_error(refused, server=SERVER)
    assert code == 2
    assert message.endswith(f"; check the server URL {SERVER} and that the server is running")
    tls = APIConnectionError("could not connect: [SSL: WRONG_VERSION_NUMBER]", request_sent=False)
    message, _ = describe_error(tls, server="https://127.0.0.1:8080 (--base-url)")
    assert "does not speak https" in message


def test_no_login_route_asks_whether_the_server_url_is_right() -> None:
    missing = NotFoundError(
        "not found", status=404, method="POST", url="http://h/foo/api/public/v1/login",
        body={"message": "The route foo/api/public/v1/login could not be found."},
    )  # fmt: skip
    message, code = describe_error(missing, server="http://h/foo (--base-url)")
    assert code == 1
    assert "could not be found; is the server URL right? http://h/foo (--base-url)" in message
    other = _status(NotFoundError, 404, "Entity not found")
    assert "server URL" not in describe_error(other, server=SERVER)[0]


def test_refused_credentials_name_what_to_check() -> None:
    refused = _status(AuthenticationError, 401, {"message": "Unauthenticated."})
    with_token, _ = describe_error(refused, token=True)
    assert with_token.startswith("authentication failed (HTTP 401): Unauthenticated; ")
    assert "access token" in with_token
    assert "password" not in with_token
    assert "password (IRIS360_PASSWORD)" in describe_error(refused)[0]


def test_redact_hides_secrets() -> None:
    assert redact("login as bob with hunter22", ["hunter22", None, "ab"]) == "login as bob with ***"


# -- demo summary -----------------------------------------------------------------------------


def _demo_summary(**changes: object) -> dict[str, object]:
    summary: dict[str, object] = {
        "devices": 20000, "discovered": 20000, "pages": 40, "discovery_seconds": 2.0,
        "counts": {"sent": 10967, "rejected": 126, "failed": 7, "unknown": 1700, "skipped": 0},
        "job_seconds": 3.6, "devices_per_second": 3593.0, "requests": 170, "bulk_requests": 128,
        "retries": 1, "rate_limited": 1, "logins": 1, "refreshes": 0, "commands_applied": 11067,
        "total_seconds": 5.6, "interrupted": True,
        "reconciled": {"confirmed": 0, "resent": 0, "left_unknown": 1700}, "tracking": None,
    }  # fmt: skip
    summary.update(changes)
    return summary


def test_an_interrupted_demo_says_reconciliation_did_not_run() -> None:
    stream = io.StringIO()
    _write_summary(Output("table", stream), _demo_summary())
    text = " ".join(stream.getvalue().split())
    assert "not run: the job was interrupted (1,700 left unknown)" in text
    assert "(rate limited 1 time)" in text

    stream = io.StringIO()
    done = {"confirmed": 3, "resent": 2, "left_unknown": 0}
    _write_summary(Output("table", stream), _demo_summary(interrupted=False, reconciled=done,
                                                          rate_limited=4))  # fmt: skip
    text = " ".join(stream.getvalue().split())
    assert "5 (3 confirmed, 2 re-sent; 0 left)" in text
    assert "(rate limited 4 times)" in text


def test_an_interrupted_demo_does_not_claim_to_have_reconciled() -> None:
    class Progress:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def log(self, line: str) -> None:
            self.lines.append(line)

    progress = Progress()
    stopped = JobResult(total=10, counts=Counter(sent=6, unknown=4), interrupted=True,
                        reconcile=True)  # fmt: skip
    _note_reconciled(progress, stopped)  # type: ignore[arg-type]
    assert progress.lines == ["not reconciled (the job was interrupted): 4 left unknown"]
