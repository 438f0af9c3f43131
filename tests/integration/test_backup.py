"""`kairos backup` under live traffic, and the data directory's format version (migrate older, refuse newer)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import lmdb
import pytest

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import decision_service_pb2_grpc
from service._pb.kairos.v1 import types_pb2 as tpb
from service.store.lmdb_store import DB_NAMES, FORMAT_VERSION, Store
from tests.helpers import rank_request
from tests.integration.test_durability import wait_learned
from tests.server import RunningServer


def kairos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def set_format(data_dir: Path, value: bytes | None) -> None:
    env = lmdb.open(str(data_dir / "lmdb"), max_dbs=len(DB_NAMES))
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        if value is None:
            txn.delete(b"format", db=meta)
        else:
            txn.put(b"format", value, db=meta)
    env.close()


def get_format(data_dir: Path) -> bytes | None:
    env = lmdb.open(str(data_dir / "lmdb"), max_dbs=len(DB_NAMES), readonly=True)
    with env.begin() as txn:
        value: bytes | None = txn.get(b"format", db=env.open_db(b"meta", txn=txn, create=False))
    env.close()
    return value


class Traffic(threading.Thread):
    """Rank and Reward in a loop on its own connection, counting what the server acknowledged."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.ranked, self.rewarded = port, 0, 0
        self.halt = threading.Event()

    def run(self) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = decision_service_pb2_grpc.DecisionServiceStub(channel)
            while not self.halt.is_set():
                event = stub.Rank(rank_request(4)).event_id
                self.ranked += 1
                stub.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0))
                self.rewarded += 1


def test_hot_backup_under_traffic_restores_a_consistent_server(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    # Checkpoints every 50 ms: the copy races checkpoint writes and pruning.
    server = make_server("--checkpoint-interval-s", "0.05").start()
    challenger = tpb.Challenger(exploration=tpb.Exploration(epsilon_greedy=tpb.EpsilonGreedy(epsilon=0.1)))
    server.admin.UpdateDecisionPoint(
        apb.UpdateDecisionPointRequest(decision_point=tpb.DecisionPoint(name="demo", challenger=challenger))
    )
    traffic = Traffic(server.port)
    traffic.start()
    copies = []
    try:
        for k in range(3):
            while traffic.rewarded < 40 * (k + 1):
                time.sleep(0.01)
            floor = traffic.rewarded
            done = kairos("backup", "--data-dir", str(server.data_dir), "--to", str(tmp_path / f"copy{k}"))
            assert done.returncode == 0, done.stderr
            assert "backed up 1 decision points" in done.stdout
            copies.append((f"copy{k}", floor, traffic.ranked))
    finally:
        traffic.halt.set()
        traffic.join(10)
    assert server.stop() == 0
    for name, floor, ceiling in copies:
        restored = make_server(name=name).start()
        stats = restored.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
        assert floor <= stats.rewards <= stats.ranks <= ceiling + 1
        # Every reward was journaled and is in the model (checkpoint + replay): nothing lost, nothing doubled.
        assert stats.learned == stats.rewards, (name, stats)
        assert stats.challenger.events == stats.learned  # its checkpoints were copied too
        assert restored.decisions.Rank(rank_request(4)).model_version == f"1.{stats.learned}"
        log = restored.log()
        assert "checkpoint_unusable" not in log and "no_valid_checkpoint" not in log
        assert "challenger_restarted" not in log
        assert restored.stop() == 0


def test_backup_refuses_a_non_empty_destination_and_a_missing_source(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    missing = kairos("backup", "--data-dir", str(tmp_path / "nothing"), "--to", str(tmp_path / "a"))
    assert missing.returncode == 1 and "is not a Kairos data directory" in missing.stderr
    Store(tmp_path / "source" / "lmdb").close()
    occupied = kairos("backup", "--data-dir", str(tmp_path / "source"), "--to", str(tmp_path / "full"))
    assert occupied.returncode == 1 and "exists and is not empty" in occupied.stderr
    assert (tmp_path / "full" / "x").read_text() == "x"
    assert "Traceback" not in missing.stderr + occupied.stderr


@pytest.mark.parametrize("recorded", [None, b"0"])
def test_an_older_data_dir_is_backed_up_then_migrated(
    make_server: Callable[..., RunningServer], recorded: bytes | None
) -> None:
    server = make_server().start()
    event = server.decisions.Rank(rank_request(4)).event_id
    server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0))
    wait_learned(server, 1)
    assert server.stop() == 0
    set_format(server.data_dir, recorded)  # as a build from before format 1 left it

    server.start()
    assert server.admin.GetStats(apb.GetStatsRequest(decision_point="demo")).rewards == 1
    assert get_format(server.data_dir) == str(FORMAT_VERSION).encode()
    assert "data_dir_migrating" in server.log()
    assert server.stop() == 0
    (backup,) = (server.data_dir / "backups").iterdir()
    assert backup.name.startswith("format-0-")
    assert get_format(backup) == recorded  # untouched: the previous version can be pointed at it
    old = make_server(name="old")
    old.data_dir = backup
    old.start()  # (this build migrates it in turn; what matters is that it is whole)
    stats = old.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    assert (stats.ranks, stats.rewards, stats.learned) == (1, 1, 1)
    assert old.stop() == 0


def test_a_newer_data_dir_is_refused(make_server: Callable[..., RunningServer]) -> None:
    server = make_server().start()
    assert server.stop() == 0
    set_format(server.data_dir, str(FORMAT_VERSION + 1).encode())
    refused = kairos("serve", "--port", "0", "--data-dir", str(server.data_dir))
    assert refused.returncode == 2
    assert f"has format {FORMAT_VERSION + 1}, newer than this build understands ({FORMAT_VERSION})" in refused.stderr
    assert "Traceback" not in refused.stderr
