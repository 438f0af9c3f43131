"""Start and stop: SIGTERM and SIGINT drain, checkpoint and exit 0, also mid-flush."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from tests.helpers import rank_request
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
