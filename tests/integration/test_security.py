"""Bearer tokens with scopes, TLS and mutual TLS, the audit log, and secrets kept out of logs, on real
server processes."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import admin_service_pb2_grpc as agrpc
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import decision_service_pb2_grpc as dgrpc
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.certs import Authority
from tests.helpers import rank_request
from tests.integration.test_serving import error_reason
from tests.server import RunningServer

Metadata = list[tuple[str, str]]


def bearer(token: str) -> Metadata:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    return {"web": secrets.token_urlsafe(24), "ops": secrets.token_urlsafe(24)}


def tokens_file(tmp_path: Path, tokens: dict[str, str]) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# name scopes token\nweb serve {tokens['web']}\nops admin,serve {tokens['ops']}\n")
    return path


def refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def check_scopes(channel: grpc.Channel, tokens: dict[str, str]) -> None:
    decisions, admin = dgrpc.DecisionServiceStub(channel), agrpc.AdminServiceStub(channel)
    missing = refused(lambda: decisions.Rank(rank_request(3)))
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(missing) == "MISSING_TOKEN"
    assert "authorization: Bearer <token>" in (missing.details() or "")
    wrong = refused(lambda: decisions.Rank(rank_request(3), metadata=bearer("x" * 32)))
    assert (wrong.code(), error_reason(wrong)) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_TOKEN")
    basic = refused(lambda: decisions.Rank(rank_request(3), metadata=[("authorization", f"Basic {tokens['web']}")]))
    assert basic.code() == grpc.StatusCode.UNAUTHENTICATED

    web = bearer(tokens["web"])
    event = decisions.Rank(rank_request(3), metadata=web).event_id
    decisions.Reward(dpb.RewardRequest(decision_point="demo", event_id=event, value=1.0), metadata=web)
    denied = refused(lambda: admin.GetStats(apb.GetStatsRequest(decision_point="demo"), metadata=bearer(tokens["web"])))
    assert (denied.code(), error_reason(denied)) == (grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE")
    assert "'web' lacks the scope 'admin'" in (denied.details() or "")
    # A streaming admin call is checked the same way, before its first message.
    export = admin.ExportDecisions(apb.ExportDecisionsRequest(decision_point="demo"), metadata=web)
    streamed = refused(lambda: list(export))
    assert (streamed.code(), error_reason(streamed)) == (grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE")
    exported = list(
        admin.ExportDecisions(apb.ExportDecisionsRequest(decision_point="demo"), metadata=bearer(tokens["ops"]))
    )
    assert sum(len(page.events) for page in exported) + exported[-1].still_open == 1  # the one Rank above
    stats = admin.GetStats(apb.GetStatsRequest(decision_point="demo"), metadata=bearer(tokens["ops"]))
    assert (stats.ranks, stats.rewards) == (1, 1)  # refused calls changed nothing

    # Health checks and reflection stay open for orchestrators and grpcurl.
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for answer in listing for s in answer.list_services_response.service}
    assert "kairos.v1.DecisionService" in names


def update_wait(admin: agrpc.AdminServiceStub, token: str, seconds: int) -> None:
    dp = tpb.DecisionPoint(name="demo")
    dp.reward_wait.FromSeconds(seconds)
    admin.UpdateDecisionPoint(
        apb.UpdateDecisionPointRequest(decision_point=dp, update_mask=field_mask_pb2.FieldMask(paths=["reward_wait"])),
        metadata=bearer(token),
    )


def test_tokens_scopes_audit_and_no_secrets_in_logs(
    make_server: Callable[..., RunningServer], tmp_path: Path, tokens: dict[str, str]
) -> None:
    server = make_server("--auth-tokens-file", str(tokens_file(tmp_path, tokens)), "--log-level", "info").start()
    assert server.channel is not None
    check_scopes(server.channel, tokens)
    admin = server.admin
    update_wait(admin, tokens["ops"], 120)
    page = admin.ListAuditRecords(apb.ListAuditRecordsRequest(), metadata=bearer(tokens["ops"]))
    changes = [r for r in page.audit_records if r.action == "UpdateDecisionPoint"]
    assert len(changes) == 1
    change = changes[0]
    assert (change.actor, change.decision_point) == ("ops", "demo")
    assert change.peer.startswith("ipv4:127.0.0.1:")
    assert json.loads(change.before_json)["reward_wait_ms"] == 600_000
    assert json.loads(change.after_json)["reward_wait_ms"] == 120_000
    assert change.time.seconds > 0

    # `kairos health` needs no token.
    probe = subprocess.run(
        [sys.executable, "-m", "service.cli", "health", "--port", str(server.port)], capture_output=True, text=True
    )
    assert (probe.returncode, probe.stdout.strip()) == (0, "SERVING")
    assert server.stop() == 0
    log = server.log()
    for token in tokens.values():
        assert token not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]  # JSON off a terminal
    assert any(line["event"] == "authentication is on" for line in lines)
    calls = [line for line in lines if line["event"] == "rpc"]
    ranked = next(line for line in calls if line["method"] == "Rank" and line["status"] == "OK")
    assert ranked["caller"] == "web" and ranked["decision_point"] == "demo" and len(ranked["event_id"]) == 32
    assert ranked["peer"].startswith("ipv4:127.0.0.1:") and ranked["ms"] > 0
    assert {line["status"] for line in calls} >= {"OK", "UNAUTHENTICATED", "PERMISSION_DENIED"}
    audit = next(line for line in lines if line["event"] == "audit")
    assert (audit["actor"], audit["action"]) == ("ops", "UpdateDecisionPoint")
    assert audit["after"]["reward_wait_ms"] == 120_000


def test_audit_records_survive_restart_and_page(
    make_server: Callable[..., RunningServer], tmp_path: Path, tokens: dict[str, str]
) -> None:
    server = make_server("--auth-tokens-file", str(tokens_file(tmp_path, tokens))).start()
    for seconds in (60, 61, 62):
        update_wait(server.admin, tokens["ops"], seconds)
    assert server.stop() == 0
    server.start()
    first = server.admin.ListAuditRecords(apb.ListAuditRecordsRequest(page_size=2), metadata=bearer(tokens["ops"]))
    assert len(first.audit_records) == 2 and first.next_page_token
    rest = server.admin.ListAuditRecords(
        apb.ListAuditRecordsRequest(page_size=2, page_token=first.next_page_token), metadata=bearer(tokens["ops"])
    )
    records = [*first.audit_records, *rest.audit_records]
    assert [r.sequence for r in records] == sorted(r.sequence for r in records)
    waits = [json.loads(r.after_json).get("reward_wait_ms") for r in records if r.action == "UpdateDecisionPoint"]
    assert waits == [60_000, 61_000, 62_000]
    bad = refused(
        lambda: server.admin.ListAuditRecords(
            apb.ListAuditRecordsRequest(page_token="../etc"), metadata=bearer(tokens["ops"])
        )
    )
    assert (bad.code(), error_reason(bad)) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
    assert server.stop() == 0


def test_workers_enforce_tokens_and_pass_the_caller_on(
    make_server: Callable[..., RunningServer], tmp_path: Path, tokens: dict[str, str]
) -> None:
    server = make_server("--workers", "2", "--auth-tokens-file", str(tokens_file(tmp_path, tokens))).start()
    assert server.channel is not None
    check_scopes(server.channel, tokens)
    update_wait(server.admin, tokens["ops"], 90)  # passed through to the learning process
    page = server.admin.ListAuditRecords(apb.ListAuditRecordsRequest(), metadata=bearer(tokens["ops"]))
    change = next(r for r in page.audit_records if r.action == "UpdateDecisionPoint")
    assert change.actor == "ops"
    assert change.peer.startswith("ipv4:127.0.0.1:")  # the client's address, not the worker's socket
    assert server.stop() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "KAIROS_AUTH_TOKENS_FILE"),
        (["--auth-tokens", "web serve short"], "at least 16"),
        (["--tls-cert-file", "server.crt"], "TLS needs both tls_cert_file and tls_key_file"),
        (["--tls-cert-file", "missing.crt", "--tls-key-file", "missing.key"], "cannot read a TLS file"),
    ],
)
def test_bad_security_settings_stop_the_start(tmp_path: Path, args: list[str], message: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_open_loopback_server_says_authentication_is_off(server: RunningServer) -> None:
    server.decisions.Rank(rank_request(2))  # no token needed
    assert "authentication is OFF" in server.log()


def tls_channel(port: int, ca: Path, client: tuple[Path, Path] | None = None) -> grpc.Channel:
    key, cert = (client[1].read_bytes(), client[0].read_bytes()) if client else (None, None)
    credentials = grpc.ssl_channel_credentials(ca.read_bytes(), private_key=key, certificate_chain=cert)
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials)


def test_tls_and_mutual_tls(make_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    served = ca.issue("localhost", server=True)
    client = ca.issue("checkout", server=False)
    stranger = Authority(tmp_path, "Other CA").issue("intruder", server=False)

    tls = make_server("--tls-cert-file", str(served.cert), "--tls-key-file", str(served.key), name="tls").start()
    with tls_channel(tls.port, ca.pem.cert) as channel:
        assert dgrpc.DecisionServiceStub(channel).Rank(rank_request(3), timeout=10).ranking
    plaintext = refused(lambda: tls.decisions.Rank(rank_request(3), timeout=5))
    assert plaintext.code() == grpc.StatusCode.UNAVAILABLE
    probe = subprocess.run(
        [sys.executable, "-m", "service.cli", "health", "--port", str(tls.port), "--ca-file", str(ca.pem.cert)],
        capture_output=True,
        text=True,
    )
    assert (probe.returncode, probe.stdout.strip()) == (0, "SERVING")
    assert tls.stop() == 0

    mutual_args = ["--tls-cert-file", str(served.cert), "--tls-key-file", str(served.key)]
    mutual = make_server(*mutual_args, "--tls-client-ca-file", str(ca.pem.cert), name="mtls").start()
    assert rank_over_tls(mutual.port, ca.pem.cert, (client.cert, client.key)) == "OK"
    assert rank_over_tls(mutual.port, ca.pem.cert, None) == "UNAVAILABLE"  # no client certificate
    assert rank_over_tls(mutual.port, ca.pem.cert, (stranger.cert, stranger.key)) == "UNAVAILABLE"  # other CA
    assert mutual.stop() == 0


def rank_over_tls(port: int, ca: Path, client: tuple[Path, Path] | None) -> str:
    with tls_channel(port, ca, client) as channel:
        try:
            dgrpc.DecisionServiceStub(channel).Rank(rank_request(3), timeout=5)
        except grpc.RpcError as err:
            return str(err.code().name)
    return "OK"


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        ("rank_event", "INVALID_EVENT_ID"),
        ("rank_subject", "INVALID_SUBJECT_ID"),
        ("reward_event", "INVALID_EVENT_ID"),
        ("reward_id", "INVALID_REWARD_ID"),
        ("admin_name", "INVALID_DECISION_POINT_NAME"),
        ("export_name", "INVALID_DECISION_POINT_NAME"),
    ],
)
def test_ids_that_could_break_keys_paths_or_logs_are_refused(server: RunningServer, call: str, reason: str) -> None:
    hostile = {
        "rank_event": lambda: server.decisions.Rank(rank_request(2, event_id="evt\x00../x")),
        "rank_subject": lambda: server.decisions.Rank(rank_request(2, subject_id="cust\u202e1\n")),
        "reward_event": lambda: server.decisions.Reward(
            dpb.RewardRequest(decision_point="demo", event_id="a\nb", value=1.0)
        ),
        "reward_id": lambda: server.decisions.Reward(
            dpb.RewardRequest(decision_point="demo", event_id="e", reward_id="r\r\n", value=1.0)
        ),
        "admin_name": lambda: server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="../../etc/passwd")),
        "export_name": lambda: server.admin.ExportModel(apb.ExportModelRequest(name="demo/../../x")),
    }
    error = refused(hostile[call])
    assert (error.code(), error_reason(error)) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    details = error.details() or ""
    assert "Traceback" not in details and str(server.data_dir) not in details and "/" + "tmp" not in details
    server.decisions.Rank(rank_request(2, event_id="évt 1", subject_id="Zoë"))  # any script and spaces are fine


def test_reflection_can_be_switched_off(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("--no-reflection").start()
    assert server.channel is not None
    listing = reflection_pb2_grpc.ServerReflectionStub(server.channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    error = refused(lambda: list(listing))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert server.decisions.Rank(rank_request(2)).ranking


def test_config_file_changes_are_audited(make_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    config = tmp_path / "kairos.toml"
    config.write_text('[[decision_points]]\nname = "homepage"\nreward_wait = "30s"\n')
    server = make_server("--config", str(config)).start()
    assert server.stop() == 0
    config.write_text('[[decision_points]]\nname = "homepage"\nreward_wait = "45s"\n')
    server.start()
    records = server.admin.ListAuditRecords(apb.ListAuditRecordsRequest()).audit_records
    homepage = [(r.actor, r.action) for r in records if r.decision_point == "homepage"]
    assert homepage == [("config-file", "CreateDecisionPoint"), ("config-file", "UpdateDecisionPoint")]
    change = next(r for r in records if r.action == "UpdateDecisionPoint")
    assert json.loads(change.before_json)["reward_wait_ms"] == 30_000
    assert json.loads(change.after_json)["reward_wait_ms"] == 45_000
    assert server.stop() == 0


def test_readme_security_example_runs(make_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Security", 1)[1]
    tokens_text = re.search(r"```text\n(.*?)```", section, re.S)
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert tokens_text and code
    (tmp_path / "tokens").write_text(tokens_text.group(1))
    ca = Authority(tmp_path)
    served = ca.issue("localhost", server=True)
    server = make_server(
        "--auth-tokens-file", str(tmp_path / "tokens"),
        "--tls-cert-file", str(served.cert), "--tls-key-file", str(served.key),
    ).start()  # fmt: skip
    example = code.group(1).replace("kairos.example.com:50051", f"127.0.0.1:{server.port}")
    namespace: dict[str, object] = {}
    exec(example.replace('"ca.pem"', repr(str(ca.pem.cert))), namespace)
    assert len(namespace["response"].ranking) == 2  # type: ignore[attr-defined]
    assert server.stop() == 0


def test_workers_serve_tls_on_the_public_port(make_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    served = ca.issue("localhost", server=True)
    server = make_server(
        "--workers", "2", "--tls-cert-file", str(served.cert), "--tls-key-file", str(served.key)
    ).start()
    for _ in range(4):  # new connections, spread over both workers
        assert rank_over_tls(server.port, ca.pem.cert, None) == "OK"
    assert refused(lambda: server.decisions.Rank(rank_request(3), timeout=5)).code() == grpc.StatusCode.UNAVAILABLE
    assert server.stop() == 0
