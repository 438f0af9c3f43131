"""`kairos serve --workers 2`: worker processes share the port, rank from snapshots, pass the rest through."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import admin_service_pb2_grpc as agrpc
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import decision_service_pb2_grpc as dgrpc
from service._pb.kairos.v1 import feature_service_pb2 as fpb
from service._pb.kairos.v1 import feature_service_pb2_grpc as fgrpc
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import group, offers
from tests.integration.test_serving import error_reason
from tests.server import RunningServer


def channels(server: RunningServer, n: int = 6) -> list[grpc.Channel]:
    # Separate connections, so the kernel spreads them over the workers.
    return [
        grpc.insecure_channel(f"127.0.0.1:{server.port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(n)
    ]


def worker_pids(server: RunningServer) -> list[int]:
    assert server.process is not None
    children = f"/proc/{server.process.pid}/task/{server.process.pid}/children"
    return [int(pid) for pid in Path(children).read_text().split()]


def test_workers_serve_learn_and_pass_through(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--workers", "2").start()
    assert len(worker_pids(server)) == 2
    links = channels(server)
    segment_best = {"a": "offer-1", "b": "offer-3"}
    for i in range(300):
        stub = dgrpc.DecisionServiceStub(links[i % len(links)])
        segment = "ab"[i % 2]
        response = stub.Rank(
            dpb.RankRequest(decision_point="demo", context=[group("user", seg=segment)], actions=offers(5))
        )
        value = 1.0 if response.ranking[0].action_id == segment_best[segment] else 0.0
        stub.Reward(dpb.RewardRequest(decision_point="demo", event_id=response.event_id, value=value))
    time.sleep(2.5)  # the learner publishes a snapshot at least every second
    admin = agrpc.AdminServiceStub(links[0])
    stats = admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    assert (stats.ranks, stats.rewards, stats.learned) == (300, 300, 300)
    for link in links:  # every worker now ranks with the learned model
        response = dgrpc.DecisionServiceStub(link).Rank(
            dpb.RankRequest(decision_point="demo", context=[group("user", seg="a")], actions=offers(5))
        )
        assert response.model_version == "1.300"
        assert max(response.ranking, key=lambda r: r.probability).action_id == "offer-1"

    # A learner change that keeps the model's shape keeps what every worker learned.
    admin.UpdateDecisionPoint(
        apb.UpdateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name="demo", learning=tpb.LearningOptions(learning_rate=0.2))
        )
    )
    time.sleep(1.0)
    for link in links:
        response = dgrpc.DecisionServiceStub(link).Rank(
            dpb.RankRequest(decision_point="demo", context=[group("user", seg="b")], actions=offers(5))
        )
        assert max(response.ranking, key=lambda r: r.probability).action_id == "offer-3"

    # Errors from the learning process arrive unchanged, ErrorInfo included.
    with pytest.raises(grpc.RpcError) as caught:
        dgrpc.DecisionServiceStub(links[1]).Reward(dpb.RewardRequest(decision_point="demo", event_id="x", value=1))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and error_reason(caught.value) == "EVENT_NOT_FOUND"

    # A decision point created through one connection serves at once through every other.
    admin.CreateDecisionPoint(apb.CreateDecisionPointRequest(decision_point=tpb.DecisionPoint(name="fresh")))
    for link in links:
        response = dgrpc.DecisionServiceStub(link).Rank(
            dpb.RankRequest(decision_point="fresh", context=[group("brand-new-namespace", x=1.0)], actions=offers(3))
        )
        assert len(response.ranking) == 3
    assert server.stop() == 0


def test_dead_worker_is_replaced_and_stop_is_clean(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--workers", "2").start()
    victim = worker_pids(server)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while victim in worker_pids(server) or len(worker_pids(server)) < 2:
        assert time.monotonic() < deadline, "the dead worker was not replaced"
        time.sleep(0.1)
    time.sleep(2.0)  # let the new worker start serving
    for link in channels(server):
        assert (
            len(dgrpc.DecisionServiceStub(link).Rank(dpb.RankRequest(decision_point="demo", actions=offers(2))).ranking)
            == 2
        )
    pids = worker_pids(server)
    assert server.stop() == 0
    for pid in pids:  # the workers are gone (or zombies awaiting their exited parent's reaper)
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split()[2] == "Z"


def test_workers_die_with_a_killed_learner_and_restart_cleanly(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--workers", "2").start()
    event = dgrpc.DecisionServiceStub(channels(server, 1)[0]).Rank(
        dpb.RankRequest(decision_point="demo", actions=offers(2))
    )
    pids = worker_pids(server)
    server.kill9()
    deadline = time.monotonic() + 20
    while any(
        Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z" for pid in pids
    ):
        assert time.monotonic() < deadline, "workers outlived their learning process"
        time.sleep(0.1)
    server.start()
    again = dgrpc.DecisionServiceStub(channels(server, 1)[0]).Rank(
        dpb.RankRequest(decision_point="demo", actions=offers(2), event_id=event.event_id)
    )
    assert again == event  # the acknowledged decision survived
    assert server.stop() == 0


def test_workers_rank_with_the_customer_context(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--workers", "2").start()
    links = channels(server)
    features = fgrpc.FeatureServiceStub(links[0])  # passed through to the learning process
    cap = tpb.FrequencyCap(scope=tpb.CAP_SCOPE_ACTION, max_exposures=1, window=duration_pb2.Duration(seconds=86400))
    admin = agrpc.AdminServiceStub(links[0])
    policy = tpb.ContactPolicy(frequency_caps=[cap])
    admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(decision_point=tpb.DecisionPoint(name="cat", contact_policy=policy))
    )
    actions = [fpb.CatalogAction(action=tpb.Action(id=f"a{k}")) for k in range(4)]
    features.PutActions(fpb.PutActionsRequest(decision_point="cat", actions=actions))
    features.PutProfile(fpb.PutProfileRequest(subject_id="w1", features=[group("user", tier="gold")]))
    shown = set()
    for i in range(4):  # every call on another connection: the caps hold across the worker processes
        response = dgrpc.DecisionServiceStub(links[i % len(links)]).Rank(
            dpb.RankRequest(decision_point="cat", subject_id="w1")
        )
        shown.add(response.ranking[0].action_id)
    assert shown == {"a0", "a1", "a2", "a3"}
    with pytest.raises(grpc.RpcError) as err:
        dgrpc.DecisionServiceStub(links[4]).Rank(dpb.RankRequest(decision_point="cat", subject_id="w1"))
    assert error_reason(err.value) == "NO_ELIGIBLE_ACTIONS"
    history = features.GetContactHistory(fpb.GetContactHistoryRequest(subject_id="w1")).exposures
    assert len(history) == 4
    stream = dgrpc.DecisionServiceStub(links[1]).RankStream(
        iter([dpb.RankStreamRequest(request=dpb.RankRequest(decision_point="cat", subject_id=s)) for s in ("w1", "w2")])
    )
    first, second = list(stream)  # through a worker, passed on to the learning process
    assert first.error_reason == "NO_ELIGIBLE_ACTIONS" and first.subject_id == "w1"
    assert second.response.ranking[0].action_id.startswith("a") and second.subject_id == "w2"
    for link in links:
        link.close()
    assert server.stop() == 0
