"""The argument parser of ``iris360``: every command, option, help text and example.

Only the standard library is imported here, so ``iris360 --help`` works even without the
``cli`` extra installed.
"""

from __future__ import annotations

import argparse
import shutil
import textwrap
from typing import Any

from ._argparse import Parser, non_negative_float, positive_int
from ._fields import CONNECTOR_FIELDS, DEVICE_FIELDS, ENTITY_FIELDS, FieldSet
from ._global_options import GLOBAL_OPTIONS, GLOBAL_OPTIONS_USED, add_global_options, why_not
from ._lifecycle_parser import add_lifecycle_commands

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CONCURRENCY",
    "MAX_CONCURRENCY",
    "build_parser",
]

DEFAULT_CHUNK_SIZE = 100
DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 1024
"""The bulk engine's ceiling of ``concurrency`` (requests in flight)."""
DEFAULT_PAGE_SIZE = 500
SERVER_MODEL_PRESETS = ("capacity_bound", "rate_limited", "drifting", "shared", "fast")
"""The emulator's server model presets (``iris360_async.testing.server_model.PRESETS``)."""

_ENV_HELP = """\
connection settings (flags win over the environment):
  IRIS360_BASE_URL   server, e.g. https://iris.example.com (the API root
                     /api/public/v1 is added)
  IRIS360_USERNAME   login name
  IRIS360_PASSWORD   password; when missing you are prompted (input hidden)
                     if a terminal is attached
  IRIS360_TOKEN      an access token instead of username/password
  IRIS360_TENANT     default tenant (FIWARE service), e.g. libelium
  IRIS360_SCOPE      default scope (service path), e.g. /

output:
  --format table|json|csv; the default is a table on a terminal and JSON lines
  (one object per line) when stdout is a pipe or a file. Progress bars are drawn
  on stderr, only when it is a terminal.

exit codes:
  0    everything succeeded
  1    some devices ended rejected/failed/unknown, or the server refused a request
  2    usage error, connection error, authentication or permission error
  130  interrupted (Ctrl-C); a job prints what was settled and flushes its journal
  143  terminated (SIGTERM); handled like Ctrl-C
"""

_MAIN_EPILOG = (
    """\
examples:
  iris360 demo                                  # no server needed: a 20,000-device job
  iris360 emulator --port 8080                  # serve a local IRIS360 emulator
  export IRIS360_BASE_URL=https://iris.example.com IRIS360_USERNAME=ops@example.com
  iris360 devices list --format csv > devices.csv
  iris360 devices send-commands --serials-file serials.txt --set w_ota=true \\
      --journal job.jsonl --report outcomes.jsonl
  iris360 entities latest urn:ngsi-ld:Device:Device001 --tenant libelium --scope /
  iris360 timeseries get --device urn:ngsi-ld:Device:Device001 --measure temperature \\
      --start 2025-01-01T00:00:00Z --end 2025-01-02T00:00:00Z --format csv

"""
    + _ENV_HELP
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps one-line paragraphs (descriptions); keeps multi-line ones (examples) as written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=_help_width())

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            if "\n" in paragraph.strip("\n"):
                paragraphs.append(paragraph)
            else:
                paragraphs.append(
                    textwrap.fill(paragraph, width, initial_indent=indent, subsequent_indent=indent)
                )
        return "\n\n".join(paragraphs)


def _help_width() -> int:
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 100) - 2)


def _concurrency(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    value = positive_int(text)
    if value > MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_CONCURRENCY}: {text!r}")
    return value


def _concurrency_option(
    parser: argparse.ArgumentParser, default: int | str = DEFAULT_CONCURRENCY
) -> None:
    parser.add_argument(
        "--concurrency",
        type=_concurrency,
        default=default,
        metavar="N|auto",
        help=f"requests in flight, 1 to {MAX_CONCURRENCY}, or auto: paced to the server "
        f"(default {default})",
    )


def _progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr: auto = only when stderr is a terminal (default)",
    )


def _fields_option(parser: argparse.ArgumentParser, fields: FieldSet) -> None:
    parser.add_argument(
        "--fields",
        metavar="NAMES",
        help="comma-separated columns (CSV, table) or keys (JSON lines) to print: "
        f"{fields.names_text()}, or a dotted path into the record; default: "
        f"{','.join(fields.default)} (JSON lines: every field)",
    )


def _leaf(
    sub: Any, name: str, *, command: str, help: str, description: str, epilog: str
) -> Parser:
    """A command's parser with the global options it uses; it sets ``command``."""
    parser: Parser = sub.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=_Formatter
    )
    parser.set_defaults(command=command)
    used = GLOBAL_OPTIONS_USED[command]
    add_global_options(parser, suppress=True, only=used)
    parser.refusals = {o: why_not(command, o) for o in GLOBAL_OPTIONS if o not in used}
    return parser


def build_parser() -> Parser:
    """The complete ``iris360`` parser. Each leaf command sets ``command`` (a dotted name)."""
    parser = Parser(
        prog="iris360",
        description="Command line for the IRIS360 public API: list devices and entities, "
        "push commands to whole fleets with exact per-device outcomes, export time series, "
        "and run a local emulator.",
        epilog=_MAIN_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", dest="group")

    _add_demo(sub)
    _add_emulator(sub)
    _add_devices(sub)
    _add_entities(sub)
    _add_timeseries(sub)
    _add_connectors(sub)
    _add_config(sub)
    _add_completion(sub)
    return parser


def _add_config(sub: Any) -> None:
    config = sub.add_parser(
        "config",
        help="show the resolved connection settings",
        description="Configuration: flags, IRIS360_* variables and the profiles of "
        "~/.config/iris360/config.toml.",
        formatter_class=_Formatter,
    )
    csub = config.add_subparsers(title="commands", metavar="COMMAND", dest="action")
    _leaf(
        csub,
        "show",
        command="config.show",
        help="print every setting, its value and where it came from",
        description="Print the settings a command would use, each with where it came from "
        "(a flag, an IRIS360_* variable, a profile or the default). Secrets are shown as "
        "***; a password_command is not run.",
        epilog="""\
examples:
  iris360 config show
  iris360 --profile staging config show --format json
""",
    )


def _add_completion(sub: Any) -> None:
    p = _leaf(
        sub,
        "completion",
        command="completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print the completion script of iris360 for a shell, generated from this "
        "parser (every command and option). Needs the 'cli' extra.",
        epilog="""\
examples:
  iris360 completion bash > ~/.local/share/bash-completion/completions/iris360
  iris360 completion zsh > ~/.zfunc/_iris360     # with fpath+=~/.zfunc before compinit
  iris360 completion fish > ~/.config/fish/completions/iris360.fish
""",
    )
    p.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell")


def _add_demo(sub: Any) -> None:
    p = _leaf(
        sub,
        "demo",
        command="demo",
        help="run a fleet job against a built-in emulator (no server needed)",
        description="Start the IRIS360 emulator in this process (a seeded fleet, realistic "
        "latency, a mild fault profile with a few rejected devices and rate limits), discover "
        "the fleet through the paginator, send w_ota=true to every device with the bulk "
        "engine, resolve the devices whose outcome was unknown from their command state, "
        "follow a sample of devices while they apply the command, and print a summary.\n\n"
        "The demo exits 0 when the job ran to the end, even though the fault profile makes a "
        "few devices end 'rejected': showing those outcomes is part of the demo.",
        epilog="""\
examples:
  iris360 demo
  iris360 demo --devices 2000 --latency-ms 5
  iris360 demo --faults none --format json
""",
    )
    p.add_argument(
        "--devices",
        type=positive_int,
        metavar="N",
        default=20_000,
        help="fleet size (default 20000)",
    )
    p.add_argument(
        "--latency-ms",
        type=non_negative_float,
        metavar="MS",
        default=None,
        help="emulated time per request in ms (default 40); the per-device cost of bulk "
        "requests scales with it (4 ms at 40); 0 for an instant run",
    )
    p.add_argument(
        "--faults",
        choices=("mild", "none"),
        default="mild",
        help="fault profile of the emulator (default mild)",
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=DEFAULT_CHUNK_SIZE,
        metavar="N",
        help=f"serials per request (default {DEFAULT_CHUNK_SIZE})",
    )
    _concurrency_option(p)
    p.add_argument(
        "--seed", type=int, metavar="N", default=1, help="fleet and fault seed (default 1)"
    )
    p.add_argument(
        "--track-minutes",
        type=non_negative_float,
        metavar="MIN",
        default=15.0,
        help="after the job, follow a sample of the devices for this many emulated minutes "
        "(the emulated clock then runs 200 times faster; default 15; 0 to skip)",
    )
    _progress_option(p)


def _add_emulator(sub: Any) -> None:
    p = _leaf(
        sub,
        "emulator",
        command="emulator",
        help="serve a local IRIS360 emulator until interrupted",
        description="Serve the IRIS360 emulator (on 127.0.0.1 unless --host says otherwise) "
        "until Ctrl-C or SIGTERM. It prints the base "
        "URL and the credentials as IRIS360_* variables, ready to be exported in another "
        "shell.",
        epilog="""\
examples:
  iris360 emulator
  iris360 emulator --port 8080 --devices 50000 --latency-ms 20
  iris360 emulator --server-model capacity_bound   # 4 workers, 0.7 s gateway timeout
  # in another shell, paste the printed export lines, then:
  iris360 devices list
""",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        metavar="PORT",
        default=0,
        help="TCP port (default 0: a free port is chosen)",
    )
    p.add_argument(
        "--devices", type=positive_int, metavar="N", default=1000, help="fleet size (default 1000)"
    )
    p.add_argument(
        "--latency-ms",
        type=non_negative_float,
        metavar="MS",
        default=0.0,
        help="base latency added to every request in ms (default 0)",
    )
    p.add_argument(
        "--faults", choices=("none", "mild"), default="none", help="fault profile (default none)"
    )
    p.add_argument("--seed", type=int, metavar="N", default=1, help="fleet seed (default 1)")
    p.add_argument(
        "--server-model",
        choices=SERVER_MODEL_PRESETS,
        default=None,
        metavar="PRESET",
        help="backend workers, queue and gateway (timeout, rate limit) in front of the bulk "
        f"endpoint: {', '.join(SERVER_MODEL_PRESETS)} (default: none)",
    )


def _add_devices(sub: Any) -> None:
    devices = sub.add_parser(
        "devices",
        help="list devices, send commands to many devices",
        description="Devices of the platform.",
        formatter_class=_Formatter,
    )
    dsub = devices.add_subparsers(title="commands", metavar="COMMAND", dest="action")

    p = _leaf(
        dsub,
        "list",
        command="devices.list",
        help="list devices",
        description="List devices page by page (pages are fetched ahead concurrently).",
        epilog="""\
examples:
  iris360 devices list
  iris360 devices list --search sensor --limit 50
  iris360 devices list --format csv > devices.csv
  iris360 devices list --format csv --fields serial,urn,type_code,properties.firmware
  iris360 devices list --format json | jq -r .serial > serials.txt

devices are not filtered by tenant: list one tenant's devices with
  iris360 entities list --tenant TENANT --scope SCOPE --type Device
""",
    )
    p.add_argument("--search", metavar="TEXT", help="case-insensitive search")
    p.add_argument("--limit", type=positive_int, metavar="N", help="stop after N devices")
    p.add_argument(
        "--page-size",
        type=positive_int,
        default=DEFAULT_PAGE_SIZE,
        metavar="N",
        help=f"devices per request (default {DEFAULT_PAGE_SIZE})",
    )
    p.add_argument(
        "--serials-only",
        action="store_true",
        help="print one serial per line (input for send-commands)",
    )
    _fields_option(p, DEVICE_FIELDS)

    p = _leaf(
        dsub,
        "send-commands",
        command="devices.send-commands",
        help="send commands to many devices (exact outcome per device)",
        description="Send the same commands to every serial of a file. Each serial ends with "
        "exactly one outcome: sent, rejected (the device does not accept a command; nothing "
        "was sent to it), failed, unknown (the request's fate is ambiguous: the device may or "
        "may not have the command) or skipped (duplicate, or already settled in the "
        "journal).\n\n"
        "Values of --set are parsed as JSON, falling back to a string: --set w_ota=true sends "
        'a boolean, --set period=300 a number, --set mode=eco the string "eco". Numbers JSON '
        "cannot carry (NaN, inf, 1e999) are refused; quote them to send a string. A value "
        'that starts like JSON ({, [ or ") but does not parse is refused too, and so are True, '
        "False and None (JSON writes true, false and null).\n\n"
        "With --journal, every settled serial is recorded; running the same command again "
        "skips them, so an interrupted or killed job resumes without sending any command "
        "twice; the summary counts them at the outcome they had then.\n\n"
        "Exit code 0 when every device has the command (sent now or in an earlier run of the "
        "journal), 1 while any device ended rejected, failed or unknown (now or earlier), 2 "
        "for usage errors (also --report naming an input or the journal), 130 on Ctrl-C and "
        "143 on SIGTERM (the journal is flushed; rerun to resume).",
        epilog="""\
examples:
  iris360 devices send-commands --serials-file serials.txt --set w_ota=true --dry-run
  iris360 devices send-commands --serials-file serials.txt --set w_ota=true \\
      --set period=300 --journal job.jsonl --report outcomes.jsonl
  iris360 devices list --serials-only | iris360 devices send-commands \\
      --serials-file - --set w_ota=true
  iris360 devices send-commands --serials-file serials.txt --set w_ota=true \\
      --concurrency auto --journal job.jsonl --reconcile

serials file: one serial per line (UTF-8, a byte order mark is ignored); blank lines and
lines starting with # are ignored. CSV rows and JSON records (the output of devices list
without --serials-only) are refused.
""",
    )
    p.add_argument(
        "--serials-file",
        required=True,
        metavar="FILE",
        help="file with one serial per line, or - for stdin",
    )
    p.add_argument(
        "--set",
        dest="commands",
        action="append",
        required=True,
        metavar="NAME=VALUE",
        help="a command to send (repeatable)",
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=DEFAULT_CHUNK_SIZE,
        metavar="N",
        help=f"serials per request (default {DEFAULT_CHUNK_SIZE})",
    )
    _concurrency_option(p, default="auto")
    p.add_argument(
        "--journal",
        metavar="FILE",
        help="journal of settled serials (JSON lines); resumes a previous run",
    )
    p.add_argument(
        "--resend",
        action="append",
        choices=("rejected", "failed", "unknown"),
        metavar="OUTCOME",
        help="with --journal: send again to serials the journal recorded with this outcome "
        "(rejected, failed or unknown; repeatable). By default a journaled serial is never "
        "sent twice",
    )
    p.add_argument(
        "--journal-force",
        action="store_true",
        help="with --journal: resume a journal written for other commands, server, tenant or "
        "scope (its settled serials are skipped)",
    )
    p.add_argument(
        "--reconcile",
        action="store_true",
        help="after the last chunk, read the command state of the devices that ended unknown: "
        "confirmed ones end sent, ones the server did not act on are sent again (at most "
        "twice), the rest stay unknown with the reason (2 reads per device, plus 1 after a "
        "re-send)",
    )
    p.add_argument(
        "--report",
        metavar="FILE",
        help="write one JSON line per serial: serial, status, detail (written to a temporary "
        "file and renamed into place at the end; never the serials file or the journal)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (serials, duplicates, chunks, requests, estimated "
        "time) and send nothing; needs no server",
    )
    p.add_argument(
        "--assume-request-ms",
        type=non_negative_float,
        default=250.0,
        metavar="MS",
        help="dry-run estimate: server time per request in ms (default 250)",
    )
    p.add_argument(
        "--assume-device-ms",
        type=non_negative_float,
        default=20.0,
        metavar="MS",
        help="dry-run estimate: server time per device in ms (default 20)",
    )
    _progress_option(p)
    add_lifecycle_commands(dsub, _leaf, _concurrency_option, _progress_option)


def _add_entities(sub: Any) -> None:
    entities = sub.add_parser(
        "entities",
        help="list entities, read an entity's latest data",
        description="Entities (NGSI-LD) of the platform.",
        formatter_class=_Formatter,
    )
    esub = entities.add_subparsers(title="commands", metavar="COMMAND", dest="action")

    p = _leaf(
        esub,
        "list",
        command="entities.list",
        help="list entities",
        description="List the entities you may access, optionally filtered by type.",
        epilog="""\
examples:
  iris360 entities list --tenant libelium --scope /
  iris360 entities list --type AirQualityObserved --type WeatherObserved --limit 100
""",
    )
    p.add_argument(
        "--type", dest="types", action="append", metavar="TYPE", help="datamodel type (repeatable)"
    )
    p.add_argument("--search", metavar="TEXT", help="case-insensitive search")
    p.add_argument("--limit", type=positive_int, metavar="N", help="stop after N entities")
    p.add_argument(
        "--page-size",
        type=positive_int,
        default=DEFAULT_PAGE_SIZE,
        metavar="N",
        help=f"entities per request (default {DEFAULT_PAGE_SIZE})",
    )
    _fields_option(p, ENTITY_FIELDS)

    p = _leaf(
        esub,
        "latest",
        command="entities.latest",
        help="latest value of every attribute of one entity",
        description="The latest value of every attribute (properties, relationships and "
        "commands) of one entity. Needs a tenant and a scope.",
        epilog="""\
examples:
  iris360 entities latest urn:ngsi-ld:Device:Device001 --tenant libelium --scope /
  iris360 entities latest urn:ngsi-ld:Device:Device001 --format json
""",
    )
    p.add_argument("urn", help="entity URN, e.g. urn:ngsi-ld:Device:Device001")


def _add_timeseries(sub: Any) -> None:
    ts = sub.add_parser(
        "timeseries",
        help="export time series",
        description="Historic values of entity attributes.",
        formatter_class=_Formatter,
    )
    tsub = ts.add_subparsers(title="commands", metavar="COMMAND", dest="action")
    p = _leaf(
        tsub,
        "get",
        command="timeseries.get",
        help="values of some measures of some devices in a time range",
        description="Values of the given measures of the given devices (entity URNs) from "
        "--start (inclusive) to --end (exclusive). Output rows: device_id, measure_id, "
        "timestamp (UTC, ISO 8601), value.",
        epilog="""\
examples:
  iris360 timeseries get --device urn:ngsi-ld:Device:Device001 --measure temperature \\
      --start 2025-01-01T00:00:00Z --end 2025-01-02T00:00:00Z --format csv > temp.csv
  iris360 timeseries get --device urn:ngsi-ld:Device:D1 --device urn:ngsi-ld:Device:D2 \\
      --measure temperature --measure humidity --start P1D --limit 1000 --order desc
  iris360 timeseries get --device urn:ngsi-ld:Device:D1 --measure temperature \\
      --start 2025-01-01T00:00:00Z --end 2025-02-01T00:00:00Z --aggregate mean:P1D
""",
    )
    p.add_argument(
        "--device",
        dest="devices",
        action="append",
        required=True,
        metavar="URN",
        help="entity URN (repeatable)",
    )
    p.add_argument(
        "--measure",
        dest="measures",
        action="append",
        metavar="NAME",
        help="attribute name (repeatable; none = all attributes)",
    )
    p.add_argument(
        "--start",
        metavar="WHEN",
        help="lower bound: ISO 8601 date-time, or a duration back from now (P1D)",
    )
    p.add_argument(
        "--end", metavar="WHEN", help="upper bound: ISO 8601 date-time, or a duration back from now"
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="points per (device, measure) pair (server default 100)",
    )
    p.add_argument(
        "--order",
        choices=("asc", "desc"),
        help="with --limit, asc keeps the oldest points, desc the newest (default: asc with "
        "--start, desc without)",
    )
    p.add_argument(
        "--aggregate",
        metavar="TYPE:INTERVAL",
        help="aggregate per interval: mean, sum, min, max, moving_avg or percentile-N, and "
        "an ISO 8601 duration, e.g. mean:PT1H",
    )


def _add_connectors(sub: Any) -> None:
    conn = sub.add_parser(
        "connectors",
        help="list and show outbound connectors",
        description="Outbound connectors (MQTT, HTTP, Azure, FIWARE, Sentilo).",
        formatter_class=_Formatter,
    )
    csub = conn.add_subparsers(title="commands", metavar="COMMAND", dest="action")
    p = _leaf(
        csub,
        "list",
        command="connectors.list",
        help="list outbound connectors",
        description="List the outbound connectors you may access.",
        epilog="""\
examples:
  iris360 connectors list
  iris360 connectors list --search mqtt --format json
""",
    )
    p.add_argument("--search", metavar="TEXT", help="search in name and type")
    p.add_argument("--limit", type=positive_int, metavar="N", help="stop after N connectors")
    _fields_option(p, CONNECTOR_FIELDS)

    p = _leaf(
        csub,
        "get",
        command="connectors.get",
        help="show one outbound connector",
        description="Show one outbound connector. Secret fields (password, connection "
        "string, identity key) are masked unless --show-secrets is given.",
        epilog="""\
examples:
  iris360 connectors get 7
  iris360 connectors get 7 --format json --show-secrets
""",
    )
    p.add_argument("id", type=int, help="connector id")
    p.add_argument("--show-secrets", action="store_true", help="print secrets in clear")
