"""The memory soak runs end to end against a real server (a tiny configuration) and reports what it measured."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from benchmarks import soak


def test_a_tiny_soak_reports_memory_lmdb_size_traffic_and_learning(tmp_path: Path) -> None:
    args = ["--profiles", "300", "--duration", "4", "--warmup", "1", "--sample-every-s", "1", "--rate", "40"]
    args += ["--decision-points", "2", "--reward-wait-s", "1", "--out", str(tmp_path)]
    assert soak.main(args) == 0
    report = json.loads((tmp_path / "soak.json").read_text())
    assert report["config"]["profiles"] == 300 and report["config"]["decision_points"] == 2
    assert report["import"]["profiles"] == 300 and report["import"]["seconds"] > 0

    summary = report["summary"]
    for series in ("rss_anon_mb", "rss_file_mb", "vm_rss_mb", "lmdb_file_mb"):
        entry = summary[series]
        assert 0 < entry["start"] <= entry["max"] and entry["end"] <= entry["max"]
        assert entry["growth_pct"] is not None and "slope_mb_per_min" in entry
    assert summary["samples_in_soak"] >= 2
    assert set(summary["targets"]) == {"rss_anon_below_mb", "rss_anon_max_met", "growth_below_pct", "growth_met"}
    samples = report["samples"]
    assert len(samples) >= 4 and all(s["processes"] == 1 and s["rss_anon_mb"] > 0 for s in samples)
    assert samples[-1]["lmdb_file_mb"] >= samples[0]["lmdb_file_mb"] > 0

    traffic = report["traffic"]
    assert traffic["errors"] == 0 and traffic["reward_errors"] == 0
    assert traffic["ok"] == traffic["sent"] == 160
    assert traffic["rewards_sent"] > 0 and 0 < traffic["rank_p50_ms"] <= traffic["rank_p99_ms"]

    ranked = report["stats_after_drain"]["total"]
    assert ranked["ranks"] == 160 and ranked["rewards"] == traffic["rewards_sent"]
    assert ranked["learned"] == 160 and ranked["default_rewards"] == 160 - ranked["rewards"]
    assert ranked["backlog"] == 0 and set(report["stats_at_end"]["per_decision_point"]) == {"soak-00", "soak-01"}
    assert (tmp_path / "soak.png").stat().st_size > 0


def test_growth_is_measured_from_the_first_sample_after_the_warm_up() -> None:
    def sample(t_s: float, anon: float) -> soak.Sample:
        return soak.Sample(t_s, anon, 50.0, 0.0, anon + 50, 10.0, 10.0, 1, 0, 0)

    samples = [sample(0, 100.0), sample(5, 180.0), sample(10, 200.0), sample(15, 210.0), sample(20, 230.0)]
    summary = soak.summarise(samples, warmup_s=10)
    anon = summary["rss_anon_mb"]
    assert (anon["start"], anon["end"], anon["max"], anon["growth_pct"]) == (200.0, 230.0, 230.0, 15.0)
    assert anon["slope_mb_per_min"] == 180.0  # 30 MB in 10 s
    assert summary["targets"]["rss_anon_max_met"] and not summary["targets"]["growth_met"]


def test_a_profile_has_fifteen_features_in_two_or_three_namespaces() -> None:
    rng = random.Random(1)
    for index in range(6):
        profile = json.loads(soak.profile_line(rng, index))
        assert profile["subject_id"] == soak.subject_id(index)
        assert len(profile["features"]) in (2, 3)
        assert sum(len(f) for f in profile["features"].values()) == 15


def test_memory_of_a_process_tree_is_read_from_proc() -> None:
    mine = soak.tree_memory_kb(os.getpid())
    assert mine["RssAnon"] > 0 and mine["VmRSS"] >= mine["RssAnon"]


def test_a_traced_soak_reports_what_grew_between_the_warm_up_and_the_end(tmp_path: Path) -> None:
    args = ["--profiles", "100", "--duration", "3", "--warmup", "1", "--sample-every-s", "1", "--rate", "30"]
    args += ["--decision-points", "1", "--reward-wait-s", "1", "--trace-memory", "--out", str(tmp_path)]
    assert soak.main(args) == 0
    report = json.loads((tmp_path / "soak.json").read_text())
    assert report["config"]["trace_memory"] is True and report["traffic"]["errors"] == 0
    trace = report["memory_trace"]
    assert trace["traced_mb_before"] > 0 and trace["traced_mb_after"] > 0
    assert trace["objects_before"] > 0 and trace["objects_after"] > 0
    assert trace["top_growth_by_traceback"] and all(
        " <- " in entry["where"] for entry in trace["top_growth_by_traceback"]
    )
    assert trace["top_growth_by_type"] and "memtrace" not in json.dumps(trace["top_growth_by_traceback"])
