"""Output of the command line: tables (rich), JSON lines and CSV, chosen by ``--format``.

Rows are plain ``dict`` objects (``msgspec.to_builtins`` of the models). JSON lines and CSV are
written as rows arrive, so listing a large fleet starts printing at once and keeps memory flat;
a table needs every row first.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO

__all__ = ["Column", "Format", "Output", "cell_text", "choose_format", "lookup"]

Format = Literal["table", "json", "csv"]


def choose_format(requested: str | None, stdout: TextIO) -> Format:
    """``requested``, or a table on a terminal and JSON lines otherwise."""
    if requested == "table":
        return "table"
    if requested == "json":
        return "json"
    if requested == "csv":
        return "csv"
    return "table" if _isatty(stdout) else "json"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass(frozen=True)
class Column:
    """One column: its header and the dotted path of the value in a row (``type.name``)."""

    header: str
    path: str


def lookup(row: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of ``row``, ``None`` where a step is missing."""
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def cell_text(value: Any) -> str:
    """A value as text for CSV and tables: JSON for booleans, lists and objects."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


def _json_line(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


class Output:
    """Writes rows and records to stdout in one format."""

    def __init__(self, fmt: Format, stdout: TextIO) -> None:
        self.format: Format = fmt
        self.stdout = stdout

    # -- several rows -------------------------------------------------------------------------
    def rows(
        self,
        rows: Iterable[Mapping[str, Any]],
        columns: Sequence[Column],
        *,
        title: str = "",
        project: bool = False,
    ) -> int:
        """Write ``rows``; returns how many. JSON lines carry every field of a row, or with
        ``project`` only the ``columns`` (keyed by their headers)."""
        if self.format == "table":
            collected = list(rows)
            self._table(collected, columns, title=title)
            return len(collected)
        count = 0
        writer = self._csv_header(columns) if self.format == "csv" else None
        for row in rows:
            self._stream_row(row, columns, writer, project)
            count += 1
        self.stdout.flush()
        return count

    async def rows_async(
        self,
        rows: AsyncIterable[Mapping[str, Any]],
        columns: Sequence[Column],
        *,
        title: str = "",
        project: bool = False,
    ) -> int:
        """Write rows as they arrive from an async iterable; returns how many (``project``
        as for :meth:`rows`)."""
        if self.format == "table":
            collected = [row async for row in rows]
            self._table(collected, columns, title=title)
            return len(collected)
        count = 0
        writer = self._csv_header(columns) if self.format == "csv" else None
        async for row in rows:
            self._stream_row(row, columns, writer, project)
            count += 1
            if count % 500 == 0:
                self.stdout.flush()
        self.stdout.flush()
        return count

    def _csv_header(self, columns: Sequence[Column]) -> Any:
        writer = csv.writer(self.stdout, lineterminator="\n")
        writer.writerow([c.header for c in columns])
        return writer

    def _stream_row(
        self, row: Mapping[str, Any], columns: Sequence[Column], writer: Any, project: bool
    ) -> None:
        if writer is None:
            record = {c.header: lookup(row, c.path) for c in columns} if project else row
            self.stdout.write(_json_line(record) + "\n")
        else:
            writer.writerow([cell_text(lookup(row, c.path)) for c in columns])

    # -- one record ---------------------------------------------------------------------------
    def record(self, record: Mapping[str, Any], *, title: str = "") -> None:
        """One object: a two-column table, one JSON line, or a CSV header and row."""
        if self.format == "json":
            self.stdout.write(_json_line(record) + "\n")
        elif self.format == "csv":
            writer = csv.writer(self.stdout, lineterminator="\n")
            writer.writerow(list(record))
            writer.writerow([cell_text(v) for v in record.values()])
        else:
            from rich.table import Table

            table = Table(title=title or None, show_header=False, title_justify="left")
            table.add_column("field", style="bold")
            table.add_column("value", overflow="fold")
            for key, value in record.items():
                if value is not None:
                    table.add_row(str(key), cell_text(value))
            self.render(table)
        self.stdout.flush()

    # -- tables -------------------------------------------------------------------------------
    def _table(
        self, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], *, title: str
    ) -> None:
        from rich.table import Table

        caption = f"{len(rows)} row{'s' if len(rows) != 1 else ''}"
        table = Table(
            title=title or None, caption=caption, title_justify="left", caption_justify="left"
        )
        for column in columns:
            table.add_column(column.header, overflow="fold")
        for row in rows:
            table.add_row(*(cell_text(lookup(row, c.path)) for c in columns))
        self.render(table)

    def render(self, renderable: Any) -> None:
        from rich.console import Console

        width = None if _isatty(self.stdout) else 160
        Console(file=self.stdout, width=width, highlight=False).print(renderable)
