"""Apprentice mode, logging-only mode and the holdout against a real server (real gRPC, LMDB and VW)."""

from __future__ import annotations

import random
import time
import urllib.request
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import field_mask_pb2

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import decision_service_pb2_grpc as dgrpc
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import group
from tests.integration.test_metrics import free_port, sample
from tests.integration.test_serving import create, error_reason
from tests.integration.test_workers import channels
from tests.server import RunningServer

PREFERRED = {"gold": "upgrade", "silver": "repair", "bronze": "survey"}
ACTIONS = [tpb.Action(id=a, features=[group("offer", kind=a)]) for a in ("upgrade", "repair", "survey")]


def rank(server: RunningServer, segment: str, **fields: object) -> dpb.RankResponse:
    request = dpb.RankRequest(decision_point="nba", context=[group("user", segment=segment)], actions=ACTIONS, **fields)  # type: ignore[arg-type]
    return server.decisions.Rank(request)


def reward(server: RunningServer, event_id: str, value: float) -> None:
    server.decisions.Reward(dpb.RewardRequest(decision_point="nba", event_id=event_id, value=value))


def stats(server: RunningServer) -> apb.DecisionPointStats:
    return server.admin.GetStats(apb.GetStatsRequest(decision_point="nba"))


def run_apprentice(server: RunningServer, events: int, rng: random.Random) -> None:
    """The existing logic picks at random; the customer takes only the offer that suits the segment."""
    for _ in range(events):
        segment = rng.choice(sorted(PREFERRED))
        baseline = rng.choice([a.id for a in ACTIONS])
        response = rank(server, segment, baseline_action_id=baseline)
        assert response.ranking[0].action_id == baseline and response.ranking[0].probability == 1.0
        assert response.served_by == dpb.SERVED_BY_BASELINE
        reward(server, response.event_id, 1.0 if baseline == PREFERRED[segment] else 0.0)


def wait_learned(server: RunningServer, events: int) -> apb.DecisionPointStats:
    deadline = time.monotonic() + 30
    found = stats(server)
    while found.learned < events and time.monotonic() < deadline:
        time.sleep(0.05)
        found = stats(server)
    return found


def test_apprentice_serves_the_baseline_learns_and_reports(make_server: Callable[..., RunningServer]) -> None:
    http_port = free_port()
    server = make_server("--http-port", str(http_port)).start()
    created = create(
        server, "nba", reward_range=tpb.RewardRange(min=0, max=1), learning_mode=tpb.LEARNING_MODE_APPRENTICE
    )
    assert created.learning_mode == tpb.LEARNING_MODE_APPRENTICE and created.apprentice_min_events == 1000
    with pytest.raises(grpc.RpcError) as caught:
        rank(server, "gold")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "BASELINE_REQUIRED"
    assert "baseline_action_id" in (caught.value.details() or "")
    with pytest.raises(grpc.RpcError) as caught:
        rank(server, "gold", baseline_action_id="not-sent")
    assert error_reason(caught.value) == "BASELINE_NOT_A_CANDIDATE"

    run_apprentice(server, 450, random.Random(3))
    found = wait_learned(server, 450)
    assert found.learned == 450  # every apprentice event was learned, with probability 1
    # The model learned each segment's preference from the baseline's outcomes: its favourite follows the baseline.
    for segment, best in PREFERRED.items():
        other = next(a.id for a in ACTIONS if a.id != best)
        assert rank(server, segment, baseline_action_id=other).ranking[1].action_id == best
    found = stats(server)
    assert found.learning_mode == tpb.LEARNING_MODE_APPRENTICE
    match, base, model = found.apprentice.match_rate, found.apprentice.baseline_reward, found.apprentice.model_reward
    assert match.count == base.count == model.count >= 450
    assert 0.2 < match.value < 0.5 and match.low < match.value < match.high and match.method == "Wilson score"
    assert base.value == pytest.approx(1 / 3, abs=0.08) and base.low < base.value < base.high
    assert model.method == "delta-method normal approximation" and model.low > base.value  # clearly better
    doubly_robust = found.apprentice.model_reward_doubly_robust
    assert doubly_robust.method == "empirical Bernstein" and doubly_robust.low > base.value
    assert doubly_robust.count == model.count
    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
    assert sample(text, "kairos_apprentice_match_rate", decision_point="nba") == pytest.approx(match.value, abs=1e-5)
    assert sample(text, "kairos_apprentice_reward", decision_point="nba", policy="model", bound="low") == (
        pytest.approx(model.low, abs=1e-5)
    )

    # The figures are in LMDB: a restart (kill -9 even) reports the same.
    server.kill9()
    server.start()
    again = stats(server).apprentice
    assert again.model_reward.count == model.count and again.model_reward.value == pytest.approx(model.value)
    assert again.match_rate.value == pytest.approx(match.value, abs=1e-5)

    # The manual switch: UpdateDecisionPoint, audited like every change.
    server.admin.UpdateDecisionPoint(
        apb.UpdateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name="nba", learning_mode=tpb.LEARNING_MODE_ONLINE),
            update_mask=field_mask_pb2.FieldMask(paths=["learning_mode"]),
        )
    )
    online = rank(server, "gold")
    assert online.served_by == dpb.SERVED_BY_MODEL and online.model_version.startswith("1.")
    audit = server.admin.ListAuditRecords(apb.ListAuditRecordsRequest()).audit_records
    assert '"learning_mode":"online"' in audit[-1].after_json.replace(" ", "")
    assert server.stop() == 0


def test_apprentice_promotes_itself_when_the_model_is_clearly_better(server: RunningServer) -> None:
    create(
        server,
        "nba",
        reward_range=tpb.RewardRange(min=0, max=1),
        learning_mode=tpb.LEARNING_MODE_APPRENTICE,
        apprentice_auto_promote=True,
        apprentice_min_events=300,
    )
    rng = random.Random(5)
    for _ in range(20):
        run_apprentice(server, 50, rng)
        wait_learned(server, stats(server).rewards)
        dp = server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="nba"))
        if dp.learning_mode == tpb.LEARNING_MODE_ONLINE:
            break
    assert dp.learning_mode == tpb.LEARNING_MODE_ONLINE
    found = stats(server)
    assert found.apprentice.model_reward.count >= 300
    assert found.apprentice.model_reward.low > found.apprentice.baseline_reward.high
    assert found.apprentice.model_reward_doubly_robust.low > found.apprentice.baseline_reward.high
    records = server.admin.ListAuditRecords(apb.ListAuditRecordsRequest()).audit_records
    promoted = [r for r in records if r.action == "AutoPromote"]
    assert len(promoted) == 1 and promoted[0].actor == "auto-promotion" and promoted[0].decision_point == "nba"
    # Online now: the model ranks, and a baseline is no longer needed.
    assert rank(server, "silver").served_by == dpb.SERVED_BY_MODEL


def test_logging_only_serves_the_baseline_and_never_learns(server: RunningServer) -> None:
    create(server, "nba", learning_mode=tpb.LEARNING_MODE_LOGGING_ONLY)
    for _ in range(10):
        response = rank(server, "gold", baseline_action_id="survey")
        assert [a.action_id for a in response.ranking] == ["survey", "upgrade", "repair"]
        assert response.served_by == dpb.SERVED_BY_BASELINE and response.model_version == ""
        reward(server, response.event_id, 1.0)
    time.sleep(0.3)
    found = stats(server)
    assert found.rewards == 10 and found.learned == 0 and found.learner.backlog == 0


def test_holdout_is_stable_per_subject_and_lift_is_reported(make_server: Callable[..., RunningServer]) -> None:
    http_port = free_port()
    server = make_server("--http-port", str(http_port)).start()
    create(server, "nba", reward_range=tpb.RewardRange(min=0, max=1), holdout_share=0.3)
    rng = random.Random(11)
    subjects = [f"customer-{i}" for i in range(80)]
    served: dict[str, int] = {}
    for _ in range(4):
        for subject in subjects:
            segment = "gold" if hash(subject) % 2 else "silver"
            response = rank(server, segment, subject_id=subject, baseline_action_id="survey")
            assert served.setdefault(subject, response.served_by) == response.served_by  # stable per subject
            held = response.served_by == dpb.SERVED_BY_HOLDOUT_BASELINE
            if held:
                assert response.ranking[0].action_id == "survey" and response.ranking[0].probability == 1.0
                assert response.model_version == ""
            # The holdout's survey pays off 20% of the time, the model's offers 60%.
            reward(server, response.event_id, 1.0 if rng.random() < (0.2 if held else 0.6) else 0.0)
    held_subjects = sum(1 for v in served.values() if v == dpb.SERVED_BY_HOLDOUT_BASELINE)
    assert 10 <= held_subjects <= 40  # about 30% of 80
    assert set(served.values()) == {dpb.SERVED_BY_HOLDOUT_BASELINE, dpb.SERVED_BY_MODEL}
    # Without a baseline a held-out subject gets a uniformly random ranking.
    held_one = next(s for s, v in served.items() if v == dpb.SERVED_BY_HOLDOUT_BASELINE)
    random_one = rank(server, "gold", subject_id=held_one)
    assert random_one.served_by == dpb.SERVED_BY_HOLDOUT_RANDOM
    assert [a.probability for a in random_one.ranking] == pytest.approx([1 / 3] * 3)

    lift = stats(server).holdout
    assert lift.holdout_share == pytest.approx(0.3)
    assert lift.holdout_reward.count == 4 * held_subjects
    assert lift.model_reward.count == 4 * (80 - held_subjects)
    assert lift.lift.value == pytest.approx(lift.model_reward.value - lift.holdout_reward.value)
    assert lift.lift.low < lift.lift.value < lift.lift.high and lift.lift.method == "Welch normal approximation"
    assert lift.lift.low > 0.1  # 0.6 against 0.2 over ~100 and ~220 events
    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
    assert sample(text, "kairos_holdout_lift", decision_point="nba", bound="low") == pytest.approx(
        lift.lift.low, abs=1e-5
    )
    assert sample(text, "kairos_holdout_events", decision_point="nba", group="holdout") == lift.holdout_reward.count
    assert server.stop() == 0


@pytest.mark.parametrize("share", [0.51, -0.2, float("nan")])
def test_holdout_share_outside_the_range_is_invalid(server: RunningServer, share: float) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        create(server, "nba", holdout_share=share)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "INVALID_HOLDOUT_SHARE"
    with pytest.raises(grpc.RpcError) as caught:
        server.admin.UpdateDecisionPoint(
            apb.UpdateDecisionPointRequest(
                decision_point=tpb.DecisionPoint(name="demo", holdout_share=share),
                update_mask=field_mask_pb2.FieldMask(paths=["holdout_share"]),
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_learning_mode_is_invalid(server: RunningServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        create(server, "nba", learning_mode=7)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "INVALID_LEARNING_MODE"


def test_serving_workers_follow_the_mode(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--workers", "2").start()
    create(server, "nba", learning_mode=tpb.LEARNING_MODE_APPRENTICE)
    links = channels(server)
    for i in range(40):
        stub = dgrpc.DecisionServiceStub(links[i % len(links)])
        request = dpb.RankRequest(
            decision_point="nba", context=[group("user", segment="gold")], actions=ACTIONS, baseline_action_id="repair"
        )
        response = stub.Rank(request)
        assert response.served_by == dpb.SERVED_BY_BASELINE and response.ranking[0].action_id == "repair"
        stub.Reward(dpb.RewardRequest(decision_point="nba", event_id=response.event_id, value=1.0))
    assert wait_learned(server, 40).apprentice.baseline_reward.count == 40
    server.admin.UpdateDecisionPoint(
        apb.UpdateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name="nba", learning_mode=tpb.LEARNING_MODE_ONLINE),
            update_mask=field_mask_pb2.FieldMask(paths=["learning_mode"]),
        )
    )
    deadline = time.monotonic() + 10
    pending = set(range(len(links)))
    while pending and time.monotonic() < deadline:  # every worker picks up the new mode
        for i in list(pending):
            request = dpb.RankRequest(decision_point="nba", context=[group("user", segment="gold")], actions=ACTIONS)
            try:
                if dgrpc.DecisionServiceStub(links[i]).Rank(request).served_by == dpb.SERVED_BY_MODEL:
                    pending.discard(i)
            except grpc.RpcError as err:  # still in apprentice mode: the baseline is required
                assert error_reason(err) == "BASELINE_REQUIRED"
        time.sleep(0.1)
    assert not pending
    for link in links:
        link.close()
    assert server.stop() == 0
