"""The decision plane without a transport: real LMDB and VW in a temp directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from policies.features import Candidate, FeatureGroup
from service.domain import Decision, DecisionPointConfig
from service.errors import Code, KairosError
from service.learning.models import now_ms
from service.plane import DecisionPlane, Limits, RankInput
from service.store.lmdb_store import Store


def offers(n: int) -> list[Candidate]:
    return [Candidate(f"o{k}", (FeatureGroup("offer", {"kind": f"k{k}"}),)) for k in range(n)]


def open_plane(path: Path) -> DecisionPlane:
    plane = DecisionPlane(Store(path / "lmdb"), path / "models")
    plane.load_all()
    return plane


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[DecisionPlane]:
    opened = open_plane(tmp_path)
    opened.create_decision_point(DecisionPointConfig(name="dp", reward_wait_ms=100))
    yield opened
    opened.close()
    opened.store.close()


def test_decision_codec_round_trip() -> None:
    keys = bytes(range(8))
    decision = Decision("é\n|", 1, 2, "shared |", ["a"], 20411, keys, [0], [1.0], "1.0", "ff", subject_id="s")
    assert Decision.decode(decision.encode()) == decision


def test_decision_reads_the_earlier_all_text_format() -> None:
    earlier = [
        "e", 1, 2, "shared |", ["a", "b"], 20411, ["0001020304050607", "08090a0b0c0d0e0f"],
        [1, 0], [0.25, 0.75], "1.0", "ff", False, False, "open", None, [], "",
    ]  # fmt: skip
    decision = Decision.decode(json.dumps(earlier).encode())
    assert decision.line_keys == bytes(range(16))  # the two keys, concatenated
    assert decision.probabilities == [0.25, 0.75]
    assert Decision.decode(decision.encode()) == decision


def test_namespaces_survive_restart(plane: DecisionPlane, tmp_path: Path) -> None:
    context = (FeatureGroup("session", {"x": 1.0}), FeatureGroup("situation", {"y": 1.0}))
    plane.rank(RankInput("dp", offers(3), context))
    indices = dict(plane.states["dp"].record.namespaces.indices)
    assert len(set(indices.values())) == 3  # offer, session, situation
    plane.close()
    plane.store.close()
    reopened = open_plane(tmp_path)
    assert reopened.states["dp"].record.namespaces.indices == indices


def test_window_close_and_retention(plane: DecisionPlane) -> None:
    event = plane.rank(RankInput("dp", offers(3))).event_id
    assert plane.close_windows(now_ms() + 1_000) == 1
    assert plane.learn_pending(10) == 1
    stats = plane.stats("dp")
    assert (stats.learned, stats.counters["default_rewards"], stats.counters["open_events"]) == (1, 1, 0)
    assert plane.purge_before(now_ms() + 1, limit=100) == 1
    with pytest.raises(KairosError) as caught:
        plane.reward("dp", event, 1.0)
    assert caught.value.code == Code.NOT_FOUND


def test_open_events_are_not_purged(tmp_path: Path) -> None:
    plane = open_plane(tmp_path)
    plane.create_decision_point(DecisionPointConfig(name="slow"))
    event = plane.rank(RankInput("slow", offers(2))).event_id
    assert plane.purge_before(now_ms() + 1, limit=100) == 0
    plane.reward("slow", event, 1.0)  # still there


def test_checkpoint_prunes_the_journal(plane: DecisionPlane) -> None:
    for _ in range(5):
        event = plane.rank(RankInput("dp", offers(3))).event_id
        plane.reward("dp", event, 1.0)
        plane.learn_pending(10)
        plane.checkpoint_all()
    state = plane.states["dp"]
    with plane.store.read() as txn:
        kept = [entry.seq for entry in plane.store.journal_after(txn, "dp", 0)]
        checkpoints = plane.store.checkpoints(txn, "dp", state.record.generation)
    assert len(checkpoints) == 3
    assert kept == [4, 5]  # entries up to the oldest kept checkpoint (seq 3) are gone
    assert len(list((plane.models_dir / "dp").glob("*.vw"))) == 3


def test_action_lines_are_stored_once_per_day(plane: DecisionPlane) -> None:
    for _ in range(5):
        plane.rank(RankInput("dp", offers(4)))
    with plane.store.read() as txn:
        assert txn.stat(plane.store.db["lines"])["entries"] == 4
    today = now_ms() // 86_400_000
    plane.store.write(lambda txn: plane.store.drop_lines_before(txn, today))
    with plane.store.read() as txn:
        assert txn.stat(plane.store.db["lines"])["entries"] == 4  # today's lines stay
    plane.store.write(lambda txn: plane.store.drop_lines_before(txn, today + 1))
    with plane.store.read() as txn:
        assert txn.stat(plane.store.db["lines"])["entries"] == 0
    plane.rank(RankInput("dp", offers(4)))  # the forgotten day's lines are written again
    with plane.store.read() as txn:
        assert txn.stat(plane.store.db["lines"])["entries"] == 4


def test_a_new_namespace_joins_the_interactions_and_a_restart_keeps_them(plane: DecisionPlane, tmp_path: Path) -> None:
    state = plane.states["dp"]
    assert state.policy.args.count("--interactions") == 4  # only Kairos's own namespaces before any other
    plane.rank(RankInput("dp", offers(3), (FeatureGroup("user", {"segment": "gold"}),)))
    args = plane.states["dp"].policy.args
    assert {"aA", "a!", "@A", "@!"} <= set(args)  # user and offer crossed, with Kairos's own namespaces
    assert plane.stats("dp").last_checkpoint_ms > 0  # a replay after a crash learns under the new args
    plane.close()
    plane.store.close()
    reopened = open_plane(tmp_path)
    assert reopened.states["dp"].policy.args == args
    reopened.close()
    reopened.store.close()


def test_a_refused_rank_leaves_no_namespace_behind(tmp_path: Path) -> None:
    plane = DecisionPlane(Store(tmp_path / "lmdb"), tmp_path / "models", Limits(max_features=6))
    plane.load_all()
    plane.create_decision_point(DecisionPointConfig(name="dp", reward_wait_ms=100))
    crowded = (FeatureGroup("user", {f"f{k}": float(k) for k in range(6)}),)
    with pytest.raises(KairosError) as refused:
        plane.rank(RankInput("dp", offers(3), crowded))  # encoded (user and offer get indices), then refused
    assert refused.value.reason == "TOO_MANY_FEATURES"
    assert plane.states["dp"].record.namespaces.indices == {}
    # The next Rank that brings the namespaces saves them and reloads the model with their interactions.
    plane.rank(RankInput("dp", offers(2), (FeatureGroup("user", {"segment": "gold"}),)))
    args = plane.states["dp"].policy.args
    assert {"aA", "a!"} <= set(args)
    plane.close()
    plane.store.close()
    reopened = open_plane(tmp_path)
    assert set(reopened.states["dp"].record.namespaces.indices) == {"user", "offer"}
    assert reopened.states["dp"].policy.args == args
    reopened.close()
    reopened.store.close()
