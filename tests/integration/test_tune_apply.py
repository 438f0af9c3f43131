"""`kairos tune --apply`: the current configuration comes from the running decision point, and a
recommendation updates it through the Admin API."""

from __future__ import annotations

import json
from pathlib import Path

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.server import RunningServer
from tests.unit.test_evaluate import _kairos, _write

GOOD = "squarecb:interactions=user*_action"


def test_tune_applies_a_clear_improvement(server: RunningServer, tmp_path: Path) -> None:
    # In production: epsilon-greedy that explores every time, as good as uniform random.
    server.admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(
                name="offers",
                exploration=tpb.Exploration(epsilon_greedy=tpb.EpsilonGreedy(epsilon=1.0)),
                learning=tpb.LearningOptions(interactions=["user*_action"]),
            )
        )
    )
    logs, runs = tmp_path / "logs.dsjson", tmp_path / "runs"
    _write(logs, 1000)
    port = str(server.port)
    done = _kairos(
        "tune", str(logs), "--apply", "offers", "--port", port, "--candidate", GOOD, "--record-dir", str(runs)
    )
    assert done.returncode == 0, done.stderr
    assert "recommend 'squarecb:interactions=user*_action'" in done.stdout
    assert "the current 'epsilon:epsilon=1.0,interactions=user*_action' estimate" in done.stdout
    assert "applied 'squarecb:interactions=user*_action' to 'offers': a fresh model" in done.stdout
    updated = server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="offers"))
    assert updated.exploration.WhichOneof("policy") == "square_cb"
    assert list(updated.learning.interactions) == ["user*_action"] and updated.model_generation == 2
    record = json.loads(next(runs.iterdir()).read_text())
    assert record["applied"].startswith("applied") and record["current"].startswith("epsilon")

    # Now the configuration in production is the good one: nothing better, nothing applied.
    again = _kairos(
        "tune",
        str(logs),
        "--apply",
        "offers",
        "--port",
        port,
        "--candidate",
        "epsilon:epsilon=1.0,interactions=user*_action",
        "--record-dir",
        str(runs),
    )
    assert again.returncode == 0, again.stderr
    assert "keep 'squarecb:interactions=user*_action'" in again.stdout and "applied" not in again.stdout
    assert server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="offers")).model_generation == 2


def test_tune_apply_names_a_missing_decision_point(server: RunningServer, tmp_path: Path) -> None:
    logs = tmp_path / "logs.dsjson"
    _write(logs, 10)
    done = _kairos("tune", str(logs), "--apply", "nope", "--port", str(server.port), "--record-dir", str(tmp_path))
    assert done.returncode == 2 and "NOT_FOUND" in done.stderr and "nope" in done.stderr
