"""`kairos import-logs` against real data directories: an export round-trips unchanged, and --learn
warm-starts a stopped server's decision point so that it serves the logged preference at once."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from google.protobuf import duration_pb2

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import group, offers
from tests.server import RunningServer

PREFERRED = {"gold": 2, "silver": 0}


def _kairos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def _create(server: RunningServer, name: str) -> None:
    server.admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name=name, reward_wait=duration_pb2.Duration(nanos=300_000_000))
        )
    )


def _rank(server: RunningServer, name: str, segment: str) -> dpb.RankResponse:
    response: dpb.RankResponse = server.decisions.Rank(
        dpb.RankRequest(decision_point=name, context=[group("user", segment=segment)], actions=offers(4))
    )
    return response


def test_an_export_imports_unchanged_and_evaluates_the_same(server: RunningServer, tmp_path: Path) -> None:
    _create(server, "offers")
    for i in range(40):
        response = _rank(server, "offers", "gold" if i % 2 else "silver")
        if i % 3:
            server.decisions.Reward(
                dpb.RewardRequest(decision_point="offers", event_id=response.event_id, value=1.0 if i % 2 else 0.5)
            )
    time.sleep(1.0)  # every reward window closes
    export, imported = tmp_path / "export.dsjson", tmp_path / "imported.dsjson"
    done = _kairos("export", "--decision-point", "offers", "--data-dir", str(server.data_dir), "-o", str(export))
    assert done.returncode == 0, done.stderr
    # Beside the running server: the import only reads the data directory (its namespaces, reward range).
    done = _kairos(
        "import-logs", str(export), "--decision-point", "offers", "--data-dir", str(server.data_dir),
        "-o", str(imported),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "read 40 rows: 40 usable, 0 left out" in done.stderr
    assert imported.read_text() == export.read_text()
    results = []
    for logs in (export, imported):
        out = tmp_path / f"{logs.stem}.eval.json"
        evaluated = _kairos("evaluate", str(logs), "--policy", "squarecb:interactions=user*_action", "--out", str(out))
        assert evaluated.returncode == 0, evaluated.stderr
        results.append(json.loads(out.read_text())["policies"])
    assert results[0] == results[1]


def _history(path: Path, events: int, seed: int = 11) -> None:
    """What another system logged: uniform choices over the same 4 offers a live Rank sends; gold customers
    take offer-2, silver ones offer-0."""
    rng = random.Random(seed)
    actions = [
        {
            "id": action.id,
            "features": {"offer": {"category": action.features[0].features["category"].string_value,
                                   "price": action.features[0].features["price"].number_value}},
        }
        for action in offers(4)
    ]  # fmt: skip
    with path.open("w") as handle:
        for i in range(events):
            segment = rng.choice(sorted(PREFERRED))
            chosen = rng.randrange(4)
            reward = 1.0 if rng.random() < (0.9 if chosen == PREFERRED[segment] else 0.1) else 0.0
            row = {
                "event_id": f"h-{i}",
                "context": {"user": {"segment": segment}},
                "actions": actions,
                "chosen_action": f"offer-{chosen}",
                "probability": 0.25,
                "reward": reward,
            }
            handle.write(json.dumps(row) + "\n")
        handle.write('{"event_id": "cut", "actions": [')  # a truncated last line: reported, never learned


def test_learn_warm_starts_a_stopped_decision_point(make_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    server = make_server().start()
    _create(server, "offers")
    _create(server, "cold")
    history = tmp_path / "history.jsonl"
    _history(history, 1200)
    learn = ("import-logs", str(history), "--decision-point", "offers", "--data-dir", str(server.data_dir), "--learn")

    running = _kairos(*learn)
    assert (
        running.returncode == 2
        and "stop it first" in running.stderr
        and "--learn needs the server stopped" in (running.stderr)
    )
    assert server.stop() == 0

    done = _kairos(*learn)
    assert done.returncode == 0, done.stderr
    assert "read 1201 rows: 1200 usable, 1 left out (1 truncated last line)" in done.stderr
    assert "learned 1200 events into 'offers': model version 2.0" in done.stderr

    server.start()
    for segment, preferred in PREFERRED.items():
        warm = {r.action_id: r.probability for r in _rank(server, "offers", segment).ranking}
        cold = {r.action_id: r.probability for r in _rank(server, "cold", segment).ranking}
        assert max(warm, key=lambda a: warm[a]) == f"offer-{preferred}", warm
        assert warm[f"offer-{preferred}"] > 0.5 > max(cold.values()), (warm, cold)
    assert _rank(server, "offers", "gold").model_version.startswith("2.")
    audit = server.admin.ListAuditRecords(apb.ListAuditRecordsRequest()).audit_records
    [record] = [r for r in audit if r.action == "ImportLogs"]
    assert record.decision_point == "offers" and record.actor == "import-logs"
    assert json.loads(record.after_json)["events_learned"] == 1200
    assert server.stop() == 0

    # Learning again without any usable row changes nothing.
    (tmp_path / "bad.jsonl").write_text('{"actions": ["a"], "chosen_action": "a", "probability": 0, "reward": 1}\n')
    nothing = _kairos("import-logs", str(tmp_path / "bad.jsonl"), "--decision-point", "offers",
                      "--data-dir", str(server.data_dir), "--learn")  # fmt: skip
    assert nothing.returncode == 1 and "nothing learned" in nothing.stderr
    unknown = _kairos("import-logs", str(history), "--decision-point", "nope", "--data-dir", str(server.data_dir),
                      "--learn")  # fmt: skip
    assert unknown.returncode == 2 and "'nope' does not exist" in unknown.stderr and "offers" in unknown.stderr
