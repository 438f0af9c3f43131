"""Personalizer's multi-slot REST calls, driven by the official SDK against a real Kairos server.

Only azure-ai-personalizer (1.0.0b1) has multi-slot calls; azure-cognitiveservices-personalizer 0.1.1 has
none, so its ``v1.0`` path style is driven with plain HTTP.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import group
from tests.integration.test_metrics import free_port
from tests.integration.test_rest_personalizer import Rest, actions, context
from tests.server import RunningServer


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rest]:
    http_port = free_port()
    server = RunningServer(tmp_path_factory.mktemp("multislot") / "data", ["--http-port", str(http_port)]).start()
    try:
        yield Rest(server, http_port)
    finally:
        assert server.stop() == 0


def page(**extra: Any) -> dict[str, Any]:
    """A page with a hero and a footer slot over four actions."""
    return {
        "contextFeatures": context("gold"),
        "actions": actions("a", "b", "c", "d"),
        "slots": [
            {"id": "hero", "baselineAction": "a", "features": [{"layout": {"size": "large"}}]},
            {"id": "footer", "baselineAction": "b", "features": [{"layout": {"size": "small"}}]},
        ],
    } | extra


def wait_for(rest: Rest, dp: str, done: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not done(stats := rest.stats(dp)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return stats


def test_rank_reward_and_activate_many_slots_with_the_sdk(rest: Rest) -> None:
    rest.create("slots")
    client = rest.client("slots")
    answer = client.rank_multi_slot(page())
    assert [s["id"] for s in answer["slots"]] == ["hero", "footer"]
    shown = [s["rewardActionId"] for s in answer["slots"]]
    assert len(set(shown)) == 2 and set(shown) <= {"a", "b", "c", "d"}
    assert len(answer["eventId"]) == 32  # generated
    client.reward_multi_slot(
        answer["eventId"], {"reward": [{"slotId": "hero", "value": 1.0}, {"slotId": "footer", "value": 0.0}]}
    )
    client.activate_multi_slot(answer["eventId"])  # not deferred: nothing to do, and no error
    stats = wait_for(rest, "slots", lambda s: s.learned >= 2)
    assert (stats.ranks, stats.rewards, stats.learned, stats.rest_ignored_events) == (1, 2, 2, 0)

    given = client.rank_multi_slot(page(eventId="page-1"))
    assert given["eventId"] == "page-1"
    assert client.rank_multi_slot(page(eventId="page-1")) == given  # a retry answers as before
    assert rest.stats("slots").ranks == 2


def test_the_v1_path_style_serves_multi_slot_too(rest: Rest) -> None:
    rest.create("slots-v1")
    status, answer = rest.raw("POST", "/dp/slots-v1/personalizer/v1.0/multislot/rank", json.dumps(page()).encode())
    assert status == 201 and [s["id"] for s in answer["slots"]] == ["hero", "footer"]
    body = json.dumps({"reward": [{"slotId": "footer", "value": 0.5}]}).encode()
    path = f"/dp/slots-v1/personalizer/v1.0/multislot/events/{answer['eventId']}"
    assert rest.raw("POST", f"{path}/reward", body)[0] == 204
    assert rest.raw("POST", f"{path}/activate")[0] == 204
    assert rest.stats("slots-v1").rewards == 1


def test_each_slot_keeps_out_the_actions_it_excludes(rest: Rest) -> None:
    rest.create("slots-excluded")
    client = rest.client("slots-excluded")
    request = page()
    request["slots"][0]["excludedActions"] = ["c", "d"]  # the hero shows a or b
    request["slots"][1]["excludedActions"] = ["a"]
    seen: dict[str, set[str]] = {"hero": set(), "footer": set()}
    for n in range(30):
        answer = client.rank_multi_slot({**request, "eventId": f"ex-{n}"})
        chosen = {s["id"]: s["rewardActionId"] for s in answer["slots"]}
        assert chosen["hero"] in {"a", "b"} and chosen["footer"] in {"b", "c", "d"}
        assert chosen["hero"] != chosen["footer"]
        for slot_id, action in chosen.items():
            seen[slot_id].add(action)
    assert seen["hero"] == {"a", "b"}  # both allowed actions come up: the slot explores among them


def test_deferred_slots_are_learned_only_when_activated(rest: Rest) -> None:
    rest.create("slots-deferred", wait_ms=400)
    client = rest.client("slots-deferred")
    shown = client.rank_multi_slot(page(deferActivation=True))
    hidden = client.rank_multi_slot(page(deferActivation=True))
    client.activate_multi_slot(shown["eventId"])
    for event in (shown, hidden):  # accepted for both; the hidden one was never shown, so never learned
        client.reward_multi_slot(event["eventId"], {"reward": [{"slotId": "hero", "value": 1.0}]})
    stats = wait_for(rest, "slots-deferred", lambda s: s.learner.expired_events >= 2 and s.learned >= 2)
    # The shown page: hero with its reward, footer with the default reward when its window closed.
    assert (stats.learned, stats.learner.expired_events, stats.default_rewards) == (2, 2, 1)


def test_rewards_for_unknown_events_slots_and_closed_windows_are_accepted_and_counted(rest: Rest) -> None:
    rest.create("slots-lenient", wait_ms=200)
    client = rest.client("slots-lenient")
    client.reward_multi_slot("never-ranked", {"reward": [{"slotId": "hero", "value": 1.0}]})
    client.activate_multi_slot("never-ranked")
    answer = client.rank_multi_slot(page())
    reward = {"reward": [{"slotId": "hero", "value": 1.0}, {"slotId": "sidebar", "value": 1.0}]}
    client.reward_multi_slot(answer["eventId"], reward)  # no slot "sidebar": the hero's reward counts
    time.sleep(0.5)
    client.reward_multi_slot(answer["eventId"], {"reward": [{"slotId": "footer", "value": 1.0}]})  # closed
    stats = rest.stats("slots-lenient")
    assert (stats.rest_ignored_events, stats.rewards) == (4, 1)


def test_each_slot_learns_its_own_preference_through_the_sdk(rest: Rest) -> None:
    # The same audience and actions; only the slot says which one is clicked.
    rest.create("slots-learn")
    client = rest.client("slots-learn")
    preferred = {"hero": "c", "footer": "a"}
    late = dict.fromkeys(preferred, 0)
    for n in range(400):
        # Fixed event ids fix the draws (seeded by event and slot): the same run every time.
        answer = client.rank_multi_slot(page(eventId=f"learn-{n}"))
        rewards = [
            {"slotId": s["id"], "value": 1.0 if s["rewardActionId"] == preferred[s["id"]] else 0.0}
            for s in answer["slots"]
        ]
        client.reward_multi_slot(answer["eventId"], {"reward": rewards})
        if n >= 300:
            for reward in rewards:
                late[reward["slotId"]] += int(reward["value"])
    for hits in late.values():  # uniform filling shows a slot's preferred action a quarter of the time
        assert hits / 100 > 0.7, late
    wait_for(rest, "slots-learn", lambda s: s.learned >= 800)
    final = client.rank_multi_slot(page(eventId="after-learning"))
    assert {s["id"]: s["rewardActionId"] for s in final["slots"]} == preferred


EVENTS = 1500
MULTI = "/dp/slots-errors/personalizer/multislot"


def without_baseline(body: dict[str, Any]) -> dict[str, Any]:
    del body["slots"][1]["baselineAction"]
    return body


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (page(slots=[]), "NO_SLOTS"),
        (page(slots="hero"), "INVALID_FIELD"),
        (page(slots=[{"baselineAction": "a"}]), "INVALID_FIELD"),
        (without_baseline(page()), "BASELINE_ACTION_REQUIRED"),
        (page(slots=[{"id": "s", "baselineAction": "x"}]), "UNKNOWN_BASELINE_ACTION"),
        (
            page(slots=[{"id": "s", "baselineAction": "a"}, {"id": "t", "baselineAction": "a"}]),
            "DUPLICATE_BASELINE_ACTION",
        ),
        (page(slots=[{"id": "s", "baselineAction": "a", "excludedActions": ["a"]}]), "BASELINE_ACTION_EXCLUDED"),
        (page(slots=[{"id": "s", "baselineAction": "a"}, {"id": "s", "baselineAction": "b"}]), "DUPLICATE_SLOT_ID"),
        (page(slots=[{"id": "s", "baselineAction": "a", "features": [{"x": [{}]}]}]), "INVALID_FEATURE"),
        (
            page(actions=actions("a", "b"), slots=[{"id": f"s{k}", "baselineAction": "abc"[k]} for k in range(3)]),
            "MORE_SLOTS_THAN_ACTIONS",
        ),
    ],
)
def test_bad_multi_slot_ranks_are_refused_in_personalizers_shape(rest: Rest, body: dict[str, Any], reason: str) -> None:
    listed = rest.server.admin.ListDecisionPoints(apb.ListDecisionPointsRequest()).decision_points
    if "slots-errors" not in {dp.name for dp in listed}:
        rest.create("slots-errors")
    status, answer = rest.raw("POST", f"{MULTI}/rank", json.dumps(body).encode())
    assert (status, answer["error"]["code"], answer["error"]["innerError"]["code"]) == (400, "BadRequest", reason)
    assert answer["error"]["message"]
    assert rest.stats("slots-errors").ranks == 0  # nothing was logged


def test_bad_multi_slot_rewards_apply_nothing(rest: Rest) -> None:
    rest.create("slots-bad-rewards")
    client = rest.client("slots-bad-rewards")
    answer = client.rank_multi_slot(page())
    single = client.rank({"contextFeatures": context("gold"), "actions": actions("a", "b")})
    path = f"/dp/slots-bad-rewards/personalizer/multislot/events/{answer['eventId']}/reward"
    for body, reason in [
        ({"value": 1.0}, "INVALID_REWARD"),
        ({"reward": []}, "INVALID_REWARD"),
        ({"reward": [{"slotId": "hero"}]}, "INVALID_REWARD"),
        ({"reward": [{"slotId": 7, "value": 1}]}, "INVALID_REWARD"),
        ({"reward": [{"slotId": "", "value": 1}]}, "SLOT_ID_REQUIRED"),
        # The first is fine, the second outside the reward range: neither is applied.
        ({"reward": [{"slotId": "hero", "value": 1}, {"slotId": "footer", "value": 3}]}, "REWARD_OUT_OF_RANGE"),
    ]:
        status, error = rest.raw("POST", path, json.dumps(body).encode())
        assert (status, error["error"]["innerError"]["code"]) == (400, reason), body
    with pytest.raises(HttpResponseError) as caught:  # a single-slot event has no slots: a mix-up, said clearly
        client.reward_multi_slot(single["eventId"], {"reward": [{"slotId": "hero", "value": 1.0}]})
    assert caught.value.status_code == 400 and "events/" in str(caught.value) and "slot_id" not in str(caught.value)
    with pytest.raises(HttpResponseError) as caught:  # and the reverse
        client.reward(answer["eventId"], {"value": 1.0})
    assert caught.value.status_code == 400 and "multislot/events/" in str(caught.value)
    stats = rest.stats("slots-bad-rewards")
    assert (stats.rewards, stats.rest_ignored_events) == (0, 0)


def test_feature_importance_lifecycle_finds_the_namespace_with_the_signal(rest: Rest) -> None:
    rest.create("importance", wait_ms=200)
    admin = rest.admin("importance")
    # Logs that explore enough for the replays to tell the namespaces apart.
    admin.update_policy({"name": "explore", "arguments": "--cb_explore_adf --epsilon 0.3 -q ::"})
    rng = random.Random(5)
    liked = {"gold": "a", "silver": "b"}
    offers = [tpb.Action(id=i, features=[group("offer", kind=i, price=10.0 + n)]) for n, i in enumerate("ab")]
    for n in range(EVENTS):  # traffic over gRPC, the quickest way to a log this size; the same log as REST's
        segment = rng.choice(sorted(liked))
        context = [group("user", segment=segment), group("noise", color=rng.choice(["red", "green", "blue"]))]
        answer = rest.server.decisions.Rank(
            dpb.RankRequest(decision_point="importance", context=context, actions=offers, event_id=f"i-{n}")
        )
        clicked = answer.ranking[0].action_id == liked[segment]
        rest.server.decisions.Reward(
            dpb.RewardRequest(decision_point="importance", event_id=answer.event_id, value=float(clicked))
        )
    time.sleep(0.6)  # every window closes
    admin.create_feature_importance("first", {"name": "what matters", "startTime": "2020-01-01T00:00:00Z"})
    found = admin.get_feature_importance("first")
    deadline = time.monotonic() + 120
    while found["status"] == "Running" and time.monotonic() < deadline:
        time.sleep(0.2)
        found = admin.get_feature_importance("first")
    assert found["status"] == "Succeeded", found
    assert found["name"] == "what matters" and found["kairos"]["events"] == EVENTS
    namespaces = {n["namespace"]: n for n in found["kairos"]["namespaces"]}
    assert found["kairos"]["namespaces"][0]["namespace"] == "user"
    assert namespaces["user"]["verdict"] == "matters"
    assert namespaces["noise"]["verdict"] != "matters"
    scores = found["featureScores"]
    assert (scores[0]["namespace"], scores[0]["featureName"]) == ("user", "segment")
    assert scores == sorted(scores, key=lambda s: -s["score"])
    noise = next(s for s in scores if s["namespace"] == "noise")
    assert noise["score"] < scores[0]["score"] and noise["kairos"]["verdict"] != "matters"

    assert [f["id"] for f in admin.list_feature_importances()] == ["first"]
    with pytest.raises(HttpResponseError) as caught:
        admin.create_feature_importance("first", {"name": "again"})
    assert caught.value.status_code == 409
    admin.delete_feature_importance("first")
    assert list(admin.list_feature_importances()) == []
    with pytest.raises(HttpResponseError) as caught:
        admin.get_feature_importance("first")
    assert caught.value.status_code == 404


def test_a_feature_importance_without_logged_events_fails_with_a_reason(rest: Rest) -> None:
    rest.create("importance-empty")
    admin = rest.admin("importance-empty")
    admin.create_feature_importance("none", {"name": "n", "startTime": "2020-01-01", "endTime": "2020-01-02"})
    deadline = time.monotonic() + 30
    found = admin.get_feature_importance("none")
    while found["status"] == "Running" and time.monotonic() < deadline:
        time.sleep(0.1)
        found = admin.get_feature_importance("none")
    assert found["status"] == "Failed" and "usable events" in found["description"], found
    assert "/" not in found["description"]  # no file paths
    with pytest.raises(HttpResponseError) as caught:
        admin.create_feature_importance("bad", {"name": "n", "startTime": "2020-01-02", "endTime": "2020-01-01"})
    assert caught.value.status_code == 400 and "endTime" in str(caught.value)
