"""`kairos export` against a running server's data directory, read back by VW's own DSJSON parser."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import vowpalwabbit
from google.protobuf import duration_pb2, timestamp_pb2

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import feature_service_pb2 as fpb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import group, offers
from tests.server import RunningServer


def _kairos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def _rank(server: RunningServer, segment: str, **kwargs: object) -> dpb.RankResponse:
    request = dpb.RankRequest(
        decision_point="offers",
        context=[group("user", segment=segment, age=41.5), group("situation", hour=9.0)],
        actions=offers(4),
        channel="web",
        **kwargs,  # type: ignore[arg-type]
    )
    response: dpb.RankResponse = server.decisions.Rank(request)
    return response


def test_export_while_serving_is_read_by_vw_dsjson(server: RunningServer, tmp_path: Path) -> None:
    server.admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(
                name="offers", reward_wait=duration_pb2.Duration(nanos=300_000_000), default_reward=-0.5
            )
        )
    )
    rewarded = {}
    for i in range(12):
        response = _rank(server, "gold" if i % 2 else "silver|x y:1\nz")  # hostile text stays one feature
        if i % 3:
            rewarded[response.event_id] = 1.0 if i % 2 else 0.25
            server.decisions.Reward(
                dpb.RewardRequest(
                    decision_point="offers", event_id=response.event_id, value=rewarded[response.event_id]
                )
            )
    deferred = _rank(server, "gold", defer_activation=True)  # never activated: expires, never shown
    ranked = {}
    time.sleep(1.0)  # every reward window closes
    assert deferred.event_id

    out = tmp_path / "offers.dsjson"
    done = _kairos("export", "--decision-point", "offers", "--data-dir", str(server.data_dir), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "exported 12 events (4 with the default reward)" in done.stderr
    assert "0 still open, 1 expired" in done.stderr

    lines = out.read_text().splitlines()
    assert len(lines) == 12
    vw = vowpalwabbit.Workspace("--cb_explore_adf --dsjson --quiet --interactions ab")
    for line in lines:
        event = json.loads(line)
        ranked[event["EventId"]] = event
        expected = rewarded.get(event["EventId"], -0.5)
        assert event["_label_cost"] == -expected
        assert event["_kairos"]["default_reward"] is (event["EventId"] not in rewarded)
        assert event["_kairos"]["namespaces"]["a"] == "user" and event["_kairos"]["namespaces"]["b"] == "situation"
        assert event["a"][0] == event["_label_Action"] == event["_labelIndex"] + 1
        assert abs(sum(event["p"]) - 1.0) < 1e-6 and event["p"][0] == event["_label_probability"]
        examples = vw.parse(line)
        try:
            assert len(examples) == 1 + 4  # the shared example and one per action
            labelled = examples[1 + event["_labelIndex"]]
            assert labelled.get_cbandits_cost(0) == -expected
            assert abs(labelled.get_cbandits_probability(0) - event["_label_probability"]) < 1e-6
            pmf = vw.predict(examples)
            assert len(pmf) == 4
            vw.learn(examples)
        finally:
            vw.finish_example(examples)
    assert deferred.event_id not in ranked
    # Exported in ranking order, so a replay sees events as the service did.
    stamps = [event["Timestamp"] for event in ranked.values()]
    assert stamps == sorted(stamps)
    vw.finish()

    # The export evaluates as is; the logged policy's value is the mean reward it logged.
    report = tmp_path / "eval.json"
    evaluated = _kairos("evaluate", str(out), "--policy", "squarecb:interactions=user*_action", "--out", str(report))
    assert evaluated.returncode == 0, evaluated.stderr
    results = {p["policy"]: p for p in json.loads(report.read_text())["policies"]}
    mean_reward = sum(-event["_label_cost"] for event in ranked.values()) / len(ranked)
    assert abs(results["logged policy"]["ips"]["value"] - mean_reward) < 1e-9
    assert json.loads(report.read_text())["reward_range"] == [-1.0, 1.0]


def test_open_decisions_wait_for_their_reward_window(server: RunningServer, tmp_path: Path) -> None:
    server.admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name="offers", reward_wait=duration_pb2.Duration(seconds=3600))
        )
    )
    _rank(server, "gold")
    out = tmp_path / "open.dsjson"
    done = _kairos("export", "--decision-point", "offers", "--data-dir", str(server.data_dir), "-o", str(out))
    assert done.returncode == 0 and "exported 0 events" in done.stderr and "1 still open" in done.stderr
    assert out.read_text() == ""


def test_export_features_hash_like_the_service(server: RunningServer, tmp_path: Path) -> None:
    # The exported namespaces use the service's VW indices and its encoded feature names: VW reads the
    # same features from the DSJSON event as from the service's own text lines.
    server.admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name="offers", reward_wait=duration_pb2.Duration(nanos=200_000_000))
        )
    )
    _rank(server, "gold")
    time.sleep(0.8)
    out = tmp_path / "x.dsjson"
    assert (
        _kairos("export", "--decision-point", "offers", "--data-dir", str(server.data_dir), "-o", str(out)).returncode
        == 0
    )
    line = out.read_text().splitlines()[0]
    vw = vowpalwabbit.Workspace("--cb_explore_adf --dsjson --quiet")
    examples = vw.parse(line)
    try:
        shared = examples[0]
        found = {
            chr(shared.namespace(i)): sorted(shared.feature(i, j) for j in range(shared.num_features_in(i)))
            for i in range(shared.num_namespaces())
        }
    finally:
        vw.finish_example(examples)
    text_vw = vowpalwabbit.Workspace("--cb_explore_adf --quiet")
    text = vowpalwabbit.Example(
        text_vw, "shared |a segment=gold age:41.5 |b hour:9 |@ web", vowpalwabbit.LabelType.CONTEXTUAL_BANDIT
    )
    expected = {
        chr(text.namespace(i)): sorted(text.feature(i, j) for j in range(text.num_features_in(i)))
        for i in range(text.num_namespaces())
    }
    assert {k: v for k, v in found.items() if k in "ab@"} == {k: v for k, v in expected.items() if k in "ab@"}
    vw.finish()
    text_vw.finish()


def test_export_errors_are_clear(server: RunningServer, tmp_path: Path) -> None:
    missing = _kairos("export", "--decision-point", "nope", "--data-dir", str(server.data_dir))
    assert (
        missing.returncode == 2
        and "decision point 'nope' does not exist" in missing.stderr
        and "demo" in missing.stderr
    )
    nothing = _kairos("export", "--decision-point", "demo", "--data-dir", str(tmp_path / "empty"))
    assert nothing.returncode == 2 and "no Kairos data" in nothing.stderr
    assert not (tmp_path / "empty").exists()
    bad_time = _kairos("export", "--decision-point", "demo", "--data-dir", str(server.data_dir), "--since", "yesterday")
    assert bad_time.returncode == 2 and "ISO-8601" in bad_time.stderr


def test_export_time_window(server: RunningServer, tmp_path: Path) -> None:
    server.admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name="offers", reward_wait=duration_pb2.Duration(nanos=100_000_000))
        )
    )
    first = _rank(server, "a")
    time.sleep(0.3)
    middle = time.time()
    time.sleep(0.3)
    second = _rank(server, "b")
    time.sleep(0.8)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(middle)) + f".{int(middle * 1000) % 1000:03d}Z"
    out_before, out_after = tmp_path / "before.dsjson", tmp_path / "after.dsjson"
    args = ("export", "--decision-point", "offers", "--data-dir", str(server.data_dir), "--quiet")
    assert _kairos(*args, "--until", stamp, "-o", str(out_before)).returncode == 0
    assert _kairos(*args, "--since", stamp, "-o", str(out_after)).returncode == 0
    assert [json.loads(x)["EventId"] for x in out_before.read_text().splitlines()] == [first.event_id]
    assert [json.loads(x)["EventId"] for x in out_after.read_text().splitlines()] == [second.event_id]


def _exported_over_grpc(server: RunningServer, **kwargs: object) -> tuple[list[str], int, int]:
    events: list[str] = []
    still_open = expired = 0
    for response in server.admin.ExportDecisions(apb.ExportDecisionsRequest(decision_point="offers", **kwargs)):  # type: ignore[arg-type]
        events += response.events
        still_open, expired = response.still_open, response.expired
    return events, still_open, expired


def test_the_admin_rpc_streams_what_the_command_writes(server: RunningServer, tmp_path: Path) -> None:
    server.admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name="offers", reward_wait=duration_pb2.Duration(nanos=200_000_000))
        )
    )
    for i in range(1200):  # more than one page
        response = _rank(server, f"s{i % 7}")
        if i % 4 == 0:
            server.decisions.Reward(dpb.RewardRequest(decision_point="offers", event_id=response.event_id, value=1.0))
    time.sleep(0.8)
    out = tmp_path / "offers.dsjson"
    assert (
        _kairos("export", "--decision-point", "offers", "--data-dir", str(server.data_dir), "-o", str(out)).returncode
        == 0
    )
    events, still_open, expired = _exported_over_grpc(server)
    assert len(events) == 1200 and (still_open, expired) == (0, 0)
    assert events == out.read_text().splitlines()

    later = timestamp_pb2.Timestamp()
    later.GetCurrentTime()
    assert _exported_over_grpc(server, since=later)[0] == []


def test_the_admin_rpc_refuses_bad_requests_clearly(server: RunningServer) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        list(server.admin.ExportDecisions(apb.ExportDecisionsRequest(decision_point="nope")))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in (missing.value.details() or "")
    first, second = timestamp_pb2.Timestamp(seconds=2000), timestamp_pb2.Timestamp(seconds=1000)
    with pytest.raises(grpc.RpcError) as backwards:
        list(server.admin.ExportDecisions(apb.ExportDecisionsRequest(decision_point="demo", since=first, until=second)))
    assert backwards.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "until must be later than since" in (backwards.value.details() or "")


def test_the_admin_rpc_passes_through_serving_workers(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--workers", "2").start()
    server.admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name="offers", reward_wait=duration_pb2.Duration(nanos=100_000_000))
        )
    )
    for _ in range(5):
        _rank(server, "gold")
    time.sleep(0.8)
    events, _, _ = _exported_over_grpc(server)
    assert len(events) == 5 and all(json.loads(e)["_kairos"]["decision_point"] == "offers" for e in events)
    assert server.stop() == 0


def test_decisions_of_forgotten_subjects_are_not_exported(server: RunningServer, tmp_path: Path) -> None:
    server.admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name="offers", reward_wait=duration_pb2.Duration(nanos=100_000_000))
        )
    )
    kept = _rank(server, "gold", subject_id="customer-1")
    gone = [_rank(server, "gold", subject_id="customer-2") for _ in range(2)]
    forgotten = server.features.DeleteProfile(fpb.DeleteProfileRequest(subject_id="customer-2"))
    assert forgotten.decisions_forgotten == 2
    time.sleep(0.8)
    out = tmp_path / "offers.dsjson"
    done = _kairos("export", "--decision-point", "offers", "--data-dir", str(server.data_dir), "-o", str(out))
    assert done.returncode == 0 and "2 of forgotten subjects" in done.stderr
    assert [json.loads(line)["EventId"] for line in out.read_text().splitlines()] == [kept.event_id]
    assert all(g.event_id not in out.read_text() for g in gone)
    events, _, _ = _exported_over_grpc(server)
    assert [json.loads(e)["EventId"] for e in events] == [kept.event_id]
