"""kill -9 at random moments under traffic: the challenger learns every journaled event exactly once."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import grpc
import pytest

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import rank_request
from tests.server import RunningServer


def traffic(server: RunningServer, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            ranked = server.decisions.Rank(rank_request(5), timeout=2)
            value = 1.0 if ranked.ranking[0].action_id == "offer-1" else rng.choice([0.0, -0.5])
            server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=ranked.event_id, value=value))
        except grpc.RpcError:
            return


def test_kill9_in_a_loop_keeps_challenger_and_champion_on_the_same_events(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server("--checkpoint-interval-s", "0.2").start()
    challenger = tpb.Challenger(exploration=tpb.Exploration(epsilon_greedy=tpb.EpsilonGreedy(epsilon=0.1)))
    server.admin.UpdateDecisionPoint(
        apb.UpdateDecisionPointRequest(decision_point=tpb.DecisionPoint(name="demo", challenger=challenger))
    )
    rng = random.Random(5)
    for round_ in range(4):
        if server.process is None or server.process.poll() is not None:
            server.start()
        stop = threading.Event()
        worker = threading.Thread(target=traffic, args=(server, stop, round_))
        worker.start()
        time.sleep(rng.uniform(0.4, 1.0))
        server.kill9()
        stop.set()
        worker.join(10)

    server.start()
    deadline = time.monotonic() + 20
    while (stats := server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))).learner.backlog:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # The challenger started before any traffic: it scored exactly the events the champion learned,
    # no more (double learning after a replay) and no fewer (a missed one).
    assert stats.learned > 20
    assert stats.challenger.events == stats.learned
    assert stats.challenger.model_version == f"challenger-1.{stats.learned}"
    assert stats.challenger.champion.value == pytest.approx(stats.average_reward)
    assert server.stop() == 0
