"""The challenger cost benchmark runs end to end on a small size (its numbers are for people, not CI)."""

from __future__ import annotations

import pytest

from benchmarks import challenger


def test_challenger_benchmark_learns_every_event_in_both_setups() -> None:
    # run() checks inside that both set-ups learned every event and the challenger scored each one.
    result = challenger.run(events=30, rounds=1)
    assert result["events"] == 30
    assert result["learn_us_per_event"] > 0 and result["learn_us_per_event_with_challenger"] > 0
    assert result["cost_ratio"] == pytest.approx(
        result["learn_us_per_event_with_challenger"] / result["learn_us_per_event"]
    )
