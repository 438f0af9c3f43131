"""AdminService against a real server."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import rank_request
from tests.integration.test_serving import create
from tests.server import RunningServer


def test_create_get_list_delete(server: RunningServer) -> None:
    created = create(server, "checkout", exploration=tpb.Exploration(epsilon_greedy=tpb.EpsilonGreedy(epsilon=0.1)))
    assert created.exploration.epsilon_greedy.epsilon == pytest.approx(0.1)
    assert created.reward_range.min == -1.0 and created.reward_range.max == 1.0
    names = [dp.name for dp in server.admin.ListDecisionPoints(apb.ListDecisionPointsRequest()).decision_points]
    assert names == ["checkout", "demo"]
    page = server.admin.ListDecisionPoints(apb.ListDecisionPointsRequest(page_size=1))
    assert [dp.name for dp in page.decision_points] == ["checkout"] and page.next_page_token == "checkout"
    server.admin.DeleteDecisionPoint(apb.DeleteDecisionPointRequest(name="checkout"))
    with pytest.raises(grpc.RpcError) as caught:
        server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="checkout"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_create_twice_is_already_exists(server: RunningServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        create(server, "demo")
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize(
    "dp",
    [
        tpb.DecisionPoint(name="Bad Name"),
        tpb.DecisionPoint(name="x", exploration=tpb.Exploration(epsilon_greedy=tpb.EpsilonGreedy(epsilon=2.0))),
        tpb.DecisionPoint(name="x", learning=tpb.LearningOptions(bits=40)),
        tpb.DecisionPoint(name="x", learning=tpb.LearningOptions(interactions=["a*b*c*d"])),
        tpb.DecisionPoint(name="x", reward_range=tpb.RewardRange(min=1, max=-1)),
        tpb.DecisionPoint(name="x", reward_wait=duration_pb2.Duration(seconds=8 * 86400)),
        tpb.DecisionPoint(name="x", reward_wait=duration_pb2.Duration(nanos=50_000_000)),
        tpb.DecisionPoint(name="x", default_reward=5.0),
    ],
)
def test_invalid_decision_points_are_refused(server: RunningServer, dp: tpb.DecisionPoint) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        server.admin.CreateDecisionPoint(apb.CreateDecisionPointRequest(decision_point=dp))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_same_shape_learner_change_keeps_the_model(server: RunningServer) -> None:
    for _ in range(10):
        event = server.decisions.Rank(rank_request(4)).event_id
        server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0))
    slower = tpb.LearningOptions(learning_rate=0.1)
    updated = server.admin.UpdateDecisionPoint(
        apb.UpdateDecisionPointRequest(decision_point=tpb.DecisionPoint(name="demo", learning=slower))
    )
    assert updated.learning.learning_rate == pytest.approx(0.1) and updated.model_generation == 1
    assert server.decisions.Rank(rank_request(4)).model_version == "1.10"  # what it learned is kept
    # VW keeps gamma_scale inside the model: changing it is a change of shape.
    stronger = tpb.DecisionPoint(name="demo", exploration=tpb.Exploration(square_cb=tpb.SquareCb(gamma_scale=50)))
    with pytest.raises(grpc.RpcError) as caught:
        server.admin.UpdateDecisionPoint(apb.UpdateDecisionPointRequest(decision_point=stronger))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_update_learner_shape_needs_reset(server: RunningServer) -> None:
    change = tpb.DecisionPoint(name="demo", exploration=tpb.Exploration(epsilon_greedy=tpb.EpsilonGreedy(epsilon=0.3)))
    with pytest.raises(grpc.RpcError) as caught:
        server.admin.UpdateDecisionPoint(apb.UpdateDecisionPointRequest(decision_point=change))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    updated = server.admin.UpdateDecisionPoint(apb.UpdateDecisionPointRequest(decision_point=change, reset_model=True))
    assert updated.exploration.WhichOneof("policy") == "epsilon_greedy"
    assert updated.model_generation == 2


def test_update_with_mask_changes_only_named_fields(server: RunningServer) -> None:
    change = tpb.DecisionPoint(name="demo", default_reward=0.25, seed=99)
    mask = field_mask_pb2.FieldMask(paths=["default_reward"])
    updated = server.admin.UpdateDecisionPoint(apb.UpdateDecisionPointRequest(decision_point=change, update_mask=mask))
    assert updated.default_reward == 0.25 and updated.seed == 0 and updated.model_generation == 1


def test_export_import_reset_model(server: RunningServer) -> None:
    for _ in range(20):
        event = server.decisions.Rank(rank_request(4)).event_id
        server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0))
    exported = server.admin.ExportModel(apb.ExportModelRequest(name="demo"))
    assert exported.model and exported.model_version == "1.20" and len(exported.sha256) == 64
    reset = server.admin.ResetModel(apb.ResetModelRequest(name="demo"))
    assert reset.model_version == "2.0"
    imported = server.admin.ImportModel(apb.ImportModelRequest(name="demo", model=exported.model))
    assert imported.model_version == "3.0"
    with pytest.raises(grpc.RpcError) as caught:
        server.admin.ImportModel(apb.ImportModelRequest(name="demo", model=b"not a model"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The refused import changed nothing: still serving generation 3.
    assert server.decisions.Rank(rank_request(4)).model_version == "3.0"
