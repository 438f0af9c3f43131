"""kill -9 while clients are mid-traffic: every acknowledged Rank and Reward survives, learning resumes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import grpc

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from tests.helpers import rank_request
from tests.server import RunningServer


def traffic(server: RunningServer, stop: threading.Event, acked: dict[str, list[str]], rewarded: list[str]) -> None:
    """Rank and reward until the server dies; record only what the server acknowledged."""
    assert server.channel is not None
    rng = random.Random(len(acked))
    while not stop.is_set():
        event_id = f"e{len(acked)}-{rng.random()}"
        try:
            response = server.decisions.Rank(rank_request(5, event_id=event_id), timeout=2)
        except grpc.RpcError:
            return
        acked[event_id] = [r.action_id for r in response.ranking]
        if rng.random() < 0.5:
            try:
                server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event_id, value=1.0))
            except grpc.RpcError:
                return
            rewarded.append(event_id)


def test_kill9_in_a_loop_under_traffic(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--checkpoint-interval-s", "0.2")
    acked: dict[str, list[str]] = {}
    rewarded: list[str] = []
    rng = random.Random(11)
    for _ in range(4):
        server.start()
        stop = threading.Event()
        worker = threading.Thread(target=traffic, args=(server, stop, acked, rewarded))
        worker.start()
        time.sleep(rng.uniform(0.3, 1.0))
        server.kill9()  # mid-traffic: the client's last call may fail, and that one is not in acked
        stop.set()
        worker.join(10)

    server.start()
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    # A commit whose reply was lost may count too: the server knows at least what clients were told.
    assert stats.ranks >= len(acked) > 20
    assert stats.rewards >= len(rewarded)
    for event_id, ranking in acked.items():
        response = server.decisions.Rank(rank_request(5, event_id=event_id))
        assert [r.action_id for r in response.ranking] == ranking
    for event_id in rewarded:  # each acknowledged reward is there: a second one is a duplicate
        server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event_id, value=1.0))
    after = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    assert after.duplicate_rewards - stats.duplicate_rewards == len(rewarded)
    deadline = time.monotonic() + 20
    while server.admin.GetStats(apb.GetStatsRequest(decision_point="demo")).learned < after.rewards:
        assert time.monotonic() < deadline, "learning did not catch up after the restarts"
        time.sleep(0.05)
    assert server.stop() == 0
