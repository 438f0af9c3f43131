"""Start and stop: SIGTERM and SIGINT drain, checkpoint and exit 0, also mid-flush."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import rank_request
from tests.integration.test_serving import create
from tests.server import RunningServer


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly_and_keep_everything(make_server: Callable[..., RunningServer], signum: int) -> None:
    # A tiny flush interval makes a stop during an LMDB flush likely.
    server = make_server("--sync-interval-s", "0.002")
    for _round in range(4):
        server.start()
        for _ in range(10):
            event = server.decisions.Rank(rank_request(4)).event_id
            server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0))
        assert server.process is not None
        server.process.send_signal(signum)
        assert server.stop() == 0, server.log()[-3000:]
    server.start()
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    assert (stats.ranks, stats.rewards, stats.learned) == (40, 40, 40)
    assert "checkpoint_unusable" not in server.log()
    assert server.stop() == 0


def test_second_server_on_the_same_data_dir_or_port_is_refused(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    first = make_server().start()
    same_dir = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--port", "0", "--data-dir", str(first.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert same_dir.returncode == 2 and "another Kairos process is using the data directory" in same_dir.stderr
    same_port = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(first.port), "--data-dir", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert same_port.returncode == 1 and "is another server using that port" in same_port.stderr
    assert "Traceback" not in same_dir.stderr + same_port.stderr
    assert first.stop() == 0


def test_a_rank_whose_deadline_passed_while_queued_is_not_computed(make_server: Callable[..., RunningServer]) -> None:
    server = make_server().start()
    # Resetting a model with a 2^24 weight table takes ~150 ms on the serving thread: Ranks sent
    # meanwhile with a 50 ms deadline are only looked at after it has passed.
    create(server, "big", learning=tpb.LearningOptions(bits=24))
    answered = 0
    for _ in range(3):
        reset = server.admin.ResetModel.future(apb.ResetModelRequest(name="big"))
        time.sleep(0.005)
        ranks = [server.decisions.Rank.future(rank_request(3), timeout=0.05) for _ in range(10)]
        reset.result()
        for call in ranks:
            try:
                call.result()
                answered += 1
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert answered < 30  # the deadlines did pass while the server was busy
    # Nothing was ranked or recorded for the calls that ran out of time (gRPC drops the ones whose
    # caller gave up; service.grpc.servicers.rank_deadline refuses any that still reach the handler).
    assert server.admin.GetStats(apb.GetStatsRequest(decision_point="demo")).ranks == answered
    assert server.stop() == 0


def test_sigterm_answers_every_call_that_had_arrived(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--grace-period-s", "20").start()
    create(server, "big", learning=tpb.LearningOptions(bits=24))
    assert server.process is not None
    # Keep the server busy (each reset ~150 ms) with Ranks queued behind: they are in flight at SIGTERM.
    # gRPC's stop alone would cancel the queued ones (CANCELLED); the server drains them first.
    resets = [server.admin.ResetModel.future(apb.ResetModelRequest(name="big")) for _ in range(4)]
    time.sleep(0.01)
    ranks = [server.decisions.Rank.future(rank_request(3)) for _ in range(20)]
    time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    answers = [call.result(timeout=30) for call in ranks]
    for reset in resets:
        reset.result(timeout=30)
    assert server.stop() == 0, server.log()[-3000:]
    server.start()  # and every one of them was recorded
    assert server.admin.GetStats(apb.GetStatsRequest(decision_point="demo")).ranks == len(answers) == 20
    assert server.stop() == 0
