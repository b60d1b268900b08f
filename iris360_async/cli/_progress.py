"""Progress bars on stderr (rich), drawn only when stderr is a terminal unless forced."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

__all__ = ["OUTCOME_ORDER", "JobProgress", "format_counts", "progress_enabled"]

OUTCOME_ORDER = ("sent", "rejected", "failed", "unknown", "skipped")
_STYLES = {
    "sent": "green",
    "rejected": "yellow",
    "failed": "red",
    "unknown": "magenta",
    "skipped": "dim",
}


def progress_enabled(mode: str, stream: TextIO) -> bool:
    """``always``, ``never``, or ``auto`` (only when ``stream`` is a terminal)."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


_SHORT = {"sent": "ok", "rejected": "rej", "failed": "fail", "unknown": "unk", "skipped": "skip"}
_COMPACT_BELOW = 110  # terminal columns under which outcome names are abbreviated


def format_counts(counts: Mapping[str, int], *, markup: bool = False, compact: bool = False) -> str:
    """``1,234 sent · 3 rejected · …`` for the outcomes that occurred (sent always shown);
    ``compact`` abbreviates the names (``1,234 ok · 3 rej``) for narrow terminals."""
    parts = []
    for name in OUTCOME_ORDER:
        value = counts.get(name, 0)
        if value or name == "sent":
            text = f"{value:,} {_SHORT[name] if compact else name}"
            parts.append(f"[{_STYLES[name]}]{text}[/]" if markup else text)
    return " · ".join(parts)


def _fixed() -> Column:
    """A column that is never wrapped or squeezed (the bar takes what is left)."""
    return Column(no_wrap=True)


class _RateColumn(ProgressColumn):
    """Items per second, measured by rich over the last few seconds."""

    def __init__(self, unit: str, table_column: Column | None = None) -> None:
        super().__init__(table_column=table_column)
        self.unit = unit

    def render(self, task: Task) -> Text:
        if task.finished and task.finished_time:
            speed: float | None = task.completed / task.finished_time  # the overall average
        else:
            speed = task.speed
        if speed is None:
            return Text(f"- {self.unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.0f} {self.unit}/s", style="progress.data.speed")


class JobProgress:
    """One progress display with any number of bars; does nothing when disabled.

    Used as a context manager; bars are added with :meth:`add` and moved with
    :meth:`advance`. A bar's outcome counts (bulk jobs) are shown to its right.
    """

    def __init__(self, enabled: bool, stream: TextIO) -> None:
        self.enabled = enabled
        self._stream = stream
        self._progress: Progress | None = None
        self._counts: dict[TaskID, Counter[str]] = {}
        self._compact = False
        if enabled:
            console = Console(file=stream, force_terminal=True)
            self._compact = console.width < _COMPACT_BELOW
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}", table_column=_fixed()),
                BarColumn(bar_width=None),
                MofNCompleteColumn(table_column=_fixed()),
                _RateColumn("dev", table_column=_fixed()),
                TimeRemainingColumn(table_column=_fixed()),
                TextColumn("{task.fields[counts]}", table_column=_fixed()),
                console=console,
                refresh_per_second=8,
                speed_estimate_period=10.0,
            )

    def __enter__(self) -> JobProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def log(self, text: str) -> None:
        """A line on the stream, above the bars while they are drawn."""
        if self._progress is not None and self._progress.live.is_started:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            self._stream.write(text + "\n")
            self._stream.flush()

    def add(self, description: str, total: int | None) -> TaskID:
        """A new bar (``total`` ``None`` when unknown yet)."""
        if self._progress is None:
            return TaskID(0)
        task = self._progress.add_task(description, total=total, counts="")
        self._counts[task] = Counter()
        return task

    def set_total(self, task: TaskID, total: int) -> None:
        if self._progress is not None:
            self._progress.update(task, total=total)

    def advance(self, task: TaskID, amount: int = 1, outcome: str | None = None) -> None:
        """Move a bar by ``amount``; with ``outcome``, count it in the bar's outcome counts."""
        if self._progress is None:
            return
        if outcome is None:
            self._progress.advance(task, amount)
            return
        counts = self._counts[task]
        counts[outcome] += amount
        self._progress.update(
            task, advance=amount, counts=format_counts(counts, markup=True, compact=self._compact)
        )
