"""The Personalizer REST API, driven by both official SDKs against a real Kairos server (gRPC, LMDB, VW)."""

from __future__ import annotations

import io
import json
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.cognitiveservices.personalizer import PersonalizerClient as LegacyClient
from azure.cognitiveservices.personalizer.models import ErrorResponseException, RankableAction, RankRequest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from google.protobuf import duration_pb2
from msrest.authentication import CognitiveServicesCredentials

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.integration.test_metrics import free_port, sample
from tests.server import RunningServer

KEY = AzureKeyCredential("unused-while-auth-is-off")


class Rest:
    """One server's HTTP port, seen through the two SDKs and plain HTTP."""

    def __init__(self, server: RunningServer, http_port: int) -> None:
        self.server, self.base = server, f"http://127.0.0.1:{http_port}"

    def endpoint(self, dp: str) -> str:
        return f"{self.base}/dp/{dp}"

    def client(self, dp: str, key: AzureKeyCredential = KEY) -> PersonalizerClient:
        return PersonalizerClient(self.endpoint(dp), key)

    def admin(self, dp: str, key: AzureKeyCredential = KEY) -> PersonalizerAdministrationClient:
        return PersonalizerAdministrationClient(self.endpoint(dp), key)

    def legacy(self, dp: str, key: str = "unused") -> LegacyClient:
        return LegacyClient(self.endpoint(dp), CognitiveServicesCredentials(key))

    def raw(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(self.base + path, data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def create(self, dp: str, wait_ms: int = 600_000) -> None:
        wait = duration_pb2.Duration()
        wait.FromMilliseconds(wait_ms)
        self.server.admin.CreateDecisionPoint(
            apb.CreateDecisionPointRequest(decision_point=tpb.DecisionPoint(name=dp, reward_wait=wait))
        )

    def stats(self, dp: str) -> apb.DecisionPointStats:
        return self.server.admin.GetStats(apb.GetStatsRequest(decision_point=dp))


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rest]:
    http_port = free_port()
    server = RunningServer(tmp_path_factory.mktemp("rest") / "data", ["--http-port", str(http_port)]).start()
    try:
        yield Rest(server, http_port)
    finally:
        assert server.stop() == 0


def actions(*ids: str) -> list[dict[str, Any]]:
    return [{"id": i, "features": [{"offer": {"kind": i, "price": 10 + n}}]} for n, i in enumerate(ids)]


def context(segment: str) -> list[dict[str, Any]]:
    return [{"user": {"segment": segment, "device": {"os": "ios"}}}, {"time": "morning"}]


def test_rank_reward_activate_with_the_current_sdk(rest: Rest) -> None:
    rest.create("sdk-new")
    client = rest.client("sdk-new")
    answer = client.rank({"contextFeatures": context("gold"), "actions": actions("a", "b", "c")})
    assert sorted(r["id"] for r in answer["ranking"]) == ["a", "b", "c"]
    assert sum(r["probability"] for r in answer["ranking"]) == pytest.approx(1.0)
    assert answer["rewardActionId"] == answer["ranking"][0]["id"]
    assert len(answer["eventId"]) == 32  # generated
    client.reward(answer["eventId"], {"value": 1.0})
    stats = rest.stats("sdk-new")
    assert (stats.ranks, stats.rewards) == (1, 1)

    given = client.rank({"contextFeatures": context("gold"), "actions": actions("a", "b"), "eventId": "mine-1"})
    assert given["eventId"] == "mine-1"
    again = client.rank({"contextFeatures": context("gold"), "actions": actions("a", "b"), "eventId": "mine-1"})
    assert again == given  # a retry answers as before
    assert rest.stats("sdk-new").ranks == 2


def test_excluded_actions_are_never_chosen_and_come_last_with_probability_zero(rest: Rest) -> None:
    rest.create("excluded")
    client = rest.legacy("excluded")
    for n in range(20):
        answer = client.rank(
            RankRequest(
                context_features=context("silver"),
                actions=[RankableAction(**a) for a in actions("a", "b", "c")],
                excluded_actions=["a", "c"],
                event_id=f"ex-{n}",
            )
        )
        assert answer.reward_action_id == "b"
        assert [(r.id, r.probability) for r in answer.ranking] == [("b", 1.0), ("a", 0.0), ("c", 0.0)]


def test_deferred_activation_with_the_legacy_sdk(rest: Rest) -> None:
    rest.create("deferred", wait_ms=400)
    client = rest.legacy("deferred")
    offered = [RankableAction(**a) for a in actions("a", "b")]
    shown = client.rank(RankRequest(context_features=context("gold"), actions=offered, defer_activation=True))
    hidden = client.rank(RankRequest(context_features=context("gold"), actions=offered, defer_activation=True))
    client.events.activate(shown.event_id)
    client.events.reward(shown.event_id, 1.0)
    client.events.reward(hidden.event_id, 1.0)  # accepted, but never learned: it was not activated
    deadline = time.monotonic() + 10
    while rest.stats("deferred").learner.expired_events < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    stats = rest.stats("deferred")
    assert stats.learner.expired_events == 1
    assert stats.learned == 1


def test_rewards_and_activations_for_unknown_or_closed_events_succeed_and_are_counted(rest: Rest) -> None:
    rest.create("lenient", wait_ms=200)
    client, legacy = rest.client("lenient"), rest.legacy("lenient")
    client.reward("never-ranked", {"value": 1.0})
    client.activate("never-ranked")
    legacy.events.reward("never-ranked-either", 0.5)
    answer = client.rank({"contextFeatures": context("gold"), "actions": actions("a", "b")})
    time.sleep(0.5)
    client.reward(answer["eventId"], {"value": 1.0})  # its window has closed
    assert rest.stats("lenient").rest_ignored_events == 4
    text = urllib.request.urlopen(f"{rest.base}/metrics", timeout=5).read().decode()
    assert sample(text, "kairos_rest_ignored_events_total", decision_point="lenient") == 4


def test_service_configuration_round_trip(rest: Rest) -> None:
    rest.create("config")
    admin = rest.admin("config")
    shown = admin.get_service_configuration()
    assert shown["rewardWaitTime"] == "PT10M" and shown["learningMode"] == "Online"
    assert admin.update_service_configuration(shown) == shown  # an unchanged configuration changes nothing
    changed = admin.update_service_configuration(
        {**shown, "rewardWaitTime": "PT2M", "defaultReward": 0.25, "rewardAggregation": "sum"}
    )
    assert admin.get_service_configuration() == changed
    assert (changed["rewardWaitTime"], changed["defaultReward"], changed["rewardAggregation"]) == ("PT2M", 0.25, "sum")
    dp = rest.server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="config"))
    assert dp.reward_wait.ToMilliseconds() == 120_000 and dp.default_reward == 0.25
    assert dp.reward_aggregation == tpb.REWARD_AGGREGATION_SUM

    with pytest.raises(HttpResponseError) as caught:
        admin.update_service_configuration({**shown, "learningMode": "Shadow"})
    assert caught.value.status_code == 400 and "learningMode" in str(caught.value)
    with pytest.raises(HttpResponseError) as caught:
        admin.update_service_configuration({**shown, "defaultReward": 5})  # outside the reward range
    assert caught.value.status_code == 400 and "default_reward" in str(caught.value)


def test_apprentice_mode_serves_the_first_action_not_excluded_and_learns(rest: Rest) -> None:
    rest.create("apprentice")
    client, admin = rest.client("apprentice"), rest.admin("apprentice")
    assert admin.update_service_configuration({"learningMode": "Apprentice"})["learningMode"] == "Apprentice"
    dp = rest.server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="apprentice"))
    assert dp.learning_mode == tpb.LEARNING_MODE_APPRENTICE
    for n in range(10):
        answer = client.rank(
            {"contextFeatures": context("gold"), "actions": actions("a", "b", "c"), "excludedActions": ["a"]}
        )
        assert answer["rewardActionId"] == "b", n  # Personalizer's baseline: the first action not excluded
        client.reward(answer["eventId"], {"value": 1.0})
    assert rest.stats("apprentice").learning_mode == tpb.LEARNING_MODE_APPRENTICE
    assert admin.update_service_configuration({"learningMode": "Online"})["learningMode"] == "Online"


def test_policy_round_trip_within_the_allow_list(rest: Rest) -> None:
    rest.create("policy")
    admin = rest.admin("policy")
    current = admin.get_policy()
    assert admin.update_policy(current) == current
    updated = admin.update_policy({"name": "eps", "arguments": "--cb_explore_adf --epsilon 0.3 -q :: --power_t 0"})
    assert "--epsilon 0.3" in updated["arguments"] and "--interactions ::" in updated["arguments"]
    assert admin.get_service_configuration()["explorationPercentage"] == pytest.approx(30)
    admin.update_service_configuration({"explorationPercentage": 10})
    assert "--epsilon 0.1" in admin.get_policy()["arguments"]
    with pytest.raises(HttpResponseError) as caught:
        admin.update_policy({"name": "bad", "arguments": "--cb_explore_adf --epsilon 0.1 -i /etc/passwd"})
    assert caught.value.status_code == 400 and "-i" in str(caught.value)
    assert "--epsilon 0.1" in admin.get_policy()["arguments"]  # unchanged
    assert admin.reset_policy() == current


def test_model_export_import_reset_and_properties(rest: Rest) -> None:
    rest.create("model")
    client, admin = rest.client("model"), rest.admin("model")
    for n in range(30):
        answer = client.rank({"contextFeatures": context("gold"), "actions": actions("a", "b"), "eventId": f"m-{n}"})
        client.reward(answer["eventId"], {"value": 1.0 if answer["rewardActionId"] == "a" else 0.0})
    deadline = time.monotonic() + 10
    while rest.stats("model").learned < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    exported = b"".join(admin.export_model())
    assert len(exported) > 100
    admin.reset_model()
    assert b"".join(admin.export_model()) != exported
    admin.import_model(io.BytesIO(exported))
    assert b"".join(admin.export_model()) == exported
    properties = admin.get_model_properties()
    assert datetime.fromisoformat(properties["lastModifiedTime"]) > datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(HttpResponseError) as caught:
        admin.import_model(io.BytesIO(b"not a model"))
    assert caught.value.status_code == 400
    assert b"".join(admin.export_model()) == exported  # the bad import changed nothing


def test_log_properties_and_delete(rest: Rest) -> None:
    rest.create("logs", wait_ms=200)
    client, admin = rest.client("logs"), rest.admin("logs")
    assert admin.get_log_properties() == {"dateRange": {}}
    for n in range(5):
        client.rank({"contextFeatures": context("gold"), "actions": actions("a", "b"), "eventId": f"l-{n}"})
    dates = admin.get_log_properties()["dateRange"]
    assert dates["from"] <= dates["to"]
    time.sleep(1.0)  # the windows close
    admin.delete_logs()
    assert admin.get_log_properties() == {"dateRange": {}}


def test_an_evaluation_lifecycle_and_applying_its_policy(rest: Rest) -> None:
    rest.create("evaluated", wait_ms=200)
    client, admin = rest.client("evaluated"), rest.admin("evaluated")
    start = datetime.now(UTC) - timedelta(minutes=1)
    rng = random.Random(7)
    for n in range(60):
        segment = rng.choice(["gold", "silver"])
        request = {"contextFeatures": context(segment), "actions": actions("a", "b", "c"), "eventId": f"e-{n}"}
        answer = client.rank(request)
        liked = "a" if segment == "gold" else "b"
        client.reward(answer["eventId"], {"value": 1.0 if answer["rewardActionId"] == liked else 0.0})
    time.sleep(0.6)  # every window closes
    admin.create_evaluation(
        "first",
        {
            "name": "try epsilon",
            "startTime": start.isoformat(),
            "endTime": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
            "policies": [{"name": "eps", "arguments": "--cb_explore_adf --epsilon 0.05 -q ::"}],
        },
    )
    deadline = time.monotonic() + 60
    found = admin.get_evaluation("first", start_time=start, end_time=datetime.now(UTC))
    while found["status"] == "Running" and time.monotonic() < deadline:
        time.sleep(0.2)
        found = admin.get_evaluation("first", start_time=start, end_time=datetime.now(UTC))
    assert found["status"] == "Succeeded", found
    results = {r["name"]: r for r in found["content"]["value"]}
    assert {"eps", "squarecb", "logged policy", "uniform random"} <= set(results)
    assert results["eps"]["policySource"] == "Custom" and results["squarecb"]["policySource"] == "Online"
    for result in results.values():
        low, high = result["summary"]["confidenceInterval"]
        assert low <= result["summary"]["expectedReward"] <= high
    assert found["optimalPolicy"] in {"eps", "squarecb"}
    assert [e["id"] for e in admin.list_evaluations()] == ["first"]

    admin.apply_from_evaluation({"evaluationId": "first", "policyName": "eps"})
    assert "--epsilon 0.05" in admin.get_policy()["arguments"]
    with pytest.raises(HttpResponseError) as caught:
        admin.apply_from_evaluation({"evaluationId": "first", "policyName": "nope"})
    assert caught.value.status_code == 400
    admin.delete_evaluation("first")
    assert list(admin.list_evaluations()) == []
    with pytest.raises(HttpResponseError) as caught:
        admin.get_evaluation("first", start_time=start, end_time=datetime.now(UTC))
    assert caught.value.status_code == 404


def test_an_evaluation_without_logged_events_fails_with_a_reason(rest: Rest) -> None:
    rest.create("empty-log")
    admin = rest.admin("empty-log")
    window = {"startTime": "2020-01-01T00:00:00Z", "endTime": "2020-01-02T00:00:00Z"}
    admin.create_evaluation("none", {"name": "n", **window})
    deadline = time.monotonic() + 30
    found = {"status": "Running"}
    while found["status"] == "Running" and time.monotonic() < deadline:
        time.sleep(0.1)
        found = admin.get_evaluation("none", start_time=datetime(2020, 1, 1), end_time=datetime(2020, 1, 2))
    assert found["status"] == "Failed" and "usable events" in found["description"]
    assert "/" not in found["description"]  # no file paths


RANK = "/dp/errors/personalizer/rank"
TOO_LARGE = b'{"actions": [{"id": "a", "features": [' + b'{"x": 1},' * 600_000 + b"{}]}]}"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        ("POST", RANK, b"{not json", 400, "INVALID_JSON"),
        ("POST", RANK, b'{"actions": "a"}', 400, "INVALID_FIELD"),
        ("POST", RANK, b'{"actions": [{"id": 1}]}', 400, "INVALID_FEATURE"),
        ("POST", RANK, b'{"actions": [{"id": "a", "features": [{"x": {"v": NaN}}]}]}', 400, "INVALID_JSON"),
        ("POST", RANK, b'{"actions": [{"id": "a"}, {"id": "a"}]}', 400, "DUPLICATE_ACTION_ID"),
        ("POST", RANK, b'{"actions": [{"id": "a"}], "excludedActions": ["a"]}', 400, "ALL_ACTIONS_EXCLUDED"),
        ("POST", "/dp/missing/personalizer/v1.0/rank", b'{"actions": [{"id": "a"}]}', 404, "DECISION_POINT_NOT_FOUND"),
        ("POST", "/dp/errors/personalizer/events/e/reward", b'{"value": "high"}', 400, "INVALID_REWARD"),
        ("POST", "/dp/errors/personalizer/events/e/reward", b'{"value": 3}', 400, "REWARD_OUT_OF_RANGE"),
        ("GET", "/dp/errors/personalizer/nothing", None, 404, "NO_ROUTE"),
        ("PATCH", "/dp/errors/personalizer/rank", b"{}", 405, "NO_ROUTE"),
        ("POST", RANK, TOO_LARGE, 413, "REQUEST_TOO_LARGE"),
    ],
)
def test_bad_requests_get_personalizers_error_shape(
    rest: Rest, method: str, path: str, body: bytes | None, status: int, reason: str
) -> None:
    listed = rest.server.admin.ListDecisionPoints(apb.ListDecisionPointsRequest()).decision_points
    if "errors" not in {dp.name for dp in listed}:
        rest.create("errors")
    got, answer = rest.raw(method, path, body)
    assert got == status, answer
    assert answer["error"]["innerError"]["code"] == reason
    assert answer["error"]["message"] and answer["error"]["code"]
    with urllib.request.urlopen(f"{rest.base}/healthz", timeout=5) as health:
        assert health.status == 200  # still serving


def test_errors_reach_both_sdks_as_their_exceptions(rest: Rest) -> None:
    with pytest.raises(HttpResponseError) as caught:
        rest.client("missing").rank({"actions": actions("a")})
    assert caught.value.status_code == 404 and "does not exist" in str(caught.value)
    with pytest.raises(ErrorResponseException) as legacy:
        rest.legacy("missing").rank(RankRequest(actions=[RankableAction(**a) for a in actions("a")]))
    assert legacy.value.error.error.code == "ResourceNotFound"


def test_the_model_learns_a_clear_preference_through_the_sdk(rest: Rest) -> None:
    rest.create("learns")
    client = rest.client("learns")
    liked = {"gold": "a", "silver": "b", "bronze": "c"}
    rng = random.Random(3)
    hits: list[bool] = []
    for _ in range(400):
        segment = rng.choice(sorted(liked))
        answer = client.rank({"contextFeatures": context(segment), "actions": actions("a", "b", "c", "d")})
        hit = answer["rewardActionId"] == liked[segment]
        hits.append(hit)
        client.reward(answer["eventId"], {"value": 1.0 if hit else 0.0})
    assert sum(hits[-200:]) / 200 > 0.8  # chance is 0.25
    for segment, action in liked.items():  # each segment's most likely action is the one it likes
        ranking = client.rank({"contextFeatures": context(segment), "actions": actions("a", "b", "c", "d")})["ranking"]
        assert max(ranking, key=lambda r: r["probability"])["id"] == action, (segment, ranking)


def auth_server(make_server: Callable[..., RunningServer], tmp_path: Path) -> tuple[RunningServer, int]:
    tokens = tmp_path / "tokens"
    tokens.write_text("web serve serve-token-0123456789\nops admin,serve admin-token-0123456789\n")
    http_port = free_port()
    return make_server("--http-port", str(http_port), "--auth-tokens-file", str(tokens)).start(), http_port


def test_the_subscription_key_is_a_kairos_token_with_scopes(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server, http_port = auth_server(make_server, tmp_path)
    rest = Rest(server, http_port)
    serve, admin = AzureKeyCredential("serve-token-0123456789"), AzureKeyCredential("admin-token-0123456789")
    answer = rest.client("demo", serve).rank({"contextFeatures": context("gold"), "actions": actions("a", "b")})
    rest.client("demo", serve).reward(answer["eventId"], {"value": 1.0})
    rest.legacy("demo", "serve-token-0123456789").events.activate(answer["eventId"])
    with pytest.raises(HttpResponseError) as caught:
        rest.admin("demo", serve).get_policy()
    assert caught.value.status_code == 403 and "admin" in str(caught.value)
    assert rest.admin("demo", admin).get_policy()["arguments"].startswith("--cb_explore_adf")
    with pytest.raises(HttpResponseError) as caught:
        rest.client("demo", AzureKeyCredential("wrong-token-0123456789")).rank({"actions": actions("a")})
    assert caught.value.status_code == 401
    status, body = rest.raw("POST", "/dp/demo/personalizer/rank", b'{"actions": [{"id": "a"}]}')
    assert status == 401 and body["error"]["innerError"]["code"] == "MISSING_TOKEN"
    with urllib.request.urlopen(f"{rest.base}/healthz", timeout=5) as health:
        assert health.status == 200  # health stays open


def test_the_readme_example_runs(rest: Rest) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"## Coming from Personalizer.*?```python\n(.*?)```", readme, re.S)
    assert code is not None
    before = rest.stats("demo")
    exec(code.group(1).replace("http://localhost:8080", rest.base), {})
    after = rest.stats("demo")
    assert (after.ranks - before.ranks, after.rewards - before.rewards) == (1, 1)
