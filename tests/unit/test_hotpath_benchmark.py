"""The in-process hot-path benchmark measures every part of a Rank's life."""

from __future__ import annotations

from pathlib import Path

from benchmarks import hotpath


def test_every_part_is_measured(tmp_path: Path) -> None:
    costs = hotpath.run(ranks=50, batches=1, folder=tmp_path)
    assert set(costs) == set(hotpath.PARTS)
    assert all(0 < microseconds < 1e6 for microseconds in costs.values())
