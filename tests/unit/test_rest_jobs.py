"""The REST layer's background jobs and multi-slot bodies (service.rest.jobs, .multislot, .importances)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from policies.estimators import Estimate
from service.errors import KairosError
from service.offline.importance import Ablation, Importance
from service.plane import DecisionPlane
from service.rest import jobs, multislot
from service.rest.importances import scores
from service.slots import RankSlotsOutput, SlotOutput


def test_records_a_restart_interrupted_are_marked_failed_and_others_kept(tmp_path: Path) -> None:
    (tmp_path / "dp").mkdir()
    running = {"id": "r", "status": jobs.RUNNING, "creationTime": "2026-01-01T00:00:00.000Z"}
    done = {"id": "d", "status": jobs.SUCCEEDED, "creationTime": "2026-01-01T00:00:00.000Z", "featureScores": []}
    (tmp_path / "dp" / "r.json").write_text(json.dumps(running))
    (tmp_path / "dp" / "d.json").write_text(json.dumps(done))
    (tmp_path / "dp" / "broken.json").write_text("{not json")  # skipped, not fatal
    plane = cast(DecisionPlane, None)  # the constructor only reads the records
    with jobs.new_executor() as executor:
        jobs.JobStore(plane, tmp_path, "feature importance", executor)
    marked = json.loads((tmp_path / "dp" / "r.json").read_text())
    assert marked["status"] == jobs.FAILED and "restart" in marked["description"]
    assert json.loads((tmp_path / "dp" / "d.json").read_text()) == done


def test_time_ranges_default_to_the_whole_log_and_refuse_reversed_ones() -> None:
    span = jobs.time_range({"startTime": "2026-01-01", "endTime": "2026-01-02T00:00:00Z"}, "X")
    assert span.until_ms - span.since_ms == 86_400_000
    assert jobs.time_range({}, "X").since_ms == 0
    with pytest.raises(KairosError, match="later") as caught:
        jobs.time_range({"startTime": "2026-01-02", "endTime": "2026-01-01"}, "INVALID_FEATURE_IMPORTANCE")
    assert caught.value.reason == "INVALID_FEATURE_IMPORTANCE"
    with pytest.raises(KairosError, match="ISO-8601"):
        jobs.time_range({"startTime": "yesterday"}, "X")


def test_public_records_leave_out_kairos_own_part() -> None:
    assert jobs.public({"id": "e", jobs.PRIVATE: {"options": {}}}) == {"id": "e"}


def test_a_slot_without_an_action_has_no_reward_action_id() -> None:
    output = RankSlotsOutput("e1", [SlotOutput("hero", [("a", 0.9), ("b", 0.1)]), SlotOutput("footer", [])], "1.0")
    assert multislot.rank_slots_response(output) == {
        "eventId": "e1",
        "slots": [{"id": "hero", "rewardActionId": "a"}, {"id": "footer"}],
    }


def test_slot_features_baselines_and_exclusions_reach_the_plane() -> None:
    body = {
        "contextFeatures": [{"user": {"tier": "gold"}}],
        "actions": [{"id": "a", "features": [{"offer": {"price": 1}}]}, {"id": "b"}],
        "slots": [{"id": "hero", "baselineAction": "a", "excludedActions": ["b"], "features": [{"size": "big"}]}],
        "eventId": "e7",
        "deferActivation": True,
    }
    ranked = multislot.rank_slots_input("dp", body)
    (slot,) = ranked.slots
    assert (slot.id, slot.baseline_action_id, list(slot.excluded_action_ids)) == ("hero", "a", ["b"])
    assert [(g.namespace, dict(g.features)) for g in slot.features] == [("size", {"size": "big"})]
    assert [c.id for c in ranked.candidates] == ["a", "b"] and ranked.context[0].namespace == "user"
    assert (ranked.event_id, ranked.defer_activation) == ("e7", True)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"reward": [{"slotId": "hero", "value": float("inf")}]}, "INVALID_REWARD"),
        ({"reward": [{"slotId": "hero", "value": True}]}, "INVALID_REWARD"),
        ({"reward": [{"slotId": "hero\n", "value": 1}]}, "INVALID_SLOT_ID"),
        ({"reward": {"slotId": "hero", "value": 1}}, "INVALID_REWARD"),
        ([{"slotId": "hero", "value": 1}], "INVALID_REWARD"),
    ],
)
def test_bad_slot_rewards_are_refused(body: Any, reason: str) -> None:
    with pytest.raises(KairosError) as caught:
        multislot.slot_rewards(body)
    assert caught.value.reason == reason


def test_slot_rewards_keep_their_order() -> None:
    body = {"reward": [{"slotId": "b", "value": 0}, {"slotId": "a", "value": 0.5}]}
    assert multislot.slot_rewards(body) == [multislot.SlotReward("b", 0.0), multislot.SlotReward("a", 0.5)]


def estimate(value: float, low: float, high: float) -> Estimate:
    return Estimate("dr", value, low, high, 100, 0.95, "empirical Bernstein", 80.0)


def test_feature_scores_are_personalizers_shape_with_kairos_details() -> None:
    user = Ablation("user", None, estimate(0.4, 0.3, 0.5), estimate(0.3, 0.1, 0.5))
    segment = Ablation("user", "segment", estimate(0.4, 0.3, 0.5), estimate(0.3, 0.1, 0.5))
    color = Ablation("noise", "color", estimate(0.7, 0.6, 0.8), estimate(0.0, -0.2, 0.2))
    result = Importance("logs", "squarecb", 100, 0, 0.95, (0.0, 1.0), estimate(0.7, 0.6, 0.8), [user], [segment, color])
    shaped = scores(result)
    assert [(s["namespace"], s["featureName"], s["score"]) for s in shaped["featureScores"]] == [
        ("user", "segment", 0.3),
        ("noise", "color", 0.0),
    ]
    assert [s["kairos"]["verdict"] for s in shaped["featureScores"]] == ["matters", "no clear effect"]
    assert shaped["kairos"]["namespaces"] == [
        {
            "namespace": "user",
            "score": 0.3,
            "verdict": "matters",
            "drop": user.drop.to_dict(),
            "valueWithout": user.estimate.to_dict(),
        }
    ]
    assert (shaped["kairos"]["events"], shaped["kairos"]["policy"]) == (100, "squarecb")
    json.dumps(shaped, allow_nan=False)  # plain JSON
