"""Problems of a bulk job grouped by cause: one row per (outcome, cause) with a count and a few
example serials, instead of one row per device.

The cause is the outcome's detail made fit for one line (:func:`iris360_async.errors.condense`:
an HTML gateway page becomes its title, whitespace is collapsed, secrets are masked). Serials
skipped because an earlier run settled them in the journal are grouped apart, under the status
they ended with then.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import condense

__all__ = ["IN_FLIGHT_CAUSE", "ProblemGroup", "Problems", "cause_text", "journal_cause"]

EXAMPLES = 3
"""Example serials kept per cause."""
MAX_CAUSES = 50
"""Distinct causes kept; further ones are counted under :data:`OTHER_CAUSES`."""
CAUSE_LIMIT = 160
"""Characters of a cause."""
OTHER_CAUSES = "(other causes)"
IN_FLIGHT_CAUSE = "in flight when the job stopped: the device may have the command"

_JOURNAL_PREFIX = re.compile(r"^already \w+ in journal:?\s*")
_HTML = re.compile(r"<(?:!doctype|html)\b", re.IGNORECASE)


def cause_text(detail: str | None, secrets: Iterable[str | None] = ()) -> str:
    """``detail`` fit for one line: an HTML page in it (also after a prefix such as
    ``HTTP 503:``) reduced to its title, whitespace collapsed, secrets masked, cut short."""
    text = detail or ""
    page = _HTML.search(text)
    if page is not None:
        text = text[: page.start()] + condense(text[page.start() :], secrets=secrets)
    return condense(text, CAUSE_LIMIT, secrets=secrets) or "(no detail)"


def journal_cause(detail: str | None) -> str:
    """The earlier run's reason in the detail of a journal-skipped serial
    (``already rejected in journal: You cannot send any of: w_ota`` -> its tail)."""
    return _JOURNAL_PREFIX.sub("", detail or "", count=1)


@dataclass
class ProblemGroup:
    """Devices that ended ``status`` for one ``cause`` (``earlier``: in a previous run, as the
    journal records)."""

    status: str
    cause: str
    earlier: bool = False
    devices: int = 0
    examples: list[str] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "cause": self.cause,
            "earlier": self.earlier,
            "devices": self.devices,
            "examples": list(self.examples),
        }


class Problems:
    """Counts problems by cause; memory is bounded by :data:`MAX_CAUSES`."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = tuple(secrets)
        self._groups: dict[tuple[str, str, bool], ProblemGroup] = {}

    def add(
        self, status: str, detail: str | None, serial: str | None, *, earlier: bool = False
    ) -> None:
        """Count one device that ended ``status`` because of ``detail``."""
        self.add_many(status, detail, 1, serial=serial, earlier=earlier)

    def add_many(
        self,
        status: str,
        cause: str | None,
        devices: int,
        *,
        serial: str | None = None,
        earlier: bool = False,
    ) -> None:
        text = cause_text(cause, self._secrets)
        key = (status, text, earlier)
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) >= MAX_CAUSES:
                key = (status, OTHER_CAUSES, earlier)
                group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = ProblemGroup(status, key[1], earlier)
        group.devices += devices
        if serial is not None and len(group.examples) < EXAMPLES:
            group.examples.append(serial)

    def __bool__(self) -> bool:
        return bool(self._groups)

    def __iter__(self) -> Iterator[ProblemGroup]:
        """This run's groups first, then earlier runs'; the largest first within each."""
        return iter(sorted(self._groups.values(), key=lambda g: (g.earlier, -g.devices)))

    def first_cause(self) -> str | None:
        """The cause of the largest group of this run, if any."""
        return next((g.cause for g in self if not g.earlier), None)
