"""Rank, Reward and Activate against a real server process (real gRPC, LMDB and VW)."""

from __future__ import annotations

import math

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import group, offers, rank_request
from tests.server import RunningServer


def error_reason(err: grpc.RpcError) -> str:
    for key, raw in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(raw)
            info = error_details_pb2.ErrorInfo()
            status.details[0].Unpack(info)
            return info.reason
    return ""


def create(server: RunningServer, name: str, wait_ms: int = 600_000, **fields: object) -> tpb.DecisionPoint:
    wait = duration_pb2.Duration()
    wait.FromMilliseconds(wait_ms)
    dp = tpb.DecisionPoint(name=name, reward_wait=wait, **fields)  # type: ignore[arg-type]
    return server.admin.CreateDecisionPoint(apb.CreateDecisionPointRequest(decision_point=dp))


def test_health_is_serving_and_demo_exists(server: RunningServer) -> None:
    health = health_pb2_grpc.HealthStub(server.channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    assert server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="demo")).name == "demo"


def test_rank_returns_every_candidate_once_with_probabilities(server: RunningServer) -> None:
    response = server.decisions.Rank(rank_request(24))
    ids = [r.action_id for r in response.ranking]
    assert sorted(ids) == sorted(f"offer-{k}" for k in range(24))
    assert math.isclose(sum(r.probability for r in response.ranking), 1.0, abs_tol=1e-9)
    assert all(0.0 < r.probability <= 1.0 for r in response.ranking)
    rest = [r.probability for r in response.ranking[1:]]
    assert rest == sorted(rest, reverse=True)
    assert response.event_id and response.model_version


def test_excluded_actions_are_not_ranked(server: RunningServer) -> None:
    response = server.decisions.Rank(rank_request(5, excluded_action_ids=["offer-1", "offer-3"]))
    assert sorted(r.action_id for r in response.ranking) == ["offer-0", "offer-2", "offer-4"]


def test_retry_with_same_event_id_returns_stored_answer(server: RunningServer) -> None:
    first = server.decisions.Rank(rank_request(10, event_id="evt-ä 1"))
    again = server.decisions.Rank(rank_request(10, event_id="evt-ä 1"))
    assert first == again
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    assert stats.ranks == 1


def test_reward_is_learned_and_duplicates_count_once(server: RunningServer) -> None:
    event = server.decisions.Rank(rank_request(3)).event_id
    server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0))
    server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0))
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    assert (stats.rewards, stats.duplicate_rewards, stats.learned) == (1, 1, 1)
    assert stats.average_reward == 1.0


@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (rank_request(0), grpc.StatusCode.INVALID_ARGUMENT, "NO_CANDIDATES"),
        (rank_request(257), grpc.StatusCode.INVALID_ARGUMENT, "TOO_MANY_ACTIONS"),
        (rank_request(3, decision_point="nope"), grpc.StatusCode.NOT_FOUND, "DECISION_POINT_NOT_FOUND"),
        (rank_request(3, decision_point="../etc"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_DECISION_POINT_NAME"),
        (rank_request(3, event_id="x" * 257), grpc.StatusCode.INVALID_ARGUMENT, "EVENT_ID_TOO_LONG"),
        (
            dpb.RankRequest(decision_point="demo", actions=[tpb.Action(id="a"), tpb.Action(id="a")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "DUPLICATE_ACTION_ID",
        ),
        (
            dpb.RankRequest(decision_point="demo", actions=offers(2), context=[group("user", x=float("nan"))]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FEATURE",
        ),
        (
            rank_request(2, excluded_action_ids=["offer-0", "offer-1"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ALL_ACTIONS_EXCLUDED",
        ),
    ],
)
def test_bad_rank_requests_get_clear_statuses(
    server: RunningServer, request_: dpb.RankRequest, code: grpc.StatusCode, reason: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        server.decisions.Rank(request_)
    assert caught.value.code() == code
    assert error_reason(caught.value) == reason
    assert "Traceback" not in caught.value.details()


def test_too_many_actions_names_the_limit(server: RunningServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        server.decisions.Rank(rank_request(300))
    assert "256" in caught.value.details()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1.5, -7.0])
def test_bad_reward_values_are_refused_and_not_learned(server: RunningServer, value: float) -> None:
    event = server.decisions.Rank(rank_request(3)).event_id
    with pytest.raises(grpc.RpcError) as caught:
        server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=value))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    assert (stats.rewards, stats.learned) == (0, 0)


def test_reward_for_unknown_event_is_not_found(server: RunningServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id="never-ranked", value=1.0))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_window_close_learns_default_reward_and_late_reward_is_refused(server: RunningServer) -> None:
    import time

    create(server, "fast", wait_ms=200, default_reward=-0.5)
    event = server.decisions.Rank(rank_request(3, decision_point="fast")).event_id
    time.sleep(0.6)
    with pytest.raises(grpc.RpcError) as caught:
        server.decisions.Reward(dpb.RewardRequest(decision_point="fast", event_id=event, value=1.0))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="fast"))
    assert (stats.late_rewards, stats.default_rewards, stats.learned) == (1, 1, 1)
    assert stats.average_reward == -0.5


def test_deferred_event_learns_only_after_activation(server: RunningServer) -> None:
    import time

    create(server, "deferred", wait_ms=300)
    shown = server.decisions.Rank(rank_request(3, decision_point="deferred", defer_activation=True)).event_id
    never = server.decisions.Rank(rank_request(3, decision_point="deferred", defer_activation=True)).event_id
    server.decisions.Reward(dpb.RewardRequest(decision_point="deferred", event_id=shown, value=1.0))
    server.decisions.Reward(dpb.RewardRequest(decision_point="deferred", event_id=never, value=1.0))
    assert server.admin.GetStats(apb.GetStatsRequest(decision_point="deferred")).learned == 0
    server.decisions.Activate(dpb.ActivateRequest(decision_point="deferred", event_id=shown))
    time.sleep(0.8)
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="deferred"))
    assert (stats.learned, stats.learner.expired_events, stats.average_reward) == (1, 1, 1.0)


def test_sum_aggregation_counts_each_reward_id_once(server: RunningServer) -> None:
    import time

    create(
        server,
        "summed",
        wait_ms=300,
        reward_aggregation=tpb.REWARD_AGGREGATION_SUM,
        reward_range=tpb.RewardRange(min=0, max=10),
    )
    event = server.decisions.Rank(rank_request(3, decision_point="summed")).event_id
    for reward_id, value in [("a", 2.0), ("b", 3.0), ("a", 2.0)]:
        server.decisions.Reward(
            dpb.RewardRequest(decision_point="summed", event_id=event, value=value, reward_id=reward_id)
        )
    time.sleep(0.8)
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="summed"))
    assert (stats.rewards, stats.duplicate_rewards, stats.learned, stats.average_reward) == (2, 1, 1, 5.0)
