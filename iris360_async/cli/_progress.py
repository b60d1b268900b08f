"""Progress bars on stderr (rich), drawn only when stderr is a terminal unless forced."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping
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
)
from rich.table import Column
from rich.text import Text

__all__ = [
    "OUTCOME_ORDER",
    "JobProgress",
    "SlidingRate",
    "format_counts",
    "format_pace",
    "progress_enabled",
]

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


def format_pace(stats: object) -> str:
    """``5/6 in flight · 212 ms`` from a ``ProgressStats`` (requests in flight of the limit,
    recent latency); ``reconciling 37 devices`` while the job reads the command state of the
    devices that ended unknown; empty when it says nothing."""
    reconciling = getattr(stats, "reconciling", 0)
    if isinstance(reconciling, int) and reconciling > 0:
        return f"reconciling {reconciling:,} device{'s' if reconciling != 1 else ''}"
    limit = getattr(stats, "limit", None)
    in_flight = getattr(stats, "in_flight_chunks", None)
    latency = getattr(stats, "latency", None)
    parts = []
    if isinstance(limit, int) and isinstance(in_flight, int):
        parts.append(f"{in_flight}/{limit} in flight")
    if isinstance(latency, float):
        parts.append(f"{latency * 1000:,.0f} ms" if latency < 10 else f"{latency:,.1f} s")
    return " · ".join(parts)


def _fixed() -> Column:
    """A column that is never wrapped or squeezed (the bar takes what is left)."""
    return Column(no_wrap=True)


class SlidingRate:
    """Items per second over the last ``window`` seconds, from ``(time, completed)`` samples.

    Nothing (``None``) until the samples span ``min_span`` seconds: a rate measured over the
    first milliseconds of a job, when one chunk of a hundred devices settles at once, says
    tens of thousands per second.
    """

    def __init__(self, *, window: float = 10.0, min_span: float = 1.0) -> None:
        self.window = window
        self.min_span = min_span
        self._samples: deque[tuple[float, float]] = deque()

    def update(self, now: float, completed: float) -> float | None:
        """Record ``completed`` at ``now`` (seconds, monotonic); returns the rate or ``None``."""
        samples = self._samples
        if not samples or now > samples[-1][0]:
            samples.append((now, completed))
        while len(samples) > 2 and samples[1][0] <= now - self.window:
            samples.popleft()
        first_time, first_completed = samples[0]
        span = now - first_time
        if span < self.min_span:
            return None
        return (completed - first_completed) / span


class _Rates:
    """One :class:`SlidingRate` per task, shared by the rate and the time-left columns."""

    def __init__(self) -> None:
        self._rates: dict[TaskID, SlidingRate] = {}

    def of(self, task: Task) -> float | None:
        if task.finished and task.finished_time:
            return task.completed / task.finished_time  # the overall average
        rate = self._rates.setdefault(task.id, SlidingRate())
        return rate.update(task.get_time(), task.completed)


class _RateColumn(ProgressColumn):
    """Items per second over the last ten seconds (nothing during the first second)."""

    def __init__(self, unit: str, rates: _Rates, table_column: Column | None = None) -> None:
        super().__init__(table_column=table_column)
        self.unit = unit
        self.rates = rates

    def render(self, task: Task) -> Text:
        speed = self.rates.of(task)
        if speed is None:
            return Text(f"- {self.unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.0f} {self.unit}/s", style="progress.data.speed")


class _TimeLeftColumn(ProgressColumn):
    """Time left at the rate of :class:`_RateColumn` (``-:--:--`` while it is unknown)."""

    def __init__(self, rates: _Rates, table_column: Column | None = None) -> None:
        super().__init__(table_column=table_column)
        self.rates = rates

    def render(self, task: Task) -> Text:
        speed = None if task.finished else self.rates.of(task)
        if task.total is None or not speed:
            return Text("-:--:--", style="progress.remaining")
        seconds = int(max(0.0, task.total - task.completed) / speed)
        minutes, secs = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours}:{minutes:02d}:{secs:02d}", style="progress.remaining")


class JobProgress:
    """One progress display with any number of bars; does nothing when disabled.

    Used as a context manager; bars are added with :meth:`add` and moved with
    :meth:`advance`. A bar's outcome counts (bulk jobs) are shown to its right.
    """

    def __init__(
        self, enabled: bool, stream: TextIO, *, get_time: Callable[[], float] | None = None
    ) -> None:
        self.enabled = enabled
        self._stream = stream
        self._progress: Progress | None = None
        self._counts: dict[TaskID, Counter[str]] = {}
        self._compact = False
        if enabled:
            console = Console(file=stream, force_terminal=True)
            self._compact = console.width < _COMPACT_BELOW
            rates = _Rates()
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}", table_column=_fixed()),
                BarColumn(bar_width=None),
                MofNCompleteColumn(table_column=_fixed()),
                _RateColumn("dev", rates, table_column=_fixed()),
                _TimeLeftColumn(rates, table_column=_fixed()),
                TextColumn("{task.fields[counts]}", table_column=_fixed()),
                TextColumn("[dim]{task.fields[pace]}", table_column=_fixed()),
                console=console,
                refresh_per_second=8,
                get_time=get_time,
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
        task = self._progress.add_task(description, total=total, counts="", pace="")
        self._counts[task] = Counter()
        return task

    def pace(self, task: TaskID, stats: object) -> None:
        """Show a job's pacing next to its bar: requests in flight of the limit, recent
        latency (from a ``ProgressStats``)."""
        if self._progress is not None:
            self._progress.update(task, pace=format_pace(stats))

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
