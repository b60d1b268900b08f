"""``ProgressStats.total`` and ``eta``: known for a list or tuple, or from a ``total=`` hint;
absent for other inputs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from emulator_support import client_for

from iris360_async import ProgressStats
from iris360_async.models.bulk import estimate_eta, input_total
from iris360_async.testing import Iris360Emulator


def test_eta_is_the_rest_at_the_rate_so_far() -> None:
    assert estimate_eta(100, 25, 10.0, False) == pytest.approx(30.0)
    assert estimate_eta(100, 0, 10.0, False) is None  # no rate yet
    assert estimate_eta(None, 25, 10.0, False) is None
    assert estimate_eta(100, 120, 10.0, False) == 0.0  # more settled than announced
    assert estimate_eta(100, 50, 10.0, True) == 0.0


def test_the_total_comes_from_a_hint_or_a_list() -> None:
    assert input_total(["a", "b"], None) == 2
    assert input_total(("a",), None) == 1
    assert input_total(iter(["a"]), None) is None
    assert input_total({"a"}, None) is None  # read as it comes, like any other iterable
    assert input_total(iter(["a"]), 40) == 40


def _generator(serials: list[str]) -> Iterator[str]:
    yield from serials


@pytest.mark.parametrize("shape", ["list", "hint", "generator"])
async def test_progress_carries_total_and_eta(
    iris360_emulator: Iris360Emulator, shape: str
) -> None:
    serials = list(iris360_emulator.fleet.serials)[:40]
    seen: list[ProgressStats] = []
    source = serials if shape == "list" else _generator(serials)
    hint = {"total": 40} if shape == "hint" else {}
    async with client_for(iris360_emulator) as iris:
        report = await iris.devices.send_commands(
            source, {"w_reboot": True}, chunk_size=5, concurrency=2,
            on_progress=seen.append, progress_interval=0, **hint,
        )
    assert report.total == 40
    final = seen[-1]
    assert final.done
    if shape == "generator":
        assert all(s.total is None and s.eta is None for s in seen[:-1])
        assert final.total is None
    else:
        assert all(s.total == 40 for s in seen)
        assert final.eta == 0.0
        assert all(s.eta is None or s.eta >= 0 for s in seen)
        assert any(s.eta is not None for s in seen[:-1])


async def test_a_bad_total_is_refused_before_sending(iris360_emulator: Iris360Emulator) -> None:
    async with client_for(iris360_emulator) as iris:
        with pytest.raises(ValueError, match="total"):
            await iris.devices.send_commands(["SN000001"], {"w_reboot": True}, total=-1)
        with pytest.raises(TypeError, match="total"):
            iris.devices.stream_commands(
                ["SN000001"], {"w_reboot": True}, total="10"  # type: ignore[arg-type]
            )
        assert iris.stats.requests == 0
