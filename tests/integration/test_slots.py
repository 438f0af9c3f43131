"""RankSlots on a real server: one action per slot, per-slot rewards, windows, retries, errors, kill -9."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import feature_service_pb2 as fpb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import group, offers
from tests.server import RunningServer

SLOT_IDS = ("hero", "side", "footer")


def reason(err: grpc.RpcError) -> str:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""


def slots(*ids: str, **kwargs: object) -> list[dpb.Slot]:
    return [dpb.Slot(id=slot_id, features=[group("slot", size=f"s{k}")], **kwargs) for k, slot_id in enumerate(ids)]  # type: ignore[arg-type]


def request(n_actions: int = 5, **kwargs: object) -> dpb.RankSlotsRequest:
    fields: dict[str, object] = {"decision_point": "demo", "slots": slots(*SLOT_IDS)} | kwargs
    return dpb.RankSlotsRequest(
        context=[group("user", segment="gold")],
        actions=offers(n_actions),
        **fields,  # type: ignore[arg-type]
    )


def create(server: RunningServer, name: str, wait_ms: int = 600_000, **fields: object) -> None:
    wait = duration_pb2.Duration()
    wait.FromMilliseconds(wait_ms)
    dp = tpb.DecisionPoint(name=name, reward_wait=wait, **fields)  # type: ignore[arg-type]
    server.admin.CreateDecisionPoint(apb.CreateDecisionPointRequest(decision_point=dp))


def stats(server: RunningServer, name: str = "demo") -> apb.DecisionPointStats:
    return server.admin.GetStats(apb.GetStatsRequest(decision_point=name))


def wait_learned(
    server: RunningServer, count: int, name: str = "demo", timeout: float = 20.0
) -> apb.DecisionPointStats:
    deadline = time.monotonic() + timeout
    while (found := stats(server, name)).learned < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def reward(server: RunningServer, event_id: str, slot_id: str, value: float = 1.0, dp: str = "demo") -> None:
    server.decisions.Reward(dpb.RewardRequest(decision_point=dp, event_id=event_id, slot_id=slot_id, value=value))


def test_each_slot_gets_a_different_allowed_action_and_retries_answer_the_same(server: RunningServer) -> None:
    excluded = dpb.Slot(id="footer", excluded_action_ids=["offer-0", "offer-1"])
    sent = request(5, slots=[*slots("hero", "side"), excluded], event_id="page-1")
    response = server.decisions.RankSlots(sent)
    assert response.event_id == "page-1" and response.model_version == "1.0" and not response.fallback
    assert [s.slot_id for s in response.slots] == ["hero", "side", "footer"]
    taken: list[str] = []
    for slot in response.slots:
        ranked = [r.action_id for r in slot.ranking]
        assert slot.action_id == ranked[0]
        # Each slot ranks exactly the actions it could take: not excluded, not taken by an earlier slot.
        allowed = {a.id for a in sent.actions} - set(taken)
        if slot.slot_id == "footer":
            allowed -= {"offer-0", "offer-1"}
        assert set(ranked) == allowed
        assert abs(sum(r.probability for r in slot.ranking) - 1.0) < 1e-9
        taken.append(slot.action_id)
    assert len(set(taken)) == 3
    assert server.decisions.RankSlots(sent) == response  # the stored answer
    counters = stats(server)
    assert (counters.ranks, counters.learner.open_events) == (1, 3)
    # An event id belongs to one kind of ranking.
    with pytest.raises(grpc.RpcError) as err:
        server.decisions.Rank(dpb.RankRequest(decision_point="demo", event_id="page-1", actions=offers(3)))
    assert (err.value.code(), reason(err.value)) == (grpc.StatusCode.FAILED_PRECONDITION, "EVENT_ID_IN_USE")
    server.decisions.Rank(dpb.RankRequest(decision_point="demo", event_id="single", actions=offers(3)))
    with pytest.raises(grpc.RpcError) as err:
        server.decisions.RankSlots(request(event_id="single"))
    assert (err.value.code(), reason(err.value)) == (grpc.StatusCode.FAILED_PRECONDITION, "EVENT_ID_IN_USE")


def test_rewards_per_slot_are_learned_each_once(server: RunningServer) -> None:
    event = server.decisions.RankSlots(request()).event_id
    reward(server, event, "hero", 1.0)
    reward(server, event, "footer", 0.5)
    reward(server, event, "hero", 1.0)  # a second reward under FIRST: a duplicate
    learned = wait_learned(server, 2)
    assert (learned.learned, learned.rewards, learned.duplicate_rewards) == (2, 2, 1)
    assert learned.average_reward == pytest.approx(0.75)
    assert learned.learner.open_events == 1  # "side" waits for its reward or its window

    def refused(code: grpc.StatusCode, why: str, **fields: object) -> None:
        with pytest.raises(grpc.RpcError) as err:
            server.decisions.Reward(dpb.RewardRequest(decision_point="demo", value=1.0, **fields))  # type: ignore[arg-type]
        assert (err.value.code(), reason(err.value)) == (code, why), err.value.details()
        assert err.value.details()

    refused(grpc.StatusCode.NOT_FOUND, "SLOT_NOT_FOUND", event_id=event, slot_id="sidebar")
    refused(grpc.StatusCode.INVALID_ARGUMENT, "SLOT_ID_REQUIRED", event_id=event)
    refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SLOT_ID", event_id=event, slot_id="a\nb")
    refused(grpc.StatusCode.NOT_FOUND, "EVENT_NOT_FOUND", event_id="nope", slot_id="hero")
    single = server.decisions.Rank(dpb.RankRequest(decision_point="demo", actions=offers(3))).event_id
    refused(grpc.StatusCode.INVALID_ARGUMENT, "EVENT_HAS_NO_SLOTS", event_id=single, slot_id="hero")
    assert stats(server).learned == 2  # nothing refused reached the model


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"slots": []}, "NO_SLOTS"),
        ({"slots": slots("a", "b", "c", "d", "e", "f")}, "MORE_SLOTS_THAN_ACTIONS"),
        ({"slots": slots("a", "a")}, "DUPLICATE_SLOT_ID"),
        ({"slots": slots("")}, "SLOT_ID_REQUIRED"),
        ({"slots": [dpb.Slot(id="a", baseline_action_id="offer-9")]}, "UNKNOWN_BASELINE_ACTION"),
        (
            {"slots": [dpb.Slot(id="a", baseline_action_id="offer-1", excluded_action_ids=["offer-1"])]},
            "BASELINE_ACTION_EXCLUDED",
        ),
        (
            {"slots": [dpb.Slot(id="a", baseline_action_id="offer-1"), dpb.Slot(id="b", baseline_action_id="offer-1")]},
            "DUPLICATE_BASELINE_ACTION",
        ),
        ({"slots": [dpb.Slot(id="a", excluded_action_ids=[f"offer-{k}" for k in range(5)])]}, "ALL_ACTIONS_EXCLUDED"),
        ({"slots": [dpb.Slot(id="a", features=[group("slot", size=float("nan"))])]}, "INVALID_FEATURE"),
        ({"event_id": "x\x00y"}, "INVALID_EVENT_ID"),
        ({"decision_point": "missing"}, "DECISION_POINT_NOT_FOUND"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(server: RunningServer, change: dict[str, object], why: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        server.decisions.RankSlots(request(5, **change))
    expected = grpc.StatusCode.NOT_FOUND if why == "DECISION_POINT_NOT_FOUND" else grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.code(), reason(err.value)) == (expected, why), err.value.details()
    assert stats(server).ranks == 0  # nothing was logged


def test_a_slot_left_without_action_gets_none(server: RunningServer) -> None:
    # "second" may only show offer-0; when "first" draws offer-0 nothing is left for it.
    only_first = dpb.Slot(id="second", excluded_action_ids=["offer-1"])
    empty = None
    for k in range(40):
        response = server.decisions.RankSlots(
            request(2, slots=[dpb.Slot(id="first"), only_first], event_id=f"narrow-{k}")
        )
        first, second = response.slots
        if first.action_id == "offer-0":
            assert (second.action_id, list(second.ranking)) == ("", [])
            empty = response
            break
        assert second.action_id == "offer-0"
    assert empty is not None, "40 uniform draws between two actions never chose offer-0 first"
    assert server.decisions.RankSlots(request(2, event_id=empty.event_id)) == empty
    with pytest.raises(grpc.RpcError) as err:
        reward(server, empty.event_id, "second")
    assert (err.value.code(), reason(err.value)) == (grpc.StatusCode.FAILED_PRECONDITION, "SLOT_HAS_NO_ACTION")


def test_deferred_slots_learn_only_after_activation_with_default_rewards(server: RunningServer) -> None:
    create(server, "page", wait_ms=400, default_reward=-0.5)
    shown = server.decisions.RankSlots(request(decision_point="page", defer_activation=True)).event_id
    never = server.decisions.RankSlots(request(decision_point="page", defer_activation=True)).event_id
    reward(server, shown, "hero", 1.0, dp="page")  # kept until the activation
    reward(server, never, "hero", 1.0, dp="page")
    assert stats(server, "page").learned == 0
    server.decisions.Activate(dpb.ActivateRequest(decision_point="page", event_id=shown))
    assert wait_learned(server, 1, "page").learned == 1  # the rewarded slot at once, the others at the window
    time.sleep(1.0)
    done = stats(server, "page")
    # shown: hero 1.0 and two default rewards; never: three slots expired, never learned.
    assert (done.learned, done.default_rewards, done.learner.expired_events) == (3, 2, 3)
    assert done.average_reward == pytest.approx(0.0)
    with pytest.raises(grpc.RpcError) as err:
        reward(server, shown, "side", 1.0, dp="page")
    assert (err.value.code(), reason(err.value)) == (grpc.StatusCode.FAILED_PRECONDITION, "REWARD_WINDOW_CLOSED")


def test_subject_context_and_catalog_apply_to_every_slot(server: RunningServer) -> None:
    create(server, "shop")
    catalog = [
        fpb.CatalogAction(action=tpb.Action(id=f"p{k}", features=[group("offer", kind=f"k{k}")])) for k in range(4)
    ]
    server.features.PutActions(fpb.PutActionsRequest(decision_point="shop", actions=catalog, replace=True))
    server.features.PutProfile(fpb.PutProfileRequest(subject_id="c1", features=[group("user", tier="gold")]))
    response = server.decisions.RankSlots(
        dpb.RankSlotsRequest(decision_point="shop", subject_id="c1", slots=slots("top", "bottom"), channel="web")
    )
    shown = [s.action_id for s in response.slots]
    assert len(set(shown)) == 2 and set(shown) <= {"p0", "p1", "p2", "p3"}
    history = server.features.GetContactHistory(fpb.GetContactHistoryRequest(subject_id="c1"))
    assert sorted(e.action_id for e in history.exposures) == sorted(shown)
    assert {e.event_id for e in history.exposures} == {response.event_id}
    reward(server, response.event_id, "bottom", 1.0, dp="shop")
    history = server.features.GetContactHistory(fpb.GetContactHistoryRequest(subject_id="c1"))
    rewarded = {e.action_id for e in history.exposures if e.outcome == fpb.EXPOSURE_OUTCOME_REWARDED}
    assert rewarded == {shown[1]}


def test_kill9_keeps_slot_decisions_rewards_and_learning(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--checkpoint-interval-s", "0.3").start()
    answers: dict[str, dpb.RankSlotsResponse] = {}
    for i in range(30):
        response = server.decisions.RankSlots(request(6, event_id=f"page-{i}"))
        answers[response.event_id] = response
        reward(server, response.event_id, SLOT_IDS[i % 3], 1.0)
        if i == 14:
            wait_learned(server, 15)
            time.sleep(0.8)  # a checkpoint, then more learning after it
    before = wait_learned(server, 30)
    model = server.admin.ExportModel(apb.ExportModelRequest(name="demo")).model
    server.kill9()

    server.start()
    after = stats(server)
    assert (after.ranks, after.rewards, after.learned, after.learner.open_events) == (30, 30, 30, 60)
    assert after.average_reward == before.average_reward == 1.0
    assert server.admin.ExportModel(apb.ExportModelRequest(name="demo")).model == model  # replayed exactly
    for event_id, answer in answers.items():
        assert server.decisions.RankSlots(request(6, event_id=event_id)) == answer
    reward(server, "page-0", "hero", 1.0)  # rewarded before the crash: a duplicate
    reward(server, "page-0", "side", 0.0)  # not yet rewarded
    final = wait_learned(server, 31)
    assert (final.learned, final.rewards, final.duplicate_rewards) == (31, 31, 1)
    assert server.stop() == 0


def test_slot_decisions_export_as_cb_events(server: RunningServer) -> None:
    create(server, "page", wait_ms=200)
    response = server.decisions.RankSlots(request(4, decision_point="page", event_id="p1"))
    reward(server, "p1", "side", 1.0, dp="page")
    time.sleep(0.6)  # every window closes: "hero" and "footer" with the default reward
    events = [
        json.loads(line)
        for page in server.admin.ExportDecisions(apb.ExportDecisionsRequest(decision_point="page"))
        for line in page.events
    ]
    by_slot = {e["_kairos"]["slot_id"]: e for e in events}
    assert sorted(by_slot) == sorted(SLOT_IDS) and {e["_kairos"]["event_id"] for e in events} == {"p1"}
    for slot in response.slots:
        event = by_slot[slot.slot_id]
        chosen = event["_kairos"]["actions"][event["_labelIndex"]]
        assert chosen == slot.action_id
        assert event["_label_probability"] == slot.ranking[0].probability
        assert len(event["c"]["_multi"]) == len(slot.ranking)  # only the actions this slot could take
    assert by_slot["side"]["_label_cost"] == -1.0 and by_slot["hero"]["_kairos"]["default_reward"]


def test_each_slot_learns_its_own_preferred_offer(server: RunningServer) -> None:
    # The same audience, but each slot has another best offer: only the slot tells them apart.
    preferred = {"hero": "offer-1", "side": "offer-4", "footer": "offer-2"}
    rng = random.Random(11)
    hits_late = dict.fromkeys(preferred, 0)
    for i in range(800):
        # Fixed event ids make the draws (a hash of the seed, the event id and the slot) the same on every run.
        response = server.decisions.RankSlots(request(6, event_id=f"learn-{i}"))
        for slot in response.slots:
            clicked = rng.random() < (0.8 if slot.action_id == preferred[slot.slot_id] else 0.1)
            reward(server, response.event_id, slot.slot_id, 1.0 if clicked else 0.0)
            if i >= 600:
                hits_late[slot.slot_id] += slot.action_id == preferred[slot.slot_id]
    # Uniform filling would show a slot's preferred offer about 1/6 of the time.
    for slot_id, hits in hits_late.items():
        assert hits / 200 > 0.5, (slot_id, hits_late)
    wait_learned(server, 2400)
    final = server.decisions.RankSlots(request(6, event_id="after-learning"))
    for slot in final.slots:
        top = max(slot.ranking, key=lambda r: r.probability)
        assert top.action_id == preferred[slot.slot_id], final


def test_serving_workers_pass_rank_slots_and_slot_rewards_through(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--workers", "2").start()
    response = server.decisions.RankSlots(request(5, event_id="w1"))
    assert len({s.action_id for s in response.slots}) == 3
    assert server.decisions.RankSlots(request(5, event_id="w1")) == response
    reward(server, "w1", "side", 1.0)
    with pytest.raises(grpc.RpcError) as err:
        reward(server, "w1", "nowhere", 1.0)
    assert (err.value.code(), reason(err.value)) == (grpc.StatusCode.NOT_FOUND, "SLOT_NOT_FOUND")
    assert wait_learned(server, 1).learned == 1
    assert server.stop() == 0
