"""The progress bar's rate: measured over a sliding window, nothing during the first second
(a first chunk settling after a few milliseconds is not tens of thousands of devices per
second). Time is a fake clock."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from iris360_async.cli._progress import JobProgress, SlidingRate


def test_no_rate_before_a_second_then_a_sliding_window() -> None:
    rate = SlidingRate(window=10.0, min_span=1.0)
    assert rate.update(0.0, 0) is None
    assert rate.update(0.002, 100) is None  # one chunk after 2 ms is not 50,000/s
    assert rate.update(0.9, 200) is None
    assert rate.update(1.0, 250) == pytest.approx(250.0)
    for second in range(2, 30):
        value = rate.update(float(second), 250 + (second - 1) * 50)
    assert value == pytest.approx(50.0)  # the first burst has left the window


def _render(progress: JobProgress) -> str:
    inner = progress._progress
    assert inner is not None
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(inner.make_tasks_table(inner.tasks))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_the_progress_bar_shows_no_rate_in_its_first_second() -> None:
    now = [100.0]
    progress = JobProgress(True, io.StringIO(), get_time=lambda: now[0])
    task = progress.add("sending", total=10_000)
    _render(progress)
    now[0] += 0.001
    progress.advance(task, 100, outcome="sent")
    first = _render(progress)
    assert "- dev/s" in first
    assert "-:--:--" in first
    now[0] += 1.999
    progress.advance(task, 100, outcome="sent")
    later = _render(progress)
    assert "100 dev/s" in later  # 200 devices in 2 s
    assert "0:01:38" in later  # 9,800 left at 100/s
