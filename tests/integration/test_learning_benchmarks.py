"""The quick learning benchmarks run end to end (real server over gRPC) and write the JSON and plots they promise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import drift


@pytest.mark.slow
def test_quick_drift_benchmark_writes_every_policy_and_window(tmp_path: Path) -> None:
    assert drift.main(["--quick", "--rounds", "600", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "drift.json").read_text())
    assert result["rounds"] == 600 and result["drift_at"] == 300
    assert set(result["policies"]) == {"kairos", "batch", "uniform", "ceiling", "oracle"}
    for name, policy in result["policies"].items():
        for window in ("before_drift", "before_drift_second_half", "after_drift", "after_drift_second_half"):
            assert 0.0 <= policy[window]["click_rate"] <= 1.0, (name, window)
            assert policy[window]["vs_oracle"] > 0.0
        assert len(policy["curve"]) == len(result["bucket_ends"])
        assert len(policy["regret"]) == len(result["bucket_ends"])
    assert result["policies"]["oracle"]["regret"][-1] == 0.0
    assert result["policies"]["oracle"]["after_drift"]["click_rate"] > result["policies"]["uniform"]["after_drift"][
        "click_rate"
    ]
    assert result["settings"][0]["setting"].startswith("default")
    assert (tmp_path / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
