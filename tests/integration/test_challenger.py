"""A challenger in shadow on a real server: its estimate, promotion, restarts and kill -9, bad configs."""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import field_mask_pb2

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import group
from tests.integration.test_metrics import free_port, sample
from tests.server import RunningServer

BEST = {"a": "x", "b": "y"}
ACTIONS = [tpb.Action(id=a, features=[group("offer", kind=a)]) for a in ("x", "y", "z")]
UNIFORM = tpb.Exploration(epsilon_greedy=tpb.EpsilonGreedy(epsilon=1.0))
GREEDY = tpb.Challenger(exploration=tpb.Exploration(epsilon_greedy=tpb.EpsilonGreedy(epsilon=0.05)))


def create(server: RunningServer, challenger: tpb.Challenger | None = GREEDY) -> None:
    server.admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name="shop", exploration=UNIFORM, challenger=challenger)
        )
    )


def traffic(server: RunningServer, n: int, seed: int) -> None:
    """Each segment clearly prefers one action: reward 1 when it is shown, else 0."""
    rng = random.Random(seed)
    for _ in range(n):
        segment = rng.choice("ab")
        ranked = server.decisions.Rank(
            dpb.RankRequest(decision_point="shop", context=[group("user", segment=segment)], actions=ACTIONS)
        )
        value = 1.0 if ranked.ranking[0].action_id == BEST[segment] else 0.0
        server.decisions.Reward(dpb.RewardRequest(decision_point="shop", event_id=ranked.event_id, value=value))


def stats(server: RunningServer) -> apb.DecisionPointStats:
    return server.admin.GetStats(apb.GetStatsRequest(decision_point="shop"))


def wait_learned(server: RunningServer, count: int, scored: int | None = None) -> apb.DecisionPointStats:
    """Stats once the champion learned ``count`` events and the challenger scored ``scored`` (default: as many)."""
    deadline = time.monotonic() + 20.0
    while (found := stats(server)).learned < count or found.challenger.events < (count if scored is None else scored):
        assert time.monotonic() < deadline, f"learned {found.learned}, challenger {found.challenger.events}"
        time.sleep(0.05)
    return found


def test_better_challenger_wins_and_promotion_serves_it(make_server: Callable[..., RunningServer]) -> None:
    server = make_server().start()
    create(server)
    got = server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="shop"))
    assert got.challenger.exploration.epsilon_greedy.epsilon == pytest.approx(0.05)
    traffic(server, 300, seed=1)
    found = wait_learned(server, 300).challenger
    assert found.events == 300 and found.model_version == "challenger-1.300"
    assert 0.2 < found.champion.value < 0.45  # the uniform champion: one action in three is right
    assert found.challenger_ips.value > found.champion.value + 0.3
    assert found.challenger_snips.low > found.champion.high
    assert found.champion.low <= found.champion.value <= found.champion.high
    assert found.champion.interval == found.challenger_ips.interval == "empirical Bernstein"
    assert found.challenger_snips.interval.startswith("normal approximation")
    assert found.confidence == pytest.approx(0.95) and found.effective_sample_size > 0

    promoted = server.admin.PromoteChallenger(apb.PromoteChallengerRequest(name="shop"))
    assert promoted.model_version == "2.300"
    assert promoted.decision_point.exploration.epsilon_greedy.epsilon == pytest.approx(0.05)
    assert not promoted.decision_point.HasField("challenger")
    assert not stats(server).HasField("challenger")
    hits = 0
    for segment in "ab" * 25:
        ranked = server.decisions.Rank(
            dpb.RankRequest(decision_point="shop", context=[group("user", segment=segment)], actions=ACTIONS)
        )
        hits += ranked.ranking[0].action_id == BEST[segment]
    assert hits >= 40  # the learned preference, with 5% exploration
    records = server.admin.ListAuditRecords(apb.ListAuditRecordsRequest()).audit_records
    audit = next(r for r in records if r.action == "PromoteChallenger")
    assert json.loads(audit.before_json)["challenger"]["explorer"]["epsilon"] == pytest.approx(0.05)
    assert json.loads(audit.after_json)["learner"]["explorer"]["epsilon"] == pytest.approx(0.05)
    with pytest.raises(grpc.RpcError) as raised:
        server.admin.PromoteChallenger(apb.PromoteChallengerRequest(name="shop"))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert server.stop() == 0


def test_challenger_survives_restart_and_kill9_without_double_learning(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server("--checkpoint-interval-s", "0.3").start()
    create(server)
    traffic(server, 60, seed=2)
    wait_learned(server, 60)
    time.sleep(1.0)  # a checkpoint of both models, then more events after it
    traffic(server, 40, seed=3)
    before = wait_learned(server, 100).challenger
    server.kill9()

    server.start()
    after = wait_learned(server, 100).challenger
    assert after == before  # replayed into the challenger once: same count, same sums, same intervals
    traffic(server, 20, seed=4)
    grown = wait_learned(server, 120).challenger
    assert grown.events == 120 and grown.model_version == "challenger-1.120"
    assert server.stop() == 0

    server.start()  # a clean stop checkpointed both: nothing to replay, nothing lost
    assert stats(server).challenger == grown
    assert server.stop() == 0


def test_setting_and_clearing_through_update(make_server: Callable[..., RunningServer]) -> None:
    http_port = free_port()
    server = make_server("--http-port", str(http_port)).start()
    create(server, challenger=None)
    traffic(server, 10, seed=5)
    assert not stats(server).HasField("challenger")
    server.admin.UpdateDecisionPoint(
        apb.UpdateDecisionPointRequest(decision_point=tpb.DecisionPoint(name="shop", challenger=GREEDY))
    )
    traffic(server, 10, seed=6)
    found = wait_learned(server, 20, scored=10).challenger
    assert found.events == 10  # only the events after it started
    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
    assert sample(text, "kairos_challenger_events", decision_point="shop") == 10
    ips = sample(text, "kairos_challenger_value", decision_point="shop", estimator="ips", bound="value")
    assert ips == pytest.approx(found.challenger_ips.value)
    low = sample(text, "kairos_challenger_value", decision_point="shop", estimator="on_policy", bound="low")
    assert low == pytest.approx(found.champion.low)
    cleared = server.admin.UpdateDecisionPoint(
        apb.UpdateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name="shop"), update_mask=field_mask_pb2.FieldMask(paths=["challenger"])
        )
    )
    assert not cleared.HasField("challenger") and not stats(server).HasField("challenger")
    with pytest.raises(grpc.RpcError) as raised:
        server.admin.PromoteChallenger(apb.PromoteChallengerRequest(name="shop"))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert server.stop() == 0


@pytest.mark.parametrize(
    "bad",
    [
        tpb.Challenger(learning=tpb.LearningOptions(bits=40)),
        tpb.Challenger(learning=tpb.LearningOptions(learning_rate=-2.0)),
        tpb.Challenger(learning=tpb.LearningOptions(interactions=["user"])),
        tpb.Challenger(exploration=tpb.Exploration(epsilon_greedy=tpb.EpsilonGreedy(epsilon=3.0))),
        tpb.Challenger(exploration=tpb.Exploration(bag=tpb.Bag(size=99))),
    ],
)
def test_bad_challenger_is_invalid_argument(server: RunningServer, bad: tpb.Challenger) -> None:
    for call, request in (
        (
            server.admin.CreateDecisionPoint,
            apb.CreateDecisionPointRequest(decision_point=tpb.DecisionPoint(name="shop", challenger=bad)),
        ),
        (
            server.admin.UpdateDecisionPoint,
            apb.UpdateDecisionPointRequest(decision_point=tpb.DecisionPoint(name="demo", challenger=bad)),
        ),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            call(request)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "challenger" in (raised.value.details() or "")
    assert not server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="demo")).HasField("challenger")
    with pytest.raises(grpc.RpcError) as missing:
        server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="shop"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_workers_pass_challenger_calls_through(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--workers", "2").start()
    create(server)  # through a worker, to the learning process
    traffic(server, 200, seed=7)  # ranked by the workers, learned by both models in the learning process
    found = wait_learned(server, 200).challenger
    assert found.challenger_ips.value > found.champion.value
    assert server.admin.PromoteChallenger(apb.PromoteChallengerRequest(name="shop")).model_version == "2.200"
    deadline = time.monotonic() + 10
    while True:  # the workers serve the promoted model once its first snapshot is published
        ranked = server.decisions.Rank(
            dpb.RankRequest(decision_point="shop", context=[group("user", segment="a")], actions=ACTIONS)
        )
        if ranked.model_version.startswith("2."):
            break
        assert time.monotonic() < deadline, ranked
        time.sleep(0.2)
    assert server.stop() == 0
