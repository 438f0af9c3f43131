"""Hostile input over real gRPC: the server stays up, answers clearly, and keeps learning."""

from __future__ import annotations

import grpc
import pytest

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import group, offers, rank_request
from tests.server import RunningServer


def still_learning(server: RunningServer) -> None:
    before = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo")).learned
    event = server.decisions.Rank(rank_request(3)).event_id
    server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0))
    assert server.admin.GetStats(apb.GetStatsRequest(decision_point="demo")).rewards >= 1
    import time

    deadline = time.monotonic() + 5
    while server.admin.GetStats(apb.GetStatsRequest(decision_point="demo")).learned == before:
        assert time.monotonic() < deadline, "the model stopped learning"
        time.sleep(0.02)


def test_oversized_message_is_resource_exhausted(server: RunningServer) -> None:
    huge = dpb.RankRequest(decision_point="demo", actions=offers(2), context=[group("user", blob="x" * 5_000_000)])
    with pytest.raises(grpc.RpcError) as caught:
        server.decisions.Rank(huge)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    still_learning(server)


def test_garbage_bytes_do_not_hurt(server: RunningServer) -> None:
    assert server.channel is not None
    raw = server.channel.unary_unary("/kairos.v1.DecisionService/Rank")
    for garbage in [b"\xff\xfe\xfd", b"\x0a\xff\xff\xff\xff\x0f", bytes(range(256))]:
        with pytest.raises(grpc.RpcError):
            raw(garbage)
    still_learning(server)


@pytest.mark.parametrize(
    "features",
    [
        {"a|b": "c:d", "new\nline": "x y", "tab\tname": "|shared"},
        {"": "", " ": " ", "|": "|"},
        {"emoji🙂": "ünïcødé", "nul\x00": "\x00"},
    ],
)
def test_injection_characters_never_change_the_actions(server: RunningServer, features: dict[str, str]) -> None:
    actions = [
        tpb.Action(id=name, features=[group("offer", **{k: v for k, v in features.items()})])
        for name in ["a\nb", "c|d", "e:f", "g h"]
    ]
    response = server.decisions.Rank(
        dpb.RankRequest(decision_point="demo", actions=actions, context=[group("user|x", **features)])
    )
    assert sorted(r.action_id for r in response.ranking) == sorted(a.id for a in actions)
    still_learning(server)


def test_non_finite_and_huge_numbers_are_refused(server: RunningServer) -> None:
    for bad in [float("nan"), float("inf"), -float("inf"), 1e300]:
        with pytest.raises(grpc.RpcError) as caught:
            server.decisions.Rank(
                dpb.RankRequest(decision_point="demo", actions=offers(2), context=[group("u", x=bad)])
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    response = server.decisions.Rank(
        dpb.RankRequest(decision_point="demo", actions=offers(2), context=[group("u", x=1e-300)])
    )
    assert len(response.ranking) == 2
    still_learning(server)


@pytest.mark.parametrize("slot_id", ["a\nb|c:d", "shared", "x" * 300, "_slot", "\u202e", "e\x1f1"])
def test_hostile_slots_never_break_a_page(server: RunningServer, slot_id: str) -> None:
    """Hostile slot ids and slot features: a clear refusal or a page of distinct actions, never a crash,
    and the model keeps learning."""
    actions = [tpb.Action(id=name) for name in ["a\nb", "c|d", "e:f"]]
    slots = [
        dpb.Slot(id=slot_id, features=[group("slot|x", **{"new\nline": "x y|z"})]),
        dpb.Slot(id="other", excluded_action_ids=["c|d", "nonexistent"]),
    ]
    try:
        response = server.decisions.RankSlots(dpb.RankSlotsRequest(decision_point="demo", actions=actions, slots=slots))
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details()
    else:
        shown = [s.action_id for s in response.slots]
        assert len(set(shown)) == 2 and set(shown) <= {"a\nb", "c|d", "e:f"} and shown[1] != "c|d"
        # "other" may show what the first slot left of the two actions it does not exclude.
        assert [len(s.ranking) for s in response.slots] == [3, 2 if shown[0] == "c|d" else 1]
        server.decisions.Reward(
            dpb.RewardRequest(decision_point="demo", event_id=response.event_id, slot_id=slot_id, value=1.0)
        )
    still_learning(server)
