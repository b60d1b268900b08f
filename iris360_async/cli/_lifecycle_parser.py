"""The parser entries of ``iris360 devices reconcile`` and ``iris360 devices track`` (standard
library only, like the rest of the parser)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from ._argparse import positive_int

__all__ = ["add_lifecycle_commands", "duration"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)


def duration(text: str) -> float:
    """``"30m"`` -> 1800.0: a number of seconds, optionally with a unit ``s``/``m``/``h``/``d``."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90s, 30m, 2h or 1d (seconds without a unit), "
            f"got {text!r}"
        )
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    return seconds


def _journal_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--journal", required=True, metavar="FILE",
                   help=f"the journal of a send-commands job ({what})")
    p.add_argument(
        "--set", dest="commands", action="append", metavar="NAME=VALUE",
        help="the commands that job sent (repeatable); default: those its journal records",
    )


def add_lifecycle_commands(
    dsub: Any,
    leaf: Callable[..., argparse.ArgumentParser],
    concurrency_option: Callable[[argparse.ArgumentParser], None],
    progress_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``devices reconcile`` and ``devices track`` to the ``devices`` sub-parsers."""
    p = leaf(
        dsub,
        "reconcile",
        command="devices.reconcile",
        help="resolve the unknown devices of a job from their command state",
        description="Look up every device a send-commands journal left unknown (or in flight "
        "when the job was killed) in the command state its send left on the device's entity: "
        "a command pending with the value sent, or already current, means the send arrived "
        "(sent, 'confirmed from command state'); a state showing it was not applied means the "
        "server did not act, and the commands are sent again (at most twice); a mixed or "
        "unreadable state stays unknown, with the reason. Every verdict is written to the "
        "journal, so running it again only looks at what is still unknown.\n\n"
        "Exit code 0 when no device is left unknown, failed or rejected, 1 otherwise.",
        epilog="""\
examples:
  iris360 devices reconcile --journal job.jsonl
  iris360 devices reconcile --journal job.jsonl --no-resend --format json
""",
    )
    _journal_option(p, "its unknown devices are looked up; verdicts are added to it")
    p.add_argument("--no-resend", dest="resend", action="store_false",
                   help="do not send again to devices whose state shows the send was not "
                   "applied (they end failed; resuming the job sends them)")
    p.add_argument("--chunk-size", type=positive_int, default=100, metavar="N",
                   help="serials per re-send request (default 100)")
    concurrency_option(p)
    p.add_argument("--journal-force", action="store_true",
                   help="use a journal written for another server, tenant or scope")

    p = leaf(
        dsub,
        "track",
        command="devices.track",
        help="follow devices until they have applied the commands sent",
        description="Read the command state of the devices a send-commands job sent to, again "
        "and again, until every device has applied the commands (applied: no longer pending, "
        "current value equal to the value sent) or superseded them (no longer pending, "
        "another value current), or until --until. A device that is done is not read again; "
        "each sweep reads the others, --concurrency reads at once, sweeps --interval apart.\n\n"
        "Exit code 0 when every device applied the commands, 1 otherwise.",
        epilog="""\
examples:
  iris360 devices track --journal job.jsonl --until 30m
  iris360 devices track --journal job.jsonl --until 2h --interval 5m --json
""",
    )
    _journal_option(p, "its sent devices are tracked")
    p.add_argument("--until", type=duration, metavar="DURATION",
                   help="stop after this long (90s, 30m, 2h, 1d); default: when every device "
                   "is done")
    p.add_argument("--interval", type=duration, default=60.0, metavar="DURATION",
                   help="from the start of one sweep to the next (default 60s)")
    concurrency_option(p)
    p.add_argument("--json", dest="format", action="store_const", const="json",
                   help="print the result as JSON (same as --format json)")
    progress_option(p)
