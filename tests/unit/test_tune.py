"""`kairos tune`: recommend only when a candidate's corrected lower bound beats the current estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.offline.tune import estimate_of, tune
from tests.unit.test_evaluate import _kairos, _write

GOOD = "squarecb:interactions=user*_action"
BLIND = "squarecb:interactions=none"  # cannot tell segments apart: no better than a fixed offer


def test_a_clearly_better_candidate_is_recommended(tmp_path: Path) -> None:
    logs = tmp_path / "logs.dsjson"
    _write(logs, 1500)
    found = tune(logs, current=BLIND, candidates=[GOOD, "epsilon:epsilon=0.1,interactions=user*_action", BLIND])
    assert found.corrected_confidence == pytest.approx(1 - 0.05 / 2)  # the current one is not a candidate
    assert found.recommended is not None and found.recommended.label != BLIND
    by_label = {r.label: r for r in found.evaluation.results}
    assert estimate_of(found.recommended, "dr").low > by_label[BLIND].dr.value
    assert found.recommended.dr.confidence == found.corrected_confidence
    assert found.explanation.startswith(f"recommend {found.recommended.label!r}")


def test_nothing_is_recommended_when_no_candidate_is_clearly_better(tmp_path: Path) -> None:
    logs = tmp_path / "logs.dsjson"
    _write(logs, 600)
    found = tune(logs, current=GOOD, candidates=[BLIND, "squarecb:gamma_scale=20,interactions=user*_action"])
    assert found.recommended is None
    assert found.explanation.startswith(f"keep {GOOD!r}")


def test_the_current_configuration_alone_is_no_search(tmp_path: Path) -> None:
    logs = tmp_path / "logs.dsjson"
    _write(logs, 20)
    with pytest.raises(ValueError, match="at least one candidate"):
        tune(logs, current=GOOD, candidates=[GOOD])


def test_the_command_records_every_run(tmp_path: Path) -> None:
    logs, runs = tmp_path / "logs.dsjson", tmp_path / "runs"
    _write(logs, 800)
    args = ["tune", str(logs), "--current", BLIND, "--candidate", GOOD, "--record-dir", str(runs)]
    for _ in range(2):
        done = _kairos(*args, "--estimator", "snips")
        assert done.returncode == 0, done.stderr
        assert f"recommend {GOOD!r}" in done.stdout
    records = sorted(runs.iterdir())
    assert len(records) == 2
    saved = json.loads(records[0].read_text())
    assert saved["recommended"] == GOOD and saved["estimator"] == "snips" and saved["candidates"] == 1
    assert saved["evaluation"]["events"] == 800
    bad = _kairos("tune", str(logs), "--current", "greedy", "--record-dir", str(runs))
    assert bad.returncode == 2 and "the explorer must be one of" in bad.stderr
