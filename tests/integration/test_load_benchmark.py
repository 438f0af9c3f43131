"""The load benchmark runs end to end against a real server and reports what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import load


def test_quick_load_run_reports_latency_cpu_and_learning(tmp_path: Path) -> None:
    args = ["--rates", "40", "--duration", "1.5", "--warmup", "0.5", "--client", "python", "--channels", "2"]
    args += ["--max-other-cores", "99", "--retries", "0", "--out", str(tmp_path)]
    assert load.main(args) == 0
    report = json.loads((tmp_path / "load.json").read_text())
    steps = {step["kind"]: step for step in report["steps"]}
    assert set(steps) == {"health", "rank"}
    rank = steps["rank"]
    assert rank["errors"] == 0 and rank["ok"] == rank["sent"] == 60
    assert 0 < rank["p50_ms"] <= rank["p99_ms"]
    assert rank["rewards_sent"] > 0 and rank["reward_errors"] == 0
    assert rank["server_cpu_ms_per_call"] > 0
    assert rank["drain_s"] is not None  # the learner caught up
    assert "40.0" in report["summary"]["rank_p50_over_health_p50"]


def test_grpc_frame_is_the_length_prefixed_message() -> None:
    assert load.grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"


def test_catalog_scenario_ranks_the_stored_catalog_under_contact_rules(tmp_path: Path) -> None:
    args = ["--scenario", "catalog", "--subjects", "50", "--pool", "50", "--actions", "12"]
    args += ["--rates", "30", "--duration", "1", "--warmup", "0", "--channels", "2"]
    args += ["--max-other-cores", "99", "--retries", "0", "--out", str(tmp_path)]
    assert load.main(args) == 0
    report = json.loads((tmp_path / "load.json").read_text())
    assert report["config"]["scenario"] == "catalog" and report["config"]["client"] == "python"
    rank = next(step for step in report["steps"] if step["kind"] == "rank")
    assert rank["errors"] == 0 and rank["ok"] == 30  # every Rank found eligible catalog offers


@pytest.mark.parametrize("scenario", ["profile", "catalog"])
def test_subject_scenarios_refuse_h2load(scenario: str) -> None:
    with pytest.raises(SystemExit):
        load.parse_args(["--scenario", scenario, "--client", "h2load"])
    assert load.parse_args(["--scenario", scenario]).client == "python"
