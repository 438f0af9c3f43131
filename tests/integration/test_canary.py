"""Canary safety: versions in every Rank, model rollback that stays rolled back, fail-open on deadlines."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
import pytest

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import decision_service_pb2_grpc as dgrpc
from service.version import VERSION
from tests.helpers import rank_request
from tests.integration.test_backup import kairos
from tests.integration.test_durability import wait_learned
from tests.integration.test_workers import channels
from tests.server import RunningServer


def rank_and_reward(server: RunningServer, n: int) -> None:
    for _ in range(n):
        event = server.decisions.Rank(rank_request(4)).event_id
        server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0))


def newest_checkpoint(
    server: RunningServer, learned: int, timeout: float = 20.0, metadata: Sequence[tuple[str, str]] = ()
) -> apb.Checkpoint:
    deadline = time.monotonic() + timeout
    while True:
        found = server.admin.ListCheckpoints(apb.ListCheckpointsRequest(name="demo"), metadata=metadata).checkpoints
        if found and found[0].learned >= learned:
            return found[0]
        assert time.monotonic() < deadline, f"no checkpoint with {learned} events: {found}"
        time.sleep(0.05)


def export(server: RunningServer) -> bytes:
    return server.admin.ExportModel(apb.ExportModelRequest(name="demo")).model


def test_rank_carries_server_and_model_version_in_trailing_metadata(server: RunningServer) -> None:
    response, call = server.decisions.Rank.with_call(rank_request(3))
    trailers = dict(call.trailing_metadata())
    assert trailers["kairos-version"] == VERSION != "unknown"
    assert trailers["kairos-model-version"] == response.model_version == "1.0"


def test_rollback_drops_later_learning_for_good(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--checkpoint-interval-s", "0.1").start()
    rank_and_reward(server, 10)
    wait_learned(server, 10)
    good = newest_checkpoint(server, 10)
    assert (good.learned, good.model_version) == (10, "1.10")
    good_model = export(server)
    rank_and_reward(server, 15)
    assert wait_learned(server, 25).learned == 25
    newest_checkpoint(server, 25)
    assert export(server) != good_model

    rolled = server.admin.RollbackModel(apb.RollbackModelRequest(name="demo", seq=good.seq))
    assert (rolled.model_version, rolled.dropped_events) == ("2.10", 15)
    assert export(server) == good_model
    assert server.decisions.Rank(rank_request(4)).model_version == "2.10"

    # kill -9 and restart: the dropped events are not replayed into the rolled-back model.
    server.kill9()
    server.start()
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    assert (stats.learned, stats.learner.model_version, stats.rewards) == (10, "2.10", 25)
    assert export(server) == good_model
    rank_and_reward(server, 1)  # and it learns on from there
    assert wait_learned(server, 11).learner.model_version == "2.11"

    with pytest.raises(grpc.RpcError) as caught:
        server.admin.RollbackModel(apb.RollbackModelRequest(name="demo", seq=good.seq))  # an older generation's
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "ListCheckpoints" in (caught.value.details() or "")
    assert server.stop() == 0


def test_rollback_command_with_a_token_lists_rolls_back_and_is_audited(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    ops = secrets.token_urlsafe(24)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ops admin,serve {ops}\n")
    (tmp_path / "ops.token").write_text(ops + "\n")
    server = make_server("--checkpoint-interval-s", "0.1", "--auth-tokens-file", str(tokens)).start()
    auth = [("authorization", f"Bearer {ops}")]
    for i in range(5):
        event = server.decisions.Rank(rank_request(4), metadata=auth).event_id
        server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0), metadata=auth)
        if i == 2:
            wait_learned(server, 3, metadata=auth)
            good = newest_checkpoint(server, 3, metadata=auth)
    wait_learned(server, 5, metadata=auth)
    newest_checkpoint(server, 5, metadata=auth)
    port, token_file = str(server.port), str(tmp_path / "ops.token")
    without = kairos("rollback", "demo", "--port", port)
    assert without.returncode == 1 and "UNAUTHENTICATED" in without.stderr
    listing = kairos("rollback", "demo", "--port", port, "--token-file", token_file)
    assert listing.returncode == 0, listing.stderr
    rows = [line.split("\t") for line in listing.stdout.splitlines()[1:]]
    assert rows[0][1] == "1.5" and [str(good.seq), "1.3", "3"] == next(row[:3] for row in rows if row[1] == "1.3")
    done = kairos("rollback", "demo", "--seq", str(good.seq), "--port", port, "--token-file", token_file)
    assert done.returncode == 0 and "now serving model 2.3 (2 learned events dropped)" in done.stdout
    missing = kairos("rollback", "demo", "--seq", "999999", "--port", port, "--token-file", token_file)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    records = server.admin.ListAuditRecords(apb.ListAuditRecordsRequest(), metadata=auth).audit_records
    rollback = next(r for r in records if r.action == "RollbackModel")
    assert (rollback.actor, rollback.decision_point) == ("ops", "demo")
    assert json.loads(rollback.before_json) == {"model_version": "1.5"}
    assert json.loads(rollback.after_json) == {"model_version": "2.3", "checkpoint_seq": good.seq, "dropped_events": 2}
    assert ops not in server.log()
    assert server.stop() == 0


def test_fallback_when_the_deadline_leaves_too_little_time(make_server: Callable[..., RunningServer]) -> None:
    # A margin of a minute makes any call with a shorter deadline a fallback, deterministically.
    server = make_server("--fallback-margin-ms", "60000").start()
    hurried = server.decisions.Rank(rank_request(5, baseline_action_id="offer-3"), timeout=20)
    assert (hurried.fallback, hurried.fallback_reason, hurried.model_version) == (True, "DEADLINE", "")
    assert [(r.action_id, r.probability) for r in hurried.ranking] == [
        ("offer-3", 1.0),
        ("offer-0", 0.0),
        ("offer-1", 0.0),
        ("offer-2", 0.0),
        ("offer-4", 0.0),
    ]
    relaxed = server.decisions.Rank(rank_request(5, baseline_action_id="offer-3"))  # no deadline
    assert not relaxed.fallback and relaxed.model_version == "1.0"
    for event in (hurried.event_id, relaxed.event_id):
        server.decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0))
    stats = wait_learned(server, 1)
    time.sleep(0.3)  # the fallback event would be learned by now if it were going to be
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    assert (stats.ranks, stats.rewards, stats.fallbacks, stats.learned) == (2, 2, 1, 1)
    assert server.stop() == 0


def test_workers_never_rank_with_an_untrained_model_after_a_rollback(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server("--workers", "2", "--checkpoint-interval-s", "0.1").start()
    rank_and_reward(server, 10)
    wait_learned(server, 10)
    good = newest_checkpoint(server, 10)
    rank_and_reward(server, 5)
    wait_learned(server, 15)
    links = channels(server)
    assert server.admin.RollbackModel(apb.RollbackModelRequest(name="demo", seq=good.seq)).model_version == "2.10"
    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 10
    while ("2.10", "") not in seen:
        for link in links:
            response = dgrpc.DecisionServiceStub(link).Rank(rank_request(4))
            seen.add((response.model_version, response.fallback_reason))
        assert time.monotonic() < deadline, seen
    # A worker follows within a fraction of a second (answering from generation 1 meanwhile); once it
    # knows generation 2, it answers with the fallback until the rolled-back snapshot is loaded, and
    # never from an untrained "2.0".
    assert {v for v, _ in seen if v.startswith("2.")} == {"2.10"}, seen
    assert {r for _, r in seen} <= {"", "MODEL_NOT_LOADED"}, seen
    for link in links:
        link.close()
    assert server.stop() == 0
