"""A full disk: Rank and Reward fail with UNAVAILABLE (nothing half-written), the server stays up, and it
recovers when space returns; nothing acknowledged is lost. Runs on a tiny tmpfs, which needs root
(CI runs as root)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from tests.helpers import rank_request
from tests.integration.test_durability import wait_learned
from tests.server import RunningServer

DISK_MB = 48


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs and needs root (CI runs as root)")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler


def rank_and_reward(server: RunningServer) -> tuple[bool, bool]:
    """(ranked, rewarded); a refusal must be UNAVAILABLE or RESOURCE_EXHAUSTED, never anything else."""
    allowed = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
    try:
        event = server.decisions.Rank(rank_request(6)).event_id
    except grpc.RpcError as err:
        assert err.code() in allowed, err
        return False, False
    try:
        server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0))
    except grpc.RpcError as err:
        assert err.code() in allowed, err
        return True, False
    return True, True


def test_disk_full_then_space_returns(make_server: Callable[..., RunningServer], small_disk: Path) -> None:
    # No periodic checkpoints: the one at the stop below meets the full disk.
    server = make_server("--checkpoint-interval-s", "3600", "--map-size-mb", "8")
    server.data_dir = small_disk  # its log goes beside it, off the full disk
    server.start()
    ranked = rewarded = 0
    for _ in range(20):
        r, w = rank_and_reward(server)
        ranked, rewarded = ranked + r, rewarded + w
    assert (ranked, rewarded) == (20, 20)

    filler = fill(small_disk)
    refused = 0
    for _ in range(300):  # LMDB reuses free pages for a while; the file must grow before it fails
        r, w = rank_and_reward(server)
        ranked, rewarded = ranked + r, rewarded + w
        refused += (not r) + (r and not w)
        if refused >= 5:
            break
    assert refused >= 5, "the full disk never refused a write"
    health = health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING  # up, answering clearly

    filler.unlink()  # space returns: so do writes
    for _ in range(10):
        assert rank_and_reward(server) == (True, True)
    ranked, rewarded = ranked + 10, rewarded + 10
    wait_learned(server, rewarded)

    filler = fill(small_disk)  # full again: the stop cannot write its checkpoint, and still exits cleanly
    assert server.stop() == 0, server.log()[-3000:]
    assert "checkpoint_failed" in server.log()
    filler.unlink()

    server.start()  # nothing acknowledged was lost, nothing is corrupt
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    # The journal since the last good checkpoint (here: none) was replayed into the model.
    assert (stats.ranks, stats.rewards, stats.learned) == (ranked, rewarded, rewarded)
    assert "checkpoint_unusable" not in server.log()
    assert server.stop() == 0
