"""Bounded work per call and a clean start: the limits are settings, and stale LMDB readers are cleared."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
from collections.abc import Callable

import grpc
import pytest

from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service.store.lmdb_store import DB_NAMES
from tests.helpers import group, rank_request
from tests.server import RunningServer


def reason(err: grpc.RpcError) -> str:
    from google.rpc import error_details_pb2, status_pb2

    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            info = error_details_pb2.ErrorInfo()
            status.details[0].Unpack(info)
            return str(info.reason)
    return ""


def test_action_and_feature_limits_are_settings(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--max-actions", "3", "--max-features", "10").start()
    server.decisions.Rank(rank_request(3))  # 3 actions, 3 x 2 action features + 3 context features
    with pytest.raises(grpc.RpcError) as caught:
        server.decisions.Rank(rank_request(4))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and reason(caught.value) == "TOO_MANY_ACTIONS"
    crowded = rank_request(3)
    crowded.context.append(group("extra", a=1.0, b=2.0))  # 11 features
    with pytest.raises(grpc.RpcError) as caught:
        server.decisions.Rank(crowded)
    assert reason(caught.value) == "TOO_MANY_FEATURES" and "at most 10" in (caught.value.details() or "")
    assert server.stop() == 0


HOLD_A_READER = """
import sys, time, lmdb
env = lmdb.open(sys.argv[1], max_dbs={dbs}, readonly=True)
txn = env.begin() if sys.argv[2] == "read" else None
print("open", flush=True)
time.sleep(60)
"""


def test_start_clears_reader_slots_left_by_killed_processes(make_server: Callable[..., RunningServer]) -> None:
    server = make_server().start()
    assert server.stop() == 0
    # LMDB resets its reader table when nobody has the environment open, so the slot of a killed reader
    # outlives it only while another process keeps the environment open (a backup, a worker).
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", HOLD_A_READER.format(dbs=len(DB_NAMES)), str(server.data_dir / "lmdb"), mode],
            stdout=subprocess.PIPE,
        )
        for mode in ("open", "read")
    ]
    try:
        for holder in holders:
            assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        holders[1].send_signal(signal.SIGKILL)  # its reader slot stays taken
        holders[1].wait(10)
        server.start()
        assert "stale_lmdb_readers_cleared" in server.log()
        assert server.stop() == 0
    finally:
        for holder in holders:
            holder.kill()
            holder.wait(10)


def test_calls_beyond_max_concurrent_rpcs_are_refused_until_one_ends(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server("--max-concurrent-rpcs", "1").start()
    held: queue.Queue[dpb.RankStreamRequest | None] = queue.Queue()
    stream = server.decisions.RankStream(iter(held.get, None))  # an open stream holds the only slot
    held.put(dpb.RankStreamRequest(request=rank_request(3)))
    assert len(next(stream).response.ranking) == 3  # the stream is in flight now
    with pytest.raises(grpc.RpcError) as refused:
        server.decisions.Rank(rank_request(3), timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    held.put(None)
    assert list(stream) == []
    assert len(server.decisions.Rank(rank_request(3), timeout=10).ranking) == 3  # the slot is free again
    assert server.stop() == 0
