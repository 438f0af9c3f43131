"""The HTTP side port: Prometheus /metrics agrees with GetStats; /healthz follows readiness."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from tests.helpers import rank_request
from tests.server import RunningServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    series = f"{name}{{{wanted}}}" if labels else name
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert match, f"{name}{{{wanted}}} missing"
    return float(match.group(1))


def test_metrics_and_healthz(make_server: Callable[..., RunningServer]) -> None:
    http_port = free_port()
    server = make_server("--http-port", str(http_port)).start()
    for i in range(5):
        event = server.decisions.Rank(rank_request(3)).event_id
        if i % 2 == 0:
            server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0))
    with pytest.raises(Exception):  # noqa: B017 - a refused reward shows up as an error status
        server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id="nope", value=1.0))
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))

    base = f"http://127.0.0.1:{http_port}"
    text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
    assert sample(text, "kairos_ranks_total", decision_point="demo") == stats.ranks == 5
    assert sample(text, "kairos_rewards_total", decision_point="demo") == stats.rewards == 3
    assert sample(text, "kairos_rpc_total", method="Rank", status="OK") == 5
    assert sample(text, "kairos_rpc_total", method="Reward", status="NOT_FOUND") == 1
    assert sample(text, "kairos_rpc_duration_seconds_count", method="Rank", status="OK") == 5
    assert sample(text, "kairos_rpc_duration_seconds_count", method="Reward", status="NOT_FOUND") == 1
    assert sample(text, "kairos_model_info", decision_point="demo", model_version=stats.learner.model_version) == 1
    assert sample(text, "kairos_lmdb_size_bytes") > 0
    assert urllib.request.urlopen(f"{base}/healthz", timeout=5).read() == b"SERVING\n"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{base}/nothing", timeout=5)
    assert caught.value.code == 404
    assert server.stop() == 0


ISSUE_METRICS = (
    "kairos_rpc_total",  # request counts per RPC and status
    "kairos_rpc_duration_seconds_bucket",  # latency histograms per RPC and status
    "kairos_ranks_total",
    "kairos_rewards_total",
    "kairos_learned_total",
    "kairos_late_rewards_total",
    "kairos_duplicate_rewards_total",
    "kairos_default_rewards_total",
    "kairos_average_reward",
    "kairos_exploration_share",
    "kairos_explored_total",
    "kairos_learn_backlog",  # join backlog: learnable events not learned yet
    "kairos_open_events",  # events still waiting for their reward
    "kairos_checkpoint_age_seconds",
    "kairos_lmdb_size_bytes",
)


def test_every_metric_of_the_issue_and_refused_calls(make_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    token = "s" * 24
    (tmp_path / "tokens").write_text(f"web serve {token}\n")
    http_port = free_port()
    server = make_server("--http-port", str(http_port), "--auth-tokens-file", str(tmp_path / "tokens")).start()
    auth = [("authorization", f"Bearer {token}")]
    with pytest.raises(grpc.RpcError):
        server.decisions.Rank(rank_request(3))  # no token
    # A learned model explores some of the time: reward offer-1 only, then count what Rank shows.
    for _ in range(150):
        response = server.decisions.Rank(rank_request(4), metadata=auth)
        value = 1.0 if response.ranking[0].action_id == "offer-1" else 0.0
        server.decisions.Reward(
            dpb.RewardRequest(decision_point="demo", event_id=response.event_id, value=value), metadata=auth
        )
    for _ in range(100):
        server.decisions.Rank(rank_request(4), metadata=auth)

    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
    for name in ISSUE_METRICS:
        assert re.search(rf"^{name}[{{ ]", text, re.M), name
    assert sample(text, "kairos_rpc_total", method="Rank", status="UNAUTHENTICATED") == 1
    assert sample(text, "kairos_rpc_duration_seconds_count", method="Rank", status="UNAUTHENTICATED") == 1
    ranks = sample(text, "kairos_ranks_total", decision_point="demo")
    explored = sample(text, "kairos_explored_total", decision_point="demo")
    assert ranks == 250
    assert 0 < explored < ranks
    assert sample(text, "kairos_exploration_share", decision_point="demo") == pytest.approx(explored / ranks)
    assert server.stop() == 0


def test_streaming_calls_are_counted_and_logged_once_each(make_server: Callable[..., RunningServer]) -> None:
    http_port = free_port()
    server = make_server("--http-port", str(http_port), "--log-level", "info").start()
    requests = [dpb.RankStreamRequest(request=rank_request(3)) for _ in range(3)]
    assert len(list(server.decisions.RankStream(iter(requests)))) == 3
    list(server.admin.ExportDecisions(apb.ExportDecisionsRequest(decision_point="demo")))  # nothing closed yet
    with pytest.raises(grpc.RpcError):
        list(server.admin.ExportDecisions(apb.ExportDecisionsRequest(decision_point="missing")))
    # A stream's status reaches the client before the server's wrapper has finished counting it.
    deadline = time.monotonic() + 10
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
        if 'method="ExportDecisions",status="NOT_FOUND"' in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert sample(text, "kairos_rpc_total", method="RankStream", status="OK") == 1
    assert sample(text, "kairos_rpc_total", method="ExportDecisions", status="OK") == 1
    assert sample(text, "kairos_rpc_total", method="ExportDecisions", status="NOT_FOUND") == 1
    assert server.stop() == 0
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    streamed = [line for line in lines if line["event"] == "rpc" and line["method"] == "RankStream"]
    assert len(streamed) == 1 and streamed[0]["messages"] == 3 and streamed[0]["status"] == "OK"
    refused = [line for line in lines if line["event"] == "rpc" and line["method"] == "ExportDecisions"]
    assert {(line["status"], line["decision_point"]) for line in refused} == {("OK", "demo"), ("NOT_FOUND", "missing")}
