"""kill -9 loses nothing that was acknowledged, and learning is neither lost nor doubled."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import feature_service_pb2 as fpb
from service._pb.kairos.v1 import types_pb2 as tpb
from service.store.lmdb_store import Store
from tests.helpers import group, rank_request
from tests.server import RunningServer


def wait_learned(
    server: RunningServer, count: int, timeout: float = 20.0, metadata: Sequence[tuple[str, str]] = ()
) -> apb.DecisionPointStats:
    deadline = time.monotonic() + timeout
    while True:
        stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"), metadata=metadata)
        if stats.learned >= count or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def traffic(server: RunningServer, n: int, start: int) -> tuple[dict[str, dpb.RankResponse], list[str]]:
    answers: dict[str, dpb.RankResponse] = {}
    rewarded: list[str] = []
    for i in range(start, start + n):
        response = server.decisions.Rank(rank_request(6, event_id=f"e{i}"))
        answers[response.event_id] = response
        if i % 2 == 0:
            server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=response.event_id, value=1.0))
            rewarded.append(response.event_id)
    return answers, rewarded


def export(server: RunningServer) -> apb.ExportModelResponse:
    return server.admin.ExportModel(apb.ExportModelRequest(name="demo"))


def test_kill9_keeps_decisions_rewards_and_learning(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--checkpoint-interval-s", "0.3").start()
    answers, rewarded = traffic(server, 40, 0)
    wait_learned(server, 20)
    time.sleep(1.0)  # let a checkpoint happen, then learn more after it
    more, more_rewarded = traffic(server, 40, 40)
    answers |= more
    rewarded += more_rewarded
    before = wait_learned(server, 40)
    model_before = export(server)
    server.kill9()

    server.start()
    after = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    assert (after.ranks, after.rewards, after.learned) == (80, 40, 40)
    assert after.average_reward == before.average_reward == 1.0
    assert export(server).model == model_before.model  # replay rebuilt exactly the same model
    for event_id, answer in answers.items():  # retries answer as before the crash
        assert server.decisions.Rank(rank_request(6, event_id=event_id)) == answer
    server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=rewarded[0], value=1.0))
    unrewarded = next(e for e in answers if e not in rewarded)
    server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=unrewarded, value=0.5))
    stats = wait_learned(server, 41)
    assert (stats.rewards, stats.duplicate_rewards, stats.learned) == (41, 1, 41)
    assert server.stop() == 0


def test_corrupt_checkpoint_falls_back_and_replays(make_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    server = make_server("--checkpoint-interval-s", "0.2").start()
    traffic(server, 20, 0)
    wait_learned(server, 10)
    time.sleep(0.6)
    traffic(server, 20, 20)
    wait_learned(server, 20)
    time.sleep(0.6)
    model_before = export(server)
    assert server.stop() == 0  # clean stop: writes a final checkpoint

    checkpoints = sorted((tmp_path / "data" / "models" / "demo").glob("*.vw"))
    assert len(checkpoints) >= 2
    newest = checkpoints[-1]
    newest.write_bytes(newest.read_bytes()[: len(newest.read_bytes()) // 2])  # a torn write

    server.start()
    assert export(server).model == model_before.model
    assert "checkpoint_unusable" in server.log()
    assert server.stop() == 0


def test_kill9_keeps_profiles_events_catalog_and_contact_history(make_server: Callable[..., RunningServer]) -> None:
    server = make_server().start()
    for k in range(20):
        server.features.PutProfile(fpb.PutProfileRequest(subject_id=f"s{k}", features=[group("user", rank=float(k))]))
        server.features.TrackEvent(fpb.TrackEventRequest(subject_id=f"s{k}", event_type="view", category=f"c{k}"))
    actions = [fpb.CatalogAction(action=tpb.Action(id=f"a{k}"), tags=["t"]) for k in range(5)]
    server.features.PutActions(fpb.PutActionsRequest(decision_point="demo", actions=actions))
    shown = server.decisions.Rank(dpb.RankRequest(decision_point="demo", subject_id="s3")).ranking[0].action_id
    server.kill9()

    server.start()
    for k in range(20):
        profile = server.features.GetProfile(fpb.GetProfileRequest(subject_id=f"s{k}"))
        assert profile.features[0].features["rank"].number_value == float(k)
    listed = server.features.ListActions(fpb.ListActionsRequest(decision_point="demo"))
    assert [a.action.id for a in listed.actions] == [f"a{k}" for k in range(5)]
    history = server.features.GetContactHistory(fpb.GetContactHistoryRequest(subject_id="s3")).exposures
    assert [e.action_id for e in history] == [shown]
    store_check = server.features.TrackEvent(
        fpb.TrackEventRequest(subject_id="s3", event_type="view", rank=dpb.RankRequest(decision_point="demo"))
    )
    assert len(store_check.rank.ranking) == 5
    assert server.stop() == 0
    store = Store(server.data_dir / "lmdb")
    with store.read() as txn:
        decision = store.get_decision(txn, "demo", store_check.rank.event_id)
    store.close()
    assert decision is not None and "events_1h:2" in decision.shared  # the event before the crash is there
