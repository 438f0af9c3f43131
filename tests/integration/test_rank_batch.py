"""`kairos rank-batch`: an outbound campaign through a running server, under the contact rules."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import feature_service_pb2 as fpb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import group
from tests.server import RunningServer


def campaign(server: RunningServer, path: Path) -> tuple[int, list[dict[str, object]], str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "rank-batch",
            str(path),
            "--decision-point",
            "mail",
            "--channel",
            "email",
            "--event-prefix",
            "spring-",
            "--port",
            str(server.port),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def test_campaign_ranks_the_catalog_for_each_subject(server: RunningServer, tmp_path: Path) -> None:
    week = duration_pb2.Duration(seconds=7 * 86400)
    policy = tpb.ContactPolicy(
        frequency_caps=[tpb.FrequencyCap(scope=tpb.CAP_SCOPE_CHANNEL, channel="email", max_exposures=1, window=week)],
        consent_namespace="consent",
    )
    server.admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(decision_point=tpb.DecisionPoint(name="mail", contact_policy=policy))
    )
    actions = [fpb.CatalogAction(action=tpb.Action(id=f"mail-{k}")) for k in range(3)]
    server.features.PutActions(fpb.PutActionsRequest(decision_point="mail", actions=actions))
    for k in range(20):
        consent = group("consent", email=k != 7)  # subject 7 has opted out of email
        server.features.PutProfile(fpb.PutProfileRequest(subject_id=f"s{k}", features=[consent]))
    subjects = tmp_path / "subjects.txt"
    subjects.write_text(
        "\n".join(f"s{k}" for k in range(19)) + '\n{"subject_id": "s19", "context": {"web": {"x": 1}}}\n'
    )

    code, rows, err = campaign(server, subjects)
    assert code == 0, err
    assert "ranked 20 subjects" in err and "19 to send, 1 not to send" in err
    by_subject = {row["subject_id"]: row for row in rows}
    assert by_subject["s7"]["error"] == "NO_ELIGIBLE_ACTIONS" and "NO_CONSENT" in str(by_subject["s7"]["message"])
    assert by_subject["s3"]["event_id"] == "spring-s3" and str(by_subject["s3"]["action_id"]).startswith("mail-")
    history = server.features.GetContactHistory(fpb.GetContactHistoryRequest(subject_id="s19")).exposures
    assert [(e.channel, e.event_id) for e in history] == [("email", "spring-s19")]

    # A rerun answers from the stored decisions (same event ids): nobody gets a second email.
    code, again, err = campaign(server, subjects)
    assert code == 0, err
    assert {r["subject_id"]: r.get("action_id") for r in again} == {r["subject_id"]: r.get("action_id") for r in rows}
    assert len(server.features.GetContactHistory(fpb.GetContactHistoryRequest(subject_id="s3")).exposures) == 1
    assert server.stop() == 0


def test_feature_service_scopes_and_a_campaign_with_a_token(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    serve_token, admin_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    (tmp_path / "tokens").write_text(f"web serve {serve_token}\nops admin {admin_token}\n")
    server = make_server("--auth-tokens-file", str(tmp_path / "tokens")).start()
    as_web = [("authorization", f"Bearer {serve_token}")]
    as_ops = [("authorization", f"Bearer {admin_token}")]
    profile = fpb.PutProfileRequest(subject_id="t1", features=[group("user", tier="gold")])
    with pytest.raises(grpc.RpcError) as err:
        server.features.PutProfile(profile, metadata=as_web)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # profiles and catalog need the admin scope
    server.features.PutProfile(profile, metadata=as_ops)
    actions = [fpb.CatalogAction(action=tpb.Action(id="push-a"))]
    server.features.PutActions(fpb.PutActionsRequest(decision_point="demo", actions=actions), metadata=as_ops)
    server.features.TrackEvent(fpb.TrackEventRequest(subject_id="t1", event_type="view"), metadata=as_web)

    subjects = tmp_path / "subjects.txt"
    subjects.write_text("t1\nt2\n")
    command = [sys.executable, "-m", "service.cli", "rank-batch", str(subjects), "--decision-point", "demo"]
    command += ["--port", str(server.port)]
    refused = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
    (tmp_path / "web.token").write_text(serve_token + "\n")
    done = subprocess.run(
        [*command, "--token-file", str(tmp_path / "web.token")], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["action_id"] for line in done.stdout.splitlines()] == ["push-a", "push-a"]

    forgotten = server.features.DeleteProfile(fpb.DeleteProfileRequest(subject_id="t1"), metadata=as_ops)
    assert forgotten.decisions_forgotten == 1
    audit = server.admin.ListAuditRecords(apb.ListAuditRecordsRequest(), metadata=as_ops).audit_records
    assert [(r.actor, r.action, r.decision_point) for r in audit] == [
        ("ops", "PutActions", "demo"),
        ("ops", "DeleteProfile", ""),
    ]
    assert "t1" not in audit[1].after_json  # the audit keeps no trace of whom it forgot
    assert server.stop() == 0
