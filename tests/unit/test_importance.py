"""Feature importance by ablation on simulated logs where one namespace decides the reward and another is
noise (real VW learners through the evaluator, no server)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from policies.features import NamespaceTable
from service.offline.importance import ImportanceError, feature_importance, scan_namespaces
from service.offline.log_import import Normalized, Normalizer, import_rows

PREFERRED = {"student": 0, "retiree": 2, "family": 3}


def _logs(tmp_path: Path, events: int, seed: int = 5) -> Path:
    """Uniform logging over 4 offers. The user's segment decides the click (80% on its preferred offer, 10%
    elsewhere); their mood (same namespace) and the weather (namespace of its own) are noise."""
    rng = random.Random(seed)
    source = tmp_path / "source.jsonl"
    with source.open("w") as handle:
        for i in range(events):
            segment = rng.choice(sorted(PREFERRED))
            chosen = rng.randrange(4)
            reward = 1.0 if rng.random() < (0.8 if chosen == PREFERRED[segment] else 0.1) else 0.0
            row = {
                "event_id": f"e-{i}",
                "context": {
                    "user": {"segment": segment, "mood": rng.choice(["calm", "busy", "bored"])},
                    "weather": {"sky": rng.choice(["sun", "rain", "snow", "fog"]), "wind": rng.uniform(0, 10)},
                },
                "actions": [f"offer-{k}" for k in range(4)],
                "chosen_action": f"offer-{chosen}",
                "probability": 0.25,
                "reward": reward,
            }
            handle.write(json.dumps(row) + "\n")
    logs = tmp_path / "logs.dsjson"
    with logs.open("w") as out:

        def write(event: Normalized) -> None:
            out.write(event.event + "\n")

        import_rows(source, "jsonl", Normalizer("offers", NamespaceTable(), (0.0, 1.0), now_ms=0), write)
    return logs


def test_ablation_finds_the_namespace_and_the_feature_that_carry_the_signal(tmp_path: Path) -> None:
    logs = _logs(tmp_path, 700)
    found = feature_importance(logs, "squarecb", features=True, top=3, weights=True)
    by_name = {a.namespace: a for a in found.namespaces}
    assert set(by_name) == {"user", "weather", "_action"}
    user, weather = by_name["user"], by_name["weather"]
    assert user.verdict == "matters" and user.drop.low > 0.1
    assert weather.verdict == "no clear effect" and weather.drop.value < user.drop.low
    assert user.drop.value == pytest.approx(found.full.value - user.estimate.value)
    # The weights the policy learned lean the same way (a magnitude, reported beside the drop).
    shares = {a.namespace: a.weight_share for a in found.namespaces}
    assert sum(s or 0.0 for s in shares.values()) == pytest.approx(1.0)
    assert (shares["user"] or 0.0) > (shares["weather"] or 0.0) > 0.0
    assert found.events == 700 and found.bad_line_count == 0
    features = {a.label: a for a in found.features}
    assert features["user.segment"].verdict == "matters"
    assert features["user.mood"].verdict == "no clear effect"
    assert features["user.mood"].drop.value < features["user.segment"].drop.low
    assert {"weather.sky", "weather.wind"} <= set(features)
    # Ranked by drop, largest first.
    drops = [a.drop.value for a in found.namespaces]
    assert drops == sorted(drops, reverse=True)


def test_namespaces_are_named_as_the_logs_name_them(tmp_path: Path) -> None:
    logs = _logs(tmp_path, 5)
    scanned = {entry.name: entry for entry in scan_namespaces(logs)}
    assert set(scanned) == {"user", "weather", "_action"}
    assert scanned["user"].key == "a" and set(scanned["user"].features) == {"segment", "mood"}
    empty = tmp_path / "empty.dsjson"
    empty.write_text("not json\n")
    with pytest.raises(ImportanceError, match="no usable events"):
        feature_importance(empty)


def test_the_command_writes_a_table_json_and_a_chart(tmp_path: Path) -> None:
    logs = _logs(tmp_path, 150)
    out = tmp_path / "importance.json"
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "importance", str(logs), "--out", str(out), "--interval", "normal"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "namespace" in done.stdout and "user" in done.stdout and "paired" in done.stdout
    result = json.loads(out.read_text())
    assert {n["namespace"] for n in result["namespaces"]} == {"user", "weather", "_action"}
    assert result["value_with_all_features"]["interval"] == "normal approximation"
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run(
        [sys.executable, "-m", "service.cli", "importance", str(logs), "--policy", "greedy"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "explorer must be one of" in bad.stderr
