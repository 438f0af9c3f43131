"""The quick learning benchmarks run end to end (real server over gRPC) and write the JSON and plots they promise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import digits, drift


@pytest.mark.slow
def test_quick_drift_benchmark_writes_every_policy_and_window(tmp_path: Path) -> None:
    assert drift.main(["--quick", "--rounds", "600", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "drift.json").read_text())
    assert result["rounds"] == 600 and result["drift_at"] == 300
    assert set(result["policies"]) == {"kairos", "kairos_tuned", "batch", "uniform", "ceiling", "oracle"}
    for name, policy in result["policies"].items():
        for window in ("before_drift", "before_drift_second_half", "after_drift", "after_drift_second_half"):
            assert 0.0 <= policy[window]["click_rate"] <= 1.0, (name, window)
            assert policy[window]["vs_oracle"] > 0.0
        assert len(policy["curve"]) == len(result["bucket_ends"])
        assert len(policy["regret"]) == len(result["bucket_ends"])
    assert result["policies"]["oracle"]["regret"][-1] == 0.0
    assert (
        result["policies"]["oracle"]["after_drift"]["click_rate"]
        > result["policies"]["uniform"]["after_drift"]["click_rate"]
    )
    assert result["settings"][0]["setting"].startswith("default")
    assert (tmp_path / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_digits_benchmark_compares_kairos_with_raw_vw(tmp_path: Path) -> None:
    assert digits.main(["--quick", "--passes", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "digits.json").read_text())
    assert result["rounds"] == 1797
    learners = result["learners"]
    assert {r["kind"] for r in learners.values()} == {"kairos", "kairos-in-process", "raw-vw", "uniform"}
    assert learners[result["best_raw_vw"]]["kind"] == "raw-vw"
    for name, r in learners.items():
        assert 0.0 <= r["progressive_accuracy"] <= 1.0, name
        assert len(r["per_pass"]) == 1
    # Even one pass of learning beats guessing one label in ten by far.
    assert (
        learners[digits.KAIROS_CONFIGURED]["progressive_accuracy"]
        > 3 * learners["uniform random"]["progressive_accuracy"]
    )
    assert result["kairos_vs_best_raw_vw"] > 0.0
    assert (tmp_path / "digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
