"""`python -m benchmarks` runs the chosen benchmarks in turn, survives a broken one and writes a summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import benchmarks.__main__ as runner
from service import cli


def test_the_runner_keeps_going_past_a_failing_benchmark_and_summarises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, list[str]]] = []

    def entry(name: str) -> Callable[[list[str]], int]:
        def run(argv: list[str]) -> int:
            calls.append((name, argv))
            if name == "explorers":
                raise RuntimeError("broken")
            (tmp_path / "digits.json").write_text(
                json.dumps({"kairos_vs_best_raw_vw": 0.5, "best_raw_vw": "raw", "kairos_configured_vs_best_raw_vw": 1})
            )
            return 0

        return run

    monkeypatch.setattr(runner, "_entry", entry)
    assert runner.main(["--quick", "--only", "explorers,digits", "--out", str(tmp_path)]) == 1
    assert calls == [
        ("explorers", ["--quick", "--out", str(tmp_path)]),
        ("digits", ["--quick", "--out", str(tmp_path)]),
    ]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["explorers"]["exit_code"] == 1 and summary["digits"]["exit_code"] == 0
    assert "0.500x the best raw VW" in summary["digits"]["headline"]
    assert "| digits | 0 |" in (tmp_path / "summary.md").read_text()


def test_an_unknown_benchmark_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--only", "latency"])
    assert exit_info.value.code == 2
    assert "choose from" in capsys.readouterr().err


def test_kairos_bench_is_the_runner(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "python -m benchmarks" in capsys.readouterr().out


def test_the_estimator_benchmark_has_a_headline(tmp_path: Path) -> None:
    from benchmarks import estimators

    estimators.main(["--seeds", "20", "--events", "300", "--out", str(tmp_path)])
    line = runner.headline("estimators", tmp_path)
    assert line.startswith("20 seeds: coverage of 95% intervals ips ") and "RMSE DR (good model)" in line
    assert "estimators" in runner.NAMES


def test_the_soak_runs_only_when_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def entry(name: str) -> Callable[[list[str]], int]:
        def run(argv: list[str]) -> int:
            calls.append(name)
            if name == "soak":
                anon = {"start": 150.4, "end": 155.0, "max": 160.2, "growth_pct": 3.06}
                config = {"duration": 600, "rate": 200, "profiles": 1_000_000}
                report = {"summary": {"rss_anon_mb": anon}, "config": config}
                report["traffic"] = {"errors": 0, "reward_errors": 0}
                (tmp_path / "soak.json").write_text(json.dumps(report))
            return 0

        return run

    monkeypatch.setattr(runner, "_entry", entry)
    assert runner.main(["--out", str(tmp_path)]) == 0
    assert "soak" not in calls and len(calls) == len(runner.NAMES) - 1
    assert runner.main(["--only", "soak", "--out", str(tmp_path)]) == 0
    headline = json.loads((tmp_path / "summary.json").read_text())["soak"]["headline"]
    assert "RssAnon 150 -> 155 MB (max 160 MB, growth 3.06%)" in headline and "1,000,000 profiles" in headline
